// Notification strategies for rings: how one end kicks the other.
//
// A ring is templated on its Notifier, so the hot path makes a direct (inlinable) call, never a
// virtual one. Three strategies:
//   EvtchnNotifier<E>  wraps anything with notify()/fd() (the real Xen event channel lives in
//                      common/xen; this header does not depend on it)
//   EventfdNotifier    an owned eventfd: the in-process stand-in for an event channel in tests
//   PollNotifier       no-op; for a peer that spins or polls on a timer
#pragma once

#include <poll.h>
#include <sys/eventfd.h>
#include <unistd.h>

#include <cerrno>
#include <concepts>
#include <cstdint>
#include <type_traits>
#include <utility>

#include "common/util/error.hpp"
#include "common/util/noncopyable.hpp"
#include "common/util/result.hpp"

namespace gears::ring {

// A Notifier kicks the peer. notify() must be cheap, must not block, and may coalesce kicks.
template <class N>
concept Notifier = requires(N& n) {
  { n.notify() } -> std::same_as<Status>;
};

// Anything that looks like an event channel: notify() (returning void or something testable as
// bool-ish Status) and fd() for the owner's event loop.
template <class E>
concept EventSource = requires(E& e) {
  e.notify();
  { e.fd() } -> std::convertible_to<int>;
};

// Adapts an event source. E may be a value (the notifier owns the channel) or an lvalue reference
// (it borrows one whose lifetime the caller guarantees).
template <class E>
  requires EventSource<std::remove_reference_t<E>>
class EvtchnNotifier {
 public:
  explicit EvtchnNotifier(E ev) : ev_(std::forward<E>(ev)) {}

  [[nodiscard]] Status notify() {
    using R = decltype(ev_.notify());
    if constexpr (std::is_void_v<R>) {
      ev_.notify();
      return {};
    } else if constexpr (std::is_convertible_v<R, Status>) {
      return Status(ev_.notify());
    } else {
      // bool-like or int-like (0 / true = success is ambiguous): require an explicit Status.
      static_assert(std::is_void_v<R> || std::is_convertible_v<R, Status>,
                    "EventSource::notify() must return void or gears::Status");
      return {};
    }
  }
  [[nodiscard]] int fd() const { return static_cast<int>(ev_.fd()); }
  [[nodiscard]] std::remove_reference_t<E>& source() { return ev_; }

 private:
  E ev_;
};
template <class E>
EvtchnNotifier(E&&) -> EvtchnNotifier<E>;

// An owned non-blocking eventfd. notify() adds 1; the peer waits on fd() and calls drain().
class EventfdNotifier : NonCopyable {
 public:
  EventfdNotifier() : fd_(::eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC)) {
    if (fd_ < 0) throw XenError("eventfd");
  }
  ~EventfdNotifier() {
    if (fd_ >= 0) ::close(fd_);
  }
  EventfdNotifier(EventfdNotifier&& o) noexcept : fd_(std::exchange(o.fd_, -1)) {}
  EventfdNotifier& operator=(EventfdNotifier&& o) noexcept {
    if (this != &o) {
      if (fd_ >= 0) ::close(fd_);
      fd_ = std::exchange(o.fd_, -1);
    }
    return *this;
  }

  [[nodiscard]] Status notify() {
    const std::uint64_t one = 1;
    // EAGAIN means the counter is saturated: the peer has a pending wake-up anyway.
    if (::write(fd_, &one, sizeof one) < 0 && errno != EAGAIN) return errno_error("eventfd write");
    return {};
  }
  // Consume pending kicks; returns how many were coalesced (0 if none).
  [[nodiscard]] Result<std::uint64_t> drain() {
    std::uint64_t n = 0;
    if (::read(fd_, &n, sizeof n) < 0) {
      if (errno == EAGAIN) return std::uint64_t{0};
      return errno_error("eventfd read");
    }
    return n;
  }
  // Block until kicked or timeout_ms elapses (-1 = forever). Returns true when kicked.
  [[nodiscard]] Result<bool> wait(int timeout_ms) const {
    pollfd p{fd_, POLLIN, 0};
    for (;;) {
      const int r = ::poll(&p, 1, timeout_ms);
      if (r > 0) return true;
      if (r == 0) return false;
      if (errno != EINTR) return errno_error("poll eventfd");
    }
  }
  [[nodiscard]] int fd() const { return fd_; }

 private:
  int fd_ = -1;
};

// The peer polls; kicking it is free.
struct PollNotifier {
  [[nodiscard]] Status notify() { return {}; }
  [[nodiscard]] int fd() const { return -1; }
};

static_assert(Notifier<EventfdNotifier>);
static_assert(Notifier<PollNotifier>);

}  // namespace gears::ring
