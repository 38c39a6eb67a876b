// Fake foreign memory and the xc_* subset used by gears::xen (domain pause, vm_event monitor).
// Compiled as gnu++20: <xenctrl.h> needs GNU extensions.
//
// Monitor model: xc_monitor_enable allocates a zeroed ring page (initialised as an empty shared ring),
// and an unbound event-channel port in the guest's space owned by the hypervisor and bindable by the
// caller; it returns a fresh mapping of the page that the caller releases with munmap(), as with real
// libxc. The test plays Xen through gears::fake::monitor_push_request / monitor_pop_responses.
// Requests flagged VM_EVENT_FLAG_VCPU_PAUSED that get no response before xc_monitor_disable are
// counted as "unanswered" (on real Xen those vCPUs stay paused).
#include "tests/fake/state.hpp"

#include "common/xen/libxen.hpp"

extern "C" {
#include <xenctrl.h>
}
#include <xen/vm_event.h>

#include <sys/mman.h>

#include <atomic>
#include <bit>
#include <cerrno>
#include <cstddef>
#include <cstring>

struct xc_interface_core {
  domid_t dom = 0;
};

struct xenforeignmemory_handle {
  domid_t dom = 0;
};

using namespace gears::fake::detail;  // NOLINT(google-build-using-namespace)

namespace {

template <class T>
T fail(int err, T v) {
  errno = err;
  return v;
}

constexpr std::size_t kRingOffset = offsetof(vm_event_sring, ring);
constexpr std::size_t kRingSize = std::bit_floor((kPage - kRingOffset) / sizeof(vm_event_sring_entry));

vm_event_sring* sring_of(Monitor& m) { return reinterpret_cast<vm_event_sring*>(m.ring->base()); }
vm_event_sring_entry* entry(Monitor& m, RING_IDX i) {
  return reinterpret_cast<vm_event_sring_entry*>(m.ring->base() + kRingOffset) + (i & (kRingSize - 1));
}

// Responses Xen has consumed from the ring but the test has not popped yet (guarded by world().mu).
std::map<domid_t, std::vector<vm_event_response_t>>& unpopped() {
  static std::map<domid_t, std::vector<vm_event_response_t>> m;
  return m;
}

void drain_responses(Monitor& m, std::vector<vm_event_response_t>* out) {
  auto* s = sring_of(m);
  const RING_IDX prod = std::atomic_ref<RING_IDX>(s->rsp_prod).load(std::memory_order_acquire);
  while (m.rsp_cons != prod) {
    vm_event_response_t rsp;
    std::memcpy(&rsp, &entry(m, m.rsp_cons)->rsp, sizeof rsp);
    ++m.rsp_cons;
    if ((rsp.flags & VM_EVENT_FLAG_VCPU_PAUSED) != 0 && m.outstanding_paused > 0) --m.outstanding_paused;
    if (out != nullptr) out->push_back(rsp);
  }
}

}  // namespace

