#include <gtest/gtest.h>

#include "dom0/gearsctl/top.hpp"

using gears::ctl::render_top;
using gears::ctl::top_snapshot;
using nlohmann::json;

namespace {

json stats(double ops0, double bytes0, double ops1) {
  return {{"ok", true},
          {"uptime_s", 10.0},
          {"devices",
           {{{"dom", 5}, {"dev", "channel/0"}, {"kind", "channel"}, {"worker", 0}, {"state", "running"},
             {"stats", {{"ops", ops0}, {"bytes", bytes0}, {"errors", 1}}}},
            {{"dom", 5}, {"dev", "vbd/0"}, {"kind", "vbd"}, {"worker", 1}, {"state", "running"},
             {"stats", {{"ops", ops1}}}},
            {{"dom", 7}, {"dev", "null/0"}, {"kind", "null"}, {"worker", 0}, {"state", "failed"}, {"stats", nullptr}}}}};
}

}  // namespace

TEST(Top, FirstSampleHasZeroRates) {
  const json s = top_snapshot(nullptr, stats(100, 1000, 5), 1.0);
  ASSERT_EQ(s["devices"].size(), 3U);
  EXPECT_EQ(s["devices"][0]["ops_per_s"], 0.0);
  EXPECT_EQ(s["devices"][0]["ops"], 100.0);
}

TEST(Top, RatesPerDeviceAndPerDomain) {
  const json s = top_snapshot(stats(100, 1000, 5), stats(300, 5096, 25), 2.0);
  EXPECT_EQ(s["devices"][0]["ops_per_s"], 100.0);
  EXPECT_EQ(s["devices"][0]["bytes_per_s"], 2048.0);
  EXPECT_EQ(s["devices"][1]["ops_per_s"], 10.0);
  ASSERT_EQ(s["domains"].size(), 2U);
  EXPECT_EQ(s["domains"][0]["dom"], 5);
  EXPECT_EQ(s["domains"][0]["devices"], 2);
  EXPECT_EQ(s["domains"][0]["ops_per_s"], 110.0);
  EXPECT_EQ(s["domains"][0]["errors"], 1.0);
  EXPECT_EQ(s["domains"][1]["ops_per_s"], 0.0);  // no stats at all: zeros, not a crash
}

TEST(Top, CounterResetCountsFromZero) {
  const json s = top_snapshot(stats(1000, 0, 0), stats(50, 0, 0), 1.0);
  EXPECT_EQ(s["devices"][0]["ops_per_s"], 50.0);
}

TEST(Top, MalformedStatsGiveAnEmptyView) {
  const json s = top_snapshot(json::array(), json{{"ok", true}, {"devices", "nope"}}, 1.0);
  EXPECT_TRUE(s["devices"].empty());
  EXPECT_NE(render_top(s).find("0 device(s)"), std::string::npos);
}

TEST(Top, RendersDomainThenItsDevices) {
  const std::string t = render_top(top_snapshot(stats(0, 0, 0), stats(10, 2048, 0), 1.0));
  const auto dom5 = t.find("(2 dev)");
  const auto chan = t.find("channel/0");
  const auto dom7 = t.find("(1 dev)");
  ASSERT_NE(dom5, std::string::npos) << t;
  EXPECT_LT(dom5, chan);
  EXPECT_LT(chan, dom7);
  EXPECT_NE(t.find("DOM DEVICE"), std::string::npos);
  EXPECT_NE(t.find("10.0"), std::string::npos);  // ops/s
  EXPECT_NE(t.find("2.0"), std::string::npos);   // KB/s
}
