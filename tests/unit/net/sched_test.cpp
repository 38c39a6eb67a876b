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

TEST(NetFlows, KeysMatchByProtocolAndEitherPort) {
  const FlowTuple tcp{6, 40000, 5201}, udp{17, 53, 33000}, icmp{1, 0, 0};
  EXPECT_TRUE(flow_key_matches(hints::net_flow_key(6, 5201), tcp));
  EXPECT_TRUE(flow_key_matches(hints::net_flow_key(6, 40000), tcp)) << "the source port counts too (replies)";
  EXPECT_FALSE(flow_key_matches(hints::net_flow_key(17, 5201), tcp));
  EXPECT_TRUE(flow_key_matches(hints::net_flow_key(6, 0), tcp)) << "port 0: every TCP frame";
  EXPECT_TRUE(flow_key_matches(hints::net_flow_key(hints::kFlowAnyL4, 53), udp));
  EXPECT_FALSE(flow_key_matches(hints::net_flow_key(hints::kFlowAnyL4, 53), FlowTuple{1, 53, 0}));
  EXPECT_FALSE(flow_key_matches(hints::net_flow_key(hints::kFlowAnyL4, 0), tcp)) << "any protocol, any port: nothing";
  EXPECT_TRUE(flow_key_matches(hints::net_flow_key(1, 0), icmp));
  EXPECT_FALSE(flow_key_matches(hints::net_flow_key(1, 0), tcp));
  EXPECT_FALSE(flow_key_matches(0x1122334455667788ULL, tcp)) << "opaque keys are not vif keys";
  EXPECT_FALSE(flow_key_matches(hints::net_flow_key(6, 5201) | (1ULL << 40U), tcp));
}

hints::HintSet flow_set(std::string_view text) {
  auto r = hints::parse_text(text);
  EXPECT_TRUE(r.ok()) << text;
  return r.value();
}

TEST(NetFlows, RulesFromHintSetsNewestFirstOnePerKeySet) {
  const std::vector<hints::HintSet> sets = {
      flow_set("class=gold"),                              // domain scope: not a flow rule
      flow_set("flow=tcp:5201,class=bronze"),
      flow_set("flow=udp:53,class=gold,rate=100K"),
      flow_set("flow=tcp:5201,class=silver,rate=1M"),      // replaces the first tcp:5201 set
      flow_set("flow=tcp:22,latency=1ms"),                 // nothing to schedule
  };
  const auto rules = flow_rules(sets);
  ASSERT_EQ(rules.size(), 2U);
  EXPECT_EQ(rules[0].subject, "flow:tcp:5201");
  EXPECT_EQ(rules[0].policy.cls, kClassSilver);
  EXPECT_EQ(rules[0].policy.rate, 1'000'000U);
  EXPECT_EQ(rules[1].subject, "flow:udp:53");
  EXPECT_EQ(rules[1].policy.cls, kClassGold);
  EXPECT_EQ(classify(rules, FlowTuple{6, 5201, 40000}), 0U);
  EXPECT_EQ(classify(rules, FlowTuple{17, 33000, 53}), 1U);
  EXPECT_EQ(classify(rules, FlowTuple{6, 22, 40000}), 2U) << "no rule: the vif's default class";
  // A withdrawn key set (a later set for the same keys without class or rate) leaves no rule behind.
  auto more = sets;
  more.push_back(flow_set("flow=udp:53,latency=5ms"));
  EXPECT_EQ(flow_rules(more).size(), 1U);
  // Bounded: at most kMaxFlowRules, the newest kept.
  std::vector<hints::HintSet> many;
  for (unsigned p = 1; p <= kMaxFlowRules + 3; ++p) many.push_back(flow_set("flow=tcp:" + std::to_string(p) + ",class=bronze"));
  const auto capped = flow_rules(many);
  ASSERT_EQ(capped.size(), kMaxFlowRules);
  EXPECT_EQ(capped[0].keys, (std::vector<std::uint64_t>{hints::net_flow_key(6, kMaxFlowRules + 3)}));
}

TEST(NetFlows, KeyNames) {
  EXPECT_EQ(flow_key_names({hints::net_flow_key(6, 5201), hints::net_flow_key(17, 0), hints::net_flow_key(1, 0),
                            hints::net_flow_key(58, 0), hints::net_flow_key(0, 80), hints::net_flow_key(47, 0), 1ULL << 40U}),
            "tcp:5201,udp,icmp,icmp6,port:80,0x2f0000,0x10000000000");
}

TEST(NetFlows, BacklogHoldsAboutATenthOfASecondWithinBounds) {
  EXPECT_EQ(flow_backlog_limit(0), kFlowBacklogMin);
  EXPECT_EQ(flow_backlog_limit(100'000), kFlowBacklogMin);
  EXPECT_EQ(flow_backlog_limit(10'000'000), 1'000'000U);
  EXPECT_EQ(flow_backlog_limit(1'000'000'000), kFlowBacklogMax);
}

TEST(NetFlows, FlowTupleOfFrames) {
  auto eth = [](std::uint16_t type) {
    std::vector<std::byte> f(14);
    f[12] = static_cast<std::byte>(type >> 8U), f[13] = static_cast<std::byte>(type & 0xFFU);
    return f;
  };
  auto v4 = eth(0x0800);
  v4.resize(14 + 20 + 8);
  v4[14] = std::byte{0x45}, v4[23] = std::byte{17};
  v4[34] = std::byte{0x1F}, v4[35] = std::byte{0x90}, v4[36] = std::byte{0x00}, v4[37] = std::byte{0x35};
  auto t = flow_tuple(v4);
  EXPECT_EQ(t.proto, 17);
  EXPECT_EQ(t.sport, 8080);
  EXPECT_EQ(t.dport, 53);
  auto frag = v4;
  frag[20] = std::byte{0x00}, frag[21] = std::byte{0x10};  // fragment offset 16: no UDP header here
  t = flow_tuple(frag);
  EXPECT_EQ(t.proto, 17);
  EXPECT_EQ(t.sport, 0);
  auto vlan6 = eth(0x8100);
  vlan6.resize(18 + 40 + 20);
  vlan6[16] = std::byte{0x86}, vlan6[17] = std::byte{0xDD}, vlan6[18] = std::byte{0x60}, vlan6[24] = std::byte{6};
  vlan6[58] = std::byte{0x14}, vlan6[59] = std::byte{0x51};
  t = flow_tuple(vlan6);
  EXPECT_EQ(t.proto, 6);
  EXPECT_EQ(t.sport, 5201);
  EXPECT_EQ(flow_tuple(eth(0x88B5)).proto, 0) << "not IP";
  v4.resize(36);  // cut inside the UDP header
  EXPECT_EQ(flow_tuple(v4).sport, 0);
  EXPECT_EQ(flow_tuple({}).proto, 0);
}

}  // namespace
}  // namespace gears::net
