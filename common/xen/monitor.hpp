// XenCtrl (xc_interface) and MonitorRing (vm_event monitor ring of one HVM/PVH guest).
//
// MonitorRing is the consumer ("back") end of the vm_event ring: Xen produces requests, we answer
// each with a response, then notify. A synchronous event leaves the vCPU paused
// (VM_EVENT_FLAG_VCPU_PAUSED) until its response arrives, so every request must be answered.
//
// Safe teardown order (the destructor does exactly this; the lab saw a guest die on async teardown):
//   1. pause the domain               - no vCPU can raise a new event meanwhile
//   2. disable every event we enabled - xc_monitor_write_ctrlreg(..., enable=false)
//   3. drain the ring, respond to every pending request, notify - unpauses vCPUs waiting on us
//   4. unbind the event channel
//   5. unmap the ring page
//   6. xc_monitor_disable
//   7. unpause the domain
// The ring and XenCtrl are not thread-safe: one owner thread. XenCtrl must outlive its rings.
#pragma once

#include "common/util/error.hpp"
#include "common/util/noncopyable.hpp"
#include "common/util/result.hpp"
#include "common/xen/evtchn.hpp"
#include "common/xen/libxen.hpp"

#include <xen/vm_event.h>

#include <bitset>
#include <cstddef>
#include <cstdint>

struct xc_interface_core;  // = xc_interface from <xenctrl.h> (which needs GNU extensions to include)

namespace gears::xen {

class XenCtrl : NonCopyable {
 public:
  XenCtrl();  // throws XenError (needs dom0 privileges)
  ~XenCtrl();
  XenCtrl(XenCtrl&& o) noexcept;
  XenCtrl& operator=(XenCtrl&& o) noexcept;

  [[nodiscard]] Status pause(domid_t dom) const;
  [[nodiscard]] Status unpause(domid_t dom) const;
  [[nodiscard]] xc_interface_core* native() const { return h_; }

 private:
  xc_interface_core* h_;
};

class MonitorRing : NonCopyable {
 public:
  MonitorRing() = default;
  // xc_monitor_enable + ring init + event-channel bind. Throws XenError (EBUSY: already monitored).
  MonitorRing(const XenCtrl& xc, domid_t dom);
  ~MonitorRing();  // safe teardown, see the header comment
  MonitorRing(MonitorRing&& o) noexcept;
  MonitorRing& operator=(MonitorRing&& o) noexcept;

  [[nodiscard]] domid_t domain() const { return dom_; }
  [[nodiscard]] bool valid() const { return page_ != nullptr; }
  // Readable when Xen has kicked us; then consume() and drain requests.
  [[nodiscard]] int fd() const { return evtchn_.fd(); }
  [[nodiscard]] Result<bool> consume() const { return evtchn_.consume(); }

  // CR3 write events (VM_EVENT_REASON_WRITE_CTRLREG, index VM_EVENT_X86_CR3).
  [[nodiscard]] Status monitor_cr3(bool enable, bool sync = true, bool onchangeonly = true);
  [[nodiscard]] Status monitor_ctrlreg(std::uint16_t index, bool enable, bool sync, bool onchangeonly,
                                       std::uint64_t bitmask = 0);

  // The next request, copied out of the ring; EAGAIN when there is none. Requests whose version is
  // not VM_EVENT_INTERFACE_VERSION are still returned: the caller must still answer them.
  [[nodiscard]] Result<vm_event_request_t> next_request();
  // Queues a response (visible to Xen at once; call notify() after a batch).
  void push_response(const vm_event_response_t& rsp);
  // The minimal correct response to `req` (echoes vcpu, reason, and VCPU_PAUSED so the vCPU resumes).
  [[nodiscard]] static vm_event_response_t response_for(const vm_event_request_t& req);
  [[nodiscard]] Status notify() const { return evtchn_.notify(); }

  // Consumes the kick, answers every queued request with `fn(req, rsp)` (rsp prefilled by
  // response_for; fn may add flags/registers), notifies once. Returns the number handled.
  template <class Fn>
  [[nodiscard]] Result<std::size_t> handle(Fn&& fn) {
    if (auto k = consume(); !k) return k.error();
    std::size_t n = 0;
    for (auto req = next_request(); req.ok(); req = next_request(), ++n) {
      vm_event_response_t rsp = response_for(req.value());
      fn(static_cast<const vm_event_request_t&>(req.value()), rsp);
      push_response(rsp);
    }
    if (n != 0)
      if (auto s = notify(); !s) return s.error();
    return n;
  }

  // Ring capacity in entries (power of two).
  [[nodiscard]] static std::size_t ring_size();

 private:
  void teardown() noexcept;
  [[nodiscard]] vm_event_sring* sring() const { return static_cast<vm_event_sring*>(page_); }
  [[nodiscard]] vm_event_sring_entry* entry(RING_IDX i) const;

  xc_interface_core* xc_ = nullptr;
  domid_t dom_ = 0;
  void* page_ = nullptr;
  EventChannel evtchn_;
  RING_IDX req_cons_ = 0;
  RING_IDX rsp_prod_pvt_ = 0;
  std::bitset<4> ctrlregs_;  // ctrlreg indices we enabled (CR0, CR3, CR4, XCR0)
};

}  // namespace gears::xen