extern "C" {

xenforeignmemory_handle* xenforeignmemory_open(struct xentoollog_logger* /*logger*/, unsigned /*open_flags*/) {
  auto& w = world();
  std::lock_guard lk(w.mu);
  ++w.foreign_handles;
  return new xenforeignmemory_handle{gears::fake::current_domain()};
}

int xenforeignmemory_close(xenforeignmemory_handle* fmem) {
  if (fmem == nullptr) return 0;
  auto& w = world();
  {
    std::lock_guard lk(w.mu);
    --w.foreign_handles;
  }
  delete fmem;
  return 0;
}

void* xenforeignmemory_map(xenforeignmemory_handle* fmem, uint32_t dom, int prot, size_t pages,
                           const xen_pfn_t arr[], int err[]) {
  auto& w = world();
  std::lock_guard lk(w.mu);
  if (fmem->dom != 0) return fail<void*>(EPERM, nullptr);
  auto it = w.guest_mem.find(static_cast<domid_t>(dom));
  if (it == w.guest_mem.end()) return fail<void*>(ESRCH, nullptr);
  if (pages == 0) return fail<void*>(EINVAL, nullptr);
  const MemFile& mem = *it->second;
  bool any_bad = false;
  for (std::size_t i = 0; i < pages; ++i) {
    const bool bad = arr[i] >= mem.pages();
    any_bad = any_bad || bad;
    if (err != nullptr) err[i] = bad ? -EINVAL : 0;
  }
  if (any_bad && err == nullptr) return fail<void*>(EINVAL, nullptr);
  void* base = reserve_range(pages);
  if (base == nullptr) return fail<void*>(ENOMEM, nullptr);
  for (std::size_t i = 0; i < pages; ++i) {
    if (arr[i] >= mem.pages()) continue;  // stays PROT_NONE, reported in err[i]
    if (!map_page_at(static_cast<std::byte*>(base) + i * kPage, mem, arr[i], prot)) {
      ::munmap(base, pages * kPage);
      return fail<void*>(ENOMEM, nullptr);
    }
  }
  w.foreign_maps.emplace(base, pages);
  return base;
}

int xenforeignmemory_unmap(xenforeignmemory_handle* /*fmem*/, void* addr, size_t pages) {
  auto& w = world();
  std::lock_guard lk(w.mu);
  auto it = w.foreign_maps.find(addr);
  if (it == w.foreign_maps.end() || it->second != pages) return fail(EINVAL, -1);
  ::munmap(addr, pages * kPage);
  w.foreign_maps.erase(it);
  return 0;
}

xc_interface* xc_interface_open(xentoollog_logger* /*logger*/, xentoollog_logger* /*dombuild_logger*/,
                                unsigned /*open_flags*/) {
  auto& w = world();
  std::lock_guard lk(w.mu);
  if (gears::fake::current_domain() != 0) return fail<xc_interface*>(EPERM, nullptr);
  ++w.xc_handles;
  return new xc_interface_core{0};
}

int xc_interface_close(xc_interface* xch) {
  if (xch == nullptr) return 0;
  auto& w = world();
  {
    std::lock_guard lk(w.mu);
    --w.xc_handles;
  }
  delete xch;
  return 0;
}

int xc_domain_pause(xc_interface* /*xch*/, uint32_t domid) {
  auto& w = world();
  std::lock_guard lk(w.mu);
  ++w.pause_counts[static_cast<domid_t>(domid)];
  return 0;
}

int xc_domain_unpause(xc_interface* /*xch*/, uint32_t domid) {
  auto& w = world();
  std::lock_guard lk(w.mu);
  auto& c = w.pause_counts[static_cast<domid_t>(domid)];
  if (c == 0) return fail(EINVAL, -1);
  --c;
  return 0;
}

void* xc_monitor_enable(xc_interface* xch, uint32_t domain_id, uint32_t* port) {
  auto& w = world();
  std::lock_guard lk(w.mu);
  const auto dom = static_cast<domid_t>(domain_id);
  if (dom == 0 || dom >= DOMID_FIRST_RESERVED) return fail<void*>(EINVAL, nullptr);
  if (w.monitors.count(dom) != 0) return fail<void*>(EBUSY, nullptr);
  Monitor m;
  m.ring = std::make_shared<MemFile>(1);
  auto* s = reinterpret_cast<vm_event_sring*>(m.ring->base());
  s->req_prod = s->rsp_prod = 0;
  s->req_event = s->rsp_event = 1;
  m.client = xch->dom;
  m.xen_port = alloc_port(w, dom);
  Port p;
  p.remote_dom = xch->dom;
  w.ports.emplace(std::pair{dom, m.xen_port}, p);
  void* view = ::mmap(nullptr, kPage, PROT_READ | PROT_WRITE, MAP_SHARED, m.ring->fd(), 0);
  if (view == MAP_FAILED) {
    w.ports.erase({dom, m.xen_port});
    return fail<void*>(ENOMEM, nullptr);
  }
  *port = m.xen_port;
  w.monitors.emplace(dom, std::move(m));
  return view;
}

int xc_monitor_disable(xc_interface* /*xch*/, uint32_t domain_id) {
  auto& w = world();
  std::lock_guard lk(w.mu);
  const auto dom = static_cast<domid_t>(domain_id);
  auto it = w.monitors.find(dom);
  if (it == w.monitors.end()) return fail(EINVAL, -1);
  unpopped().erase(dom);
  drain_responses(it->second, nullptr);
  w.unanswered_at_disable[dom] += it->second.outstanding_paused;
  close_port(w, dom, it->second.xen_port);
  w.monitors.erase(it);
  return 0;
}

int xc_monitor_write_ctrlreg(xc_interface* /*xch*/, uint32_t domain_id, uint16_t index, bool enable, bool sync,
                             uint64_t bitmask, bool onchangeonly) {
  auto& w = world();
  std::lock_guard lk(w.mu);
  auto it = w.monitors.find(static_cast<domid_t>(domain_id));
  if (it == w.monitors.end() || index > VM_EVENT_X86_XCR0) return fail(EINVAL, -1);
  it->second.ctrlregs[index] = gears::fake::CtrlRegMonitor{enable, sync, onchangeonly, bitmask};
  return 0;
}

int xc_monitor_get_capabilities(xc_interface* /*xch*/, uint32_t /*domain_id*/, uint32_t* capabilities) {
  *capabilities = 1U << XEN_DOMCTL_MONITOR_EVENT_WRITE_CTRLREG;
  return 0;
}

}  // extern "C"

