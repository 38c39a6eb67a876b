// The OS-agnostic core: CR3 masking and Antfarm-style address-space inference.
#include "services/proctrack/cr3.hpp"
#include "services/proctrack/tracker.hpp"

#include <gtest/gtest.h>

#include <algorithm>

namespace gears::proctrack {
namespace {

using Kind = AsEvent::Kind;

std::size_t count(const std::vector<AsEvent>& v, Kind k) {
  return static_cast<std::size_t>(std::count_if(v.begin(), v.end(), [k](const AsEvent& e) { return e.kind == k; }));
}

TEST(Cr3, PcidNoflushAndHighBitsAreMasked) {
  EXPECT_EQ(pgd_of(0x1234'5000ULL | 0xabcULL), 0x1234'5000ULL);
  EXPECT_EQ(pgd_of((1ULL << 63) | 0x7000ULL | 0x5ULL), 0x7000ULL);
  EXPECT_EQ(pgd_of(0x0010'0000'0000'0000ULL | 0x9000ULL), 0x9000ULL) << "bits 52..62 are not frame bits";
  // One process, any PCID, with or without NOFLUSH: one key.
  EXPECT_EQ(as_key(0x4000'2000ULL | 3, false), as_key((1ULL << 63) | 0x4000'2000ULL | 7, false));
}

TEST(Cr3, KptiPairFoldsOnlyWhenKptiIsOn) {
  const std::uint64_t kernel = 0x8'0000'2000ULL, user = kernel | kPtiSwitchBit;
  EXPECT_TRUE(kpti_pair(kernel | 1, (1ULL << 63) | user | 0x801));
  EXPECT_EQ(as_key(user | 0x801, true), kernel);
  EXPECT_NE(as_key(user, false), as_key(kernel, false)) << "without KPTI adjacent PGDs are different processes";
  EXPECT_FALSE(kpti_pair(0x2000, 0x4000));
}

TEST(Tracker, FirstSightingIsABirthAndLoadsAreSwitches) {
  AddressSpaceTracker t;
  std::vector<AsEvent> ev;
  EXPECT_EQ(t.on_cr3(0, 0, 0x1000 | 1, 10, ev), 0x1000U);
  EXPECT_EQ(t.on_cr3(0, 0x1001, 0x2000 | 2, 20, ev), 0x2000U);
  EXPECT_EQ(t.on_cr3(0, 0x2002, 0x1000 | 1, 30, ev), 0x1000U);
  EXPECT_EQ(count(ev, Kind::birth), 2U);
  EXPECT_EQ(count(ev, Kind::switch_in), 3U);
  EXPECT_EQ(t.live().size(), 2U);
  EXPECT_EQ(t.live().at(0x1000).loads, 2U);
  EXPECT_EQ(t.current(0), 0x1000U);
  EXPECT_EQ(t.current(1), 0U);
}

TEST(Tracker, RetiredKeyIsReBornAsANewGeneration) {
  AddressSpaceTracker t;
  std::vector<AsEvent> ev;
  (void)t.on_cr3(0, 0, 0x5000, 1, ev);
  (void)t.on_cr3(0, 0x5000, 0x6000, 2, ev);
  t.retire(0x5000, 3, ev);
  t.retire(0x5000, 3, ev);  // unknown now: no second death
  EXPECT_EQ(count(ev, Kind::death), 1U);
  (void)t.on_cr3(0, 0x6000, 0x5000, 4, ev);  // the freed PGD page serves a new process
  EXPECT_EQ(count(ev, Kind::birth), 3U);
  EXPECT_EQ(t.live().at(0x5000).generation, 2U);
  EXPECT_EQ(t.counters().deaths, 1U);
}

TEST(Tracker, AutoDetectsKptiAndFoldsUserHalves) {
  AddressSpaceTracker t(AddressSpaceTracker::Options{KptiMode::automatic, 0, 4});
  std::vector<AsEvent> ev;
  const std::uint64_t k = 0x10'0000, u = k | kPtiSwitchBit;
  (void)t.on_cr3(0, 0, k, 1, ev);
  for (int i = 0; i < 4; ++i) {
    (void)t.on_cr3(0, k, u | 0x801, 2, ev);  // return to user
    (void)t.on_cr3(0, u, k | 1, 3, ev);      // syscall entry
  }
  EXPECT_TRUE(t.kpti());
  EXPECT_EQ(t.live().size(), 1U);
  EXPECT_EQ(t.counters().births, 1U) << "the user half was never a process of its own";
  const auto switches = t.counters().switches;
  (void)t.on_cr3(0, k, u, 4, ev);
  EXPECT_EQ(t.counters().switches, switches) << "a KPTI flip is not a process switch";
  const std::uint64_t k2 = 0x20'0000;
  EXPECT_EQ(t.on_cr3(0, u, k2 | kPtiSwitchBit, 5, ev), k2);
}

TEST(Tracker, KptiOffNeverFolds) {
  AddressSpaceTracker t(AddressSpaceTracker::Options{KptiMode::off, 0, 1});
  std::vector<AsEvent> ev;
  (void)t.on_cr3(0, 0, 0x2000, 1, ev);
  (void)t.on_cr3(0, 0x2000, 0x3000, 2, ev);
  EXPECT_FALSE(t.kpti());
  EXPECT_EQ(t.live().size(), 2U);
}

TEST(Tracker, IdleSweepSparesLoadedKeys) {
  AddressSpaceTracker t(AddressSpaceTracker::Options{KptiMode::off, 100, 16});
  std::vector<AsEvent> ev;
  (void)t.on_cr3(0, 0, 0x1000, 0, ev);
  (void)t.on_cr3(0, 0x1000, 0x2000, 10, ev);
  ev.clear();
  t.sweep(50, ev);
  EXPECT_TRUE(ev.empty());
  t.sweep(1000, ev);
  ASSERT_EQ(ev.size(), 1U);
  EXPECT_EQ(ev[0].key, 0x1000U);
  EXPECT_EQ(t.live().count(0x2000), 1U) << "loaded on vCPU 0";
}

}  // namespace
}  // namespace gears::proctrack
