#include "dom0/gearsd/hint_registry.hpp"

#include <algorithm>
#include <chrono>

#include <fmt/format.h>

namespace gears::daemon {
namespace {

std::int64_t now_ns() {
  return std::chrono::duration_cast<std::chrono::nanoseconds>(std::chrono::system_clock::now().time_since_epoch())
      .count();
}

// Field-by-field override: every field `h` has replaces the one in `into`.
void overlay(hints::HintSet& into, const hints::HintSet& h) {
  if (h.qos) into.qos = h.qos;
  if (h.rate_bps) into.rate_bps = h.rate_bps;
  if (h.latency_us) into.latency_us = h.latency_us;
  if (h.role) into.role = h.role;
  if (h.access) into.access = h.access;
  if (h.process) into.process = h.process;
}

}  // namespace

std::string_view to_string(HintSource s) {
  switch (s) {
    case HintSource::config: return "config";
    case HintSource::channel: return "channel";
    case HintSource::service: return "service";
  }
  return "?";
}

std::string hint_subject(const hints::HintSet& h) {
  switch (h.scope.kind) {
    case hints::ScopeKind::domain: return "domain";
    case hints::ScopeKind::device:
      return fmt::format("device:{}/{}", hints::name(h.scope.devtype), h.scope.devid);
    case hints::ScopeKind::process: {
      if (h.process_key) {
        if (const auto* pc = std::get_if<hints::PidComm>(&*h.process_key))
          return fmt::format("process:pid={}", pc->pid);
        return fmt::format("process:key={}", std::get<std::uint64_t>(*h.process_key));
      }
      return fmt::format("process:pid={}", h.process ? h.process->pid : 0);
    }
    case hints::ScopeKind::flow: {
      auto keys = h.flow_keys;
      std::sort(keys.begin(), keys.end());
      return fmt::format("flow:{}", fmt::join(keys, ","));
    }
    case hints::ScopeKind::stream: return fmt::format("stream:{}", h.stream_key.value_or(0));
  }
  return "?";
}

bool HintRegistry::publish(std::uint32_t domid, HintSource src, const std::string& origin, const hints::HintSet& set) {
  if (!hints::validate(set)) return false;
  {
    std::lock_guard lk(mu_);
    auto& d = doms_[domid];
    const std::string subject = hint_subject(set);
    std::erase_if(d.records, [&](const HintRecord& r) { return r.origin == origin && hint_subject(r.set) == subject; });
    d.records.push_back(HintRecord{src, origin, set, next_seq_++, now_ns()});
    d.version = next_version_++;
  }
  notify(domid);
  return true;
}

void HintRegistry::replace(std::uint32_t domid, HintSource src, const std::string& origin,
                           const std::vector<hints::HintSet>& sets) {
  {
    std::lock_guard lk(mu_);
    auto& d = doms_[domid];
    std::erase_if(d.records, [&](const HintRecord& r) { return r.origin == origin; });
    for (const auto& s : sets) {
      if (!hints::validate(s)) continue;
      const std::string subject = hint_subject(s);
      std::erase_if(d.records,
                    [&](const HintRecord& r) { return r.origin == origin && hint_subject(r.set) == subject; });
      d.records.push_back(HintRecord{src, origin, s, next_seq_++, now_ns()});
    }
    d.version = next_version_++;
  }
  notify(domid);
}

void HintRegistry::clear(std::uint32_t domid, const std::string& origin) {
  {
    std::lock_guard lk(mu_);
    auto it = doms_.find(domid);
    if (it == doms_.end()) return;
    const auto n = std::erase_if(it->second.records, [&](const HintRecord& r) { return r.origin == origin; });
    if (n == 0) return;
    it->second.version = next_version_++;
  }
  notify(domid);
}

void HintRegistry::forget_domain(std::uint32_t domid) {
  {
    std::lock_guard lk(mu_);
    if (doms_.erase(domid) == 0) return;
  }
  notify(domid);
}

std::vector<HintRecord> HintRegistry::snapshot(std::uint32_t domid) const {
  std::lock_guard lk(mu_);
  auto it = doms_.find(domid);
  return it == doms_.end() ? std::vector<HintRecord>{} : it->second.records;
}

std::uint64_t HintRegistry::version(std::uint32_t domid) const {
  std::lock_guard lk(mu_);
  auto it = doms_.find(domid);
  return it == doms_.end() ? 0 : it->second.version;
}

std::vector<std::uint32_t> HintRegistry::domains() const {
  std::lock_guard lk(mu_);
  std::vector<std::uint32_t> out;
  for (const auto& [dom, d] : doms_) out.push_back(dom);
  return out;
}

hints::HintSet HintRegistry::effective(std::uint32_t domid, hints::DevType devtype, std::uint32_t devid) const {
  hints::HintSet out;
  if (devtype != hints::DevType::none) out.scope = {hints::ScopeKind::device, devtype, devid};
  const auto recs = snapshot(domid);  // already in seq order
  for (const auto& r : recs)
    if (r.set.scope.kind == hints::ScopeKind::domain) overlay(out, r.set);
  if (devtype == hints::DevType::none) return out;
  for (const auto& r : recs)
    if (r.set.scope.kind == hints::ScopeKind::device && r.set.scope.devtype == devtype && r.set.scope.devid == devid)
      overlay(out, r.set);
  return out;
}

nlohmann::json HintRegistry::to_json(std::uint32_t domid) const {
  nlohmann::json recs = nlohmann::json::array();
  for (const auto& r : snapshot(domid)) {
    auto h = nlohmann::json::parse(hints::to_json(r.set), nullptr, false);
    recs.push_back({{"source", to_string(r.source)},
                    {"origin", r.origin},
                    {"subject", hint_subject(r.set)},
                    {"seq", r.seq},
                    {"updated_ns", r.updated_ns},
                    {"text", hints::to_string(r.set)},
                    {"hints", h.is_discarded() ? nlohmann::json() : h}});
  }
  return {{"records", std::move(recs)}, {"version", version(domid)}};
}

std::uint64_t HintRegistry::subscribe(Listener fn) {
  std::lock_guard lk(listeners_mu_);
  const auto id = next_listener_++;
  listeners_.emplace(id, std::move(fn));
  return id;
}

void HintRegistry::unsubscribe(std::uint64_t id) {
  std::lock_guard lk(listeners_mu_);
  listeners_.erase(id);
}

void HintRegistry::notify(std::uint32_t domid) {
  std::lock_guard lk(listeners_mu_);
  for (auto& [id, fn] : listeners_) fn(domid);
}

void HintRegistry::set_process_oracle(std::shared_ptr<const ProcessOracle> o) {
  std::lock_guard lk(mu_);
  oracle_ = std::move(o);
}

std::shared_ptr<const ProcessOracle> HintRegistry::process_oracle() const {
  std::lock_guard lk(mu_);
  return oracle_;
}

}  // namespace gears::daemon
