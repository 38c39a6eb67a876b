// Fake event channels with Xen + Linux evtchn-driver semantics:
// - ports are numbered per domain (lowest free >= 1);
// - notify on a bound port delivers to the peer: if the peer port is unmasked it is queued on the
//   peer handle (fd becomes readable) and masked; if masked it stays pending until unmask, which
//   re-delivers it (many notifies coalesce into one delivery);
// - closing one end turns the other into an unbound port; notifies there are dropped silently;
// - xenevtchn_pending is non-blocking: EAGAIN when nothing was delivered.
#include "tests/fake/state.hpp"

#include "common/xen/libxen.hpp"

#include <cerrno>

struct xenevtchn_handle {
  gears::fake::detail::EvtHandle impl;
};

namespace gears::fake::detail {

EvtHandle* evt_handle(xenevtchn_handle* h) { return h == nullptr ? nullptr : &h->impl; }

evtchn_port_t alloc_port(World& w, domid_t dom) {
  evtchn_port_t port = 1;
  for (auto it = w.ports.lower_bound({dom, port}); it != w.ports.end() && it->first.first == dom; ++it) {
    if (it->first.second != port) break;
    ++port;
  }
  return port;
}

void deliver(World& w, domid_t dom, evtchn_port_t port) {
  auto it = w.ports.find({dom, port});
  if (it == w.ports.end()) return;
  Port& p = it->second;
  if (p.owner == nullptr) {  // the hypervisor's end (e.g. vm_event)
    ++p.kicks;
    return;
  }
  if (p.masked) {
    p.pending = true;
    return;
  }
  p.masked = true;
  p.owner->impl.queue.push_back(port);
  p.owner->impl.bell.set();
}

int send(World& w, domid_t dom, evtchn_port_t port) {
  auto it = w.ports.find({dom, port});
  if (it == w.ports.end()) return -EINVAL;
  if (!it->second.bound) {
    ++w.dropped;
    return 0;
  }
  deliver(w, it->second.remote_dom, it->second.remote_port);
  return 0;
}

void close_port(World& w, domid_t dom, evtchn_port_t port) {
  auto it = w.ports.find({dom, port});
  if (it == w.ports.end()) return;
  if (it->second.bound) {
    auto peer = w.ports.find({it->second.remote_dom, it->second.remote_port});
    if (peer != w.ports.end()) {
      peer->second.bound = false;
      peer->second.remote_dom = dom;
      peer->second.remote_port = 0;
    }
  }
  if (auto* owner = it->second.owner) {
    std::erase(owner->impl.queue, port);
    if (owner->impl.queue.empty()) owner->impl.bell.clear();
    owner->impl.ports.erase(port);
  }
  w.ports.erase(it);
}

}  // namespace gears::fake::detail

using namespace gears::fake::detail;  // NOLINT(google-build-using-namespace)

namespace {
template <class T>
T fail(int err, T v) {
  errno = err;
  return v;
}
bool owns(World& w, xenevtchn_handle* xce, evtchn_port_t port) {
  auto it = w.ports.find({xce->impl.dom, port});
  return it != w.ports.end() && it->second.owner == xce;
}
}  // namespace

extern "C" {

xenevtchn_handle* xenevtchn_open(struct xentoollog_logger* /*logger*/, unsigned int /*flags*/) {
  auto* h = new xenevtchn_handle{};
  h->impl.dom = gears::fake::current_domain();
  auto& w = world();
  std::lock_guard lk(w.mu);
  w.evt_handles.insert(&h->impl);
  return h;
}

int xenevtchn_close(xenevtchn_handle* xce) {
  if (xce == nullptr) return 0;
  auto& w = world();
  {
    std::lock_guard lk(w.mu);
    auto ports = xce->impl.ports;
    for (evtchn_port_t p : ports) close_port(w, xce->impl.dom, p);
    w.evt_handles.erase(&xce->impl);
  }
  delete xce;
  return 0;
}

int xenevtchn_fd(xenevtchn_handle* xce) { return xce->impl.bell.fd(); }

int xenevtchn_notify(xenevtchn_handle* xce, evtchn_port_t port) {
  auto& w = world();
  int err = 0;
  {
    std::lock_guard lk(w.mu);
    if (!owns(w, xce, port))
      err = ENOTCONN;
    else
      err = -send(w, xce->impl.dom, port);
  }
  return err == 0 ? 0 : fail(err, -1);
}

xenevtchn_port_or_error_t xenevtchn_bind_unbound_port(xenevtchn_handle* xce, uint32_t domid) {
  auto& w = world();
  std::lock_guard lk(w.mu);
  if (domid >= DOMID_FIRST_RESERVED) return fail(EINVAL, -1);
  const domid_t dom = xce->impl.dom;
  evtchn_port_t port = alloc_port(w, dom);
  Port p;
  p.owner = xce;
  p.remote_dom = static_cast<domid_t>(domid);
  w.ports.emplace(std::pair{dom, port}, p);
  xce->impl.ports.insert(port);
  return static_cast<xenevtchn_port_or_error_t>(port);
}

xenevtchn_port_or_error_t xenevtchn_bind_interdomain(xenevtchn_handle* xce, uint32_t domid,
                                                     evtchn_port_t remote_port) {
  auto& w = world();
  std::lock_guard lk(w.mu);
  const domid_t dom = xce->impl.dom;
  if (domid >= DOMID_FIRST_RESERVED) return fail(EINVAL, -1);
  auto rit = w.ports.find({static_cast<domid_t>(domid), remote_port});
  if (rit == w.ports.end() || rit->second.bound || rit->second.remote_dom != dom) return fail(EINVAL, -1);
  evtchn_port_t port = alloc_port(w, dom);
  Port p;
  p.owner = xce;
  p.bound = true;
  p.remote_dom = static_cast<domid_t>(domid);
  p.remote_port = remote_port;
  w.ports.emplace(std::pair{dom, port}, p);
  xce->impl.ports.insert(port);
  rit->second.bound = true;
  rit->second.remote_port = port;
  return static_cast<xenevtchn_port_or_error_t>(port);
}

int xenevtchn_unbind(xenevtchn_handle* xce, evtchn_port_t port) {
  auto& w = world();
  std::lock_guard lk(w.mu);
  if (!owns(w, xce, port)) return fail(ENOTCONN, -1);
  close_port(w, xce->impl.dom, port);
  return 0;
}

xenevtchn_port_or_error_t xenevtchn_pending(xenevtchn_handle* xce) {
  auto& w = world();
  std::lock_guard lk(w.mu);
  auto& q = xce->impl.queue;
  if (q.empty()) return fail(EAGAIN, -1);
  evtchn_port_t port = q.front();
  q.pop_front();
  if (q.empty()) xce->impl.bell.clear();
  return static_cast<xenevtchn_port_or_error_t>(port);
}

int xenevtchn_unmask(xenevtchn_handle* xce, evtchn_port_t port) {
  auto& w = world();
  std::lock_guard lk(w.mu);
  if (!owns(w, xce, port)) return 0;  // the Linux driver ignores unknown ports
  Port& p = w.ports.at({xce->impl.dom, port});
  p.masked = false;
  if (p.pending) {
    p.pending = false;
    deliver(w, xce->impl.dom, port);
  }
  return 0;
}

}  // extern "C"
