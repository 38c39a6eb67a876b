#include "dom0/backends/blk/sched.hpp"

#include <algorithm>
#include <charconv>
#include <stdexcept>

namespace gears::blk {
namespace {

std::uint64_t to_u64(std::string_view t, const char* what) {
  std::uint64_t v = 0;
  auto [end, ec] = std::from_chars(t.data(), t.data() + t.size(), v);
  if (t.empty() || ec != std::errc{} || end != t.data() + t.size())
    throw std::invalid_argument(std::string(what) + ": '" + std::string(t) + "' is not a number");
  return v;
}

std::vector<std::string_view> split(std::string_view s, char sep) {
  std::vector<std::string_view> out;
  while (!s.empty()) {
    const auto p = s.find(sep);
    out.push_back(s.substr(0, p));
    if (p == std::string_view::npos) break;
    s.remove_prefix(p + 1);
  }
  return out;
}

}  // namespace

std::uint8_t parse_class(const std::string& s) {
  if (s == "gold") return 0;
  if (s == "silver") return 1;
  if (s == "bronze") return 2;
  const bool number = !s.empty() && s.size() <= 3 && s.find_first_not_of("0123456789") == std::string::npos;
  if (!number || to_u64(s, "class") >= kClasses)
    throw std::invalid_argument("class '" + s + "': expected gold, silver, bronze or 0..7");
  const auto v = to_u64(s, "class");
  return static_cast<std::uint8_t>(v);
}

std::array<std::uint32_t, kClasses> parse_weights(const std::string& text, std::array<std::uint32_t, kClasses> w) {
  std::string s = text;
  std::replace(s.begin(), s.end(), ';', ',');  // ';' inside gears_disk items, where ',' separates keys
  for (auto item : split(s, ',')) {
    const auto c = item.find(':');
    if (c == std::string_view::npos) throw std::invalid_argument("weights: '" + std::string(item) + "' is not class:weight");
    const auto v = to_u64(item.substr(c + 1), "weight");
    if (v < 1 || v > 10000) throw std::invalid_argument("weights: weight must be 1..10000");
    w[parse_class(std::string(item.substr(0, c)))] = static_cast<std::uint32_t>(v);
  }
  return w;
}

std::vector<Extent> parse_regions(const std::string& s) {
  std::vector<Extent> out;
  for (auto item : split(s, ';')) {
    if (item.empty()) continue;
    const auto parts = split(item, ':');
    if (parts.size() < 2 || parts.size() > 3)
      throw std::invalid_argument("regions: '" + std::string(item) + "' is not first-last:class[:label]");
    const auto dash = parts[0].find('-');
    if (dash == std::string_view::npos) throw std::invalid_argument("regions: '" + std::string(parts[0]) + "' is not first-last");
    Extent e;
    e.first = to_u64(parts[0].substr(0, dash), "regions first sector");
    e.last = to_u64(parts[0].substr(dash + 1), "regions last sector");
    if (e.last < e.first) throw std::invalid_argument("regions: last sector before first");
    e.cls = parse_class(std::string(parts[1]));
    if (parts.size() == 3) e.label = std::string(parts[2]);
    if (out.size() >= 256) throw std::invalid_argument("regions: at most 256");
    out.push_back(std::move(e));
  }
  return out;
}

std::vector<ProcRule> parse_procs(const std::string& s) {
  std::vector<ProcRule> out;
  for (auto item : split(s, ';')) {
    if (item.empty()) continue;
    const auto c = item.rfind(':');
    if (c == std::string_view::npos) throw std::invalid_argument("procs: '" + std::string(item) + "' is not comm:class");
    ProcRule r;
    r.comm = std::string(item.substr(0, c));
    // Linux keeps TASK_COMM_LEN - 1 = 15 bytes of a name: a longer rule could never match.
    if (r.comm.empty() || r.comm.size() > 15)
      throw std::invalid_argument("procs: process name '" + r.comm + "' must be 1-15 bytes (Linux's comm)");
    for (const char ch : r.comm)
      if (ch < 0x21 || ch > 0x7e || ch == ':' || ch == ',')
        throw std::invalid_argument("procs: process name '" + r.comm + "': printable characters only, no ':' or ','");
    try {
      r.cls = parse_class(std::string(item.substr(c + 1)));
    } catch (const std::invalid_argument& e) {
      throw std::invalid_argument("procs: '" + std::string(item) + "': " + e.what());
    }
    for (const auto& o : out)
      if (o.comm == r.comm) throw std::invalid_argument("procs: '" + r.comm + "' given twice");
    if (out.size() >= 64) throw std::invalid_argument("procs: at most 64");
    out.push_back(std::move(r));
  }
  return out;
}

std::uint64_t parse_rate(const std::string& s) {
  if (s.empty()) return 0;
  std::uint64_t mul = 1;
  std::string_view t = s;
  switch (t.back()) {
    case 'K': case 'k': mul = 1000; break;
    case 'M': case 'm': mul = 1000 * 1000; break;
    case 'G': case 'g': mul = 1000 * 1000 * 1000; break;
    default: break;
  }
  if (mul != 1) t.remove_suffix(1);
  const auto v = to_u64(t, "rate");
  if (v > (UINT64_MAX / mul)) throw std::invalid_argument("rate: too large");
  return v * mul;
}

Scheduler::Scheduler(SchedConfig cfg) : cfg_(std::move(cfg)) {
  for (auto& w : cfg_.weights) w = std::max<std::uint32_t>(w, 1);
  cfg_.depth = std::max<std::uint32_t>(cfg_.depth, 1);
  if (cfg_.default_class >= kClasses) cfg_.default_class = 1;
}

Classified Scheduler::classify(std::uint64_t sector) const {
  for (std::size_t i = 0; i < cfg_.extents.size(); ++i) {
    const auto& e = cfg_.extents[i];
    if (sector >= e.first && sector <= e.last) return {e.cls, static_cast<std::int32_t>(i)};
  }
  return {cfg_.default_class, -1};
}

void Scheduler::enqueue(std::uint32_t slot, std::uint8_t cls, std::uint64_t bytes, std::uint64_t now) {
  Class& c = cls_.at(cls);
  if (c.q.empty() && c.inflight == 0) {
    c.vtime = std::max(c.vtime, vnow_);  // back from idle: no hoarded credit
    if (c.idle_since_ns != 0 && now >= c.idle_since_ns) {
      const double sample = static_cast<double>(now - c.idle_since_ns);
      c.think_ns = c.think_ns < 0 ? sample : 0.75 * c.think_ns + 0.25 * sample;
    }
  }
  c.idle_since_ns = 0;
  c.q.push_back({slot, bytes});
  ++queued_;
}

std::optional<std::uint32_t> Scheduler::next(std::uint64_t now, std::uint64_t* wake) {
  *wake = 0;
  if (queued_ == 0 || dispatched_ >= cfg_.depth) return std::nullopt;
  // Anticipation: hold the disk for the class that just went quiet.
  if (antic_cls_ >= 0) {
    const auto ac = static_cast<std::size_t>(antic_cls_);
    if (!cls_[ac].q.empty() || now >= antic_until_ns_) {
      ++(cls_[ac].q.empty() ? antic_misses_ : antic_hits_);
      antic_cls_ = -1;
    } else {
      *wake = antic_until_ns_;
      return std::nullopt;
    }
  }
  // Pick the backlogged class with the smallest virtual start time.
  std::size_t best = kClasses;
  for (std::size_t i = 0; i < kClasses; ++i)
    if (!cls_[i].q.empty() && (best == kClasses || cls_[i].vtime < cls_[best].vtime)) best = i;
  Class& c = cls_[best];
  const Item it = c.q.front();
  if (cfg_.rate_bps > 0 && it.bytes > 0) {
    const double rate = static_cast<double>(cfg_.rate_bps);
    const double burst = std::max(rate / 100.0, 1048576.0);  // 10 ms worth, at least 1 MiB
    if (last_refill_ns_ == 0) {
      last_refill_ns_ = now;
      tokens_ = burst;
    }
    tokens_ = std::min(burst, tokens_ + rate * static_cast<double>(now - last_refill_ns_) * 1e-9);
    last_refill_ns_ = now;
    if (tokens_ < 0) {
      *wake = now + static_cast<std::uint64_t>(-tokens_ / rate * 1e9) + 1;
      return std::nullopt;
    }
    tokens_ -= static_cast<double>(it.bytes);  // may go negative: the debt delays the next one
  }
  c.q.pop_front();
  --queued_;
  vnow_ = c.vtime;
  c.vtime += static_cast<double>(std::max<std::uint64_t>(it.bytes, 4096)) / cfg_.weights[best];
  ++c.inflight;
  ++dispatched_;
  return it.slot;
}

void Scheduler::complete(std::uint8_t cls, std::uint64_t now) {
  Class& c = cls_.at(cls);
  if (c.inflight > 0) --c.inflight;
  if (dispatched_ > 0) --dispatched_;
  if (c.inflight != 0 || !c.q.empty()) return;
  c.idle_since_ns = std::max<std::uint64_t>(now, 1);
  if (cfg_.anticipate_us == 0 || queued_ == 0 || antic_cls_ >= 0) return;
  // Only for a class that would win against what is queued (otherwise waiting helps nobody)...
  for (std::size_t i = 0; i < kClasses; ++i)
    if (!cls_[i].q.empty() && cfg_.weights[i] >= cfg_.weights[cls]) return;
  // ...and that comes back within the window (unknown think time: try once with the whole window).
  const double cap = static_cast<double>(cfg_.anticipate_us) * 1000.0;
  if (c.think_ns > cap) return;
  const double hold = c.think_ns < 0 ? cap : std::min(cap, 2.0 * c.think_ns + 100'000.0);
  antic_cls_ = cls;
  antic_until_ns_ = now + static_cast<std::uint64_t>(hold);
  ++anticipations_;
}

}  // namespace gears::blk
