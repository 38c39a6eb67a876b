#include <gtest/gtest.h>
#include <sched.h>
#include <fcntl.h>
#include <sys/epoll.h>
#include <sys/resource.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <chrono>
#include <future>
#include <stdexcept>
#include <thread>
#include <vector>

#include "dom0/gearsd/reactor.hpp"
#include "dom0/gearsd/task.hpp"
#include "dom0/gearsd/workers.hpp"
#include "tests/unit/gearsd/test_util.hpp"

using namespace gears::daemon;
using namespace std::chrono_literals;

namespace {

struct Pipe {
  Pipe() {
    int p[2];
    EXPECT_EQ(::pipe2(p, O_NONBLOCK | O_CLOEXEC), 0);
    r.reset(p[0]);
    w.reset(p[1]);
  }
  Fd r, w;
};

// Dispatches until `done()` or a generous bound on rounds; the bound only stops a broken test from hanging.
template <class Pred>
void run_until(Reactor& loop, Pred done) {
  for (int i = 0; i < 10000 && !done(); ++i) loop.run_once(10);
}

}  // namespace

TEST(Reactor, FdCallbackRunsWhenReadable) {
  Reactor loop;
  Pipe p;
  std::string got;
  auto id = loop.add_fd(p.r.get(), EPOLLIN, [&](std::uint32_t ev) {
    EXPECT_TRUE(ev & EPOLLIN);
    char buf[16];
    const auto n = ::read(p.r.get(), buf, sizeof buf);
    if (n > 0) got.append(buf, static_cast<std::size_t>(n));
  });
  ASSERT_TRUE(id.ok());
  EXPECT_EQ(loop.run_once(0), 0U);  // nothing ready yet
  ASSERT_EQ(::write(p.w.get(), "hi", 2), 2);
  run_until(loop, [&] { return !got.empty(); });
  EXPECT_EQ(got, "hi");
  EXPECT_EQ(loop.watch_count(), 1U);
}

TEST(Reactor, RemoveInsideOwnCallbackIsSafe) {
  Reactor loop;
  Pipe p;
  int calls = 0;
  WatchId id = 0;
  auto r = loop.add_fd(p.r.get(), EPOLLIN, [&](std::uint32_t) {
    ++calls;
    loop.remove(id);  // destroys the registration while its callback runs
  });
  ASSERT_TRUE(r.ok());
  id = r.value();
  ASSERT_EQ(::write(p.w.get(), "x", 1), 1);
  run_until(loop, [&] { return calls > 0; });
  loop.run_once(0);  // still readable, but no longer watched
  EXPECT_EQ(calls, 1);
  EXPECT_EQ(loop.watch_count(), 0U);
}

TEST(Reactor, ModifyFdChangesInterest) {
  Reactor loop;
  Pipe p;
  int writable = 0;
  auto id = loop.add_fd(p.w.get(), 0, [&](std::uint32_t ev) { writable += (ev & EPOLLOUT) ? 1 : 0; });
  ASSERT_TRUE(id.ok());
  loop.run_once(0);
  EXPECT_EQ(writable, 0);
  ASSERT_TRUE(loop.modify_fd(id.value(), EPOLLOUT).ok());
  loop.run_once(0);
  EXPECT_EQ(writable, 1);
  EXPECT_FALSE(loop.modify_fd(9999, EPOLLIN).ok());
}

TEST(Reactor, BadArgumentsAreErrorsNotCrashes) {
  Reactor loop;
  EXPECT_FALSE(loop.add_fd(-1, EPOLLIN, [](std::uint32_t) {}).ok());
  EXPECT_FALSE(loop.add_timer(-1ns, 0ns, [] {}).ok());
  loop.remove(12345);  // unknown id: ignored
}

TEST(Reactor, OneShotTimerFiresOnceAndRemovesItself) {
  Reactor loop;
  int fired = 0;
  ASSERT_TRUE(loop.add_timer(1ms, 0ns, [&] { ++fired; }).ok());
  run_until(loop, [&] { return fired > 0; });
  EXPECT_EQ(fired, 1);
  EXPECT_EQ(loop.watch_count(), 0U);
}

TEST(Reactor, PeriodicTimerRepeatsUntilRemoved) {
  Reactor loop;
  int fired = 0;
  auto id = loop.add_timer(0ns, 1ms, [&] { ++fired; });
  ASSERT_TRUE(id.ok());
  run_until(loop, [&] { return fired >= 3; });
  EXPECT_GE(fired, 3);
  loop.remove(id.value());
  const int at_removal = fired;
  loop.run_once(0);
  EXPECT_EQ(fired, at_removal);
}

