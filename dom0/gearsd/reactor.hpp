// Reactor: one event loop per thread. epoll over fds, timers on timerfds, and a thread-safe post() over an
// eventfd. Everything except post(), stop() and in_loop_thread() must be called on the loop's thread.
#pragma once

#include <sys/epoll.h>

#include <atomic>
#include <chrono>
#include <cstddef>
#include <cstdint>
#include <functional>
#include <memory>
#include <mutex>
#include <thread>
#include <unordered_map>
#include <vector>

#include "common/util/result.hpp"
#include "dom0/gearsd/fd.hpp"
#include "dom0/gearsd/task.hpp"

namespace gears::daemon {

// Names one fd watch or timer on one Reactor. Never 0, never reused by that Reactor.
using WatchId = std::uint64_t;

class Reactor {
 public:
  using FdCallback = std::function<void(std::uint32_t epoll_events)>;
  using TimerCallback = std::function<void()>;

  Reactor();  // throws std::system_error
  ~Reactor();
  // Not movable: registered callbacks and posted tasks hold `this`.
  Reactor(const Reactor&) = delete;
  Reactor& operator=(const Reactor&) = delete;

  // Watches `fd` (not owned; the caller keeps it open until remove()) for `events` (EPOLLIN, EPOLLOUT, ...).
  [[nodiscard]] Result<WatchId> add_fd(int fd, std::uint32_t events, FdCallback cb);
  [[nodiscard]] Status modify_fd(WatchId id, std::uint32_t events);
  // Fires `cb` after `first`, then every `period` (0 = once; a one-shot timer removes itself after firing).
  [[nodiscard]] Result<WatchId> add_timer(std::chrono::nanoseconds first, std::chrono::nanoseconds period,
                                          TimerCallback cb);
  // Drops a watch or timer. Safe from inside any callback, including the watch's own; unknown ids are ignored.
  void remove(WatchId id);

  // Any thread. Runs `task` on the loop thread; tasks run in FIFO order per Reactor. A Reactor destroyed with
  // tasks pending destroys them unrun. This is the control path (a mutex guards the queue), not the data path.
  void post(Task task);
  // Any thread. run() returns after finishing the current dispatch round.
  void stop();
  [[nodiscard]] bool in_loop_thread() const { return loop_thread_.load() == std::this_thread::get_id(); }

  // Dispatches until stop(). The calling thread becomes the loop thread.
  void run();
  // One dispatch round: waits up to `timeout_ms` (-1 = forever) and runs ready callbacks. Returns how many ran.
  std::size_t run_once(int timeout_ms);

  [[nodiscard]] std::size_t watch_count() const { return watches_.size(); }
  [[nodiscard]] std::uint64_t iterations() const { return iterations_; }

 private:
  struct Watch {
    int fd = -1;
    Fd owned;              // the timerfd, for timers
    FdCallback on_fd;      // fd watches
    TimerCallback on_timer;
    bool oneshot = false;
  };
  [[nodiscard]] Result<WatchId> insert(int fd, std::uint32_t events, std::shared_ptr<Watch> w);
  std::size_t drain_posted();

  Fd epoll_;
  Fd wake_;  // eventfd: post() and stop() write it
  std::unordered_map<WatchId, std::shared_ptr<Watch>> watches_;
  WatchId next_id_ = 1;
  std::uint64_t iterations_ = 0;

  std::mutex mu_;
  std::vector<Task> posted_;  // guarded by mu_
  std::atomic<bool> stop_{false};
  std::atomic<std::thread::id> loop_thread_{};
};

}  // namespace gears::daemon
