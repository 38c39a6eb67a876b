// HintRegistry: gearsd's per-domain table of what it has been told about each domU, from every source:
// static hints (xl config `gears_hints`, `gearsctl attach --hints`), the semantic channel (gears-front), and
// GEARS services (e.g. proctrack). Backends read it to classify and schedule.
//
// Threading: every method is thread-safe. Publishers run on the main thread (static hints) or on workers
// (channel devices, services). Consumers poll version() cheaply on their own thread and take a snapshot
// when it moved, or subscribe(): a listener runs on the PUBLISHER's thread, so it must only post work to
// its own Reactor (and must not call subscribe/unsubscribe). Not on any data path: one mutex is fine.
//
// Identity: a set's subject is its scope plus the keys that scope needs (device type/id, process key or
// pid, flow keys, stream key). Publishing a set replaces the previous set with the same subject from the
// same origin; sets from different origins coexist, and resolution is "newest wins" (see effective()).
#pragma once

#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include <nlohmann/json.hpp>

#include "common/hints/hints.hpp"

namespace gears::daemon {

enum class HintSource : std::uint8_t { config, channel, service };
[[nodiscard]] std::string_view to_string(HintSource s);

struct HintRecord {
  HintSource source = HintSource::config;
  std::string origin;        // "config", "channel/0", "proctrack", ...
  hints::HintSet set;
  std::uint64_t seq = 0;     // registry-wide arrival order; higher = newer
  std::int64_t updated_ns = 0;  // CLOCK_REALTIME
};

// The subject of a set (what it applies to), as a stable string, e.g. "domain", "device:vbd/51712",
// "process:pid=42", "flow:1,2", "stream:7".
[[nodiscard]] std::string hint_subject(const hints::HintSet& h);

// A guest process as a guest-context service (proctrack) knows it: pid -1 when only the address space is known.
struct GuestProcess {
  std::int32_t pid = -1;
  std::string comm;
  std::uint64_t as = 0;  // address-space key
};

// Who runs in a guest, for attributing I/O without the guest's cooperation. Published into the registry by
// proctrack (docs/PROCTRACK.md); backends query it once per batch of requests. Thread-safe.
class ProcessOracle {
 public:
  virtual ~ProcessOracle() = default;
  // The process that most likely published what a backend finds on `vcpu`'s ring at t_ns (CLOCK_MONOTONIC,
  // taken when it looks): the vCPU's occupant then. nullopt when the domain was not monitored at t_ns.
  [[nodiscard]] virtual std::optional<GuestProcess> submitter(std::uint32_t dom, std::uint32_t vcpu,
                                                              std::int64_t t_ns) const = 0;
};

class HintRegistry {
 public:
  HintRegistry() = default;
  HintRegistry(const HintRegistry&) = delete;
  HintRegistry& operator=(const HintRegistry&) = delete;

  // Upserts by (origin, subject). The set must be valid (hints::validate); invalid sets are rejected (false).
  bool publish(std::uint32_t domid, HintSource src, const std::string& origin, const hints::HintSet& set);
  // Replaces everything `origin` said about `domid` by `sets` (empty = withdraw).
  void replace(std::uint32_t domid, HintSource src, const std::string& origin, const std::vector<hints::HintSet>& sets);
  void clear(std::uint32_t domid, const std::string& origin);
  void forget_domain(std::uint32_t domid);

  [[nodiscard]] std::vector<HintRecord> snapshot(std::uint32_t domid) const;  // oldest first
  // Bumps on every change of the domain's records; 0 = never had any. Cheap (one lock, no copies).
  [[nodiscard]] std::uint64_t version(std::uint32_t domid) const;
  [[nodiscard]] std::vector<std::uint32_t> domains() const;

  // What applies to a whole device of `domid`: domain-scope sets, then sets scoped to (devtype, devid),
  // each applied oldest to newest, field by field (a later set overrides only the fields it has). Scope of
  // the result: device when devtype != none, else domain. Process/flow/stream-scoped sets are not merged:
  // read them from snapshot().
  [[nodiscard]] hints::HintSet effective(std::uint32_t domid, hints::DevType devtype, std::uint32_t devid) const;

  // JSON for `gearsctl hints`: {"records":[{source, origin, subject, seq, updated_ns, text, hints}...]}.
  [[nodiscard]] nlohmann::json to_json(std::uint32_t domid) const;

  // Process identity source (one per gearsd; nullptr = none). Backends hold the returned pointer only for
  // the batch at hand.
  void set_process_oracle(std::shared_ptr<const ProcessOracle> o);
  [[nodiscard]] std::shared_ptr<const ProcessOracle> process_oracle() const;

  using Listener = std::function<void(std::uint32_t domid)>;
  [[nodiscard]] std::uint64_t subscribe(Listener fn);
  // After it returns, the listener is not running and will not be called again.
  void unsubscribe(std::uint64_t id);

 private:
  struct Domain {
    std::vector<HintRecord> records;  // oldest first (by seq)
    std::uint64_t version = 0;
  };
  void notify(std::uint32_t domid);

  mutable std::mutex mu_;
  std::map<std::uint32_t, Domain> doms_;
  std::uint64_t next_seq_ = 1;
  std::uint64_t next_version_ = 1;  // versions are registry-wide unique, so a forgotten domain never repeats one

  std::shared_ptr<const ProcessOracle> oracle_;  // under mu_

  std::mutex listeners_mu_;  // held while listeners run
  std::map<std::uint64_t, Listener> listeners_;
  std::uint64_t next_listener_ = 1;
};

}  // namespace gears::daemon
