// PageMapping: pages another domain shares with us, mapped into this process through a libxen handle (gntdev
// grants, foreign frames), unmapped when the mapping dies. Only its Owner (the handle's RAII type) creates one.
// The mapping keeps the raw handle pointer: the handle must outlive it. Not thread-safe.
#pragma once

#include <cstddef>
#include <span>
#include <utility>

#include "common/util/noncopyable.hpp"

namespace gears::xen {

template <class Handle, void (*Unmap)(Handle*, void*, std::size_t), class Owner>
class PageMapping : NonCopyable {
 public:
  static constexpr std::size_t kPage = 4096;

  PageMapping() = default;
  ~PageMapping() { reset(); }
  PageMapping(PageMapping&& o) noexcept
      : NonCopyable(std::move(o)),
        h_(o.h_),
        addr_(std::exchange(o.addr_, nullptr)),
        pages_(std::exchange(o.pages_, 0)) {}
  PageMapping& operator=(PageMapping&& o) noexcept {
    if (this != &o) {
      reset();
      h_ = o.h_;
      addr_ = std::exchange(o.addr_, nullptr);
      pages_ = std::exchange(o.pages_, 0);
    }
    return *this;
  }

  [[nodiscard]] std::span<std::byte> bytes() const { return {addr_, pages_ * kPage}; }
  [[nodiscard]] std::byte* data() const { return addr_; }
  [[nodiscard]] std::size_t pages() const { return pages_; }
  [[nodiscard]] bool valid() const { return addr_ != nullptr; }
  void reset() {
    if (addr_ != nullptr) Unmap(h_, addr_, pages_);
    addr_ = nullptr;
    pages_ = 0;
  }

 private:
  friend Owner;
  PageMapping(Handle* h, void* addr, std::size_t pages) : h_(h), addr_(static_cast<std::byte*>(addr)), pages_(pages) {}

  Handle* h_ = nullptr;
  std::byte* addr_ = nullptr;
  std::size_t pages_ = 0;
};

}  // namespace gears::xen
