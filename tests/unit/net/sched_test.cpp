// QoS pieces: hint -> policy, token bucket arithmetic (explicit clock), the contention rule of the board.
#include "dom0/backends/net/sched.hpp"

#include <gtest/gtest.h>

namespace gears::net {
namespace {

TEST(NetQos, PolicyFromHints) {
  const auto p = policy_from_hints(nlohmann::json::parse(
      R"({"scope":"domain","qos":{"class":"gold","weight":0},"rate_bps":2000000,"latency_us":500})"));
  EXPECT_EQ(p.cls, kClassGold);
  EXPECT_EQ(p.rate, 2000000U);
  EXPECT_EQ(p.latency_us, 500U);
  EXPECT_EQ(p.effective_weight(), 8);
  // Absent keys keep the base; nonsense is ignored.
  const auto q = policy_from_hints(nlohmann::json::parse(R"({"qos":{"class":"tin"}})"), p);
  EXPECT_EQ(q, p);
}

TEST(NetQos, TokenBucketPacesToItsRate) {
  TokenBucket b;
  b.set_rate(1'000'000, 0);  // 1 MB/s, starts empty
  EXPECT_TRUE(b.ready(0));
  b.charge(100'000);
  EXPECT_FALSE(b.ready(0));
  EXPECT_NEAR(static_cast<double>(b.wait_ns(0)), 100e6, 1e3);  // 100 ms of credit owed
  EXPECT_FALSE(b.ready(99'000'000));
  EXPECT_TRUE(b.ready(100'000'001));
  // Idle time accrues at most the burst.
  EXPECT_TRUE(b.ready(10'000'000'000));
  b.charge(65536 + 1);
  EXPECT_FALSE(b.ready(10'000'000'000));
  b.set_rate(0, 10'000'000'000);
  EXPECT_TRUE(b.ready(10'000'000'000));  // unlimited
}

TEST(NetQos, BoardSqueezesWorseClassesOnlyWhileABetterOneIsActive) {
  QosBoard& b = QosBoard::instance();
  b.set_capacity(4'000'000);
  QosPolicy gold{kClassGold, 0, 2'000'000, 0}, bronze{kClassBronze, 0, 0, 0};
  auto g = b.claim(gold);
  auto z = b.claim(bronze);
  ASSERT_TRUE(g && z);
  const std::int64_t t = 1'000'000'000'000;
  // Gold idle: bronze is unlimited.
  EXPECT_EQ(b.grant(*z, t).rate, 0U);
  EXPECT_FALSE(b.grant(*z, t).contended);
  b.mark_active(*g, t);
  const auto gz = b.grant(*z, t + 1);
  EXPECT_TRUE(gz.contended);
  // (4M - 2M stated by gold) * 1 / (1 + 8), floored at 1% of capacity.
  EXPECT_EQ(gz.rate, 222222U);
  EXPECT_EQ(b.grant(*g, t).rate, 2'000'000U);  // gold keeps its stated rate
  // Gold quiet for longer than the window: bronze is free again.
  EXPECT_FALSE(b.grant(*z, t + kActiveWindowNs + 1).contended);
  b.release(*g);
  b.release(*z);
}

TEST(NetQos, AStarvingStatedRateSqueezesWorseClassesUntilItHolds) {
  QosBoard& b = QosBoard::instance();
  b.set_capacity(4'000'000);
  QosPolicy gold{kClassGold, 0, 500'000, 0}, bronze{kClassBronze, 0, 0, 0};
  auto g = b.claim(gold);
  auto z = b.claim(bronze);
  ASSERT_TRUE(g && z);
  const std::int64_t t = 1'000'000'000'000;
  b.mark_active(*g, t);
  const std::uint64_t full = b.grant(*z, t).rate;  // (4M - 0.5M) / 9
  EXPECT_EQ(full, 388888U);
  // Gold sends but gets 0.16 of its rate: bronze's share shrinks tick by tick, down to the 1% floor.
  b.report(*g, 80'000);
  EXPECT_EQ(b.squeeze(*g), 700U);
  EXPECT_LT(b.grant(*z, t).rate, full);
  for (int i = 0; i < 30; ++i) b.report(*g, 80'000);
  EXPECT_EQ(b.squeeze(*g), 10U);
  EXPECT_EQ(b.grant(*z, t).rate, 40'000U);
  // Gold gets its rate: the squeeze relaxes again, 10% per tick.
  b.report(*g, 480'000);
  EXPECT_EQ(b.squeeze(*g), 110U);
  // Only pinging (< 5% of its rate) is no demand: no squeeze.
  for (int i = 0; i < 10; ++i) b.report(*g, 1'000);
  EXPECT_EQ(b.squeeze(*g), 1000U);
  EXPECT_EQ(b.grant(*z, t).rate, full);
  // A vif without a stated rate never squeezes.
  b.report(*z, 10);
  EXPECT_EQ(b.squeeze(*z), 1000U);
  b.release(*g);
  b.release(*z);
}

}  // namespace
}  // namespace gears::net
