// Foreign memory: map a guest's frames (gfns) into dom0 (privileged; for introspection services).
// ForeignMemory owns the handle; ForeignMapping keeps its raw pointer and must die before it.
#pragma once

#include "common/util/error.hpp"
#include "common/util/noncopyable.hpp"
#include "common/util/result.hpp"
#include "common/xen/libxen.hpp"
#include "common/xen/mapping.hpp"

#include <cstddef>
#include <span>

namespace gears::xen {

class ForeignMemory;
void unmap_foreign_pages(xenforeignmemory_handle* h, void* addr, std::size_t pages);
using ForeignMapping = PageMapping<xenforeignmemory_handle, &unmap_foreign_pages, ForeignMemory>;

class ForeignMemory : NonCopyable {
 public:
  ForeignMemory();  // throws XenError
  ~ForeignMemory();
  ForeignMemory(ForeignMemory&& o) noexcept;
  ForeignMemory& operator=(ForeignMemory&& o) noexcept;

  // Maps `gfns` of `dom` contiguously (page i = gfns[i]). All or nothing: if any frame fails, the
  // error is that frame's (negated) per-page code.
  [[nodiscard]] Result<ForeignMapping> map(domid_t dom, std::span<const xen_pfn_t> gfns, bool writable);
  [[nodiscard]] xenforeignmemory_handle* native() const { return h_; }

 private:
  xenforeignmemory_handle* h_;
};


}  // namespace gears::xen
