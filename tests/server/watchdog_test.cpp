// The watchdog fires once when a step outlasts --watchdog-timeout or the device failed, and stays
// quiet otherwise.
#include <gtest/gtest.h>

#include <atomic>

#include "server/fake_server_util.h"
#include "server/watchdog.h"

namespace dsserve::test {
namespace {

TEST(Watchdog, FiresOnceWhenAStepOutlastsTheTimeout) {
  FakeEngine engine;
  engine.scripted_stats.current_step_s = 12.0;
  std::atomic<int> fired{0};
  std::string reason;
  {
    server::Watchdog w(engine, 10.0, [&](const std::string& r) { reason = r, ++fired; }, 0.01);
    for (int i = 0; i < 200 && fired == 0; ++i) std::this_thread::sleep_for(std::chrono::milliseconds(5));
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
  }
  EXPECT_EQ(fired, 1);
  EXPECT_NE(reason.find("--watchdog-timeout 10"), std::string::npos) << reason;
}

TEST(Watchdog, FiresWithTheReasonWhenTheDeviceFailed) {
  FakeEngine engine;
  engine.scripted_stats.fatal_error = "GPU 0: an illegal memory access was encountered (cudaErrorIllegalAddress)";
  std::atomic<int> fired{0};
  std::string reason;
  {
    server::Watchdog w(engine, 300.0, [&](const std::string& r) { reason = r, ++fired; }, 0.01);
    for (int i = 0; i < 200 && fired == 0; ++i) std::this_thread::sleep_for(std::chrono::milliseconds(5));
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
  }
  EXPECT_EQ(fired, 1);
  EXPECT_NE(reason.find("device failed: GPU 0: an illegal memory access"), std::string::npos) << reason;
}

TEST(Watchdog, QuietWhileStepsAreShortOrIdle) {
  FakeEngine engine;
  engine.scripted_stats.current_step_s = 0.5;
  std::atomic<int> fired{0};
  {
    server::Watchdog w(engine, 10.0, [&](const std::string&) { ++fired; }, 0.01);
    std::this_thread::sleep_for(std::chrono::milliseconds(100));
  }
  EXPECT_EQ(fired, 0);
}

}  // namespace
}  // namespace dsserve::test
