#include "services/proctrack/directory.hpp"

#include <algorithm>
#include <chrono>

#include <fmt/format.h>

namespace gears::proctrack {

std::int64_t now_ns() {
  return std::chrono::duration_cast<std::chrono::nanoseconds>(std::chrono::steady_clock::now().time_since_epoch()).count();
}

std::string hex(std::uint64_t v) { return fmt::format("{:#x}", v); }

nlohmann::json to_json(const ProcEvent& e) {
  nlohmann::json j = {{"seq", e.seq}, {"type", e.type}, {"t_ns", e.t_ns}, {"as", hex(e.as)}};
  if (e.pid >= 0) j["pid"] = e.pid;
  if (!e.comm.empty()) j["comm"] = e.comm;
  if (e.type == "as_birth" || e.type == "start" || e.type == "stop") j["vcpu"] = e.vcpu;
  return j;
}

Directory& Directory::global() {
  static Directory d;
  return d;
}

void Directory::start(std::uint32_t dom, std::int64_t t_ns) {
  std::lock_guard lk(mu_);
  Dom& d = doms_[dom];
  d.monitoring = true;
  ProcEvent e{"start", t_ns, -1, {}, 0, 0, d.next_seq++};
  d.events.push_back(std::move(e));
  if (d.events.size() > kEvents) d.events.pop_front();
}

void Directory::stop(std::uint32_t dom, std::int64_t t_ns) {
  std::lock_guard lk(mu_);
  auto it = doms_.find(dom);
  if (it == doms_.end()) return;
  Dom& d = it->second;
  d.monitoring = false;
  for (auto& [vcpu, segs] : d.timeline) segs.push_back({t_ns, std::nullopt});
  d.events.push_back(ProcEvent{"stop", t_ns, -1, {}, 0, 0, d.next_seq++});
  if (d.events.size() > kEvents) d.events.pop_front();
}

void Directory::ran(std::uint32_t dom, std::uint32_t vcpu, std::int64_t t_ns, Identity who) {
  std::lock_guard lk(mu_);
  auto& segs = doms_[dom].timeline[vcpu];
  if (!segs.empty() && segs.back().who && *segs.back().who == who) return;
  if (!segs.empty() && t_ns < segs.back().t_ns) t_ns = segs.back().t_ns;  // keep it sorted
  segs.push_back({t_ns, std::move(who)});
  if (segs.size() > kHistory) segs.pop_front();
}

void Directory::publish(std::uint32_t dom, std::vector<ProcEvent> events) {
  std::lock_guard lk(mu_);
  Dom& d = doms_[dom];
  for (auto& e : events) {
    e.seq = d.next_seq++;
    d.events.push_back(std::move(e));
  }
  while (d.events.size() > kEvents) d.events.pop_front();
}

void Directory::set_table(std::uint32_t dom, std::vector<ProcRow> rows, nlohmann::json counters) {
  std::lock_guard lk(mu_);
  Dom& d = doms_[dom];
  d.rows = std::move(rows);
  d.counters = std::move(counters);
}

std::optional<Identity> Directory::who_ran(std::uint32_t dom, std::uint32_t vcpu, std::int64_t t_ns) const {
  std::lock_guard lk(mu_);
  auto d = doms_.find(dom);
  if (d == doms_.end()) return std::nullopt;
  auto v = d->second.timeline.find(vcpu);
  if (v == d->second.timeline.end() || v->second.empty()) return std::nullopt;
  const auto& segs = v->second;
  // The last segment that began at or before t.
  auto it = std::upper_bound(segs.begin(), segs.end(), t_ns, [](std::int64_t t, const Segment& s) { return t < s.t_ns; });
  if (it == segs.begin()) return std::nullopt;  // before the kept history
  return std::prev(it)->who;
}

std::map<std::uint32_t, Identity> Directory::running(std::uint32_t dom) const {
  std::lock_guard lk(mu_);
  std::map<std::uint32_t, Identity> out;
  auto d = doms_.find(dom);
  if (d == doms_.end()) return out;
  for (const auto& [vcpu, segs] : d->second.timeline)
    if (!segs.empty() && segs.back().who) out[vcpu] = *segs.back().who;
  return out;
}

bool Directory::knows(std::uint32_t dom) const {
  std::lock_guard lk(mu_);
  return doms_.count(dom) != 0;
}

nlohmann::json Directory::ps(std::uint32_t dom) const {
  const auto run = running(dom);
  std::lock_guard lk(mu_);
  auto it = doms_.find(dom);
  if (it == doms_.end()) return nullptr;
  const Dom& d = it->second;
  nlohmann::json procs = nlohmann::json::array();
  for (const auto& r : d.rows) {
    nlohmann::json on = nlohmann::json::array();
    for (const auto& [vcpu, who] : run)
      if (who.pid == r.pid) on.push_back(vcpu);
    procs.push_back({{"pid", r.pid}, {"tgid", r.tgid}, {"comm", r.comm}, {"as", hex(r.as)}, {"born_ns", r.born_ns},
                     {"preexisting", r.preexisting}, {"on_vcpus", std::move(on)}});
  }
  nlohmann::json vcpus = nlohmann::json::object();
  for (const auto& [vcpu, who] : run) {
    nlohmann::json w = {{"as", hex(who.as)}};
    if (who.pid >= 0) w["pid"] = who.pid, w["comm"] = who.comm;
    vcpus[std::to_string(vcpu)] = std::move(w);
  }
  return {{"dom", dom}, {"monitoring", d.monitoring}, {"processes", std::move(procs)}, {"vcpus", std::move(vcpus)},
          {"counters", d.counters}};
}

nlohmann::json Directory::events(std::uint32_t dom, std::uint64_t since, std::size_t max) const {
  std::lock_guard lk(mu_);
  auto it = doms_.find(dom);
  if (it == doms_.end()) return nullptr;
  const Dom& d = it->second;
  nlohmann::json out = nlohmann::json::array();
  const std::uint64_t oldest = d.events.empty() ? d.next_seq : d.events.front().seq;
  std::uint64_t last = since;
  for (const auto& e : d.events) {
    if (e.seq <= since) continue;
    if (out.size() >= max) break;
    out.push_back(to_json(e));
    last = e.seq;
  }
  const std::uint64_t dropped = since + 1 < oldest ? oldest - since - 1 : 0;
  return {{"dom", dom}, {"events", std::move(out)}, {"next", last}, {"dropped", dropped}};
}

void Directory::forget(std::uint32_t dom) {
  std::lock_guard lk(mu_);
  doms_.erase(dom);
}

}  // namespace gears::proctrack