namespace gears::fake {

bool monitor_push_request(domid_t domid, const vm_event_st& req) {
  auto& w = world();
  std::lock_guard lk(w.mu);
  auto it = w.monitors.find(domid);
  if (it == w.monitors.end()) return false;
  Monitor& m = it->second;
  drain_responses(m, &unpopped()[domid]);  // Xen consumes responses before producing
  if (m.req_prod_pvt - m.rsp_cons >= kRingSize) return false;
  std::memcpy(&entry(m, m.req_prod_pvt)->req, &req, sizeof req);
  ++m.req_prod_pvt;
  std::atomic_ref<RING_IDX>(sring_of(m)->req_prod).store(m.req_prod_pvt, std::memory_order_release);
  if ((req.flags & VM_EVENT_FLAG_VCPU_PAUSED) != 0) ++m.outstanding_paused;
  (void)send(w, domid, m.xen_port);
  return true;
}

std::vector<vm_event_st> monitor_pop_responses(domid_t domid) {
  auto& w = world();
  std::lock_guard lk(w.mu);
  std::vector<vm_event_response_t> out = std::move(unpopped()[domid]);
  unpopped().erase(domid);
  auto it = w.monitors.find(domid);
  if (it != w.monitors.end()) drain_responses(it->second, &out);
  return out;
}

std::size_t monitor_kicks(domid_t domid) {
  auto& w = world();
  std::lock_guard lk(w.mu);
  auto it = w.monitors.find(domid);
  if (it == w.monitors.end()) return 0;
  auto p = w.ports.find({domid, it->second.xen_port});
  return p == w.ports.end() ? 0 : p->second.kicks;
}

std::size_t monitor_unanswered_at_disable(domid_t domid) {
  auto& w = world();
  std::lock_guard lk(w.mu);
  auto it = w.unanswered_at_disable.find(domid);
  return it == w.unanswered_at_disable.end() ? 0 : it->second;
}

CtrlRegMonitor monitor_ctrlreg(domid_t domid, std::uint16_t index) {
  auto& w = world();
  std::lock_guard lk(w.mu);
  auto it = w.monitors.find(domid);
  if (it == w.monitors.end()) return {};
  auto c = it->second.ctrlregs.find(index);
  return c == it->second.ctrlregs.end() ? CtrlRegMonitor{} : c->second;
}

bool monitor_enabled(domid_t domid) {
  auto& w = world();
  std::lock_guard lk(w.mu);
  return w.monitors.count(domid) != 0;
}

}  // namespace gears::fake
