#include "dom0/gearsd/reactor.hpp"

#include <sys/eventfd.h>
#include <sys/timerfd.h>

#include <cerrno>
#include <system_error>

namespace gears::daemon {

namespace {

constexpr WatchId kWakeId = 0;  // epoll data for the eventfd; real watch ids start at 1

timespec to_timespec(std::chrono::nanoseconds ns) {
  const auto s = std::chrono::duration_cast<std::chrono::seconds>(ns);
  timespec ts{};
  ts.tv_sec = s.count();
  ts.tv_nsec = (ns - s).count();
  return ts;
}

}  // namespace

Reactor::Reactor()
    : epoll_(::epoll_create1(EPOLL_CLOEXEC)), wake_(::eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC)) {
  if (!epoll_) throw std::system_error(errno, std::generic_category(), "epoll_create1");
  if (!wake_) throw std::system_error(errno, std::generic_category(), "eventfd");
  epoll_event ev{};
  ev.events = EPOLLIN;
  ev.data.u64 = kWakeId;
  if (::epoll_ctl(epoll_.get(), EPOLL_CTL_ADD, wake_.get(), &ev) != 0)
    throw std::system_error(errno, std::generic_category(), "epoll_ctl(eventfd)");
}

Reactor::~Reactor() = default;

Result<WatchId> Reactor::insert(int fd, std::uint32_t events, std::shared_ptr<Watch> w) {
  const WatchId id = next_id_++;
  epoll_event ev{};
  ev.events = events;
  ev.data.u64 = id;
  if (::epoll_ctl(epoll_.get(), EPOLL_CTL_ADD, fd, &ev) != 0) return errno_error("epoll_ctl(ADD)");
  watches_.emplace(id, std::move(w));
  return id;
}

Result<WatchId> Reactor::add_fd(int fd, std::uint32_t events, FdCallback cb) {
  if (fd < 0 || !cb) return Error{EINVAL, "add_fd: bad fd or empty callback"};
  auto w = std::make_shared<Watch>();
  w->fd = fd;
  w->on_fd = std::move(cb);
  return insert(fd, events, std::move(w));
}

Status Reactor::modify_fd(WatchId id, std::uint32_t events) {
  auto it = watches_.find(id);
  if (it == watches_.end() || it->second->owned) return Error{ENOENT, "modify_fd: no such fd watch"};
  epoll_event ev{};
  ev.events = events;
  ev.data.u64 = id;
  if (::epoll_ctl(epoll_.get(), EPOLL_CTL_MOD, it->second->fd, &ev) != 0) return errno_error("epoll_ctl(MOD)");
  return {};
}

Result<WatchId> Reactor::add_timer(std::chrono::nanoseconds first, std::chrono::nanoseconds period,
                                   TimerCallback cb) {
  if (!cb || first.count() < 0 || period.count() < 0) return Error{EINVAL, "add_timer: bad arguments"};
  Fd tfd(::timerfd_create(CLOCK_MONOTONIC, TFD_NONBLOCK | TFD_CLOEXEC));
  if (!tfd) return errno_error("timerfd_create");
  itimerspec spec{};
  // A zero it_value would disarm the timer: "now" means the next dispatch round.
  spec.it_value = to_timespec(first.count() == 0 ? std::chrono::nanoseconds(1) : first);
  spec.it_interval = to_timespec(period);
  if (::timerfd_settime(tfd.get(), 0, &spec, nullptr) != 0) return errno_error("timerfd_settime");
  auto w = std::make_shared<Watch>();
  w->fd = tfd.get();
  w->owned = std::move(tfd);
  w->on_timer = std::move(cb);
  w->oneshot = period.count() == 0;
  const int fd = w->fd;  // read before the move below: argument evaluation order is unspecified
  return insert(fd, EPOLLIN, std::move(w));
}

void Reactor::remove(WatchId id) {
  auto it = watches_.find(id);
  if (it == watches_.end()) return;
  // Failure here means the fd was already closed by its owner, which also removed it from the epoll set.
  (void)::epoll_ctl(epoll_.get(), EPOLL_CTL_DEL, it->second->fd, nullptr);
  watches_.erase(it);
}

void Reactor::post(Task task) {
  {
    std::lock_guard lock(mu_);
    posted_.push_back(std::move(task));
  }
  const std::uint64_t one = 1;
  // EAGAIN means the counter is saturated, i.e. a wake-up is already pending.
  (void)!::write(wake_.get(), &one, sizeof one);
}

void Reactor::stop() {
  stop_.store(true);
  const std::uint64_t one = 1;
  (void)!::write(wake_.get(), &one, sizeof one);
}

std::size_t Reactor::drain_posted() {
  std::uint64_t count = 0;
  (void)!::read(wake_.get(), &count, sizeof count);
  std::vector<Task> batch;
  {
    std::lock_guard lock(mu_);
    batch.swap(posted_);
  }
  for (auto& t : batch) t();
  return batch.size();
}

std::size_t Reactor::run_once(int timeout_ms) {
  loop_thread_.store(std::this_thread::get_id());
  constexpr int kMaxEvents = 64;
  epoll_event events[kMaxEvents];
  const int n = ::epoll_wait(epoll_.get(), events, kMaxEvents, timeout_ms);
  ++iterations_;
  if (n < 0) return 0;  // EINTR: the caller loops
  std::size_t ran = 0;
  for (int i = 0; i < n; ++i) {
    const WatchId id = events[i].data.u64;
    if (id == kWakeId) {
      ran += drain_posted();
      continue;
    }
    auto it = watches_.find(id);
    if (it == watches_.end()) continue;  // removed by an earlier callback in this round
    std::shared_ptr<Watch> w = it->second;  // keeps the callback alive if it removes itself
    if (w->on_timer) {
      std::uint64_t expirations = 0;
      if (::read(w->fd, &expirations, sizeof expirations) != sizeof expirations) continue;
      if (w->oneshot) remove(id);
      w->on_timer();
    } else {
      w->on_fd(events[i].events);
    }
    ++ran;
  }
  return ran;
}

void Reactor::run() {
  while (!stop_.load()) run_once(-1);
  stop_.store(false);
}

}  // namespace gears::daemon
