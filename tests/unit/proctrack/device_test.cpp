// ProcTrackDevice over the fake hypervisor (OS-agnostic mode): every request answered, switches published,
// and start/stop any number of times with requests in flight never leaves a vCPU paused.
#include "services/proctrack/proctrack_device.hpp"
#include "dom0/gearsd/reactor.hpp"
#include "tests/fake/fake.hpp"
#include "tests/unit/proctrack/cr3_request.hpp"

#include <gtest/gtest.h>

#include <cstring>

namespace gears::proctrack {
namespace {

constexpr domid_t kDom = 21;

vm_event_request_t cr3(std::uint32_t vcpu, std::uint64_t old_v, std::uint64_t new_v) {
  return test::cr3_write(vcpu, old_v, new_v);
}

daemon::DeviceSpec spec(nlohmann::json params) {
  return daemon::DeviceSpec{daemon::DeviceKey{"proctrack", kDom, 0}, "", std::move(params)};
}

class DeviceTest : public ::testing::Test {
 protected:
  void SetUp() override { fake::reset(); }
  void TearDown() override {
    auto c = fake::counters();
    EXPECT_EQ(c.monitors, 0U);
    EXPECT_EQ(c.xc_handles, 0U);
    EXPECT_EQ(c.ports, 0U);
    EXPECT_EQ(fake::pause_count(kDom), 0) << "domain left paused";
  }
};

TEST_F(DeviceTest, AnswersEveryRequestAndPublishesSwitches) {
  Directory dir;
  daemon::Reactor loop;
  ProcTrackDevice dev(spec({{"os", "none"}}), dir);
  ASSERT_TRUE(dev.start(loop).ok());
  const auto cfg = fake::monitor_ctrlreg(kDom, VM_EVENT_X86_CR3);
  EXPECT_TRUE(cfg.enabled && cfg.sync && cfg.onchangeonly);
  ASSERT_TRUE(fake::monitor_push_request(kDom, cr3(0, 0x1000, 0x2000 | 5)));
  ASSERT_TRUE(fake::monitor_push_request(kDom, cr3(1, 0x1000, (1ULL << 63) | 0x3000)));
  vm_event_request_t other = cr3(0, 0, 0);
  other.reason = VM_EVENT_REASON_MOV_TO_MSR;
  ASSERT_TRUE(fake::monitor_push_request(kDom, other));
  for (int i = 0; i < 10 && fake::monitor_pop_responses(kDom).empty(); ++i) {
    (void)loop.run_once(100);
  }
  // Responses were popped above as they came; count the rest and check the device's own counters.
  (void)loop.run_once(0);
  const auto st = dev.stats();
  EXPECT_EQ(st["cr3_events"], 2);
  EXPECT_EQ(st["other_events"], 1);
  EXPECT_EQ(st["as_births"], 2);
  EXPECT_EQ(dir.running(kDom).at(0).as, 0x2000U);
  EXPECT_EQ(dir.running(kDom).at(1).as, 0x3000U);
  EXPECT_TRUE(dev.hints()["running"].contains("1"));
  dev.stop();
  EXPECT_FALSE(fake::monitor_enabled(kDom));
  EXPECT_FALSE(dir.who_ran(kDom, 0, now_ns()));
}

TEST_F(DeviceTest, ResponsesEchoVcpuAndUnpause) {
  Directory dir;
  daemon::Reactor loop;
  ProcTrackDevice dev(spec({{"os", "none"}}), dir);
  ASSERT_TRUE(dev.start(loop).ok());
  for (std::uint32_t v = 0; v < 4; ++v) ASSERT_TRUE(fake::monitor_push_request(kDom, cr3(v, 0, 0x1000 * (v + 1))));
  std::vector<vm_event_response_t> got;
  for (int i = 0; i < 20 && got.size() < 4; ++i) {
    (void)loop.run_once(100);
    for (auto& r : fake::monitor_pop_responses(kDom)) got.push_back(r);
  }
  ASSERT_EQ(got.size(), 4U);
  for (std::uint32_t v = 0; v < 4; ++v) {
    EXPECT_EQ(got[v].vcpu_id, v);
    EXPECT_NE(got[v].flags & VM_EVENT_FLAG_VCPU_PAUSED, 0U);
  }
  dev.stop();
}

TEST_F(DeviceTest, ToggleWithRequestsInFlightLeavesNoVcpuPaused) {
  Directory dir;
  daemon::Reactor loop;
  for (int round = 0; round < 20; ++round) {
    ProcTrackDevice dev(spec({{"os", "none"}}), dir);
    ASSERT_TRUE(dev.start(loop).ok());
    // Requests Xen produced that the loop never got to: stop() must answer them before tearing down.
    for (std::uint32_t v = 0; v < 3; ++v)
      ASSERT_TRUE(fake::monitor_push_request(kDom, cr3(v, 0x1000, 0x1000 * (v + 2 + static_cast<unsigned>(round)))));
    if (round % 2 == 0) (void)loop.run_once(0);
    dev.stop();
    EXPECT_EQ(fake::monitor_unanswered_at_disable(kDom), 0U) << "round " << round;
    EXPECT_FALSE(fake::monitor_enabled(kDom));
    EXPECT_EQ(fake::pause_count(kDom), 0);
  }
  auto ev = dir.events(kDom, 0, 10000);
  std::size_t starts = 0, stops = 0;
  for (const auto& e : ev["events"]) starts += e["type"] == "start", stops += e["type"] == "stop";
  EXPECT_EQ(starts, 20U);
  EXPECT_EQ(stops, 20U);
}

TEST_F(DeviceTest, SecondTrackerOnADomainIsRefused) {
  Directory dir;
  ProcTrackDevice a(spec({{"os", "none"}}), dir);
  EXPECT_THROW((void)std::make_unique<ProcTrackDevice>(spec({{"os", "none"}}), dir), std::exception);
}

TEST_F(DeviceTest, BadParamsAreClearErrors) {
  Directory dir;
  auto msg = [&](nlohmann::json p) {
    try {
      ProcTrackDevice d(spec(std::move(p)), dir);
    } catch (const std::exception& e) {
      return std::string(e.what());
    }
    return std::string("no error");
  };
  EXPECT_NE(msg({{"os", "windows"}}).find("os must be linux or none"), std::string::npos);
  EXPECT_NE(msg({{"kpti", "maybe"}}).find("kpti"), std::string::npos);
  EXPECT_NE(msg({{"os", "none"}, {"rescan_ms", "10"}}).find("rescan_ms"), std::string::npos);
  EXPECT_NE(msg({{"os", "none"}, {"rescan_ms", "12x"}}).find("rescan_ms"), std::string::npos);
  EXPECT_NE(msg({{"colour", "red"}}).find("unknown param 'colour'"), std::string::npos);
  EXPECT_NE(msg({{"os", "linux"}, {"btf", "/nonexistent"}}).find("/nonexistent"), std::string::npos);
  EXPECT_NE(msg({{"os", "none"}, {"btf", nlohmann::json::array()}}).find("btf"), std::string::npos);
}

}  // namespace
}  // namespace gears::proctrack
