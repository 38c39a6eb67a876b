#include "dom0/gearsd/workers.hpp"

#include <pthread.h>

#include <stdexcept>
#include <string>

namespace gears::daemon {

WorkerPool::WorkerPool(std::size_t threads) {
  if (threads == 0 || threads > 256) throw std::invalid_argument("worker count must be 1..256");
  workers_.reserve(threads);
  for (std::size_t i = 0; i < threads; ++i) workers_.push_back(std::make_unique<Worker>());
  for (std::size_t i = 0; i < threads; ++i) {
    Worker* w = workers_[i].get();
    w->thread = std::thread([w, i] {
      const std::string name = "gears-w" + std::to_string(i);
      pthread_setname_np(pthread_self(), name.c_str());
      w->reactor.run();
    });
  }
}

WorkerPool::~WorkerPool() { stop(); }

std::size_t WorkerPool::least_loaded() const {
  std::size_t best = 0;
  for (std::size_t i = 1; i < workers_.size(); ++i)
    if (load(i) < load(best)) best = i;
  return best;
}

void WorkerPool::add_load(std::size_t i, std::ptrdiff_t delta) {
  auto& l = workers_.at(i)->load;
  l.store(static_cast<std::size_t>(static_cast<std::ptrdiff_t>(l.load(std::memory_order_relaxed)) + delta),
          std::memory_order_relaxed);
}

void WorkerPool::stop() {
  for (auto& w : workers_) w->reactor.stop();
  for (auto& w : workers_)
    if (w->thread.joinable()) w->thread.join();
}

}  // namespace gears::daemon
