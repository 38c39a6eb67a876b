// Compiled as gnu++20: <xenctrl.h> needs GNU extensions.
#include "common/xen/monitor.hpp"

extern "C" {
#include <xenctrl.h>
}

#include <sys/mman.h>

#include <atomic>
#include <bit>
#include <cstring>
#include <string>
#include <utility>

namespace gears::xen {
namespace {

constexpr std::size_t kPage = 4096;
constexpr std::size_t kRingOffset = offsetof(vm_event_sring, ring);
constexpr std::size_t kRingSize = std::bit_floor((kPage - kRingOffset) / sizeof(vm_event_sring_entry));
static_assert(kRingSize >= 1);

std::atomic_ref<RING_IDX> shared(RING_IDX& v) { return std::atomic_ref<RING_IDX>(v); }

}  // namespace

// ---- XenCtrl ----

XenCtrl::XenCtrl() : h_(xc_interface_open(nullptr, nullptr, 0)) {
  if (h_ == nullptr) throw XenError("xc_interface_open");
}

XenCtrl::~XenCtrl() {
  if (h_ != nullptr) xc_interface_close(h_);
}

XenCtrl::XenCtrl(XenCtrl&& o) noexcept : NonCopyable(std::move(o)), h_(std::exchange(o.h_, nullptr)) {}

XenCtrl& XenCtrl::operator=(XenCtrl&& o) noexcept {
  if (this != &o) {
    if (h_ != nullptr) xc_interface_close(h_);
    h_ = std::exchange(o.h_, nullptr);
  }
  return *this;
}

Status XenCtrl::pause(domid_t dom) const {
  if (xc_domain_pause(h_, dom) != 0) return errno_error("xc_domain_pause");
  return {};
}

Status XenCtrl::unpause(domid_t dom) const {
  if (xc_domain_unpause(h_, dom) != 0) return errno_error("xc_domain_unpause");
  return {};
}

// ---- MonitorRing ----

std::size_t MonitorRing::ring_size() { return kRingSize; }

vm_event_sring_entry* MonitorRing::entry(RING_IDX i) const {
  return reinterpret_cast<vm_event_sring_entry*>(static_cast<std::byte*>(page_) + kRingOffset) + (i & (kRingSize - 1));
}

MonitorRing::MonitorRing(const XenCtrl& xc, domid_t dom) : xc_(xc.native()), dom_(dom) {
  std::uint32_t port = 0;
  page_ = xc_monitor_enable(xc_, dom, &port);
  if (page_ == nullptr) throw XenError("xc_monitor_enable dom" + std::to_string(dom));
  try {
    evtchn_ = EventChannel::bind_interdomain(dom, port);
  } catch (...) {
    ::munmap(page_, kPage);
    page_ = nullptr;
    (void)xc_monitor_disable(xc_, dom);
    throw;
  }
  // SHARED_RING_INIT + BACK_RING_INIT, as xen-access does: no event is enabled yet, so Xen cannot
  // have produced anything.
  vm_event_sring* s = sring();
  shared(s->req_prod).store(0, std::memory_order_relaxed);
  shared(s->rsp_prod).store(0, std::memory_order_relaxed);
  shared(s->req_event).store(1, std::memory_order_relaxed);
  shared(s->rsp_event).store(1, std::memory_order_release);
  req_cons_ = 0;
  rsp_prod_pvt_ = 0;
}

Status MonitorRing::monitor_ctrlreg(std::uint16_t index, bool enable, bool sync, bool onchangeonly,
                                    std::uint64_t bitmask) {
  if (index >= ctrlregs_.size()) return Error{EINVAL, "ctrlreg index"};
  if (xc_monitor_write_ctrlreg(xc_, dom_, index, enable, sync, bitmask, onchangeonly) != 0)
    return errno_error("xc_monitor_write_ctrlreg");
  ctrlregs_.set(index, enable);
  return {};
}

Status MonitorRing::monitor_cr3(bool enable, bool sync, bool onchangeonly) {
  return monitor_ctrlreg(VM_EVENT_X86_CR3, enable, sync, onchangeonly);
}

Result<vm_event_request_t> MonitorRing::next_request() {
  vm_event_sring* s = sring();
  RING_IDX prod = shared(s->req_prod).load(std::memory_order_acquire);
  if (prod == req_cons_) {
    // Final check (RING_FINAL_CHECK_FOR_REQUESTS): ask to be notified, then re-read.
    shared(s->req_event).store(req_cons_ + 1, std::memory_order_relaxed);
    std::atomic_thread_fence(std::memory_order_seq_cst);
    prod = shared(s->req_prod).load(std::memory_order_acquire);
    if (prod == req_cons_) return Error{EAGAIN, "no request"};
  }
  if (prod - req_cons_ > kRingSize) return Error{EPROTO, "vm_event ring producer index corrupt"};
  vm_event_request_t req;
  std::memcpy(&req, &entry(req_cons_)->req, sizeof req);
  ++req_cons_;
  return req;
}

void MonitorRing::push_response(const vm_event_response_t& rsp) {
  std::memcpy(&entry(rsp_prod_pvt_)->rsp, &rsp, sizeof rsp);
  ++rsp_prod_pvt_;
  shared(sring()->rsp_prod).store(rsp_prod_pvt_, std::memory_order_release);
}

vm_event_response_t MonitorRing::response_for(const vm_event_request_t& req) {
  vm_event_response_t rsp;
  std::memset(&rsp, 0, sizeof rsp);
  rsp.version = VM_EVENT_INTERFACE_VERSION;
  rsp.vcpu_id = req.vcpu_id;
  rsp.flags = req.flags & VM_EVENT_FLAG_VCPU_PAUSED;
  rsp.reason = req.reason;
  rsp.altp2m_idx = req.altp2m_idx;
  return rsp;
}

void MonitorRing::teardown() noexcept {
  if (page_ == nullptr) return;
  const bool paused = xc_domain_pause(xc_, dom_) == 0;
  for (std::size_t i = 0; i < ctrlregs_.size(); ++i)
    if (ctrlregs_.test(i)) (void)xc_monitor_write_ctrlreg(xc_, dom_, static_cast<std::uint16_t>(i), false, false, 0, false);
  ctrlregs_.reset();
  std::size_t answered = 0;
  for (auto req = next_request(); req.ok(); req = next_request(), ++answered) push_response(response_for(req.value()));
  if (answered != 0 && evtchn_.valid()) (void)evtchn_.notify();
  evtchn_ = EventChannel();
  ::munmap(page_, kPage);
  page_ = nullptr;
  (void)xc_monitor_disable(xc_, dom_);
  if (paused) (void)xc_domain_unpause(xc_, dom_);
}

MonitorRing::~MonitorRing() { teardown(); }

MonitorRing::MonitorRing(MonitorRing&& o) noexcept
    : NonCopyable(std::move(o)),
      xc_(o.xc_),
      dom_(o.dom_),
      page_(std::exchange(o.page_, nullptr)),
      evtchn_(std::move(o.evtchn_)),
      req_cons_(o.req_cons_),
      rsp_prod_pvt_(o.rsp_prod_pvt_),
      ctrlregs_(std::exchange(o.ctrlregs_, {})) {}

MonitorRing& MonitorRing::operator=(MonitorRing&& o) noexcept {
  if (this != &o) {
    teardown();
    xc_ = o.xc_;
    dom_ = o.dom_;
    page_ = std::exchange(o.page_, nullptr);
    evtchn_ = std::move(o.evtchn_);
    req_cons_ = o.req_cons_;
    rsp_prod_pvt_ = o.rsp_prod_pvt_;
    ctrlregs_ = std::exchange(o.ctrlregs_, {});
  }
  return *this;
}

}  // namespace gears::xen
