// ProcessTable: the OS-aware process view, reconciled from successive task-list walks (linux.hpp).
//
// A process is (pid, start_time), so a recycled PID is a new process. Only user processes are tracked: a task
// is one once it has been seen with an mm (kernel threads never have one; a zombie keeps its identity).
//   - birth: a user task not in the table (the first walk only records a baseline: "preexisting", no event);
//   - exec:  a known process whose mm->pgd changed (execve builds a new address space);
//   - exit:  a known process absent from a *complete* walk (an incomplete walk never infers exits).
// The comm is refreshed on every walk, so an exit carries the name the process died with.
// Not thread-safe: owned by the proctrack device's worker.
#pragma once

#include <cstdint>
#include <map>
#include <optional>
#include <utility>
#include <vector>

#include "services/proctrack/directory.hpp"
#include "services/proctrack/linux.hpp"

namespace gears::proctrack {

class ProcessTable {
 public:
  struct Counters {
    std::uint64_t walks = 0, incomplete = 0, births = 0, exits = 0, execs = 0;
  };

  // Applies one walk taken at `t_ns`. Appends process events to `out`; `live_keys` receives the
  // address-space keys some task still uses (only filled for a complete walk; returns false otherwise).
  bool apply(const LinuxIntrospector::Walk& w, std::int64_t t_ns, bool kpti, std::vector<ProcEvent>& out,
             std::vector<std::uint64_t>& live_keys);
  // The process whose address space is `key`, if any (as of the last complete walk).
  [[nodiscard]] std::optional<Identity> owner(std::uint64_t key) const;
  [[nodiscard]] const ProcRow* owner_row(std::uint64_t key) const;
  // A re-read of one known task (LinuxIntrospector::probe): refreshes its comm if (pid, start_time) match.
  // Returns true if the task is still that process.
  bool refresh(const ProcRow& row, const TaskInfo& t);
  [[nodiscard]] std::vector<ProcRow> rows() const;
  [[nodiscard]] const Counters& counters() const { return c_; }
  [[nodiscard]] std::size_t size() const { return procs_.size(); }

 private:
  using Id = std::pair<std::int32_t, std::uint64_t>;  // (pid, start_time)
  std::map<Id, ProcRow> procs_;
  std::map<std::uint64_t, Id> by_key_;
  bool baseline_done_ = false;
  Counters c_;
};

}  // namespace gears::proctrack
