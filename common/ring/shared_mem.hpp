// Access primitives for memory shared with another (possibly hostile) domain.
#pragma once

#include <atomic>
#include <cstddef>
#include <cstdint>
#include <cstring>

namespace gears::ring::shm {

// Compiler-only barrier: after it the compiler may not assume shared memory still holds what it
// read before, so a value copied out is never silently re-fetched from the shared page (the
// XSA-155 double-fetch class). Emits no instruction.
inline void compiler_barrier() { asm volatile("" ::: "memory"); }

// Copy n bytes out of shared memory into private memory. The result is a snapshot: every later
// check and use must look at dst, never at src again.
inline void copy_out(void* dst, const void* src, std::size_t n) {
  std::memcpy(dst, src, n);
  compiler_barrier();
}

// Shared 32-bit index/flag words. The peer may run in another address space, so only lock-free
// atomics on plain memory are used (atomic_ref over the mapped word, never std::atomic objects).
static_assert(std::atomic_ref<std::uint32_t>::is_always_lock_free);

[[nodiscard]] inline std::uint32_t load_acquire(std::uint32_t& w) {
  return std::atomic_ref<std::uint32_t>(w).load(std::memory_order_acquire);
}
[[nodiscard]] inline std::uint32_t load_relaxed(std::uint32_t& w) {
  return std::atomic_ref<std::uint32_t>(w).load(std::memory_order_relaxed);
}
inline void store_release(std::uint32_t& w, std::uint32_t v) {
  std::atomic_ref<std::uint32_t>(w).store(v, std::memory_order_release);
}
inline void store_relaxed(std::uint32_t& w, std::uint32_t v) {
  std::atomic_ref<std::uint32_t>(w).store(v, std::memory_order_relaxed);
}
// Full barrier (orders an earlier store before a later load: the one reordering x86 allows). Used
// between "publish index / set waiting flag" and "read the peer's flag / index".
inline void full_fence() { std::atomic_thread_fence(std::memory_order_seq_cst); }

}  // namespace gears::ring::shm
