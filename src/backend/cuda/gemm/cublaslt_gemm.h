// cuBLASLt matrix products of the CUDA backend, in the row-major vocabulary of the model:
// D[n, m] = X[n, k] W[m, k]^T, with n tokens, m output features, k input features ("TN" in
// cuBLASLt's column-major terms: A = W transposed, B = X). Four kinds: BF16 in / float32
// accumulate; float32 throughout (the router); W8A8 block-scaled FP8 (weights e4m3 with one
// float32 scale per 128x128 block, activations e4m3 with one scale per token per 128 channels);
// int8 in, int32 accumulate and out (channel INT8: the caller applies the scales).
// Heuristic algorithm choices are cached per shape, layout and alignment.
#pragma once
#include <cublasLt.h>
#include <cuda_runtime.h>

#include <cstdint>
#include <map>
#include <tuple>

namespace dsserve::cuda {

enum class GemmKind { Bf16, F32, Fp8BlockScaled, Int8 };

struct GemmArgs {
  GemmKind kind = GemmKind::Bf16;
  int64_t m = 0, n = 0, k = 0;
  const void* w = nullptr;   // [m, k] row-major, rows strided by ldw (BF16, F32, e4m3 or int8)
  int64_t ldw = 0;
  const void* x = nullptr;   // [n, k] row-major, rows strided by ldx (same type as w)
  int64_t ldx = 0;
  void* d = nullptr;         // [n, m] row-major, rows strided by ldd
  int64_t ldd = 0;
  cudaDataType_t d_type = CUDA_R_16BF;  // Int8: CUDA_R_32I
  const float* w_scale = nullptr;  // FP8: [ceil(m / 128), round_up(k / 128, 4)] (checkpoint order, padded)
  const float* x_scale = nullptr;  // FP8: [k / 128, n] (token index contiguous)
  int batch = 1;                   // strided batch (per-head products)
  int64_t stride_w = 0, stride_x = 0, stride_d = 0;
};

// Row stride of the padded FP8 weight-scale matrix for k input features.
inline int64_t fp8_weight_scale_ld(int64_t k) { return ((k + 127) / 128 + 3) / 4 * 4; }

class LtGemm {
 public:
  explicit LtGemm(cudaStream_t stream);
  ~LtGemm();
  LtGemm(const LtGemm&) = delete;
  LtGemm& operator=(const LtGemm&) = delete;

  // Whether cuBLASLt offers an algorithm for this problem (pointers are only used for alignment).
  bool supported(const GemmArgs& a);
  // Runs the product on the stream; throws with the problem's description when cuBLASLt fails.
  void run(const GemmArgs& a);

 private:
  using Key = std::tuple<int, int64_t, int64_t, int64_t, int64_t, int64_t, int64_t, int, int, int64_t, int64_t,
                         int64_t, int, int, int>;
  struct Plan;
  bool find_algo(const GemmArgs& a, cublasLtMatmulAlgo_t* algo);

  cudaStream_t stream_;
  cublasLtHandle_t handle_ = nullptr;
  void* workspace_ = nullptr;
  size_t workspace_bytes_ = size_t(32) << 20;
  std::map<Key, std::pair<bool, cublasLtMatmulAlgo_t>> algos_;
};

}  // namespace dsserve::cuda
