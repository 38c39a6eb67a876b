#include "dom0/backends/net/sched.hpp"

#include <algorithm>
#include <cstdio>
#include <ctime>

#include "common/hints/hints.hpp"

namespace gears::net {

std::int64_t mono_ns() {
  timespec ts{};
  ::clock_gettime(CLOCK_MONOTONIC, &ts);
  return ts.tv_sec * 1'000'000'000 + ts.tv_nsec;
}

std::uint16_t QosPolicy::effective_weight() const {
  if (weight != 0) return weight;
  switch (cls) {
    case kClassGold: return 8;
    case kClassSilver: return 4;
    default: return 1;
  }
}

nlohmann::json QosPolicy::to_json() const {
  static const char* names[] = {"gold", "silver", "bronze"};
  return {{"class", cls < 3 ? std::string(names[cls]) : std::to_string(cls)},
          {"weight", effective_weight()},
          {"rate_Bps", rate},
          {"latency_us", latency_us}};
}

QosPolicy policy_from_hints(const nlohmann::json& parsed, QosPolicy p) {
  if (!parsed.is_object()) return p;
  if (auto q = parsed.find("qos"); q != parsed.end() && q->is_object()) {
    if (auto c = q->find("class"); c != q->end()) {
      if (c->is_string()) {
        const auto& s = c->get_ref<const std::string&>();
        if (s == "gold") p.cls = kClassGold;
        else if (s == "silver") p.cls = kClassSilver;
        else if (s == "bronze") p.cls = kClassBronze;
        else if (s.size() == 1 && s[0] >= '0' && s[0] <= '7') p.cls = static_cast<std::uint8_t>(s[0] - '0');
      } else if (c->is_number_unsigned() && c->get<unsigned>() <= 7) {
        p.cls = static_cast<std::uint8_t>(c->get<unsigned>());
      }
    }
    if (auto w = q->find("weight"); w != q->end() && w->is_number_unsigned() && w->get<unsigned>() <= 10000)
      p.weight = static_cast<std::uint16_t>(w->get<unsigned>());
  }
  if (auto r = parsed.find("rate_bps"); r != parsed.end() && r->is_number_unsigned()) p.rate = r->get<std::uint64_t>();
  if (auto l = parsed.find("latency_us"); l != parsed.end() && l->is_number_unsigned())
    p.latency_us = l->get<std::uint32_t>();
  return p;
}

void TokenBucket::set_rate(std::uint64_t r, std::int64_t now_ns) {
  if (r == rate_) return;
  refill(now_ns);
  rate_ = r;
  // 20 ms of credit, at least one maximal packet: bursts stay short, so a better class waits little.
  burst_ = std::max(65536.0, static_cast<double>(r) * 0.02);
  tokens_ = std::min(tokens_, burst_);
  last_ns_ = now_ns;
}

void TokenBucket::refill(std::int64_t now_ns) {
  if (rate_ == 0) return;
  if (now_ns > last_ns_) {
    tokens_ = std::min(burst_, tokens_ + static_cast<double>(rate_) * static_cast<double>(now_ns - last_ns_) * 1e-9);
  }
  last_ns_ = now_ns;
}

bool TokenBucket::ready(std::int64_t now_ns) {
  refill(now_ns);
  return rate_ == 0 || tokens_ >= 0;
}

std::int64_t TokenBucket::wait_ns(std::int64_t now_ns) {
  if (ready(now_ns)) return 0;
  return static_cast<std::int64_t>(-tokens_ / static_cast<double>(rate_) * 1e9) + 1;
}

QosBoard& QosBoard::instance() {
  static QosBoard b;
  return b;
}

std::optional<std::size_t> QosBoard::claim(const QosPolicy& p) {
  for (std::size_t i = 0; i < kSlots; ++i) {
    bool expect = false;
    if (slots_[i].used.compare_exchange_strong(expect, true, std::memory_order_acq_rel)) {
      update(i, p);
      slots_[i].active_ns.store(INT64_MIN / 2, std::memory_order_relaxed);
      slots_[i].squeeze.store(1000, std::memory_order_relaxed);
      return i;
    }
  }
  return std::nullopt;
}

void QosBoard::release(std::size_t slot) { slots_[slot].used.store(false, std::memory_order_release); }

void QosBoard::update(std::size_t slot, const QosPolicy& p) {
  auto& s = slots_[slot];
  s.cls.store(p.cls, std::memory_order_relaxed);
  s.weight.store(p.effective_weight(), std::memory_order_relaxed);
  s.rate.store(p.rate, std::memory_order_relaxed);
}

void QosBoard::mark_active(std::size_t slot, std::int64_t now_ns) {
  slots_[slot].active_ns.store(now_ns, std::memory_order_relaxed);
}

void QosBoard::report(std::size_t slot, std::uint64_t achieved) {
  auto& s = slots_[slot];
  const std::uint64_t want = s.rate.load(std::memory_order_relaxed);
  std::uint32_t q = s.squeeze.load(std::memory_order_relaxed);
  const bool starving = want != 0 && achieved >= want / 20 && achieved < want / 10 * 9;
  q = starving ? std::max<std::uint32_t>(10, q * 7 / 10) : std::min<std::uint32_t>(1000, q + 100);
  s.squeeze.store(q, std::memory_order_relaxed);
}

std::uint32_t QosBoard::squeeze(std::size_t slot) const { return slots_[slot].squeeze.load(std::memory_order_relaxed); }

QosBoard::Grant QosBoard::grant(std::size_t slot, std::int64_t now_ns) const {
  const auto& me = slots_[slot];
  const std::uint8_t cls = me.cls.load(std::memory_order_relaxed);
  const std::uint64_t own = me.rate.load(std::memory_order_relaxed);
  const std::uint64_t w = me.weight.load(std::memory_order_relaxed);
  std::uint64_t better_w = 0, better_rate = 0;
  std::uint32_t squeeze = 1000;
  for (std::size_t i = 0; i < kSlots; ++i) {
    if (i == slot) continue;
    const auto& s = slots_[i];
    if (!s.used.load(std::memory_order_relaxed)) continue;
    if (s.cls.load(std::memory_order_relaxed) >= cls) continue;
    if (now_ns - s.active_ns.load(std::memory_order_relaxed) > kActiveWindowNs) continue;
    better_w += s.weight.load(std::memory_order_relaxed);
    better_rate += s.rate.load(std::memory_order_relaxed);
    squeeze = std::min(squeeze, s.squeeze.load(std::memory_order_relaxed));
  }
  if (better_w == 0) return {own, false};
  const std::uint64_t cap = capacity();
  // What the better classes stated is theirs; this vif shares the rest by weight, times their squeeze (at least
  // 1% of the capacity).
  const std::uint64_t left = cap > better_rate ? cap - better_rate : 0;
  std::uint64_t share = std::max<std::uint64_t>(left * w / (w + better_w) * squeeze / 1000, cap / 100);
  if (own != 0) share = std::min(share, own);
  return {std::max<std::uint64_t>(share, 1), true};
}

bool flow_key_matches(std::uint64_t key, const FlowTuple& t) {
  if ((key >> 24U) != 0) return false;
  const auto proto = static_cast<std::uint8_t>(key >> 16U);
  const auto port = static_cast<std::uint16_t>(key);
  if (proto == hints::kFlowAnyL4) return port != 0 && (t.proto == 6 || t.proto == 17) && (t.sport == port || t.dport == port);
  if (proto != t.proto) return false;
  return port == 0 || t.sport == port || t.dport == port;
}

std::string flow_key_names(const std::vector<std::uint64_t>& keys) {
  std::string out;
  for (const auto k : keys) {
    if (!out.empty()) out += ',';
    const auto proto = static_cast<unsigned>((k >> 16U) & 0xFFU);
    const auto port = static_cast<unsigned>(k & 0xFFFFU);
    const char* name = (k >> 24U) != 0 ? nullptr
                       : proto == 6    ? "tcp"
                       : proto == 17   ? "udp"
                       : proto == 1    ? "icmp"
                       : proto == 58   ? "icmp6"
                       : proto == 0    ? "port"
                                       : nullptr;
    char b[32];
    if (name == nullptr) std::snprintf(b, sizeof b, "0x%llx", static_cast<unsigned long long>(k));
    else if (port == 0) std::snprintf(b, sizeof b, "%s", name);
    else std::snprintf(b, sizeof b, "%s:%u", name, port);
    out += b;
  }
  return out;
}

std::vector<FlowRule> flow_rules(const std::vector<hints::HintSet>& sets) {
  std::vector<FlowRule> rules;  // oldest first while collecting
  for (const auto& h : sets) {
    if (h.scope.kind != hints::ScopeKind::flow) continue;
    auto keys = h.flow_keys;
    std::sort(keys.begin(), keys.end());
    keys.erase(std::unique(keys.begin(), keys.end()), keys.end());
    const std::string subject = "flow:" + flow_key_names(keys);
    std::erase_if(rules, [&](const FlowRule& f) { return f.subject == subject; });
    if (!h.qos && !h.rate_bps) continue;
    rules.push_back({h.flow_keys, policy_from_hints(nlohmann::json::parse(hints::to_json(h))), subject});
  }
  std::reverse(rules.begin(), rules.end());
  if (rules.size() > kMaxFlowRules) rules.resize(kMaxFlowRules);
  return rules;
}

std::size_t classify(const std::vector<FlowRule>& rules, const FlowTuple& t) {
  for (std::size_t i = 0; i < rules.size(); ++i)
    for (const auto k : rules[i].keys)
      if (flow_key_matches(k, t)) return i;
  return rules.size();
}

}  // namespace gears::net
