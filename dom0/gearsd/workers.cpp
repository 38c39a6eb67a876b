#include "dom0/gearsd/workers.hpp"

#include <sched.h>

#include <pthread.h>
#include <sys/resource.h>
#include <unistd.h>

#include <cerrno>
#include <future>
#include <stdexcept>
#include <string>

namespace gears::daemon {

WorkerPool::WorkerPool(std::size_t threads, int nice, bool batch) : nice_(nice), batch_(batch) {
  if (threads == 0 || threads > 256) throw std::invalid_argument("worker count must be 1..256");
  if (nice < -20 || nice > 19) throw std::invalid_argument("worker nice must be -20..19");
  workers_.reserve(threads);
  for (std::size_t i = 0; i < threads; ++i) workers_.push_back(std::make_unique<Worker>());
  std::vector<std::future<std::pair<int, int>>> applied;  // (nice errno, policy errno)
  for (std::size_t i = 0; i < threads; ++i) {
    Worker* w = workers_[i].get();
    std::promise<std::pair<int, int>> p;
    applied.push_back(p.get_future());
    w->thread = std::thread([w, i, nice, batch, p = std::move(p)]() mutable {
      const std::string name = "gears-w" + std::to_string(i);
      pthread_setname_np(pthread_self(), name.c_str());
      // On Linux, both calls with a thread id change that thread only. The policy first: it keeps the nice value.
      int perr = 0, nerr = 0;
      const sched_param none{};
      if (batch && ::sched_setscheduler(::gettid(), SCHED_BATCH, &none) != 0) perr = errno;
      if (nice != 0 && ::setpriority(PRIO_PROCESS, static_cast<id_t>(::gettid()), nice) != 0) nerr = errno;
      p.set_value({nerr, perr});
      w->reactor.run();
    });
  }
  for (auto& f : applied) {
    const auto [ne, pe] = f.get();
    if (ne != 0 && nice_error_ == 0) nice_error_ = ne;
    if (pe != 0 && batch_error_ == 0) batch_error_ = pe;
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
