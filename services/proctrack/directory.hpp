// Directory: what proctrack knows, for everyone else in gearsd. Thread-safe (one mutex; writers are the
// proctrack devices, readers are the control verbs and, later, backends such as semblk).
//
// Query API for I/O attribution (the contract semblk builds on):
//   auto who = gears::proctrack::Directory::global().who_ran(domid, vcpu, t_ns);
// `t_ns` is gears::proctrack::now_ns() (CLOCK_MONOTONIC in dom0) taken when the request was seen. The answer is
// the address space (and, with the OS-aware layer, the process) that the vCPU had loaded at that time, or
// nullopt if proctrack was not monitoring the domain then, or t is older than the kept history (kHistory
// switches per vCPU). Precision: a switch is stamped when dom0 handles its CR3 event (the vCPU is paused until
// then), so the stamp lags the guest's switch by the event latency, and an I/O issued by a process is
// attributed correctly as long as it is seen after that process was switched in.
#pragma once

#include <cstddef>
#include <cstdint>
#include <deque>
#include <map>
#include <mutex>
#include <optional>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

namespace gears::proctrack {

// dom0 CLOCK_MONOTONIC in ns: the time base of every proctrack stamp.
[[nodiscard]] std::int64_t now_ns();

struct Identity {
  std::uint64_t as = 0;   // address-space key (cr3.hpp)
  std::int32_t pid = -1;  // -1: unknown (no OS-aware layer, or no task owns the PGD)
  std::string comm;
  bool operator==(const Identity&) const = default;
};

struct ProcEvent {
  // "birth", "exit", "exec" (process, OS-aware); "as_birth", "as_death" (address space, OS-agnostic);
  // "start", "stop" (monitoring).
  std::string type;
  std::int64_t t_ns = 0;
  std::int32_t pid = -1;
  std::string comm;
  std::uint64_t as = 0;
  std::uint32_t vcpu = 0;
  std::uint64_t seq = 0;  // assigned by the Directory, per domain, from 1
};

struct ProcRow {
  std::int32_t pid = 0, tgid = 0;
  std::uint64_t start_time = 0;
  std::string comm;
  std::uint64_t as = 0;
  std::int64_t born_ns = 0;
  bool preexisting = false;  // already running when monitoring started
  std::uint64_t task = 0;    // guest-virtual task_struct address (OS-aware layer's own use)
};

class Directory {
 public:
  static constexpr std::size_t kHistory = 8192;   // switches kept per vCPU
  static constexpr std::size_t kEvents = 65536;   // events kept per domain

  // The instance gearsd's proctrack devices publish to.
  static Directory& global();

  // Writers (one proctrack device per domain).
  void start(std::uint32_t dom, std::int64_t t_ns);
  void stop(std::uint32_t dom, std::int64_t t_ns);  // vCPUs become "unknown" from t on
  void ran(std::uint32_t dom, std::uint32_t vcpu, std::int64_t t_ns, Identity who);
  void publish(std::uint32_t dom, std::vector<ProcEvent> events);
  void set_table(std::uint32_t dom, std::vector<ProcRow> rows, nlohmann::json counters);

  // Readers.
  [[nodiscard]] std::optional<Identity> who_ran(std::uint32_t dom, std::uint32_t vcpu, std::int64_t t_ns) const;
  [[nodiscard]] std::map<std::uint32_t, Identity> running(std::uint32_t dom) const;  // vcpu -> now
  [[nodiscard]] bool knows(std::uint32_t dom) const;
  // {"dom", "monitoring", "processes": [...], "vcpus": {...}, "counters": {...}}; null if unknown.
  [[nodiscard]] nlohmann::json ps(std::uint32_t dom) const;
  // Events with seq > since, at most `max`: {"dom", "events": [...], "next": <last seq>, "dropped": n}.
  [[nodiscard]] nlohmann::json events(std::uint32_t dom, std::uint64_t since, std::size_t max) const;
  void forget(std::uint32_t dom);

 private:
  struct Segment {
    std::int64_t t_ns;
    std::optional<Identity> who;  // nullopt: not monitored from t_ns on
  };
  struct Dom {
    bool monitoring = false;
    std::map<std::uint32_t, std::deque<Segment>> timeline;
    std::deque<ProcEvent> events;
    std::uint64_t next_seq = 1;
    std::vector<ProcRow> rows;
    nlohmann::json counters = nlohmann::json::object();
  };
  mutable std::mutex mu_;
  std::map<std::uint32_t, Dom> doms_;
};

[[nodiscard]] nlohmann::json to_json(const ProcEvent& e);
[[nodiscard]] std::string hex(std::uint64_t v);

}  // namespace gears::proctrack
