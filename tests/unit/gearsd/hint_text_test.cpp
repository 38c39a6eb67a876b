#include <gtest/gtest.h>

#include <string>

#include "dom0/gearsd/hint_text.hpp"

using gears::daemon::check_hint_text;

TEST(HintText, ParsesTheDocumentedForm) {
  const auto r = check_hint_text("class=gold,rate=10M,latency=500us");
  ASSERT_TRUE(r.ok) << r.error;
  EXPECT_EQ(r.parsed["class"], "gold");
  EXPECT_EQ(r.parsed["rate"], 10000000);
  EXPECT_EQ(r.parsed["latency_ns"], 500000);
}

TEST(HintText, ParsesEveryKey) {
  const auto r = check_hint_text("class=best-effort,rate=1.5G,latency=2ms,role=bulk,pattern=random");
  ASSERT_TRUE(r.ok) << r.error;
  EXPECT_EQ(r.parsed["rate"], 1500000000);
  EXPECT_EQ(r.parsed["latency_ns"], 2000000);
  EXPECT_EQ(r.parsed["role"], "bulk");
  EXPECT_EQ(r.parsed["pattern"], "random");
}

TEST(HintText, RejectsWithAReasonNamingTheItem) {
  struct Case {
    const char* text;
    const char* needle;
  } cases[] = {
      {"", "empty"},
      {"class=platinum", "platinum"},
      {"rate=fast", "rate 'fast'"},
      {"rate=10X", "rate '10X'"},
      {"rate=0", "rate '0'"},
      {"latency=5", "latency '5'"},
      {"latency=1.us", "latency '1.us'"},
      {"colour=blue", "unknown hint 'colour'"},
      {"class=gold,,rate=1M", "item ''"},
      {"class=gold,class=silver", "given twice"},
      {"class", "not key=value"},
      {"=gold", "not key=value"},
      {"class=", "not key=value"},
      {"class=gold ", "class 'gold '"},
      {"role=Bulk!", "role"},
  };
  for (const auto& c : cases) {
    const auto r = check_hint_text(c.text);
    EXPECT_FALSE(r.ok) << c.text;
    EXPECT_NE(r.error.find(c.needle), std::string::npos) << c.text << " -> " << r.error;
  }
}

TEST(HintText, BoundsInputLength) {
  const std::string long_text = "role=" + std::string(300, 'a');
  const auto r = check_hint_text(long_text);
  EXPECT_FALSE(r.ok);
  EXPECT_NE(r.error.find("limit"), std::string::npos);
}