TEST(Reactor, PostFromManyThreadsRunsAllOnLoopThreadInOrder) {
  Reactor loop;
  constexpr int kThreads = 4, kEach = 500;
  std::vector<std::vector<int>> seen(kThreads);
  std::atomic<int> wrong_thread{0};
  int total = 0;
  {
    gears::test::LoopThread lt(loop);
    std::vector<std::thread> producers;
    for (int t = 0; t < kThreads; ++t)
      producers.emplace_back([&, t] {
        for (int i = 0; i < kEach; ++i)
          loop.post([&, t, i] {
            if (!loop.in_loop_thread()) ++wrong_thread;
            seen[static_cast<std::size_t>(t)].push_back(i);
            ++total;
          });
      });
    for (auto& p : producers) p.join();
    lt.call([] {});  // FIFO: every task posted before this one has run
  }
  EXPECT_EQ(total, kThreads * kEach);
  EXPECT_EQ(wrong_thread.load(), 0);
  for (const auto& s : seen) {
    ASSERT_EQ(s.size(), static_cast<std::size_t>(kEach));
    for (int i = 0; i < kEach; ++i) EXPECT_EQ(s[static_cast<std::size_t>(i)], i);  // per-producer FIFO
  }
}

TEST(Reactor, StopFromAnotherThreadEndsRun) {
  Reactor loop;
  std::thread t([&] { loop.stop(); });
  loop.run();  // returns whether stop() landed before or during run()
  t.join();
  SUCCEED();
}

TEST(Reactor, MoveOnlyTaskIsAccepted) {
  Reactor loop;
  auto owned = std::make_unique<int>(41);
  int result = 0;
  loop.post([p = std::move(owned), &result] { result = *p + 1; });
  run_until(loop, [&] { return result != 0; });
  EXPECT_EQ(result, 42);
}

TEST(Reactor, PendingTasksAreDestroyedWithTheReactor) {
  auto flag = std::make_shared<int>(0);
  {
    Reactor loop;
    loop.post([flag] { *flag = 1; });
  }
  EXPECT_EQ(*flag, 0);
  EXPECT_EQ(flag.use_count(), 1);
}

// Each worker thread runs at the pool's nice value (a positive one: any user may lower its own priority), and
// only the workers do: the creating thread keeps its own.
TEST(WorkerPool, WorkersRunAtTheAskedNiceValue) {
  errno = 0;
  const int mine = ::getpriority(PRIO_PROCESS, static_cast<id_t>(::gettid()));
  const int want = std::min(mine + 5, 19);
  WorkerPool pool(2, want);
  EXPECT_EQ(pool.nice_error(), 0);
  EXPECT_EQ(pool.effective_nice(), want);
  for (std::size_t i = 0; i < pool.size(); ++i) {
    std::promise<int> got;
    auto f = got.get_future();
    pool.reactor(i).post([&got] {
      errno = 0;
      got.set_value(::getpriority(PRIO_PROCESS, static_cast<id_t>(::gettid())));
    });
    ASSERT_EQ(f.wait_for(10s), std::future_status::ready);
    EXPECT_EQ(f.get(), want) << "worker " << i;
  }
  EXPECT_EQ(::getpriority(PRIO_PROCESS, static_cast<id_t>(::gettid())), mine);
  EXPECT_THROW(WorkerPool(1, 20), std::invalid_argument);
  EXPECT_THROW(WorkerPool(1, -21), std::invalid_argument);
}

// `batch`: each worker runs under SCHED_BATCH (any user may take it) with the nice value still applied; the
// creating thread keeps its policy.
TEST(WorkerPool, BatchWorkersRunUnderSchedBatchAtTheirNiceValue) {
  const int mine = ::getpriority(PRIO_PROCESS, static_cast<id_t>(::gettid()));
  const int policy = ::sched_getscheduler(0);
  const int want = std::min(mine + 3, 19);
  WorkerPool pool(2, want, true);
  EXPECT_EQ(pool.batch_error(), 0);
  EXPECT_TRUE(pool.batch());
  for (std::size_t i = 0; i < pool.size(); ++i) {
    std::promise<std::pair<int, int>> got;
    auto f = got.get_future();
    pool.reactor(i).post([&got] {
      errno = 0;
      got.set_value({::sched_getscheduler(0), ::getpriority(PRIO_PROCESS, static_cast<id_t>(::gettid()))});
    });
    ASSERT_EQ(f.wait_for(10s), std::future_status::ready);
    const auto [p, n] = f.get();
    EXPECT_EQ(p, SCHED_BATCH) << "worker " << i;
    EXPECT_EQ(n, want) << "worker " << i;
  }
  EXPECT_EQ(::sched_getscheduler(0), policy);
  WorkerPool normal(1, 0, false);
  std::promise<int> got;
  auto f = got.get_future();
  normal.reactor(0).post([&got] { got.set_value(::sched_getscheduler(0)); });
  ASSERT_EQ(f.wait_for(10s), std::future_status::ready);
  EXPECT_EQ(f.get(), policy);
}
