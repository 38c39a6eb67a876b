// WorkerPool: N threads, each running its own Reactor. Devices are spread by least load (hosted device count).
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
  explicit WorkerPool(std::size_t threads);  // starts the threads; throws on setup failure
  ~WorkerPool();                             // stop() + join
  WorkerPool(const WorkerPool&) = delete;
  WorkerPool& operator=(const WorkerPool&) = delete;

  [[nodiscard]] std::size_t size() const { return workers_.size(); }
  [[nodiscard]] Reactor& reactor(std::size_t i) { return workers_.at(i)->reactor; }
  // Load bookkeeping is done by the main thread; reading it from any thread is fine.
  [[nodiscard]] std::size_t least_loaded() const;
  [[nodiscard]] std::size_t load(std::size_t i) const { return workers_.at(i)->load.load(std::memory_order_relaxed); }
  void add_load(std::size_t i, std::ptrdiff_t delta);
  // Stops every loop and joins the threads; tasks still queued are destroyed unrun. Idempotent.
  void stop();

 private:
  struct Worker {
    Reactor reactor;
    std::atomic<std::size_t> load{0};
    std::thread thread;
  };
  std::vector<std::unique_ptr<Worker>> workers_;
};

}  // namespace gears::daemon
