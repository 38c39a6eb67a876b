// Attribution of requests to guest processes without the guest's cooperation (issue 7, Antfarm's case study):
// when a queue's ring is read, the registry's ProcessOracle (proctrack) names the process that most likely
// published what is found: the vCPU's occupant at that moment. A frontend's notification wakes dom0 at once
// (the lab's single pCPU then runs dom0, not the guest), so the publisher is still the occupant. Measured
// against the alternative (the outgoing process of the last switch since the previous look), which credited
// a writer's bytes to the reader it alternated with: docs/PROCTRACK.md.
//
// vCPU of a queue: xen-blkfront maps its hardware queues to CPUs, queue i serving CPU i when there are as
// many queues as vCPUs; with one queue (the lab guests have one vCPU) every request is vCPU 0's. On a
// multi-vCPU guest with fewer queues than vCPUs this names vCPU `queue` and may be wrong.
//
// Per-process classes (Antfarm's disk scheduler that knows which guest process issued the I/O): class_of() gives
// the class of a looked-up process, first from a process-scoped hint set with a class for its pid and comm (`pid=N,
// comm=C,class=...` or `pkey=N/C,class=...`: a reused pid under another name does not inherit it), newest wins,
// published by gears-front in the guest or `gearsctl attach DOM --hints ...` and applied live (set_hint_rules);
// else from the disk's `procs=comm:class` rules. The device applies that class over extents and the disk's
// default. Statistics per rule key ("pid=N", "comm=C") are bounded to kMaxRuleKeys; later keys still classify,
// counted under "other".
//
// Owned by the device's worker thread; the oracle is queried once per ring read, not per request.
#pragma once

#include <cstdint>
#include <map>
#include <optional>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "dom0/backends/blk/sched.hpp"
#include "dom0/gearsd/hint_registry.hpp"

namespace gears::blk {

class Attribution {
 public:
  static constexpr std::size_t kMaxProcesses = 256;  // beyond: counted under "other"

  explicit Attribution(const daemon::HintRegistry* hints) : hints_(hints) {}

  // When reading queue q's ring at now_ns: the index of the process the requests found now belong to
  // (-1 = unknown: no proctrack for the domain, or nothing known at that time).
  [[nodiscard]] std::int32_t look(std::uint32_t dom, std::uint32_t q, std::int64_t now_ns);
  // A completed request of `proc` (from look()).
  void account(std::int32_t proc, bool write, std::uint64_t bytes);

  // {"<pid> <comm>": {"pid", "comm", "reqs", "bytes", "bytes_read", "bytes_written"}, ...}
  [[nodiscard]] nlohmann::json to_json() const;
  [[nodiscard]] std::uint64_t attributed() const { return attributed_; }
  [[nodiscard]] std::uint64_t unattributed() const { return unattributed_; }

  static constexpr std::size_t kMaxHintRules = 64;  // newest first; older process-scoped sets are not used
  static constexpr std::size_t kMaxRuleKeys = 256;
  struct ProcClass {
    std::uint8_t cls = 1;
    std::int32_t key = -1;  // statistics index (account_rule)
  };
  void set_comm_rules(const std::vector<ProcRule>& rules);
  // Replaces the hint rules by the process-scoped sets with a class among `recs` (a registry snapshot, oldest
  // first). Returns whether the rules changed.
  bool set_hint_rules(const std::vector<daemon::HintRecord>& recs);
  [[nodiscard]] bool has_rules() const { return !comm_rules_.empty() || !hint_rules_.empty(); }
  // The class of process `proc` (an index from look()), or nullopt: no rule for it, or proc < 0.
  [[nodiscard]] std::optional<ProcClass> class_of(std::int32_t proc) const;
  void account_rule(std::int32_t key, std::uint64_t bytes);
  // {"pid=42" | "comm=<name>": {"class", "source": "hints"|"procs", "active", "reqs", "bytes"}, ...}
  [[nodiscard]] nlohmann::json rules_json() const;

 private:
  struct Rule {
    std::int32_t pid = -1;  // hint rules: the pid; comm rules: -1
    std::string comm;       // comm rules: the name; hint rules: "" or the name the set gave
    std::uint8_t cls = 1;
    std::int32_t key = -1;
  };
  struct KeyStats {
    std::string key, source;
    std::uint8_t cls = 1;
    bool active = false;
    std::uint64_t reqs = 0, bytes = 0;
  };
  [[nodiscard]] std::int32_t key_index(const std::string& key, const char* source, std::uint8_t cls);

  struct Proc {
    daemon::GuestProcess who;
    std::uint64_t reqs = 0, bytes_read = 0, bytes_written = 0;
  };
  [[nodiscard]] std::int32_t index_of(const daemon::GuestProcess& p);

  const daemon::HintRegistry* hints_;
  std::vector<Proc> procs_;
  std::map<std::pair<std::int32_t, std::uint64_t>, std::int32_t> by_key_;  // (pid, as) -> index
  std::uint64_t attributed_ = 0, unattributed_ = 0;
  std::vector<Rule> comm_rules_, hint_rules_;
  std::vector<KeyStats> keys_;
};

}  // namespace gears::blk
