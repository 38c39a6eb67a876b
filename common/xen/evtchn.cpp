#include "common/xen/evtchn.hpp"

#include <fcntl.h>

#include <string>
#include <utility>

namespace gears::xen {
namespace {

xenevtchn_handle* open_nonblocking() {
  xenevtchn_handle* h = xenevtchn_open(nullptr, 0);
  if (h == nullptr) throw XenError("xenevtchn_open");
  // pending() must never block: the event loop polls the fd first, and a spurious wakeup is harmless.
  const int fd = xenevtchn_fd(h);
  const int fl = ::fcntl(fd, F_GETFL);
  if (fl < 0 || ::fcntl(fd, F_SETFL, fl | O_NONBLOCK) < 0) {
    const int err = errno;
    xenevtchn_close(h);
    throw XenError("fcntl(evtchn, O_NONBLOCK)", err);
  }
  return h;
}

}  // namespace

EventChannel EventChannel::bind_interdomain(domid_t dom, evtchn_port_t remote_port) {
  xenevtchn_handle* h = open_nonblocking();
  const xenevtchn_port_or_error_t p = xenevtchn_bind_interdomain(h, dom, remote_port);
  if (p < 0) {
    const int err = errno;
    xenevtchn_close(h);
    throw XenError("xenevtchn_bind_interdomain dom" + std::to_string(dom) + " port " + std::to_string(remote_port),
                   err);
  }
  return EventChannel(h, static_cast<evtchn_port_t>(p));
}

EventChannel EventChannel::alloc_unbound(domid_t dom) {
  xenevtchn_handle* h = open_nonblocking();
  const xenevtchn_port_or_error_t p = xenevtchn_bind_unbound_port(h, dom);
  if (p < 0) {
    const int err = errno;
    xenevtchn_close(h);
    throw XenError("xenevtchn_bind_unbound_port dom" + std::to_string(dom), err);
  }
  return EventChannel(h, static_cast<evtchn_port_t>(p));
}

void EventChannel::reset() {
  if (h_ != nullptr) {
    (void)xenevtchn_unbind(h_, port_);
    xenevtchn_close(h_);
  }
  h_ = nullptr;
  port_ = 0;
}

EventChannel::~EventChannel() { reset(); }

EventChannel::EventChannel(EventChannel&& o) noexcept
    : NonCopyable(std::move(o)), h_(std::exchange(o.h_, nullptr)), port_(std::exchange(o.port_, 0)) {}

EventChannel& EventChannel::operator=(EventChannel&& o) noexcept {
  if (this != &o) {
    reset();
    h_ = std::exchange(o.h_, nullptr);
    port_ = std::exchange(o.port_, 0);
  }
  return *this;
}

int EventChannel::fd() const { return xenevtchn_fd(h_); }

Status EventChannel::notify() const {
  if (xenevtchn_notify(h_, port_) != 0) return errno_error("xenevtchn_notify");
  return {};
}

Result<evtchn_port_t> EventChannel::pending() const {
  const xenevtchn_port_or_error_t p = xenevtchn_pending(h_);
  if (p < 0) return errno_error("xenevtchn_pending");
  return static_cast<evtchn_port_t>(p);
}

Status EventChannel::unmask() const {
  if (xenevtchn_unmask(h_, port_) != 0) return errno_error("xenevtchn_unmask");
  return {};
}

Result<bool> EventChannel::consume() const {
  auto p = pending();
  if (!p) {
    if (p.error().code == EAGAIN) return false;
    return p.error();
  }
  if (auto s = unmask(); !s) return s.error();
  return true;
}

}  // namespace gears::xen
