#include "domU-frontends/gears-front/front.hpp"

#include <poll.h>

#include <chrono>
#include <cstring>
#include <vector>

#include "common/ring/stream_ring.hpp"

namespace gears::front {

Result<bool> EvtchnWaiter::wait(int timeout_ms) {
  pollfd p{ch_->fd(), POLLIN, 0};
  for (;;) {
    const int r = ::poll(&p, 1, timeout_ms);
    if (r < 0 && errno == EINTR) continue;
    if (r < 0) return errno_error("poll event channel");
    if (r == 0) return false;
    auto c = ch_->consume();
    if (!c) return c.error();
    return true;
  }
}

Channel::Channel(Options opts) : opts_(opts) {
  if (opts_.ring_page_order < 5 || opts_.ring_page_order > channel::kMaxRingPageOrder)
    throw XenError("ring page order must be in [5, " + std::to_string(channel::kMaxRingPageOrder) + "]",
                   EINVAL);
  const std::string fe = "device/gears/" + std::to_string(opts_.devid);
  if (!store_.exists(fe + "/backend"))
    throw XenError("no Gears channel device at " + fe + " (is gearsd running in dom0, and was the "
                   "domain created with gears_channel = 1 or attached with `gearsctl attach`?)", ENODEV);
  driver_.emplace(store_, fe, static_cast<xenbus::FrontendHooks&>(*this));
  if (auto s = driver_->connect(opts_.timeout_ms); !s)
    throw XenError(std::string("xenbus: ") + std::string(s.error().what) + " (state " +
                       std::string(xenbus::state_name(driver_->state())) + ")",
                   s.error().code);
}

Channel::~Channel() {
  if (driver_) driver_->close();
}

void Channel::pump_store(int timeout_ms) {
  if (auto s = driver_->pump(timeout_ms); !s)
    throw XenError(std::string("xenbus: ") + std::string(s.error().what), s.error().code);
}

Status Channel::setup(xen::Store& s, xen::StoreOps& t, const std::string& fe_path, const std::string& be_path,
                      domid_t be_dom) {
  auto feat = s.read(be_path + "/feature-gears-hints");
  if (!feat || *feat != "1") return Error{EPROTONOSUPPORT, "backend does not offer feature-gears-hints"};
  auto max_order = s.read_uint(be_path + "/max-ring-page-order");
  if (!max_order) return max_order.error();
  auto max_frame = s.read_uint(be_path + "/max-frame");
  if (!max_frame || *max_frame != channel::kMaxFrame) return Error{EPROTO, "backend max-frame differs"};
  if (opts_.ring_page_order > *max_order) opts_.ring_page_order = static_cast<unsigned>(*max_order);
  const std::size_t pages = 1 + (std::size_t{1} << opts_.ring_page_order);
  try {
    up_ = xen::GrantShare(sharer_, be_dom, pages, true);
    down_ = xen::GrantShare(sharer_, be_dom, pages, true);
    up_dir_ = xen::GrantShare(sharer_, be_dom, 1, false);
    down_dir_ = xen::GrantShare(sharer_, be_dom, 1, false);
    std::memcpy(up_dir_.data(), up_.refs().data(), up_.refs().size_bytes());
    std::memcpy(down_dir_.data(), down_.refs().data(), down_.refs().size_bytes());
    ring::stream_ring_format(up_.bytes(), channel::kMaxFrame);
    ring::stream_ring_format(down_.bytes(), channel::kMaxFrame);
    evtchn_ = xen::EventChannel::alloc_unbound(be_dom);
  } catch (const XenError& e) {
    disconnect();
    if (e.code() == ENOSPC)
      return Error{ENOSPC, "cannot grant the rings: gntalloc is out of pages (its `limit` module parameter, 1024 "
                           "pages by default, covers every user in this domain; use a smaller --ring-order)"};
    return Error{e.code(), "cannot grant the rings or allocate the event channel"};
  }
  if (auto r = t.write(fe_path + "/ring-page-order", std::to_string(opts_.ring_page_order)); !r) return r;
  if (auto r = t.write(fe_path + "/up-ring-dir-ref", std::to_string(up_dir_.refs()[0])); !r) return r;
  if (auto r = t.write(fe_path + "/down-ring-dir-ref", std::to_string(down_dir_.refs()[0])); !r) return r;
  return t.write(fe_path + "/event-channel", std::to_string(evtchn_->port()));
}

Status Channel::connected(xen::Store&, const std::string&) {
  waiter_.bind(&*evtchn_);
  session_ = std::make_unique<Session>(up_.bytes(), down_.bytes(), *evtchn_, waiter_, channel::kMaxFrame,
                                       opts_.timeout_ms);
  auto h = session_->hello(opts_.agent ? channel::kFeatureAgent : 0);
  if (!h) return h.error();
  return {};
}

void Channel::disconnect() {
  session_.reset();
  evtchn_.reset();
  up_.reset();
  down_.reset();
  up_dir_.reset();
  down_dir_.reset();
}

bool Channel::backend_connected() {
  auto st = store_.read(driver_->be_path() + "/state");
  return st && *st == std::to_string(static_cast<int>(XenbusStateConnected));
}

bool Channel::wait_closed_by_backend(int timeout_ms) {
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::milliseconds(timeout_ms);
  while (std::chrono::steady_clock::now() < deadline) {
    auto st = store_.read(driver_->be_path() + "/state");
    if (!st || (*st != std::to_string(static_cast<int>(XenbusStateConnected)))) return true;
    pump_store(100);
  }
  return false;
}

double memcpy_mb_s(std::size_t bytes, int rounds) {
  std::vector<std::byte> a(bytes, std::byte{1}), b(bytes);
  double best = 0;
  for (int r = 0; r < rounds; ++r) {
    const auto t0 = std::chrono::steady_clock::now();
    std::memcpy(b.data(), a.data(), bytes);
    const double s = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    a[static_cast<std::size_t>(r) % bytes] = b[(static_cast<std::size_t>(r) * 7) % bytes];  // keep both live
    const double mbs = static_cast<double>(bytes) / 1e6 / s;
    if (mbs > best) best = mbs;
  }
  return best;
}

}  // namespace gears::front
