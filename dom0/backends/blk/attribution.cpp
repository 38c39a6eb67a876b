#include "dom0/backends/blk/attribution.hpp"

#include <fmt/format.h>

#include <variant>

namespace gears::blk {

std::int32_t Attribution::look(std::uint32_t dom, std::uint32_t q, std::int64_t now_ns) {
  if (hints_ == nullptr) return -1;
  const auto oracle = hints_->process_oracle();
  if (!oracle) return -1;
  const auto who = oracle->submitter(dom, q, now_ns);
  return who ? index_of(*who) : -1;
}

std::int32_t Attribution::index_of(const daemon::GuestProcess& p) {
  const auto key = std::make_pair(p.pid, p.pid >= 0 ? 0 : p.as);  // a process may exec: pid is the identity
  if (auto it = by_key_.find(key); it != by_key_.end()) {
    procs_[static_cast<std::size_t>(it->second)].who.comm = p.comm;  // latest name (after exec)
    return it->second;
  }
  if (procs_.size() >= kMaxProcesses) {
    const auto other = std::make_pair(std::int32_t{-2}, std::uint64_t{0});
    if (auto it = by_key_.find(other); it != by_key_.end()) return it->second;
    procs_.push_back({daemon::GuestProcess{-2, "other", 0}});
    return by_key_[other] = static_cast<std::int32_t>(procs_.size() - 1);
  }
  procs_.push_back({p});
  return by_key_[key] = static_cast<std::int32_t>(procs_.size() - 1);
}

void Attribution::account(std::int32_t proc, bool write, std::uint64_t bytes) {
  if (proc < 0 || static_cast<std::size_t>(proc) >= procs_.size()) {
    ++unattributed_;
    return;
  }
  ++attributed_;
  Proc& p = procs_[static_cast<std::size_t>(proc)];
  ++p.reqs;
  (write ? p.bytes_written : p.bytes_read) += bytes;
}

nlohmann::json Attribution::to_json() const {
  nlohmann::json out = nlohmann::json::object();
  for (const auto& p : procs_) {
    const std::string name = p.who.pid >= 0 ? fmt::format("{} {}", p.who.pid, p.who.comm)
                             : p.who.pid == -2 ? std::string("other")
                                               : fmt::format("as:{:x}", p.who.as);
    out[name] = {{"pid", p.who.pid},
                 {"comm", p.who.comm},
                 {"reqs", p.reqs},
                 {"bytes", p.bytes_read + p.bytes_written},
                 {"bytes_read", p.bytes_read},
                 {"bytes_written", p.bytes_written}};
  }
  return out;
}

std::int32_t Attribution::key_index(const std::string& key, const char* source, std::uint8_t cls) {
  for (std::size_t i = 0; i < keys_.size(); ++i)
    if (keys_[i].key == key && keys_[i].source == source) {
      keys_[i].cls = cls;
      keys_[i].active = true;
      return static_cast<std::int32_t>(i);
    }
  if (keys_.size() >= kMaxRuleKeys) {
    for (std::size_t i = 0; i < keys_.size(); ++i)
      if (keys_[i].key == "other") return static_cast<std::int32_t>(i);
    keys_.push_back({"other", "other", cls, true});
  } else {
    keys_.push_back({key, source, cls, true});
  }
  return static_cast<std::int32_t>(keys_.size() - 1);
}

void Attribution::set_comm_rules(const std::vector<ProcRule>& rules) {
  comm_rules_.clear();
  for (const auto& r : rules) comm_rules_.push_back({-1, r.comm, r.cls, key_index("comm=" + r.comm, "procs", r.cls)});
}

bool Attribution::set_hint_rules(const std::vector<daemon::HintRecord>& recs) {
  std::vector<Rule> next;
  for (auto it = recs.rbegin(); it != recs.rend() && next.size() < kMaxHintRules; ++it) {  // newest first
    const auto& h = it->set;
    if (h.scope.kind != hints::ScopeKind::process || !h.qos || h.qos->cls >= kClasses) continue;
    const hints::PidComm* pk = h.process_key ? std::get_if<hints::PidComm>(&*h.process_key) : nullptr;
    if (!h.process && !pk) continue;  // an opaque process key names nobody proctrack can see
    const auto pid = static_cast<std::int32_t>(h.process ? h.process->pid : pk->pid);
    const std::string& comm = h.process ? h.process->comm : pk->comm;
    bool seen = false;
    for (const auto& r : next) seen = seen || r.pid == pid;
    if (!seen) next.push_back({pid, comm, h.qos->cls, -1});
  }
  bool same = next.size() == hint_rules_.size();
  for (std::size_t i = 0; same && i < next.size(); ++i)
    same = next[i].pid == hint_rules_[i].pid && next[i].comm == hint_rules_[i].comm && next[i].cls == hint_rules_[i].cls;
  if (same) return false;
  for (auto& k : keys_)
    if (k.source == "hints") k.active = false;
  for (auto& r : next) r.key = key_index(fmt::format("pid={}", r.pid), "hints", r.cls);
  hint_rules_ = std::move(next);
  return true;
}

std::optional<Attribution::ProcClass> Attribution::class_of(std::int32_t proc) const {
  if (proc < 0 || static_cast<std::size_t>(proc) >= procs_.size()) return std::nullopt;
  const auto& who = procs_[static_cast<std::size_t>(proc)].who;
  if (who.pid >= 0)
    for (const auto& r : hint_rules_)
      if (r.pid == who.pid && (r.comm.empty() || r.comm == who.comm)) return ProcClass{r.cls, r.key};
  for (const auto& r : comm_rules_)
    if (r.comm == who.comm) return ProcClass{r.cls, r.key};
  return std::nullopt;
}

void Attribution::account_rule(std::int32_t key, std::uint64_t bytes) {
  if (key < 0 || static_cast<std::size_t>(key) >= keys_.size()) return;
  auto& k = keys_[static_cast<std::size_t>(key)];
  ++k.reqs;
  k.bytes += bytes;
}

nlohmann::json Attribution::rules_json() const {
  nlohmann::json out = nlohmann::json::object();
  for (const auto& k : keys_)
    out[k.key] = {{"class", hints::qos_class_name(k.cls)}, {"source", k.source}, {"active", k.active},
                  {"reqs", k.reqs}, {"bytes", k.bytes}};
  return out;
}

}  // namespace gears::blk
