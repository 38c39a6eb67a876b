#include "services/proctrack/tracker.hpp"

#include "services/proctrack/cr3.hpp"

namespace gears::proctrack {

AddressSpaceTracker::AddressSpaceTracker(Options o) : o_(o), kpti_(o.kpti == KptiMode::on) {}

std::uint64_t AddressSpaceTracker::key(std::uint64_t cr3) const { return as_key(cr3, kpti_); }

std::uint64_t AddressSpaceTracker::current(std::uint32_t vcpu) const {
  auto it = on_vcpu_.find(vcpu);
  return it == on_vcpu_.end() ? 0 : it->second;
}

void AddressSpaceTracker::enable_kpti() {
  kpti_ = true;
  // Fold the user halves seen so far onto their kernel halves: they were one address space all along.
  for (auto it = live_.begin(); it != live_.end();) {
    if ((it->first & kPtiSwitchBit) == 0) {
      ++it;
      continue;
    }
    const std::uint64_t k = it->first & ~kPtiSwitchBit;
    if (live_.count(k) != 0) {
      if (c_.births != 0) --c_.births;  // it was never a separate birth
      it = live_.erase(it);
    } else {
      AsInfo moved = it->second;
      moved.key = k;
      it = live_.erase(it);
      live_.emplace(k, moved);
    }
  }
  for (auto& [vcpu, k] : on_vcpu_) k &= ~kPtiSwitchBit;
}

std::uint64_t AddressSpaceTracker::on_cr3(std::uint32_t vcpu, std::uint64_t old_cr3, std::uint64_t new_cr3,
                                          std::int64_t t_ns, std::vector<AsEvent>& out) {
  ++c_.writes;
  if (kpti_pair(old_cr3, new_cr3)) {
    ++c_.kpti_flips;
    if (!kpti_ && o_.kpti == KptiMode::automatic && ++flips_seen_ >= o_.kpti_evidence) enable_kpti();
  }
  const std::uint64_t k = key(new_cr3);
  auto [it, fresh] = live_.try_emplace(k);
  AsInfo& a = it->second;
  if (fresh) {
    a.key = k;
    a.born_ns = t_ns;
    a.generation = ++generations_[k];
    ++c_.births;
    out.push_back({AsEvent::Kind::birth, k, vcpu, t_ns});
  }
  a.last_ns = t_ns;
  std::uint64_t& cur = on_vcpu_[vcpu];
  if (cur != k) {
    ++a.loads;
    ++c_.switches;
    out.push_back({AsEvent::Kind::switch_in, k, vcpu, t_ns});
    cur = k;
  }
  return k;
}

void AddressSpaceTracker::retire(std::uint64_t k, std::int64_t t_ns, std::vector<AsEvent>& out) {
  auto it = live_.find(k);
  if (it == live_.end()) return;
  live_.erase(it);
  ++c_.deaths;
  out.push_back({AsEvent::Kind::death, k, 0, t_ns});
}

void AddressSpaceTracker::sweep(std::int64_t now_ns, std::vector<AsEvent>& out) {
  if (o_.idle_death_ns <= 0) return;
  for (auto it = live_.begin(); it != live_.end();) {
    bool loaded = false;
    for (const auto& [vcpu, k] : on_vcpu_) loaded = loaded || k == it->first;
    if (!loaded && now_ns - it->second.last_ns > o_.idle_death_ns) {
      ++c_.deaths;
      out.push_back({AsEvent::Kind::death, it->first, 0, now_ns});
      it = live_.erase(it);
    } else {
      ++it;
    }
  }
}

}  // namespace gears::proctrack
