#include "common/xen/foreign.hpp"
#include "common/xen/monitor.hpp"
#include "tests/fake/fake.hpp"

#include <gtest/gtest.h>

#include <poll.h>

#include <cstring>

namespace gears::xen {
namespace {

bool readable(int fd) {
  pollfd p{fd, POLLIN, 0};
  return ::poll(&p, 1, 0) == 1 && (p.revents & POLLIN) != 0;
}

vm_event_request_t cr3_request(std::uint32_t vcpu, std::uint64_t cr3, bool paused) {
  vm_event_request_t r;
  std::memset(&r, 0, sizeof r);
  r.version = VM_EVENT_INTERFACE_VERSION;
  r.reason = VM_EVENT_REASON_WRITE_CTRLREG;
  r.vcpu_id = vcpu;
  r.flags = paused ? VM_EVENT_FLAG_VCPU_PAUSED : 0;
  r.u.write_ctrlreg.index = VM_EVENT_X86_CR3;
  r.u.write_ctrlreg.new_value = cr3;
  return r;
}

class MonitorTest : public ::testing::Test {
 protected:
  void SetUp() override { fake::reset(); }
  void TearDown() override {
    auto c = fake::counters();
    EXPECT_EQ(c.xc_handles, 0U);
    EXPECT_EQ(c.monitors, 0U);
    EXPECT_EQ(c.ports, 0U);
    EXPECT_EQ(c.foreign_pages, 0U);
    EXPECT_EQ(c.foreign_handles, 0U);
  }
};

TEST_F(MonitorTest, Cr3EventsAreAnsweredAndVcpusResumed) {
  XenCtrl xc;
  MonitorRing ring(xc, 7);
  ASSERT_TRUE(ring.monitor_cr3(true).ok());
  auto cfg = fake::monitor_ctrlreg(7, VM_EVENT_X86_CR3);
  EXPECT_TRUE(cfg.enabled);
  EXPECT_TRUE(cfg.sync);
  EXPECT_TRUE(cfg.onchangeonly);

  EXPECT_FALSE(readable(ring.fd()));
  ASSERT_TRUE(fake::monitor_push_request(7, cr3_request(0, 0x1000, true)));
  ASSERT_TRUE(fake::monitor_push_request(7, cr3_request(1, 0x2000, true)));
  EXPECT_TRUE(readable(ring.fd()));
  std::vector<std::uint64_t> seen;
  auto n = ring.handle([&](const vm_event_request_t& req, vm_event_response_t&) {
    seen.push_back(req.u.write_ctrlreg.new_value);
  });
  ASSERT_TRUE(n.ok());
  EXPECT_EQ(n.value(), 2U);
  EXPECT_EQ(seen, (std::vector<std::uint64_t>{0x1000, 0x2000}));
  auto rsps = fake::monitor_pop_responses(7);
  ASSERT_EQ(rsps.size(), 2U);
  EXPECT_EQ(rsps[1].vcpu_id, 1U);
  EXPECT_EQ(rsps[1].flags & VM_EVENT_FLAG_VCPU_PAUSED, VM_EVENT_FLAG_VCPU_PAUSED);
  EXPECT_EQ(rsps[1].version, VM_EVENT_INTERFACE_VERSION);
  EXPECT_EQ(fake::monitor_kicks(7), 1U) << "one notify per batch";
}

TEST_F(MonitorTest, DestructorAnswersPendingRequestsBeforeDisable) {
  {
    XenCtrl xc;
    MonitorRing ring(xc, 9);
    ASSERT_TRUE(ring.monitor_cr3(true).ok());
    for (std::uint32_t i = 0; i < 3; ++i) ASSERT_TRUE(fake::monitor_push_request(9, cr3_request(i, 0x1000 * i, true)));
    MonitorRing moved(std::move(ring));  // ownership moves; only one teardown happens
  }
  EXPECT_FALSE(fake::monitor_enabled(9));
  EXPECT_EQ(fake::monitor_unanswered_at_disable(9), 0U) << "no vCPU left paused";
  EXPECT_EQ(fake::pause_count(9), 0) << "domain unpaused after teardown";
}

TEST_F(MonitorTest, SecondMonitorOnSameDomainThrows) {
  XenCtrl xc;
  MonitorRing a(xc, 4);
  EXPECT_THROW(MonitorRing(xc, 4), XenError);
}

TEST_F(MonitorTest, RingWrapsAround) {
  XenCtrl xc;
  MonitorRing ring(xc, 3);
  const std::size_t total = MonitorRing::ring_size() * 3 + 1;
  std::size_t handled = 0;
  for (std::size_t i = 0; i < total; ++i) {
    ASSERT_TRUE(fake::monitor_push_request(3, cr3_request(0, i, true)));
    auto n = ring.handle([&](const vm_event_request_t& req, vm_event_response_t&) {
      EXPECT_EQ(req.u.write_ctrlreg.new_value, handled);
      ++handled;
    });
    ASSERT_TRUE(n.ok());
    EXPECT_EQ(fake::monitor_pop_responses(3).size(), 1U);
  }
  EXPECT_EQ(handled, total);
}

TEST_F(MonitorTest, ForeignMappingSeesGuestMemory) {
  fake::set_guest_memory(6, 8);
  std::memcpy(fake::guest_memory(6).data() + 5 * 4096, "guest", 6);
  ForeignMemory fm;
  std::array<xen_pfn_t, 2> gfns{5, 1};
  auto m = fm.map(6, gfns, true);
  ASSERT_TRUE(m.ok()) << m.error().what;
  EXPECT_STREQ(reinterpret_cast<const char*>(m.value().data()), "guest");
  std::memcpy(m.value().data() + 4096, "dom0", 5);
  EXPECT_EQ(std::memcmp(fake::guest_memory(6).data() + 4096, "dom0", 5), 0);
  std::array<xen_pfn_t, 2> bad{1, 99};
  EXPECT_EQ(fm.map(6, bad, false).error().code, EINVAL);
  EXPECT_FALSE(fm.map(42, gfns, false).ok());
  {
    fake::AsDomain guest(6);
    ForeignMemory unprivileged;
    EXPECT_EQ(unprivileged.map(6, gfns, false).error().code, EPERM);
  }
}

}  // namespace
}  // namespace gears::xen
