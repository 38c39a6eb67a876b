#include "services/proctrack/process_table.hpp"

#include <set>

#include "services/proctrack/cr3.hpp"

namespace gears::proctrack {

bool ProcessTable::apply(const LinuxIntrospector::Walk& w, std::int64_t t_ns, bool kpti, std::vector<ProcEvent>& out,
                         std::vector<std::uint64_t>& live_keys) {
  ++c_.walks;
  if (!w.complete) ++c_.incomplete;
  const bool baseline = !baseline_done_;
  std::set<Id> present;
  for (const TaskInfo& t : w.tasks) {
    const Id id{t.pid, t.start_time};
    const std::uint64_t key = t.pgd != 0 ? as_key(t.pgd, kpti) : 0;
    auto it = procs_.find(id);
    if (it == procs_.end()) {
      if (key == 0) continue;  // a kernel thread (or a zombie we never saw alive)
      ProcRow r{t.pid, t.tgid, t.start_time, t.comm, key, t_ns, baseline, t.task};
      procs_.emplace(id, r);
      present.insert(id);
      if (!baseline) {
        ++c_.births;
        out.push_back(ProcEvent{"birth", t_ns, t.pid, t.comm, key, 0, 0});
      }
      continue;
    }
    present.insert(id);
    ProcRow& r = it->second;
    r.comm = t.comm;
    r.task = t.task;
    if (key != 0 && key != r.as) {
      r.as = key;
      ++c_.execs;
      out.push_back(ProcEvent{"exec", t_ns, t.pid, t.comm, key, 0, 0});
    }
  }
  if (!w.complete) {
    // Keep what we learnt about present tasks, infer nothing about absent ones.
    if (baseline) baseline_done_ = true;
    return false;
  }
  baseline_done_ = true;
  for (auto it = procs_.begin(); it != procs_.end();) {
    if (present.count(it->first) != 0) {
      ++it;
      continue;
    }
    ++c_.exits;
    out.push_back(ProcEvent{"exit", t_ns, it->second.pid, it->second.comm, it->second.as, 0, 0});
    it = procs_.erase(it);
  }
  // Address spaces still in use: every live task's (user tasks only; zombies have none).
  by_key_.clear();
  for (const TaskInfo& t : w.tasks) {
    if (t.pgd == 0) continue;
    const std::uint64_t key = as_key(t.pgd, kpti);
    live_keys.push_back(key);
    by_key_.try_emplace(key, Id{t.pid, t.start_time});
  }
  return true;
}

std::optional<Identity> ProcessTable::owner(std::uint64_t key) const {
  auto k = by_key_.find(key);
  if (k == by_key_.end()) return std::nullopt;
  auto p = procs_.find(k->second);
  if (p == procs_.end()) return std::nullopt;
  return Identity{key, p->second.pid, p->second.comm};
}

const ProcRow* ProcessTable::owner_row(std::uint64_t key) const {
  auto k = by_key_.find(key);
  if (k == by_key_.end()) return nullptr;
  auto p = procs_.find(k->second);
  return p == procs_.end() ? nullptr : &p->second;
}

bool ProcessTable::refresh(const ProcRow& row, const TaskInfo& t) {
  if (t.pid != row.pid || t.start_time != row.start_time) return false;
  auto p = procs_.find(Id{row.pid, row.start_time});
  if (p == procs_.end()) return false;
  p->second.comm = t.comm;
  return true;
}

std::vector<ProcRow> ProcessTable::rows() const {
  std::vector<ProcRow> v;
  v.reserve(procs_.size());
  for (const auto& [id, r] : procs_) v.push_back(r);
  return v;
}

}  // namespace gears::proctrack
