#include "dom0/gearsctl/xlcfg.hpp"

// libxlutil.h has no extern "C" guard of its own.
extern "C" {
#include <libxlutil.h>
}

#include <algorithm>
#include <cerrno>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <map>
#include <memory>
#include <new>
#include <sstream>
#include <utility>

#include <fmt/format.h>

#include "dom0/gearsd/hint_text.hpp"

namespace gears::ctl {

using nlohmann::json;

namespace {

// RAII over one XLU_Config and the memory stream libxlutil reports into.
class XluConfig {
 public:
  explicit XluConfig(const std::string& report_name) : s_(std::make_unique<State>()) {
    s_->report = ::open_memstream(&s_->buf, &s_->len);
    if (!s_->report) throw std::bad_alloc();
    s_->cfg = ::xlu_cfg_init(s_->report, report_name.c_str());
    if (!s_->cfg) throw std::bad_alloc();
  }
  XluConfig(XluConfig&&) noexcept = default;
  XluConfig& operator=(XluConfig&&) noexcept = default;
  XluConfig(const XluConfig&) = delete;
  XluConfig& operator=(const XluConfig&) = delete;
  ~XluConfig() = default;

  [[nodiscard]] XLU_Config* get() const { return s_->cfg; }
  [[nodiscard]] std::string report() const {
    std::fflush(s_->report);
    return s_->buf ? std::string(s_->buf, s_->len) : std::string();
  }

 private:
  // Heap-pinned: open_memstream keeps the addresses of buf and len.
  struct State {
    char* buf = nullptr;
    std::size_t len = 0;
    FILE* report = nullptr;
    XLU_Config* cfg = nullptr;
    State() = default;
    State(const State&) = delete;
    State& operator=(const State&) = delete;
    ~State() {
      if (cfg) ::xlu_cfg_destroy(cfg);  // before the stream it reports to
      if (report) std::fclose(report);
      std::free(buf);
    }
  };
  std::unique_ptr<State> s_;
};

constexpr std::string_view kGearsPrefix = "gears_";

std::size_t edit_distance(std::string_view a, std::string_view b) {
  std::vector<std::size_t> row(b.size() + 1);
  for (std::size_t j = 0; j <= b.size(); ++j) row[j] = j;
  for (std::size_t i = 1; i <= a.size(); ++i) {
    std::size_t diag = row[0];
    row[0] = i;
    for (std::size_t j = 1; j <= b.size(); ++j) {
      const std::size_t up = row[j];
      row[j] = std::min({row[j] + 1, row[j - 1] + 1, diag + (a[i - 1] == b[j - 1] ? 0U : 1U)});
      diag = up;
    }
  }
  return row[b.size()];
}

// Splits "k=v,k=v" into pairs; returns an error text for an item that is not k=v.
std::variant<std::vector<std::pair<std::string, std::string>>, std::string> split_spec(std::string_view spec) {
  std::vector<std::pair<std::string, std::string>> out;
  std::size_t pos = 0;
  while (pos <= spec.size()) {
    const std::size_t end = std::min(spec.find(',', pos), spec.size());
    const std::string_view item = spec.substr(pos, end - pos);
    const std::size_t eq = item.find('=');
    if (eq == std::string_view::npos || eq == 0 || eq + 1 == item.size())
      return fmt::format("item '{}' is not key=value", item);
    out.emplace_back(std::string(item.substr(0, eq)), std::string(item.substr(eq + 1)));
    pos = end + 1;
  }
  return out;
}

struct Checker {
  const std::string& file;
  XLU_Config* cfg;
  std::map<std::string, int> lines;  // key -> line of its (single) assignment

  [[nodiscard]] ConfigError error(const std::string& key, std::string msg) const {
    auto it = lines.find(key);
    return ConfigError{file, it == lines.end() ? 0 : it->second, key, std::move(msg)};
  }
  [[nodiscard]] int line(const std::string& key) const {
    auto it = lines.find(key);
    return it == lines.end() ? 0 : it->second;
  }

