// Interim strict parser, until common/hints provides the shared vocabulary. Grammar:
//   hints := item (',' item)*      item := key '=' value      (no spaces, each key at most once)
//   class=gold|silver|bronze|best-effort   rate=<num>[K|M|G|T] (per second, SI)
//   latency=<num>(ns|us|ms|s)              role=<[a-z0-9-]+>   pattern=sequential|random|mixed
#include "dom0/gearsd/hint_text.hpp"

#include <fmt/format.h>

#include <array>
#include <cmath>
#include <optional>
#include <set>

namespace gears::daemon {

namespace {

// <digits>[.<digits>] followed by `rest`; returns the number and leaves the suffix in `rest`.
std::optional<double> leading_number(std::string_view s, std::string_view& rest) {
  std::size_t i = 0;
  double v = 0;
  bool digits = false;
  while (i < s.size() && s[i] >= '0' && s[i] <= '9') {
    v = v * 10 + (s[i++] - '0');
    digits = true;
  }
  if (i < s.size() && s[i] == '.') {
    ++i;
    double scale = 0.1;
    bool frac = false;
    while (i < s.size() && s[i] >= '0' && s[i] <= '9') {
      v += (s[i++] - '0') * scale;
      scale /= 10;
      frac = true;
    }
    if (!frac) return std::nullopt;
  }
  if (!digits || v > 1e18) return std::nullopt;
  rest = s.substr(i);
  return v;
}

bool is_word(std::string_view v) {
  if (v.empty() || v.size() > 32) return false;
  for (char c : v)
    if (!((c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '-')) return false;
  return true;
}

// Returns an error text, or nothing after storing the value in `out`.
std::optional<std::string> parse_item(std::string_view key, std::string_view val, nlohmann::json& out) {
  if (key == "class") {
    static constexpr std::array<std::string_view, 4> kClasses = {"gold", "silver", "bronze", "best-effort"};
    for (auto c : kClasses)
      if (c == val) {
        out["class"] = std::string(val);
        return std::nullopt;
      }
    return fmt::format("class '{}' is not one of gold, silver, bronze, best-effort", val);
  }
  if (key == "rate") {
    std::string_view suffix;
    auto n = leading_number(val, suffix);
    double mult = 0;
    if (suffix.empty()) mult = 1;
    else if (suffix == "K") mult = 1e3;
    else if (suffix == "M") mult = 1e6;
    else if (suffix == "G") mult = 1e9;
    else if (suffix == "T") mult = 1e12;
    if (!n || mult == 0 || *n <= 0) return fmt::format("rate '{}' is not <number>[K|M|G|T], e.g. rate=10M", val);
    out["rate"] = std::llround(*n * mult);
    return std::nullopt;
  }
  if (key == "latency") {
    std::string_view suffix;
    auto n = leading_number(val, suffix);
    double mult = 0;
    if (suffix == "ns") mult = 1;
    else if (suffix == "us") mult = 1e3;
    else if (suffix == "ms") mult = 1e6;
    else if (suffix == "s") mult = 1e9;
    if (!n || mult == 0 || *n <= 0)
      return fmt::format("latency '{}' is not <number>(ns|us|ms|s), e.g. latency=500us", val);
    out["latency_ns"] = std::llround(*n * mult);
    return std::nullopt;
  }
  if (key == "role") {
    if (!is_word(val)) return fmt::format("role '{}' must be 1-32 of [a-z0-9-]", val);
    out["role"] = std::string(val);
    return std::nullopt;
  }
  if (key == "pattern") {
    if (val != "sequential" && val != "random" && val != "mixed")
      return fmt::format("pattern '{}' is not one of sequential, random, mixed", val);
    out["pattern"] = std::string(val);
    return std::nullopt;
  }
  return fmt::format("unknown hint '{}' (known: class, rate, latency, role, pattern)", key);
}

}  // namespace

HintCheck check_hint_text(std::string_view text) {
  HintCheck r;
  if (text.empty()) {
    r.error = "empty hint text";
    return r;
  }
  if (text.size() > kMaxHintText) {
    r.error = fmt::format("hint text is {} bytes, limit {}", text.size(), kMaxHintText);
    return r;
  }
  nlohmann::json out = nlohmann::json::object();
  std::set<std::string_view> seen;
  std::size_t pos = 0;
  while (pos <= text.size()) {
    const std::size_t end = std::min(text.find(',', pos), text.size());
    const std::string_view item = text.substr(pos, end - pos);
    const std::size_t eq = item.find('=');
    if (item.empty() || eq == std::string_view::npos || eq == 0 || eq + 1 == item.size()) {
      r.error = fmt::format("item '{}' is not key=value", item);
      return r;
    }
    const std::string_view key = item.substr(0, eq);
    if (!seen.insert(key).second) {
      r.error = fmt::format("hint '{}' given twice", key);
      return r;
    }
    if (auto err = parse_item(key, item.substr(eq + 1), out)) {
      r.error = std::move(*err);
      return r;
    }
    pos = end + 1;
  }
  r.ok = true;
  r.parsed = std::move(out);
  return r;
}

}  // namespace gears::daemon
