// Directory: the thread-safe query API (who ran on a vCPU at t) and the event log.
#include "services/proctrack/directory.hpp"

#include <gtest/gtest.h>

#include <atomic>
#include <thread>

namespace gears::proctrack {
namespace {

TEST(Directory, WhoRanAnswersByTimeAndStopsAtStop) {
  Directory d;
  EXPECT_FALSE(d.who_ran(5, 0, 100));
  d.start(5, 0);
  d.ran(5, 0, 100, Identity{0x1000, 42, "sh"});
  d.ran(5, 0, 200, Identity{0x2000, 43, "ptkchild"});
  d.ran(5, 1, 150, Identity{0x3000, -1, ""});
  EXPECT_FALSE(d.who_ran(5, 0, 99)) << "before the history";
  EXPECT_EQ(d.who_ran(5, 0, 100)->pid, 42);
  EXPECT_EQ(d.who_ran(5, 0, 199)->pid, 42);
  EXPECT_EQ(d.who_ran(5, 0, 200)->comm, "ptkchild");
  EXPECT_EQ(d.who_ran(5, 1, 1000)->as, 0x3000U);
  EXPECT_FALSE(d.who_ran(6, 0, 1000));
  d.stop(5, 300);
  EXPECT_EQ(d.who_ran(5, 0, 250)->pid, 43);
  EXPECT_FALSE(d.who_ran(5, 0, 301)) << "not monitored any more";
  EXPECT_TRUE(d.running(5).empty());
}

TEST(Directory, HistoryIsBounded) {
  Directory d;
  for (std::int64_t i = 0; i < static_cast<std::int64_t>(Directory::kHistory) + 10; ++i)
    d.ran(1, 0, i, Identity{static_cast<std::uint64_t>(i + 1) * 0x1000, static_cast<std::int32_t>(i), ""});
  EXPECT_FALSE(d.who_ran(1, 0, 5)) << "dropped";
  EXPECT_EQ(d.who_ran(1, 0, 20)->pid, 20);
}

TEST(Directory, EventsPageBySequence) {
  Directory d;
  d.start(3, 1);
  std::vector<ProcEvent> ev;
  for (int i = 0; i < 5; ++i) ev.push_back(ProcEvent{"birth", i, 100 + i, "x", 0x1000, 0, 0});
  d.publish(3, std::move(ev));
  auto all = d.events(3, 0, 100);
  ASSERT_EQ(all["events"].size(), 6U);  // start + 5
  EXPECT_EQ(all["next"], 6);
  auto page = d.events(3, 2, 2);
  ASSERT_EQ(page["events"].size(), 2U);
  EXPECT_EQ(page["events"][0]["seq"], 3);
  EXPECT_EQ(page["events"][0]["pid"], 101);
  EXPECT_EQ(page["next"], 4);
  EXPECT_TRUE(d.events(9, 0, 10).is_null());
  EXPECT_TRUE(d.ps(9).is_null());
  EXPECT_EQ(d.ps(3)["monitoring"], true);
}

TEST(Directory, ConcurrentWriterAndReaders) {
  Directory d;
  std::atomic<bool> done{false};
  std::thread writer([&] {
    for (std::int64_t i = 1; i <= 20000; ++i) d.ran(2, static_cast<std::uint32_t>(i % 2), i, Identity{0x1000, static_cast<std::int32_t>(i), ""});
    done = true;
  });
  std::size_t answers = 0;
  while (!done) {
    auto w = d.who_ran(2, 0, 10000);
    if (w) {
      ++answers;
      EXPECT_LE(w->pid, 10000);
    }
    (void)d.ps(2);
  }
  writer.join();
  EXPECT_EQ(d.who_ran(2, 0, 20000)->pid, 20000);
  (void)answers;
}

}  // namespace
}  // namespace gears::proctrack