  // A device list (gears_disk / gears_vif): each item "k=v,...". `own` are the device's keys, `required` a
  // subset; every other key must be a hint, checked through check_hint_text().
  std::optional<ConfigError> device_list(const std::string& key, const std::string& kind,
                                         const std::vector<std::string_view>& own,
                                         const std::vector<std::string_view>& required, GearsPlan& plan) const {
    XLU_ConfigList* list = nullptr;
    int n = 0;
    const int rc = ::xlu_cfg_get_list(cfg, key.c_str(), &list, &n, 1);
    if (rc == ESRCH) return std::nullopt;
    if (rc != 0) return error(key, "must be a list of strings, e.g. [ \"...\" ]");
    for (int i = 0; i < n; ++i) {
      const char* item = ::xlu_cfg_get_listitem(list, i);
      if (!item) return error(key, fmt::format("item {} is not a string", i));
      auto split = split_spec(item);
      if (auto* e = std::get_if<std::string>(&split)) return error(key, fmt::format("item {}: {}", i, *e));
      PlannedDevice d{kind, static_cast<std::uint32_t>(i), json::object(), key, line(key)};
      std::string hint_text;
      for (const auto& [k, v] : std::get<0>(split)) {
        if (std::find(own.begin(), own.end(), k) != own.end()) {
          if (d.params.contains(k)) return error(key, fmt::format("item {}: '{}' given twice", i, k));
          d.params[k] = v;
        } else {
          hint_text += (hint_text.empty() ? "" : ",") + k + "=" + v;
        }
      }
      for (auto r : required)
        if (!d.params.contains(std::string(r))) return error(key, fmt::format("item {}: missing '{}='", i, r));
      if (!hint_text.empty()) {
        const auto hc = daemon::check_hint_text(hint_text);
        if (!hc.ok) return error(key, fmt::format("item {}: {}", i, hc.error));
        d.params["hints"] = hint_text;
      }
      plan.devices.push_back(std::move(d));
    }
    return std::nullopt;
  }
};

}  // namespace

std::string ConfigError::format() const {
  std::string out = file;
  if (line > 0) out += fmt::format(":{}", line);
  if (!key.empty()) out += ": " + key;
  return out + ": " + message;
}

const std::vector<std::string_view>& known_gears_keys() {
  static const std::vector<std::string_view> keys = {"gears_channel", "gears_hints", "gears_proctrack", "gears_disk",
                                                      "gears_vif"};
  return keys;
}

std::vector<KeyLine> scan_config_keys(std::string_view t) {
  std::vector<KeyLine> out;
  int line = 1;
  int depth = 0;
  bool at_start = true;  // at the start of a statement (only blanks since)
  auto ident_start = [](char c) { return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || c == '_'; };
  auto ident_char = [&](char c) { return ident_start(c) || (c >= '0' && c <= '9') || c == '.'; };
  std::size_t i = 0;
  while (i < t.size()) {
    const char c = t[i];
    if (c == '\n') {
      ++line;
      if (depth == 0) at_start = true;
      ++i;
    } else if (c == ' ' || c == '\t' || c == '\r') {
      ++i;
    } else if (c == '#') {
      while (i < t.size() && t[i] != '\n') ++i;
    } else if (c == '"' || c == '\'') {
      at_start = false;
      ++i;
      while (i < t.size() && t[i] != c && t[i] != '\n') i += (c == '"' && t[i] == '\\' && i + 1 < t.size()) ? 2U : 1U;
      if (i < t.size() && t[i] == c) ++i;
    } else if (c == '[') {
      ++depth, ++i, at_start = false;
    } else if (c == ']') {
      depth = depth > 0 ? depth - 1 : 0;
      ++i;
    } else if (c == ';' && depth == 0) {
      at_start = true;
      ++i;
    } else if (at_start && ident_start(c)) {
      const std::size_t b = i;
      while (i < t.size() && ident_char(t[i])) ++i;
      std::size_t j = i;
      while (j < t.size() && (t[j] == ' ' || t[j] == '\t')) ++j;
      if (j < t.size() && (t[j] == '=' || (t[j] == '+' && j + 1 < t.size() && t[j + 1] == '=')))
        out.push_back(KeyLine{std::string(t.substr(b, i - b)), line});
      at_start = false;
    } else {
      at_start = false;
      ++i;
    }
  }
  return out;
}

ConfigResult load_gears_config(const std::string& path) {
  std::string text;
  {
    std::ifstream in(path, std::ios::binary);
    if (!in) return ConfigError{path, 0, "", fmt::format("cannot read: {}", std::strerror(errno))};
    std::ostringstream ss;
    ss << in.rdbuf();
    text = ss.str();
  }

  XluConfig cfg(path);
  if (::xlu_cfg_readdata(cfg.get(), text.data(), static_cast<int>(text.size())) != 0) {
    // libxlutil reports "FILE:LINE: config parsing error near `x': syntax error, ..."
    std::string report = cfg.report();
    while (!report.empty() && report.back() == '\n') report.pop_back();
    if (const auto nl = report.find('\n'); nl != std::string::npos) report.resize(nl);
    int line = 0;
    std::string msg = report.empty() ? "syntax error" : report;
    const std::string prefix = path + ":";
    if (report.rfind(prefix, 0) == 0) {
      std::size_t p = prefix.size();
      while (p < report.size() && report[p] >= '0' && report[p] <= '9') line = line * 10 + (report[p++] - '0');
      if (p < report.size() && report[p] == ':') msg = report.substr(std::min(p + 2, report.size()));
    }
    // Name the statement the error is in: the last key that starts at or before that line.
    std::string key;
    for (const auto& kl : scan_config_keys(text))
      if (line > 0 && kl.line <= line) key = kl.key;
    return ConfigError{path, line, key, msg};
  }

  Checker ck{path, cfg.get(), {}};
  for (const auto& kl : scan_config_keys(text)) {
    if (kl.key.rfind(kGearsPrefix, 0) != 0) {
      ck.lines.emplace(kl.key, kl.line);
      continue;
    }
    const auto& known = known_gears_keys();
    if (std::find(known.begin(), known.end(), kl.key) == known.end()) {
      std::string_view best;
      std::size_t best_d = 4;  // suggest only close matches
      for (auto k : known)
        if (const auto d = edit_distance(kl.key, k); d < best_d) best = k, best_d = d;
      std::string msg = "unknown Gears key";
      if (!best.empty()) msg += fmt::format(" (did you mean '{}'?)", best);
      msg += fmt::format("; known: {}", fmt::join(known, ", "));
      return ConfigError{path, kl.line, kl.key, msg};
    }
    if (auto [it, fresh] = ck.lines.emplace(kl.key, kl.line); !fresh)
      return ConfigError{path, kl.line, kl.key, fmt::format("set twice (first on line {})", it->second)};
  }

  GearsPlan plan;
  plan.file = path;
  const char* s = nullptr;
  if (::xlu_cfg_get_string(cfg.get(), "name", &s, 1) != 0 || !s || !*s)
    return ck.error("name", "the domain needs a string `name`");
  plan.name = s;
  if (::xlu_cfg_get_string(cfg.get(), "type", &s, 1) == 0 && s) plan.type = s;

  long channel = 0;
  switch (::xlu_cfg_get_long(cfg.get(), "gears_channel", &channel, 1)) {
    case 0:
      if (channel != 0 && channel != 1) return ck.error("gears_channel", "must be 0 or 1");
      if (channel == 1) plan.devices.push_back(PlannedDevice{"channel", 0, json::object(), "gears_channel", ck.line("gears_channel")});
      break;
    case ESRCH: break;
    default: return ck.error("gears_channel", "must be 0 or 1");
  }

  switch (::xlu_cfg_get_string(cfg.get(), "gears_hints", &s, 1)) {
    case 0: {
      const auto hc = daemon::check_hint_text(s ? s : "");
      if (!hc.ok) return ck.error("gears_hints", hc.error);
      plan.hints = s;
      plan.hints_parsed = hc.parsed;
      break;
    }
    case ESRCH: break;
    default: {  // a list: one hint set per item
      XLU_ConfigList* list = nullptr;
      int n = 0;
      if (::xlu_cfg_get_list(cfg.get(), "gears_hints", &list, &n, 1) != 0)
        return ck.error("gears_hints", "must be a string, e.g. \"class=gold,rate=10M,latency=500us\", or a list of them");
      if (n == 0) return ck.error("gears_hints", "the list is empty");
      if (static_cast<std::size_t>(n) > daemon::kMaxHintSets)
        return ck.error("gears_hints", fmt::format("at most {} hint sets", daemon::kMaxHintSets));
      for (int i = 0; i < n; ++i) {
        const char* item = ::xlu_cfg_get_listitem(list, i);
        if (!item) return ck.error("gears_hints", fmt::format("item {} is not a string", i));
        const auto hc = daemon::check_hint_text(item);
        if (!hc.ok) return ck.error("gears_hints", fmt::format("item {}: {}", i, hc.error));
        plan.hint_sets.emplace_back(item);
        plan.hint_sets_parsed.push_back(hc.parsed);
      }
    }
  }

  // gears_proctrack: proctrack (docs/PROCTRACK.md) on the domain from its first instruction, planned before the
  // devices: 1, 0, or its parameters as "k=v,..." (services/proctrack/README.md). HVM/PVH only: Xen raises CR3
  // write events for those.
  {
    long on = 0;
    bool want = false;
    json params = json::object();
    const int rc = ::xlu_cfg_get_long(cfg.get(), "gears_proctrack", &on, 1);
    if (rc == 0) {
      if (on != 0 && on != 1) return ck.error("gears_proctrack", "must be 0, 1 or a string of proctrack parameters");
      want = on == 1;
    } else if (rc != ESRCH) {
      if (::xlu_cfg_get_string(cfg.get(), "gears_proctrack", &s, 1) != 0 || !s || !*s)
        return ck.error("gears_proctrack", "must be 0, 1 or a string of proctrack parameters, e.g. \"kpti=auto\"");
      auto split = split_spec(s);
      if (auto* e = std::get_if<std::string>(&split)) return ck.error("gears_proctrack", *e);
      static const std::vector<std::string_view> keys = {"os", "kpti", "btf", "system_map", "idle_death_s", "rescan_ms"};
      for (const auto& [k, v] : std::get<0>(split)) {
        if (std::find(keys.begin(), keys.end(), k) == keys.end())
          return ck.error("gears_proctrack", fmt::format("unknown parameter '{}' (known: {})", k, fmt::join(keys, ", ")));
        if (params.contains(k)) return ck.error("gears_proctrack", fmt::format("'{}' given twice", k));
        params[k] = v;
      }
      want = true;
    }
    if (want) {
      const char* builder = nullptr;  // the older spelling of an HVM guest: builder = "hvm"
      const bool hvm_builder = plan.type.empty() && ::xlu_cfg_get_string(cfg.get(), "builder", &builder, 1) == 0 &&
                               builder && std::string_view(builder) == "hvm";
      if (plan.type != "pvh" && plan.type != "hvm" && !hvm_builder)
        return ck.error("gears_proctrack", fmt::format("needs type = \"pvh\" or \"hvm\" (this domain is {}): Xen raises "
                                                       "CR3 write events for HVM/PVH guests only",
                                                       plan.type.empty() ? "pv by default" : "\"" + plan.type + "\""));
      plan.devices.push_back(PlannedDevice{"proctrack", 0, std::move(params), "gears_proctrack", ck.line("gears_proctrack")});
    }
  }

  // gears_disk: the disk's own keys (dom0/backends/blk/README.md); any other key=value is a per-disk hint.
  if (auto e = ck.device_list("gears_disk", "vbd",
                              {"vdev", "target", "mode", "grants", "cache", "dcache", "dcache-file", "sector-size",
                               "regions", "procs", "weights", "capacity", "depth", "anticipate"},
                              {"vdev", "target"}, plan))
    return *e;
  // gears_vif: the vif's own keys (dom0/backends/net/README.md); any other key=value is a per-vif hint.
  if (auto e = ck.device_list("gears_vif", "vif",
                              {"mac", "bridge", "ifname", "mtu", "queues", "host", "xdp-mode", "coalesce"}, {}, plan))
    return *e;
  return plan;
}

json GearsPlan::attach_request(std::uint32_t domid) const {
  json devs = json::array();
  for (const auto& d : devices) {
    json j = {{"kind", d.kind}, {"devid", d.devid}};
    if (!d.params.empty()) j["params"] = d.params;
    devs.push_back(std::move(j));
  }
  json req = {{"verb", "attach"}, {"dom", domid}, {"devices", std::move(devs)}};
  if (!hints.empty()) req["hints"] = hints;
  if (!hint_sets.empty()) req["hints"] = hint_sets;
  return req;
}

// null, {text, parsed} for a string, [{text, parsed}...] for a list.
json GearsPlan::hints_json() const {
  if (!hints.empty()) return {{"text", hints}, {"parsed", hints_parsed}};
  if (hint_sets.empty()) return nullptr;
  json out = json::array();
  for (std::size_t i = 0; i < hint_sets.size(); ++i) out.push_back({{"text", hint_sets[i]}, {"parsed", hint_sets_parsed[i]}});
  return out;
}

json GearsPlan::to_json(const std::string& xl) const {
  json devs = json::array();
  for (const auto& d : devices)
    devs.push_back({{"kind", d.kind}, {"devid", d.devid}, {"params", d.params}, {"key", d.key}, {"line", d.line}});
  json steps = json::array({fmt::format("{} create -p {}", xl, file), fmt::format("{} domid {}", xl, name)});
  if (wants_gearsd()) steps.push_back("gearsd attach (request below, with the new domid)");
  steps.push_back(fmt::format("{} unpause <domid>", xl));
  json req = attach_request(0);
  req["dom"] = "<domid>";
  return {{"file", file},
          {"name", name},
          {"type", type},
          {"hints", hints_json()},
          {"devices", std::move(devs)},
          {"steps", std::move(steps)},
          {"attach", wants_gearsd() ? req : json(nullptr)}};
}

}  // namespace gears::ctl
