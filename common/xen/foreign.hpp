// Foreign memory: map a guest's frames (gfns) into dom0 (privileged; for introspection services).
// ForeignMemory owns the handle; ForeignMapping keeps its raw pointer and must die before it.
#pragma once

#include "common/util/error.hpp"
#include "common/util/noncopyable.hpp"
#include "common/util/result.hpp"
#include "common/xen/libxen.hpp"

#include <cstddef>
#include <span>

namespace gears::xen {

class ForeignMapping;

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

class ForeignMapping : NonCopyable {
 public:
  ForeignMapping() = default;
  ~ForeignMapping();
  ForeignMapping(ForeignMapping&& o) noexcept;
  ForeignMapping& operator=(ForeignMapping&& o) noexcept;

  [[nodiscard]] std::span<std::byte> bytes() const { return {addr_, pages_ * 4096}; }
  [[nodiscard]] std::byte* data() const { return addr_; }
  [[nodiscard]] std::size_t pages() const { return pages_; }
  [[nodiscard]] bool valid() const { return addr_ != nullptr; }
  void reset();

 private:
  friend class ForeignMemory;
  ForeignMapping(xenforeignmemory_handle* h, void* addr, std::size_t pages)
      : h_(h), addr_(static_cast<std::byte*>(addr)), pages_(pages) {}
  xenforeignmemory_handle* h_ = nullptr;
  std::byte* addr_ = nullptr;
  std::size_t pages_ = 0;
};

}  // namespace gears::xen
