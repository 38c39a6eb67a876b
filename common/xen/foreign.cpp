#include "common/xen/foreign.hpp"

#include <sys/mman.h>

#include <utility>
#include <vector>

namespace gears::xen {

ForeignMemory::ForeignMemory() : h_(xenforeignmemory_open(nullptr, 0)) {
  if (h_ == nullptr) throw XenError("xenforeignmemory_open");
}

ForeignMemory::~ForeignMemory() {
  if (h_ != nullptr) xenforeignmemory_close(h_);
}

ForeignMemory::ForeignMemory(ForeignMemory&& o) noexcept
    : NonCopyable(std::move(o)), h_(std::exchange(o.h_, nullptr)) {}

ForeignMemory& ForeignMemory::operator=(ForeignMemory&& o) noexcept {
  if (this != &o) {
    if (h_ != nullptr) xenforeignmemory_close(h_);
    h_ = std::exchange(o.h_, nullptr);
  }
  return *this;
}

Result<ForeignMapping> ForeignMemory::map(domid_t dom, std::span<const xen_pfn_t> gfns, bool writable) {
  if (gfns.empty()) return Error{EINVAL, "foreign map: no frames"};
  std::vector<int> errs(gfns.size(), 0);
  void* p = xenforeignmemory_map(h_, dom, writable ? PROT_READ | PROT_WRITE : PROT_READ, gfns.size(), gfns.data(),
                                 errs.data());
  if (p == nullptr) return errno_error("xenforeignmemory_map");
  ForeignMapping m(h_, p, gfns.size());
  for (int e : errs)
    if (e != 0) return Error{-e, "xenforeignmemory_map: frame not mappable"};  // m unmaps
  return m;
}

void unmap_foreign_pages(xenforeignmemory_handle* h, void* addr, std::size_t pages) {
  (void)xenforeignmemory_unmap(h, addr, pages);
}

}  // namespace gears::xen
