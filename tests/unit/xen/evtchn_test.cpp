#include "common/xen/evtchn.hpp"
#include "tests/fake/fake.hpp"

#include <gtest/gtest.h>

#include <poll.h>

#include <thread>

namespace gears::xen {
namespace {

bool readable(int fd, int timeout_ms = 0) {
  pollfd p{fd, POLLIN, 0};
  return ::poll(&p, 1, timeout_ms) == 1 && (p.revents & POLLIN) != 0;
}

class EvtchnTest : public ::testing::Test {
 protected:
  void SetUp() override { fake::reset(); }
  void TearDown() override {
    auto c = fake::counters();
    EXPECT_EQ(c.evtchn_handles, 0U);
    EXPECT_EQ(c.ports, 0U);
  }
};

// A backend (dom0) and frontend (dom5) pair: the frontend allocates, the backend binds.
struct Pair {
  EventChannel front;
  EventChannel back;
};
Pair make_pair() {
  Pair p;
  {
    fake::AsDomain d(5);
    p.front = EventChannel::alloc_unbound(0);
  }
  p.back = EventChannel::bind_interdomain(5, p.front.port());
  return p;
}

TEST_F(EvtchnTest, NotifyWakesPeerAndCoalescesUntilUnmask) {
  Pair p = make_pair();
  EXPECT_FALSE(readable(p.back.fd()));
  ASSERT_TRUE(p.front.notify().ok());
  ASSERT_TRUE(p.front.notify().ok());
  EXPECT_TRUE(readable(p.back.fd()));
  auto port = p.back.pending();
  ASSERT_TRUE(port.ok());
  EXPECT_EQ(port.value(), p.back.port());
  EXPECT_EQ(p.back.pending().error().code, EAGAIN) << "two notifies, one delivery while masked";
  EXPECT_FALSE(readable(p.back.fd()));
  ASSERT_TRUE(p.back.unmask().ok());  // the coalesced notify is re-delivered now
  EXPECT_TRUE(readable(p.back.fd()));
  EXPECT_TRUE(p.back.consume().value());
  EXPECT_FALSE(p.back.consume().value());
}

TEST_F(EvtchnTest, PingPongAcrossThreads) {
  Pair p = make_pair();
  constexpr int kRounds = 200;
  std::thread peer([&] {
    for (int i = 0; i < kRounds; ++i) {
      ASSERT_TRUE(readable(p.front.fd(), -1));
      ASSERT_TRUE(p.front.consume().value());
      ASSERT_TRUE(p.front.notify().ok());
    }
  });
  for (int i = 0; i < kRounds; ++i) {
    ASSERT_TRUE(p.back.notify().ok());
    ASSERT_TRUE(readable(p.back.fd(), -1));
    ASSERT_TRUE(p.back.consume().value());
  }
  peer.join();
}

TEST_F(EvtchnTest, ClosedPeerDropsNotifies) {
  Pair p = make_pair();
  p.front = EventChannel();
  EXPECT_TRUE(p.back.notify().ok());
  EXPECT_EQ(fake::dropped_notifies(), 1U);
}

TEST_F(EvtchnTest, BindToWrongPortThrows) {
  EXPECT_THROW((void)EventChannel::bind_interdomain(5, 42), XenError);
  EventChannel for7 = [] { fake::AsDomain d(5); return EventChannel::alloc_unbound(7); }();
  EXPECT_THROW((void)EventChannel::bind_interdomain(5, for7.port()), XenError) << "reserved for dom7";
}

TEST_F(EvtchnTest, MoveKeepsOnePort) {
  Pair p = make_pair();
  EventChannel moved(std::move(p.back));
  EXPECT_FALSE(p.back.valid());  // NOLINT(bugprone-use-after-move)
  EXPECT_EQ(fake::counters().ports, 2U);
  ASSERT_TRUE(p.front.notify().ok());
  EXPECT_TRUE(readable(moved.fd()));
}

}  // namespace
}  // namespace gears::xen
