#include "dom0/gearsd/workers.hpp"

#include <pthread.h>
#include <sys/resource.h>
#include <unistd.h>

#include <cerrno>
#include <future>
#include <stdexcept>
#include <string>

namespace gears::daemon {

WorkerPool::WorkerPool(std::size_t threads, int nice) : nice_(nice) {
  if (threads == 0 || threads > 256) throw std::invalid_argument("worker count must be 1..256");
  if (nice < -20 || nice > 19) throw std::invalid_argument("worker nice must be -20..19");
  workers_.reserve(threads);
  for (std::size_t i = 0; i < threads; ++i) workers_.push_back(std::make_unique<Worker>());
  std::vector<std::future<int>> applied;
  for (std::size_t i = 0; i < threads; ++i) {
    Worker* w = workers_[i].get();
    std::promise<int> p;
    applied.push_back(p.get_future());
    w->thread = std::thread([w, i, nice, p = std::move(p)]() mutable {
      const std::string name = "gears-w" + std::to_string(i);
      pthread_setname_np(pthread_self(), name.c_str());
      // On Linux, PRIO_PROCESS with a thread id sets that thread's nice value only.
      int err = 0;
      if (nice != 0 && ::setpriority(PRIO_PROCESS, static_cast<id_t>(::gettid()), nice) != 0) err = errno;
      p.set_value(err);
      w->reactor.run();
    });
  }
  for (auto& f : applied)
    if (const int e = f.get(); e != 0 && nice_error_ == 0) nice_error_ = e;
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
