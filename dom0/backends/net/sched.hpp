// QoS for Gears vifs: what each domU asked for (class, rate, latency) and how the backend honours it when vifs
// compete.
//
// Design (no locks on the hot path). Every vif lives on one gearsd worker thread, and vifs of different domUs
// may sit on different workers. Scheduling across domUs is therefore done by per-vif token buckets, each owned
// by its vif's worker, whose rates are derived from a process-wide QosBoard of relaxed atomics:
//   * each connected vif holds one board slot: {class, weight, stated rate, last-active time};
//   * a vif of class c is "contended" while any vif of a better class (lower number) was active within
//     kActiveWindow; a contended vif is capped at  capacity * w(c) / (w(c) + sum of the active better classes'
//     weights)  (gold 8, silver 4, bronze 1 unless a weight hint says otherwise), and never above its own stated rate;
//   * an uncontended vif runs at its stated rate, or unlimited without one (work-conserving).
// A stated rate is both a cap and, through the contention rule, a share: gold at 10 MB/s with bronze flooding
// gets its 10 MB/s while bronze is squeezed to its weight share of what is left of the board capacity.
// The board capacity is a model, and the real bottleneck may be elsewhere (under TCG: the one CPU that the
// flooding guest, dom0 and gold share). So each vif with a stated rate also reports what it achieved, every
// policy tick: while it is sending (>= 5% of its rate) but gets < 90% of it, it lowers its `squeeze` (x0.7 per
// tick, down to 1%), otherwise raises it (+10% per tick). Worse classes get their share times the smallest
// squeeze among the active better vifs, never below 1% of the capacity: a feedback loop that finds how much a
// flood may have for gold's stated rate to hold, whatever the bottleneck.
// Each worker reads the board once per TX batch (a few hundred relaxed loads at most); writers are the vifs
// themselves (their own slot) and the control path (class changes, posted to the vif's worker).
//
// Per-flow classes within one vif (TX). The domain's flow-scoped hint sets (scope=flow, flow=<key>..., with a
// class, weight and/or rate; hints.hpp net_flow_key) give the frames that match them a class of their own. Each
// such class holds a board slot like a vif, so it competes with every vif and every other flow class by the same
// contention rule; the vif's other frames form its default class (the vif's own slot). With flow classes the ring
// is consumed without gating: every frame is classified after its copy, passes at once while its class has tokens
// and nothing queued, and otherwise waits in its class's backlog (private copies, bounded by kFlowBacklog*), from
// which a timer releases it as tokens come; a frame that finds the backlog full is dropped and counted, as a
// shaping qdisc would. Frames of one class keep their order, so no TCP flow is reordered; frames of different
// classes may overtake each other (that is the point: gold's ping does not wait behind bronze's bulk).
// RX (dom0 -> domU) with flow classes is prioritised, not shaped: the host side is read ahead of the guest's
// buffers into per-class FIFOs (kRxClassBacklog bytes each, dropped beyond) and the guest's buffers are filled
// best class first.
#pragma once

#include <array>
#include <atomic>
#include <chrono>
#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "dom0/backends/net/protocol.hpp"
#include "common/hints/hints.hpp"

namespace gears::net {

inline constexpr std::uint8_t kClassGold = 0, kClassSilver = 1, kClassBronze = 2;
inline constexpr std::int64_t kActiveWindowNs = 2'000'000'000;  // a ping per second keeps a class active

struct QosPolicy {
  std::uint8_t cls = kClassSilver;  // 0 (best) .. 7
  std::uint16_t weight = 0;         // 0 = the class default
  std::uint64_t rate = 0;           // stated rate, bytes/s; 0 = none
  std::uint32_t latency_us = 0;     // stated latency target; 0 = none

  [[nodiscard]] std::uint16_t effective_weight() const;
  [[nodiscard]] nlohmann::json to_json() const;
  bool operator==(const QosPolicy&) const = default;
};

// The policy in a parsed hint set (gearsd's check_hint_text() JSON: {"qos":{"class":"gold","weight":0},
// "rate_bps":..., "latency_us":...}); keys absent there keep the values of `base`.
[[nodiscard]] QosPolicy policy_from_hints(const nlohmann::json& parsed, QosPolicy base = {});

// A token bucket in bytes. Charging may go negative (a packet is never split); sending resumes at >= 0.
class TokenBucket {
 public:
  // rate 0 = unlimited.
  void set_rate(std::uint64_t bytes_per_s, std::int64_t now_ns);
  [[nodiscard]] std::uint64_t rate() const { return rate_; }
  [[nodiscard]] bool ready(std::int64_t now_ns);
  void charge(std::uint64_t bytes) {
    if (rate_ != 0) tokens_ -= static_cast<double>(bytes);
  }
  // Nanoseconds until ready() (0 if ready now).
  [[nodiscard]] std::int64_t wait_ns(std::int64_t now_ns);

