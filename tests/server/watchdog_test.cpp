// The watchdog fires once when a step has made no progress for longer than --watchdog-timeout or
// the device failed, and stays quiet while steps are short, the engine is idle, or a long step
// keeps making progress (a long prefill on the CPU is not a hang).
#include <gtest/gtest.h>

#include <atomic>

#include "server/fake_server_util.h"
#include "server/watchdog.h"

namespace dsserve::test {
namespace {

TEST(Watchdog, FiresOnceWhenAStepMakesNoProgress) {
  FakeEngine engine;
  engine.scripted_stats.current_step_s = 12.0;
  std::atomic<int> fired{0};
  std::string reason;
  {
    server::Watchdog w(engine, 0.05, [&](const std::string& r) { reason = r, ++fired; }, 0.01);
    for (int i = 0; i < 400 && fired == 0; ++i) std::this_thread::sleep_for(std::chrono::milliseconds(5));
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
  }
  EXPECT_EQ(fired, 1);
  EXPECT_NE(reason.find("no progress"), std::string::npos) << reason;
  EXPECT_NE(reason.find("--watchdog-timeout 0.05"), std::string::npos) << reason;
}

TEST(Watchdog, QuietWhileALongStepKeepsMakingProgress) {
  FakeEngine engine;
  engine.scripted_stats.current_step_s = 12.0;  // far beyond the timeout, but layers keep finishing
  std::atomic<int> fired{0};
  {
    server::Watchdog w(engine, 0.05, [&](const std::string&) { ++fired; }, 0.01);
    for (int i = 0; i < 60; ++i) {
      engine.progress += 1;
      std::this_thread::sleep_for(std::chrono::milliseconds(5));
    }
  }
  EXPECT_EQ(fired, 0);
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
  engine.scripted_stats.current_step_s = 0.01;
  std::atomic<int> fired{0};
  {
    server::Watchdog w(engine, 0.05, [&](const std::string&) { ++fired; }, 0.01);
    std::this_thread::sleep_for(std::chrono::milliseconds(150));
  }
  EXPECT_EQ(fired, 0);
  engine.scripted_stats.current_step_s = 0;  // idle: no step running, however long nothing changes
  {
    server::Watchdog w(engine, 0.05, [&](const std::string&) { ++fired; }, 0.01);
    std::this_thread::sleep_for(std::chrono::milliseconds(150));
  }
  EXPECT_EQ(fired, 0);
}

}  // namespace
}  // namespace dsserve::test
