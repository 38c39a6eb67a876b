// AddressSpaceTracker: Antfarm's OS-agnostic inference of address-space birth, switch and death from CR3 writes.
//
// Input: one CR3 write per call (vCPU, old value, new value, dom0 time). Output: events.
//   - birth:  the first sighting of a key (see cr3.hpp), or its first sighting after it was declared dead;
//   - switch: a vCPU moves from one key to another (KPTI user<->kernel flips of one key are not switches);
//   - death:  declared by an oracle through retire() (the OS-aware layer, which knows when no task uses the
//             PGD any more), or, OS-agnostically, by sweep() when a key has not been loaded for `idle_death_ns`.
// Linux reuses a freed PGD page at once, so first sightings alone undercount processes badly (the lab saw 4-5
// distinct CR3 values for ~280 processes): without an oracle, births/deaths count PGD lifetimes, not processes.
// KPTI: `kpti` on/off, or auto: switched on after `kpti_evidence` flips between the two halves of a pair on
// one vCPU (every syscall does two under KPTI); then keys with bit 12 set fold onto their kernel half.
// Not thread-safe: owned by one thread (the proctrack device's worker).
#pragma once

#include <cstddef>
#include <cstdint>
#include <map>
#include <vector>

namespace gears::proctrack {

enum class KptiMode { automatic, on, off };

struct AsEvent {
  enum class Kind { birth, switch_in, death };
  Kind kind = Kind::birth;
  std::uint64_t key = 0;
  std::uint32_t vcpu = 0;
  std::int64_t t_ns = 0;
};

struct AsInfo {
  std::uint64_t key = 0;
  std::int64_t born_ns = 0;
  std::int64_t last_ns = 0;     // last time a vCPU loaded it
  std::uint64_t loads = 0;      // switches onto it
  std::uint32_t generation = 0; // how many lives this PGD had since tracking began (reuse after a death)
};

class AddressSpaceTracker {
 public:
  struct Options {
    KptiMode kpti = KptiMode::automatic;
    std::int64_t idle_death_ns = 0;  // 0: no idle deaths (an oracle retires keys)
    unsigned kpti_evidence = 16;
  };
  struct Counters {
    std::uint64_t writes = 0, births = 0, deaths = 0, switches = 0, kpti_flips = 0;
  };

  AddressSpaceTracker() : AddressSpaceTracker(Options{}) {}
  explicit AddressSpaceTracker(Options o);

  // One CR3 write. Appends what it inferred to `out`; returns the key now loaded on `vcpu`.
  std::uint64_t on_cr3(std::uint32_t vcpu, std::uint64_t old_cr3, std::uint64_t new_cr3, std::int64_t t_ns,
                       std::vector<AsEvent>& out);
  // The oracle says `key` is no longer any task's address space. No-op for unknown keys.
  void retire(std::uint64_t key, std::int64_t t_ns, std::vector<AsEvent>& out);
  // Idle deaths (only if idle_death_ns > 0); keys loaded on some vCPU right now never die here.
  void sweep(std::int64_t now_ns, std::vector<AsEvent>& out);

  [[nodiscard]] bool kpti() const { return kpti_; }
  [[nodiscard]] std::uint64_t key(std::uint64_t cr3) const;
  [[nodiscard]] const std::map<std::uint64_t, AsInfo>& live() const { return live_; }
  [[nodiscard]] const Counters& counters() const { return c_; }
  // Key loaded on `vcpu` (0 if none seen).
  [[nodiscard]] std::uint64_t current(std::uint32_t vcpu) const;

 private:
  void enable_kpti();

  Options o_;
  bool kpti_ = false;
  unsigned flips_seen_ = 0;
  std::map<std::uint64_t, AsInfo> live_;
  std::map<std::uint64_t, std::uint32_t> generations_;  // key -> lives so far (bounded by distinct PGDs)
  std::map<std::uint32_t, std::uint64_t> on_vcpu_;
  Counters c_;
};

}  // namespace gears::proctrack