 private:
  void refill(std::int64_t now_ns);
  std::uint64_t rate_ = 0;
  double tokens_ = 0;
  double burst_ = 0;
  std::int64_t last_ns_ = 0;
};

class QosBoard {
 public:
  static constexpr std::size_t kSlots = 256;
  static QosBoard& instance();

  // Board capacity in bytes/s: what the contention shares divide (gearsd-wide; default kDefaultCapacity).
  static constexpr std::uint64_t kDefaultCapacity = 4'000'000;
  void set_capacity(std::uint64_t bytes_per_s) { capacity_.store(bytes_per_s, std::memory_order_relaxed); }
  [[nodiscard]] std::uint64_t capacity() const { return capacity_.load(std::memory_order_relaxed); }

  // A slot for one connected vif; nullopt when all are taken (the vif then runs unscheduled, logged).
  [[nodiscard]] std::optional<std::size_t> claim(const QosPolicy& p);
  void release(std::size_t slot);
  void update(std::size_t slot, const QosPolicy& p);
  void mark_active(std::size_t slot, std::int64_t now_ns);
  // The vif's own TX rate over the last policy tick (bytes/s): adjusts the squeeze it puts on worse classes.
  void report(std::size_t slot, std::uint64_t achieved_bps);
  [[nodiscard]] std::uint32_t squeeze(std::size_t slot) const;  // per mille; 1000 = none

  // The rate the vif in `slot` may use now (0 = unlimited), and whether it is contended.
  struct Grant {
    std::uint64_t rate = 0;
    bool contended = false;
  };
  [[nodiscard]] Grant grant(std::size_t slot, std::int64_t now_ns) const;

 private:
  struct Slot {
    std::atomic<bool> used{false};
    std::atomic<std::uint8_t> cls{kClassSilver};
    std::atomic<std::uint16_t> weight{4};
    std::atomic<std::uint64_t> rate{0};
    std::atomic<std::int64_t> active_ns{INT64_MIN / 2};
    std::atomic<std::uint32_t> squeeze{1000};  // per mille of their share that worse classes may use
  };
  std::array<Slot, kSlots> slots_{};
  std::atomic<std::uint64_t> capacity_{kDefaultCapacity};
};

[[nodiscard]] std::int64_t mono_ns();

// ---- Per-flow classes --------------------------------------------------------------------------------------------
inline constexpr std::size_t kMaxFlowRules = 8;                   // per domain; further flow sets are ignored (logged)
inline constexpr std::size_t kFlowBacklogMin = 256 * 1024;       // bytes a throttled class may hold, at least
inline constexpr std::size_t kFlowBacklogMax = 4 * 1024 * 1024;  // and at most (else 100 ms of its rate)
inline constexpr std::size_t kRxClassBacklog = 1024 * 1024;     // RX bytes a class may hold ahead of the guest
[[nodiscard]] constexpr std::size_t flow_backlog_limit(std::uint64_t rate_Bps) {
  const std::uint64_t r = rate_Bps / 10;
  return r < kFlowBacklogMin ? kFlowBacklogMin : r > kFlowBacklogMax ? kFlowBacklogMax : static_cast<std::size_t>(r);
}

// Whether vif flow key `key` (hints::net_flow_key) covers a frame.
[[nodiscard]] bool flow_key_matches(std::uint64_t key, const FlowTuple& t);

// Keys as the text form names them (tcp:5201, udp, icmp, port:80; other keys in hex), comma-separated.
[[nodiscard]] std::string flow_key_names(const std::vector<std::uint64_t>& keys);

struct FlowRule {
  std::vector<std::uint64_t> keys;
  QosPolicy policy;
  std::string subject;  // "flow:" + flow_key_names(sorted keys): one rule per key set
  bool operator==(const FlowRule&) const = default;
};
// The flow rules in a domain's hint sets (oldest first, as HintRegistry::snapshot gives them): per key set the
// newest set's; the result newest first (a frame takes the first rule that matches), at most kMaxFlowRules. Sets
// without class, weight or rate state nothing to schedule and are skipped.
[[nodiscard]] std::vector<FlowRule> flow_rules(const std::vector<hints::HintSet>& sets);
// Index of the first rule covering the frame, or rules.size() (the vif's default class).
[[nodiscard]] std::size_t classify(const std::vector<FlowRule>& rules, const FlowTuple& t);

}  // namespace gears::net
