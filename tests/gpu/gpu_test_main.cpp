// test_gpu's main: GoogleTest's flags, and --sm80-kernels, which makes every CUDA backend of the
// run use the Ampere (sm80) kernel set on a Hopper GPU (gpu_test_util.h: sm80_forced).
#include <gtest/gtest.h>

#include <cstdio>
#include <cstring>

#include "gpu/gpu_test_util.h"

int main(int argc, char** argv) {
  testing::InitGoogleTest(&argc, argv);  // removes its own flags
  int kept = 1;
  for (int i = 1; i < argc; ++i) {
    if (std::strcmp(argv[i], "--sm80-kernels") == 0) {
      dsserve::test::set_sm80_forced(true);
      continue;
    }
    argv[kept++] = argv[i];
  }
  if (kept != argc) argc = kept;
  for (int i = 1; i < argc; ++i) {
    std::fprintf(stderr, "test_gpu: unknown argument '%s' (expected GoogleTest flags or --sm80-kernels)\n", argv[i]);
    return 2;
  }
  std::printf("[ kernels  ] %s\n", dsserve::test::sm80_forced() ? "sm80 (forced with --sm80-kernels)"
                                                                 : "the device's own set");
  return RUN_ALL_TESTS();
}
