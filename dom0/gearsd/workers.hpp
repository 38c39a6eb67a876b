// WorkerPool: N threads, each running its own Reactor. Devices are spread by least load (hosted device count).
// Worker priority: each thread sets its own scheduling policy and nice value before its loop starts (on its tid).
// The data plane runs on the workers; at a lower nice value than dom0's other tasks, a process that a worker wakes
// (the reader of a TAP, say) no longer preempts it at once, as the kernel's backends run in softirq/kthread
// context. With `batch` (SCHED_BATCH, gearsd's default) the reverse holds too: a worker woken by a producer (the
// writer whose frames fill a TAP) does not preempt it, so it finds several frames per wake-up instead of one.
#pragma once

#include <atomic>
#include <cstddef>
#include <memory>
#include <thread>
#include <vector>

#include "dom0/gearsd/reactor.hpp"

namespace gears::daemon {

class WorkerPool {
 public:
  // Starts the threads, each at `nice` (0: inherited) and, with `batch`, under SCHED_BATCH; throws on setup
  // failure. A nice value the process may not take (EPERM/EACCES) is no failure: the workers run at the inherited
  // priority and nice_error() says why.
  explicit WorkerPool(std::size_t threads, int nice = 0, bool batch = false);
  ~WorkerPool();                             // stop() + join
  WorkerPool(const WorkerPool&) = delete;
  WorkerPool& operator=(const WorkerPool&) = delete;

  [[nodiscard]] std::size_t size() const { return workers_.size(); }
  [[nodiscard]] Reactor& reactor(std::size_t i) { return workers_.at(i)->reactor; }
  // Load bookkeeping is done by the main thread; reading it from any thread is fine.
  [[nodiscard]] std::size_t least_loaded() const;
  [[nodiscard]] std::size_t load(std::size_t i) const { return workers_.at(i)->load.load(std::memory_order_relaxed); }
  void add_load(std::size_t i, std::ptrdiff_t delta);
  // The nice value asked for, and 0 or the errno of the first worker that could not take it.
  [[nodiscard]] int nice() const { return nice_; }
  [[nodiscard]] int nice_error() const { return nice_error_; }
  // The nice value the workers run at relative to the inherited one (0 when it could not be taken).
  [[nodiscard]] int effective_nice() const { return nice_error_ == 0 ? nice_ : 0; }
  // SCHED_BATCH asked for, and 0 or the errno of the first worker that could not take it.
  [[nodiscard]] bool batch() const { return batch_; }
  [[nodiscard]] int batch_error() const { return batch_error_; }
  // Stops every loop and joins the threads; tasks still queued are destroyed unrun. Idempotent.
  void stop();

 private:
  struct Worker {
    Reactor reactor;
    std::atomic<std::size_t> load{0};
    std::thread thread;
  };
  std::vector<std::unique_ptr<Worker>> workers_;
  int nice_ = 0;
  int nice_error_ = 0;
  bool batch_ = false;
  int batch_error_ = 0;
};

}  // namespace gears::daemon
