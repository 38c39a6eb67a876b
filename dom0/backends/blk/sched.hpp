// The semantic disk scheduler: which validated request goes to the target next.
//
// Classification (classify()): a blkif request carries no process id, so attribution comes from hints:
//   0. the submitting guest process's class, when proctrack names the process (Attribution::class_of in
//      attribution.hpp: a process-scoped hint set for its pid, else a `procs=comm:class` rule); the device
//      applies it over what classify() returns
//   1. extents: sector ranges with a QoS class and a label (e.g. the extents of one process's files, as
//      `gears-front` resolves them with FIEMAP, or regions declared in the disk's config:
//      regions=0-1048575:gold:fast;1048576-2097151:bronze:slow)
//   2. the disk's own class (hints in gears_disk / attach --hints), else the domain's (gears_hints, resolved by the
//      device from gearsd's hint registry and set with set_default_class)
//   3. silver
// Scheduling: start-time fair queueing over bytes between classes with weights (default gold 4,
// silver 2, bronze 1, others 1; `weights=gold:4,bronze:1`); within a class, FIFO. A class that wakes
// up from idle starts at the current virtual time (no hoarded credit).
// Capacity model: optional token bucket (`rate=` bytes/s) and a dispatch depth: weights only matter
// when the disk, not the guest, is the bottleneck (as tapdisk's td-rated makes it).
// Anticipation (Antfarm's deceptive idleness): with `anticipate=<us>`, when the last request of a class
// completes and that class has nothing queued, lower-weight classes wait for its next request. The wait is
// adaptive: each class's think time (idle -> next request) is tracked as an EWMA; the hold lasts twice that
// (at most `anticipate`), and a class whose think time exceeds `anticipate` is not waited for. A synchronous
// reader on a slow guest (TCG) thinks for tens of ms; a finished one never comes back and stops being waited for.
// Pure and single-threaded: time is passed in; unit-tested without any I/O.
#pragma once

#include <array>
#include <cstdint>
#include <deque>
#include <optional>
#include <string>
#include <vector>

namespace gears::blk {

inline constexpr std::size_t kClasses = 8;  // hints::kMaxQosClass + 1

struct Extent {
  std::uint64_t first = 0, last = 0;  // 512-byte sectors, inclusive
  std::uint8_t cls = 1;
  std::string label;  // per-process statistics key ("" = the class name)
};

// A guest process's class by its name (Linux's comm: at most 15 bytes), from the disk's `procs=` key.
struct ProcRule {
  std::string comm;
  std::uint8_t cls = 1;
};

struct SchedConfig {
  std::array<std::uint32_t, kClasses> weights{4, 2, 1, 1, 1, 1, 1, 1};
  std::uint8_t default_class = 1;   // silver
  std::uint64_t rate_bps = 0;       // 0 = unlimited
  std::uint32_t depth = 64;         // dispatched and not completed, at most
  std::uint32_t anticipate_us = 0;  // 0 = off
  std::vector<Extent> extents;
  std::vector<ProcRule> procs;
};

// Parses the textual knobs (throws std::invalid_argument with a clear message).
//   weights   "gold:4,bronze:1" or "0:4;2:1" (";" where "," separates keys, as in gears_disk)
//   regions   "first-last:class[:label];..." sectors, class by name or number
//   procs     "comm:class;..." a guest process's name (1-15 printable bytes, no ':' ';' ','), class by name or
//             number; each name once, at most 64
//   rate      "50M" / "200K" / "1048576" bytes per second
[[nodiscard]] std::array<std::uint32_t, kClasses> parse_weights(const std::string& s,
                                                                std::array<std::uint32_t, kClasses> base);
[[nodiscard]] std::vector<Extent> parse_regions(const std::string& s);
[[nodiscard]] std::vector<ProcRule> parse_procs(const std::string& s);
[[nodiscard]] std::uint64_t parse_rate(const std::string& s);
[[nodiscard]] std::uint8_t parse_class(const std::string& s);

struct Classified {
  std::uint8_t cls = 1;
  std::int32_t label = -1;  // index into labels(), -1 = none
};

class Scheduler {
 public:
  explicit Scheduler(SchedConfig cfg);

  [[nodiscard]] Classified classify(std::uint64_t sector) const;
  void enqueue(std::uint32_t slot, std::uint8_t cls, std::uint64_t bytes, std::uint64_t now_ns);
  // The next slot to start now, or nullopt. When it returns nullopt with requests queued, *wake_ns is
  // the time to ask again (rate or anticipation), 0 if only a completion can unblock it.
  [[nodiscard]] std::optional<std::uint32_t> next(std::uint64_t now_ns, std::uint64_t* wake_ns);
  void complete(std::uint8_t cls, std::uint64_t now_ns);

  [[nodiscard]] std::size_t queued() const { return queued_; }
  [[nodiscard]] std::uint32_t dispatched() const { return dispatched_; }
  [[nodiscard]] const SchedConfig& config() const { return cfg_; }
  // The class of requests outside every extent, from now on (out of range: ignored).
  void set_default_class(std::uint8_t cls) {
    if (cls < kClasses) cfg_.default_class = cls;
  }
  [[nodiscard]] std::uint64_t anticipations() const { return anticipations_; }
  // Holds that ended with the class's request (hits) or by timeout (misses).
  [[nodiscard]] std::uint64_t anticipation_hits() const { return antic_hits_; }
  [[nodiscard]] std::uint64_t anticipation_misses() const { return antic_misses_; }
  // The class's think-time EWMA in ns; negative while unknown.
  [[nodiscard]] double think_ns(std::uint8_t cls) const { return cls_.at(cls).think_ns; }

 private:
  struct Item {
    std::uint32_t slot;
    std::uint64_t bytes;
  };
  struct Class {
    std::deque<Item> q;
    double vtime = 0;
    std::uint32_t inflight = 0;
    std::uint64_t idle_since_ns = 0;  // last completion that left it with nothing queued or in flight; 0 = busy
    double think_ns = -1;             // EWMA (1/4) of idle_since -> next enqueue
  };
  SchedConfig cfg_;
  std::array<Class, kClasses> cls_{};
  std::size_t queued_ = 0;
  std::uint32_t dispatched_ = 0;
  double vnow_ = 0;  // virtual time: the start tag of the last dispatched request
  // token bucket
  double tokens_ = 0;
  std::uint64_t last_refill_ns_ = 0;
  // anticipation
  int antic_cls_ = -1;
  std::uint64_t antic_until_ns_ = 0;
  std::uint64_t anticipations_ = 0, antic_hits_ = 0, antic_misses_ = 0;
};

}  // namespace gears::blk
