// CR3 values -> address-space keys. One process = one key, whatever PCID and KPTI do to CR3.
//
// A CR3 write carries, besides the top-level page table's frame (bits 12..51):
//   - bits 0..11: the PCID when CR4.PCIDE=1, else the PWT/PCD cache bits;
//   - bit 63: NOFLUSH (only in the value written, never read back);
//   - bits 52..62: reserved (or memory-encryption bits): never part of the frame.
// Under KPTI (Linux PTI), each mm has an 8 KiB-aligned pair of PGDs: the kernel one and, 4 KiB above it
// (PTI_PGTABLE_SWITCH_BIT, bit 12), the user one. Folding bit 12 pairs them, but is only correct when KPTI
// is on: without it, two processes' PGDs can be adjacent pages that differ in bit 12 alone.
#pragma once

#include <cstdint>

namespace gears::proctrack {

inline constexpr std::uint64_t kCr3FrameMask = 0x000f'ffff'ffff'f000ULL;  // bits 12..51
inline constexpr std::uint64_t kPtiSwitchBit = 1ULL << 12;

// The physical address of the top-level page table in `cr3` (PCID/flag bits, NOFLUSH and high bits dropped).
[[nodiscard]] constexpr std::uint64_t pgd_of(std::uint64_t cr3) { return cr3 & kCr3FrameMask; }

// The address-space key: the PGD, with KPTI's user/kernel pair folded onto the kernel PGD when `kpti`.
[[nodiscard]] constexpr std::uint64_t as_key(std::uint64_t cr3, bool kpti) {
  const std::uint64_t p = pgd_of(cr3);
  return kpti ? (p & ~kPtiSwitchBit) : p;
}

// True when two CR3 values name the two halves of one KPTI pair (an entry/exit switch, not a process switch).
[[nodiscard]] constexpr bool kpti_pair(std::uint64_t a, std::uint64_t b) { return (pgd_of(a) ^ pgd_of(b)) == kPtiSwitchBit; }

}  // namespace gears::proctrack
