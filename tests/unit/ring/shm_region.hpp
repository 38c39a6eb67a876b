// Test helper: one memfd mapped twice at different addresses, so each ring end sees the shared
// pages through its own mapping (as two domains would) and nothing pointer-shaped can leak across.
#pragma once

#include <sys/mman.h>
#include <unistd.h>

#include <cstddef>
#include <span>
#include <stdexcept>
#include <utility>

#include "common/util/noncopyable.hpp"

namespace gears::test {

class DualMapping : NonCopyable {
 public:
  explicit DualMapping(std::size_t bytes) : bytes_(bytes) {
    fd_ = ::memfd_create("gears-ring-test", MFD_CLOEXEC);
    if (fd_ < 0 || ::ftruncate(fd_, static_cast<off_t>(bytes)) != 0)
      throw std::runtime_error("memfd");
    a_ = map();
    b_ = map();
  }
  ~DualMapping() {
    if (a_ != nullptr) ::munmap(a_, bytes_);
    if (b_ != nullptr) ::munmap(b_, bytes_);
    if (fd_ >= 0) ::close(fd_);
  }
  DualMapping(DualMapping&& o) noexcept
      : bytes_(o.bytes_), fd_(std::exchange(o.fd_, -1)), a_(std::exchange(o.a_, nullptr)),
        b_(std::exchange(o.b_, nullptr)) {}
  DualMapping& operator=(DualMapping&&) = delete;

  [[nodiscard]] std::span<std::byte> a() const { return {static_cast<std::byte*>(a_), bytes_}; }
  [[nodiscard]] std::span<std::byte> b() const { return {static_cast<std::byte*>(b_), bytes_}; }

 private:
  void* map() const {
    void* p = ::mmap(nullptr, bytes_, PROT_READ | PROT_WRITE, MAP_SHARED, fd_, 0);
    if (p == MAP_FAILED) throw std::runtime_error("mmap");
    return p;
  }
  std::size_t bytes_;
  int fd_ = -1;
  void* a_ = nullptr;
  void* b_ = nullptr;
};

}  // namespace gears::test
