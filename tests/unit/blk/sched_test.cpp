// The semantic scheduler, with explicit time: weights share a saturated disk, classification by extents,
// rate limiting, anticipation, and the text knobs' error messages.
#include <gtest/gtest.h>

#include <map>
#include <stdexcept>

#include "dom0/backends/blk/sched.hpp"

namespace gears::blk {
namespace {

constexpr std::uint64_t kMs = 1'000'000;

// Both classes always backlogged; depth 1; count bytes each class gets over n dispatches.
std::map<std::uint8_t, std::uint64_t> share(Scheduler& s, int n) {
  std::map<std::uint8_t, std::uint64_t> got;
  std::map<std::uint32_t, std::uint8_t> cls_of;
  std::uint32_t next_slot = 0;
  auto add = [&](std::uint8_t c) {
    cls_of[next_slot] = c;
    s.enqueue(next_slot++, c, 128 * 1024, 0);
  };
  for (int i = 0; i < 4; ++i) add(0), add(2);
  std::uint64_t wake = 0;
  for (int i = 0; i < n; ++i) {
    auto slot = s.next(0, &wake);
    EXPECT_TRUE(slot.has_value());
    if (!slot) break;
    const auto c = cls_of[*slot];
    got[c] += 128 * 1024;
    s.complete(c, 0);
    add(c);  // the same "process" issues its next request
  }
  return got;
}

TEST(BlkSched, WeightsShareASaturatedDisk) {
  SchedConfig cfg;
  cfg.depth = 1;
  cfg.weights = parse_weights("gold:4,bronze:1", cfg.weights);
  Scheduler s(cfg);
  auto got = share(s, 1000);
  const double ratio = static_cast<double>(got[0]) / static_cast<double>(got[2]);
  EXPECT_NEAR(ratio, 4.0, 0.1);
}

TEST(BlkSched, EqualWeightsAreFair) {
  SchedConfig cfg;
  cfg.depth = 1;
  cfg.weights = parse_weights("gold:1,bronze:1", cfg.weights);
  Scheduler s(cfg);
  auto got = share(s, 1000);
  EXPECT_NEAR(static_cast<double>(got[0]) / static_cast<double>(got[2]), 1.0, 0.02);
}

TEST(BlkSched, ClassifiesByExtent) {
  SchedConfig cfg;
  cfg.extents = parse_regions("0-999:gold:fast;1000-1999:bronze:slow");
  Scheduler s(cfg);
  EXPECT_EQ(s.classify(5).cls, 0);
  EXPECT_EQ(s.classify(5).label, 0);
  EXPECT_EQ(s.classify(1999).cls, 2);
  EXPECT_EQ(s.classify(1999).label, 1);
  EXPECT_EQ(s.classify(2000).cls, cfg.default_class);
  EXPECT_EQ(s.classify(2000).label, -1);
}

TEST(BlkSched, DepthBoundsDispatch) {
  SchedConfig cfg;
  cfg.depth = 2;
  Scheduler s(cfg);
  for (std::uint32_t i = 0; i < 5; ++i) s.enqueue(i, 1, 4096, 0);
  std::uint64_t wake = 0;
  EXPECT_TRUE(s.next(0, &wake));
  EXPECT_TRUE(s.next(0, &wake));
  EXPECT_FALSE(s.next(0, &wake));
  s.complete(1, 0);
  EXPECT_TRUE(s.next(0, &wake));
}

TEST(BlkSched, RateLimitDelaysAndNamesTheWakeTime) {
  SchedConfig cfg;
  cfg.rate_bps = parse_rate("10M");
  cfg.depth = 64;
  Scheduler s(cfg);
  for (std::uint32_t i = 0; i < 8; ++i) s.enqueue(i, 1, 1'000'000, 0);
  std::uint64_t wake = 0;
  int now_ok = 0;
  while (s.next(1, &wake)) ++now_ok;
  EXPECT_GE(now_ok, 1);
  EXPECT_LE(now_ok, 3);  // the 1 MiB burst, then debt
  EXPECT_GT(wake, 1U);
  EXPECT_TRUE(s.next(wake + 100 * kMs, &wake).has_value());
}

TEST(BlkSched, AnticipationHoldsTheDiskForTheQuietClass) {
  SchedConfig cfg;
  cfg.depth = 4;
  cfg.anticipate_us = 5000;
  Scheduler s(cfg);
  std::uint64_t wake = 0;
  s.enqueue(1, 0, 4096, 0);  // gold
  ASSERT_EQ(*s.next(0, &wake), 1U);
  s.enqueue(2, 2, 4096, 0);  // bronze arrives while gold is in flight
  ASSERT_EQ(*s.next(0, &wake), 2U);
  s.enqueue(3, 2, 4096, 0);
  s.complete(0, 1 * kMs);  // gold went quiet: hold bronze back
  EXPECT_FALSE(s.next(2 * kMs, &wake).has_value());
  EXPECT_EQ(wake, 6 * kMs);
  s.enqueue(4, 0, 4096, 3 * kMs);  // gold's next request arrives in time: served first
  EXPECT_EQ(*s.next(3 * kMs, &wake), 4U);
  EXPECT_EQ(s.anticipations(), 1U);
}

TEST(BlkSched, AnticipationExpires) {
  SchedConfig cfg;
  cfg.anticipate_us = 1000;
  Scheduler s(cfg);
  std::uint64_t wake = 0;
  s.enqueue(1, 0, 4096, 0);
  ASSERT_TRUE(s.next(0, &wake));
  s.enqueue(2, 2, 4096, 0);
  s.complete(0, 0);
  EXPECT_FALSE(s.next(500'000, &wake));
  EXPECT_EQ(*s.next(1'000'001, &wake), 2U);
}

// Two synchronous readers (one request at a time, `think` between a completion and the next request) on a
// disk that serves one request per `service`; returns bytes per class over `horizon`.
std::map<std::uint8_t, std::uint64_t> sync_readers(Scheduler& s, std::uint64_t service, std::uint64_t think,
                                                   std::uint64_t horizon) {
  constexpr std::uint64_t kNever = ~std::uint64_t{0};
  std::map<std::uint8_t, std::uint64_t> got;
  std::map<std::uint8_t, std::uint64_t> arrive{{0, 0}, {2, 0}};  // next enqueue time per class
  std::uint64_t done_at = kNever, wake = 0, t = 0;
  std::uint8_t busy_cls = 0;
  std::uint32_t slot = 0;
  std::map<std::uint32_t, std::uint8_t> cls_of;
  while (t < horizon) {
    for (auto& [c, at] : arrive)
      if (at <= t) {
        cls_of[slot] = c;
        s.enqueue(slot++, c, 4096, t);
        at = kNever;
      }
    if (done_at <= t) {
      s.complete(busy_cls, t);
      got[busy_cls] += 4096;
      arrive[busy_cls] = t + think;
      done_at = kNever;
    }
    if (done_at == kNever) {
      if (auto n = s.next(t, &wake)) {
        busy_cls = cls_of.at(*n);
        done_at = t + service;
        continue;
      }
    } else {
      wake = 0;
    }
    std::uint64_t next_t = done_at;
    for (auto& [c, at] : arrive) next_t = std::min(next_t, at);
    if (wake > t) next_t = std::min(next_t, wake);
    if (next_t == kNever) break;
    t = next_t;
  }
  return got;
}

TEST(BlkSched, AnticipationGivesASynchronousReaderItsWeight) {
  SchedConfig cfg;
  cfg.depth = 1;
  cfg.weights = parse_weights("gold:4,bronze:1", cfg.weights);
  Scheduler plain(cfg);
  auto p = sync_readers(plain, 10 * kMs, 3 * kMs, 10'000 * kMs);
  // Without anticipation the disk alternates: gold's think time hands every other request to bronze.
  EXPECT_LT(static_cast<double>(p[0]) / static_cast<double>(p[2]), 1.5);

  cfg.anticipate_us = 20'000;
  Scheduler antic(cfg);
  auto a = sync_readers(antic, 10 * kMs, 3 * kMs, 10'000 * kMs);
  EXPECT_NEAR(static_cast<double>(a[0]) / static_cast<double>(a[2]), 4.0, 0.3);
  EXPECT_GT(antic.anticipation_hits(), 100U);
  // The hold adapts to the measured think time (2 x 3 ms + 0.1 ms), not the 20 ms cap.
  EXPECT_NEAR(antic.think_ns(0), 3.0 * kMs, 0.1 * kMs);
}

TEST(BlkSched, AClassThinkingLongerThanTheWindowIsNotWaitedFor) {
  SchedConfig cfg;
  cfg.depth = 1;
  cfg.weights = parse_weights("gold:4,bronze:1", cfg.weights);
  cfg.anticipate_us = 5'000;  // 5 ms window, readers think 8 ms
  Scheduler s(cfg);
  auto got = sync_readers(s, 10 * kMs, 8 * kMs, 10'000 * kMs);
  // Only the first hold (think time still unknown) is tried, and it misses.
  EXPECT_EQ(s.anticipations(), 1U);
  EXPECT_EQ(s.anticipation_misses(), 1U);
  EXPECT_GT(got[2], 0U);
}

TEST(BlkSched, BadKnobsAreClearErrors) {
  SchedConfig cfg;
  EXPECT_THROW((void)parse_weights("gold", cfg.weights), std::invalid_argument);
  EXPECT_THROW((void)parse_weights("gold:0", cfg.weights), std::invalid_argument);
  EXPECT_THROW((void)parse_weights("platinum:3", cfg.weights), std::invalid_argument);
  EXPECT_THROW((void)parse_regions("10-5:gold"), std::invalid_argument);
  EXPECT_THROW((void)parse_regions("10:gold"), std::invalid_argument);
  EXPECT_THROW((void)parse_regions("0-10:9"), std::invalid_argument);
  EXPECT_THROW((void)parse_rate("fast"), std::invalid_argument);
  EXPECT_EQ(parse_rate("2K"), 2000U);
}

}  // namespace
}  // namespace gears::blk

namespace gears::blk {
namespace {
TEST(BlkSched, WeightsAcceptSemicolons) {
  SchedConfig cfg;
  const auto w = parse_weights("gold:8;bronze:2", cfg.weights);
  EXPECT_EQ(w[0], 8U);
  EXPECT_EQ(w[2], 2U);
  EXPECT_EQ(w[1], cfg.weights[1]);
}
}  // namespace
}  // namespace gears::blk

namespace gears::blk {
namespace {
TEST(BlkSched, ProcessRulesParseByNameAndRefuseWhatCouldNeverMatch) {
  const auto r = parse_procs("busybox-hi:gold;postgres:0;backup:bronze;;");
  ASSERT_EQ(r.size(), 3U);
  EXPECT_EQ(r[0].comm, "busybox-hi");
  EXPECT_EQ(r[0].cls, 0U);
  EXPECT_EQ(r[1].comm, "postgres");
  EXPECT_EQ(r[1].cls, 0U);
  EXPECT_EQ(r[2].cls, 2U);
  EXPECT_TRUE(parse_procs("").empty());
  EXPECT_EQ(parse_procs("abcdefghijklmno:silver")[0].comm, "abcdefghijklmno") << "15 bytes: Linux's whole comm";
  for (const char* bad : {"abcdefghijklmnop:gold",  // 16 bytes: truncated by Linux, never equal
                          "dd", ":gold", "dd:platinum", "dd:8", "a b:gold", "dd:gold;dd:bronze", "d,d:gold"})
    EXPECT_THROW((void)parse_procs(bad), std::invalid_argument) << bad;
  std::string many;
  for (int i = 0; i < 65; ++i) many += "p" + std::to_string(i) + ":gold;";
  EXPECT_THROW((void)parse_procs(many), std::invalid_argument);
}
}  // namespace
}  // namespace gears::blk
