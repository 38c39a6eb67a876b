// HintRegistry: upsert by (origin, subject), withdrawal, newest-wins resolution, versions and listeners.
#include "dom0/gearsd/hint_registry.hpp"

#include <gtest/gtest.h>

#include <atomic>
#include <thread>
#include <vector>

namespace gears::daemon {
namespace {

hints::HintSet parse(std::string_view text) {
  auto r = hints::parse_text(text);
  if (!r) throw std::runtime_error("test hint text: " + r.error().message());
  return r.value();
}

TEST(HintRegistry, SubjectsNameWhatASetAppliesTo) {
  EXPECT_EQ(hint_subject(parse("class=gold")), "domain");
  EXPECT_EQ(hint_subject(parse("dev=vbd/51712,class=gold")), "device:vbd/51712");
  EXPECT_EQ(hint_subject(parse("pid=42,comm=dd,class=gold")), "process:pid=42");
  EXPECT_EQ(hint_subject(parse("pkey=99,class=gold")), "process:key=99");
  EXPECT_EQ(hint_subject(parse("flow=3,flow=1,rate=1M")), "flow:1,3");
  EXPECT_EQ(hint_subject(parse("stream=7,role=voice")), "stream:7");
}

TEST(HintRegistry, PublishUpsertsBySubjectPerOrigin) {
  HintRegistry r;
  EXPECT_EQ(r.version(3), 0U);
  ASSERT_TRUE(r.publish(3, HintSource::config, "config", parse("class=bronze")));
  const auto v1 = r.version(3);
  EXPECT_GT(v1, 0U);
  ASSERT_TRUE(r.publish(3, HintSource::config, "config", parse("class=silver,rate=1M")));  // same subject
  ASSERT_TRUE(r.publish(3, HintSource::config, "config", parse("pid=7,comm=a,class=gold")));
  ASSERT_TRUE(r.publish(3, HintSource::channel, "channel/0", parse("class=gold")));  // other origin: kept apart
  EXPECT_GT(r.version(3), v1);
  const auto recs = r.snapshot(3);
  ASSERT_EQ(recs.size(), 3U);
  EXPECT_EQ(recs[0].set.qos->cls, hints::kSilver);
  EXPECT_EQ(recs[0].set.rate_bps, 1'000'000U);
  EXPECT_EQ(hint_subject(recs[1].set), "process:pid=7");
  EXPECT_EQ(recs[2].origin, "channel/0");
  EXPECT_LT(recs[0].seq, recs[1].seq);
  EXPECT_TRUE(r.snapshot(4).empty());
  EXPECT_EQ(r.domains(), std::vector<std::uint32_t>{3});
}

TEST(HintRegistry, InvalidSetsAreRejected) {
  HintRegistry r;
  hints::HintSet bad;
  bad.scope.kind = hints::ScopeKind::flow;  // a flow scope needs a flow key
  EXPECT_FALSE(r.publish(1, HintSource::service, "x", bad));
  EXPECT_EQ(r.version(1), 0U);
  r.replace(1, HintSource::service, "x", {bad, parse("class=gold")});
  ASSERT_EQ(r.snapshot(1).size(), 1U);
}

TEST(HintRegistry, EffectiveIsNewestWinsFieldByFieldDeviceOverDomain) {
  HintRegistry r;
  ASSERT_TRUE(r.publish(2, HintSource::config, "config", parse("class=bronze,rate=5M,latency=2ms")));
  ASSERT_TRUE(r.publish(2, HintSource::channel, "channel/0", parse("class=gold")));  // newer, class only
  auto e = r.effective(2, hints::DevType::none, 0);
  EXPECT_EQ(e.scope.kind, hints::ScopeKind::domain);
  EXPECT_EQ(e.qos->cls, hints::kGold);
  EXPECT_EQ(e.rate_bps, 5'000'000U);
  EXPECT_EQ(e.latency_us, 2000U);

  // A device-scoped set beats the domain even when older; other devices do not see it.
  ASSERT_TRUE(r.publish(2, HintSource::config, "config", parse("dev=vif/1,class=silver")));
  ASSERT_TRUE(r.publish(2, HintSource::config, "config", parse("class=bronze")));
  EXPECT_EQ(r.effective(2, hints::DevType::vif, 1).qos->cls, hints::kSilver);
  EXPECT_EQ(r.effective(2, hints::DevType::vif, 1).scope.kind, hints::ScopeKind::device);
  EXPECT_EQ(r.effective(2, hints::DevType::vif, 0).qos->cls, hints::kBronze);
  EXPECT_EQ(r.effective(2, hints::DevType::vbd, 1).qos->cls, hints::kBronze);
  // Process-scoped sets do not leak into the device view.
  ASSERT_TRUE(r.publish(2, HintSource::service, "proctrack", parse("pid=9,comm=x,class=3")));
  EXPECT_EQ(r.effective(2, hints::DevType::vif, 0).qos->cls, hints::kBronze);
  EXPECT_FALSE(r.effective(9, hints::DevType::vif, 0).qos);
}

TEST(HintRegistry, ReplaceClearAndForget) {
  HintRegistry r;
  ASSERT_TRUE(r.publish(5, HintSource::channel, "channel/0", parse("class=gold")));
  r.replace(5, HintSource::config, "config", {parse("class=bronze"), parse("pid=1,comm=init,class=silver")});
  EXPECT_EQ(r.snapshot(5).size(), 3U);
  r.replace(5, HintSource::config, "config", {parse("rate=1M")});
  EXPECT_EQ(r.snapshot(5).size(), 2U);
  const auto v = r.version(5);
  r.clear(5, "nobody");
  EXPECT_EQ(r.version(5), v);  // nothing changed, no bump
  r.clear(5, "channel/0");
  ASSERT_EQ(r.snapshot(5).size(), 1U);
  EXPECT_GT(r.version(5), v);
  r.forget_domain(5);
  EXPECT_TRUE(r.snapshot(5).empty());
  EXPECT_EQ(r.version(5), 0U);
}

TEST(HintRegistry, ListenersHearEveryChangeUntilUnsubscribed) {
  HintRegistry r;
  std::vector<std::uint32_t> heard;
  const auto id = r.subscribe([&](std::uint32_t dom) { heard.push_back(dom); });
  ASSERT_TRUE(r.publish(1, HintSource::config, "config", parse("class=gold")));
  r.replace(2, HintSource::config, "config", {});
  r.clear(1, "config");
  r.clear(1, "config");  // no change: no call
  r.forget_domain(2);
  r.forget_domain(2);    // unknown: no call
  EXPECT_EQ(heard, (std::vector<std::uint32_t>{1, 2, 1, 2}));
  r.unsubscribe(id);
  ASSERT_TRUE(r.publish(1, HintSource::config, "config", parse("class=gold")));
  EXPECT_EQ(heard.size(), 4U);
}

TEST(HintRegistry, ConcurrentPublishersAndReaders) {
  HintRegistry r;
  std::atomic<std::uint64_t> calls{0};
  const auto id = r.subscribe([&](std::uint32_t) { calls.fetch_add(1, std::memory_order_relaxed); });
  std::vector<std::thread> ts;
  for (std::uint32_t t = 0; t < 4; ++t) {
    ts.emplace_back([&r, t] {
      for (int i = 0; i < 500; ++i) {
        auto set = parse(i % 2 ? "class=gold" : "class=bronze,rate=1M");
        ASSERT_TRUE(r.publish(t % 2, HintSource::channel, "channel/" + std::to_string(t), set));
        (void)r.effective(t % 2, hints::DevType::vbd, 0);
        (void)r.to_json((t + 1) % 2);
      }
    });
  }
  for (auto& t : ts) t.join();
  r.unsubscribe(id);
  EXPECT_EQ(calls.load(), 2000U);
  EXPECT_EQ(r.snapshot(0).size(), 2U);  // one domain-scope record per origin
  EXPECT_EQ(r.snapshot(1).size(), 2U);
}

TEST(HintRegistry, JsonShowsSourceOriginSubjectAndText) {
  HintRegistry r;
  ASSERT_TRUE(r.publish(1, HintSource::service, "proctrack", parse("pid=42,comm=dd,class=gold")));
  const auto j = r.to_json(1);
  ASSERT_EQ(j["records"].size(), 1U);
  EXPECT_EQ(j["records"][0]["source"], "service");
  EXPECT_EQ(j["records"][0]["origin"], "proctrack");
  EXPECT_EQ(j["records"][0]["subject"], "process:pid=42");
  EXPECT_EQ(j["records"][0]["hints"]["qos"]["class"], "gold");
  EXPECT_EQ(j["version"], r.version(1));
  EXPECT_NE(j["records"][0]["text"].get<std::string>().find("class=gold"), std::string::npos);
}

}  // namespace
}  // namespace gears::daemon
