// EventChannel: one xenevtchn handle bound to one port (so its fd wakes for exactly that port).
//
// Delivery contract (Xen + Linux evtchn driver): when the peer notifies, the port is delivered once
// and then masked; further notifies coalesce into "pending" until unmask() re-arms it. A consumer
// loop is therefore: poll(fd) -> pending() -> unmask() -> process (re-check the ring after unmask).
// After the peer closes its end, notify() still succeeds but the event is dropped (as in Xen).
// Not thread-safe; the port is unbound and the handle closed in the destructor.
#pragma once

#include "common/util/error.hpp"
#include "common/util/noncopyable.hpp"
#include "common/util/result.hpp"
#include "common/xen/libxen.hpp"

namespace gears::xen {

class EventChannel : NonCopyable {
 public:
  EventChannel() = default;
  // Binds to `remote_port` of `dom` (which that domain allocated unbound for us). Throws XenError.
  [[nodiscard]] static EventChannel bind_interdomain(domid_t dom, evtchn_port_t remote_port);
  // Allocates an unbound port that `dom` may bind to; publish port() to it. Throws XenError.
  [[nodiscard]] static EventChannel alloc_unbound(domid_t dom);

  ~EventChannel();
  EventChannel(EventChannel&& o) noexcept;
  EventChannel& operator=(EventChannel&& o) noexcept;

  [[nodiscard]] evtchn_port_t port() const { return port_; }
  // Non-blocking; readable when an event was delivered (epoll/poll it).
  [[nodiscard]] int fd() const;
  [[nodiscard]] bool valid() const { return h_ != nullptr; }

  [[nodiscard]] Status notify() const;
  // The delivered port (always port()), or EAGAIN if nothing was delivered.
  [[nodiscard]] Result<evtchn_port_t> pending() const;
  [[nodiscard]] Status unmask() const;
  // pending() + unmask() in one: true if an event had been delivered, false if none (not an error).
  [[nodiscard]] Result<bool> consume() const;

  [[nodiscard]] xenevtchn_handle* native() const { return h_; }

 private:
  EventChannel(xenevtchn_handle* h, evtchn_port_t port) : h_(h), port_(port) {}
  void reset();
  xenevtchn_handle* h_ = nullptr;
  evtchn_port_t port_ = 0;
};

}  // namespace gears::xen
