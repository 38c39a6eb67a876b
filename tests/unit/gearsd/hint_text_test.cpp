#include <gtest/gtest.h>

#include <string>

#include "dom0/gearsd/hint_text.hpp"

using gears::daemon::check_hint_text;
namespace hints = gears::hints;

TEST(HintText, ParsesTheDocumentedForm) {
  const auto r = check_hint_text("class=gold,rate=10M,latency=500us");
  ASSERT_TRUE(r.ok) << r.error;
  EXPECT_EQ(r.parsed["scope"], "domain");
  EXPECT_EQ(r.parsed["qos"]["class"], "gold");
  EXPECT_EQ(r.parsed["qos"]["weight"], 0);
  EXPECT_EQ(r.parsed["rate_bps"], 10000000);
  EXPECT_EQ(r.parsed["latency_us"], 500);
  ASSERT_TRUE(r.set.qos);
  EXPECT_EQ(r.set.qos->cls, hints::kGold);
  EXPECT_EQ(r.set.rate_bps, 10000000U);
  EXPECT_EQ(r.set.latency_us, 500U);
}

TEST(HintText, ParsesTheCommonHintsVocabulary) {
  const auto r = check_hint_text("class=3,weight=200,rate=1.5G,latency=2ms,role=media,access=seq");
  ASSERT_TRUE(r.ok) << r.error;
  EXPECT_EQ(r.parsed["qos"]["class"], "3");
  EXPECT_EQ(r.parsed["qos"]["weight"], 200);
  EXPECT_EQ(r.parsed["rate_bps"], 1500000000);
  EXPECT_EQ(r.parsed["latency_us"], 2000);
  EXPECT_EQ(r.parsed["role"], "media");
  EXPECT_EQ(r.parsed["access"], "sequential");

  const auto d = check_hint_text(" dev=vbd/51712 , rate=4Mi ");  // whitespace around items is ignored
  ASSERT_TRUE(d.ok) << d.error;
  EXPECT_EQ(d.parsed["scope"], "device");
  EXPECT_EQ(d.parsed["device"]["type"], "vbd");
  EXPECT_EQ(d.parsed["device"]["id"], 51712);
  EXPECT_EQ(d.parsed["rate_bps"], 4 * 1024 * 1024);

  const auto p = check_hint_text("pid=123,comm=Web%20Content,cgroup=/user.slice,class=gold");
  ASSERT_TRUE(p.ok) << p.error;
  EXPECT_EQ(p.parsed["scope"], "process");
  EXPECT_EQ(p.parsed["process"]["comm"], "Web Content");
  EXPECT_EQ(p.parsed["process"]["cgroup"], "/user.slice");
}

TEST(HintText, AgreesWithTheCanonicalTextForm) {
  const auto r = check_hint_text("latency=5ms,class=bronze,access=random");
  ASSERT_TRUE(r.ok) << r.error;
  const auto again = check_hint_text(hints::to_string(r.set));
  ASSERT_TRUE(again.ok) << again.error;
  EXPECT_EQ(again.set, r.set);
  EXPECT_EQ(again.parsed, r.parsed);
}

TEST(HintText, RejectsWithAReasonNamingTheItem) {
  struct Case {
    const char* text;
    const char* needle;
  } cases[] = {
      {"", "empty"},
      {"   ", "empty"},
      {"class=platinum", "class: 'platinum'"},
      {"class=best-effort", "class: 'best-effort'"},
      {"class=8", "class: '8'"},
      {"rate=fast", "rate: expected a number"},
      {"rate=10X", "rate: unknown unit 'X'"},
      {"rate=10T", "rate: unknown unit 'T'"},
      {"rate=0", "rate: must be greater than zero"},
      {"latency=5ns", "latency: unknown unit 'ns'"},
      {"latency=1.us", "latency: expected digits after '.'"},
      {"latency=0", "latency: must be at least 1us"},
      {"colour=blue", "colour: unknown key"},
      {"pattern=random", "pattern: unknown key"},
      {"role=bulk", "role: 'bulk' is not voice, media or alert"},
      {"access=mixed", "access: 'mixed'"},
      {"weight=5", "weight: needs class="},
      {"comm=x", "comm: needs pid="},
      {"scope=flow", "scope: flow scope needs flow="},
      {"class=gold,,rate=1M", "empty item"},
      {"class=gold,", "empty item"},
      {"class=gold,class=silver", "class: given more than once"},
      {"class", "class: expected key=value"},
      {"=gold", "missing key"},
      {"class=", "class: missing value"},
  };
  for (const auto& c : cases) {
    const auto r = check_hint_text(c.text);
    EXPECT_FALSE(r.ok) << c.text;
    EXPECT_TRUE(r.parsed.is_null()) << c.text;
    EXPECT_NE(r.error.find(c.needle), std::string::npos) << c.text << " -> " << r.error;
  }
}

TEST(HintText, BoundsInputLength) {
  const std::string long_text = "comm=" + std::string(gears::daemon::kMaxHintText, 'a');
  const auto r = check_hint_text(long_text);
  EXPECT_FALSE(r.ok);
  EXPECT_NE(r.error.find("limit"), std::string::npos) << r.error;
  // The longest sensible text (every flow key) fits under the bound.
  std::string flows = "class=gold";
  for (std::size_t i = 0; i < hints::kMaxFlowKeys; ++i) flows += ",flow=0xffffffffffffffff";
  ASSERT_LT(flows.size(), gears::daemon::kMaxHintText);
  EXPECT_TRUE(check_hint_text(flows).ok);
}
