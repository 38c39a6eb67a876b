#include "dom0/gearsctl/top.hpp"

#include <map>
#include <utility>

#include <fmt/format.h>

namespace gears::ctl {

using nlohmann::json;

namespace {

double counter(const json& stats, const char* name) {
  if (!stats.is_object()) return 0;
  auto it = stats.find(name);
  return it != stats.end() && it->is_number() ? it->get<double>() : 0;
}

}  // namespace

json top_snapshot(const json& prev, const json& cur, double dt_s) {
  std::map<std::pair<std::uint32_t, std::string>, json> before;
  if (prev.is_object() && prev.contains("devices") && prev["devices"].is_array())
    for (const auto& d : prev["devices"])
      before[{d.value("dom", 0U), d.value("dev", std::string())}] = d.value("stats", json::object());

  json devices = json::array();
  std::map<std::uint32_t, json> domains;
  const json empty = json::array();
  const json& rows = cur.is_object() && cur.contains("devices") && cur["devices"].is_array() ? cur["devices"] : empty;
  for (const auto& d : rows) {
    const auto dom = d.value("dom", 0U);
    const auto dev = d.value("dev", std::string());
    const json stats = d.value("stats", json::object());
    const double ops = counter(stats, "ops"), bytes = counter(stats, "bytes"), errors = counter(stats, "errors");
    double ops_rate = 0, bytes_rate = 0;
    if (auto it = before.find({dom, dev}); it != before.end() && dt_s > 0) {
      const double pops = counter(it->second, "ops"), pbytes = counter(it->second, "bytes");
      ops_rate = (ops >= pops ? ops - pops : ops) / dt_s;
      bytes_rate = (bytes >= pbytes ? bytes - pbytes : bytes) / dt_s;
    }
    json row = {{"dom", dom}, {"dev", dev}, {"kind", d.value("kind", "")}, {"worker", d.value("worker", 0)},
                {"state", d.value("state", "")}, {"ops", ops}, {"bytes", bytes}, {"errors", errors},
                {"ops_per_s", ops_rate}, {"bytes_per_s", bytes_rate}};
    // Devices that schedule by class/process (e.g. vbd) report {"classes"|"processes"|"guest_processes":
    // {name: {reqs, bytes}}} (processes: hint labels; guest_processes: attributed by proctrack):
    // shown as sub-rows with their own rates.
    json groups = json::array();
    const auto prev_it = before.find({dom, dev});
    for (const char* g : {"classes", "processes", "guest_processes"}) {
      auto gi = stats.find(g);
      if (gi == stats.end() || !gi->is_object()) continue;
      for (const auto& [gname, gv] : gi->items()) {
        double r_ops = 0, r_bytes = 0;
        const double g_ops = counter(gv, "reqs"), g_bytes = counter(gv, "bytes");
        if (prev_it != before.end() && dt_s > 0) {
          const json pg = prev_it->second.value(g, json::object()).value(gname, json::object());
          const double p_ops = counter(pg, "reqs"), p_bytes = counter(pg, "bytes");
          r_ops = (g_ops >= p_ops ? g_ops - p_ops : g_ops) / dt_s;
          r_bytes = (g_bytes >= p_bytes ? g_bytes - p_bytes : g_bytes) / dt_s;
        }
        const std::string gs(g);
        groups.push_back({{"group", gs == "classes" ? "class" : gs == "processes" ? "process" : "pid"}, {"name", gname},
                          {"ops_per_s", r_ops}, {"bytes_per_s", r_bytes}, {"bytes", g_bytes}});
      }
    }
    if (!groups.empty()) row["groups"] = std::move(groups);
    devices.push_back(std::move(row));
    json& agg = domains[dom];
    if (agg.is_null()) agg = {{"dom", dom}, {"devices", 0}, {"ops_per_s", 0.0}, {"bytes_per_s", 0.0}, {"errors", 0.0}};
    agg["devices"] = agg["devices"].get<int>() + 1;
    agg["ops_per_s"] = agg["ops_per_s"].get<double>() + ops_rate;
    agg["bytes_per_s"] = agg["bytes_per_s"].get<double>() + bytes_rate;
    agg["errors"] = agg["errors"].get<double>() + errors;
  }
  json doms = json::array();
  for (auto& [dom, agg] : domains) doms.push_back(std::move(agg));
  return {{"uptime_s", cur.is_object() ? cur.value("uptime_s", 0.0) : 0.0},
          {"devices", std::move(devices)},
          {"domains", std::move(doms)}};
}

std::string render_top(const json& snap) {
  std::string out = fmt::format("gearsd: uptime {:.0f} s, {} domain(s), {} device(s)\n", snap.value("uptime_s", 0.0),
                                snap["domains"].size(), snap["devices"].size());
  out += fmt::format("{:>5} {:<14} {:<8} {:>3} {:<9} {:>10} {:>10} {:>8}\n", "DOM", "DEVICE", "KIND", "WKR", "STATE",
                     "OPS/s", "KB/s", "ERRORS");
  for (const auto& dom : snap["domains"]) {
    const auto id = dom.value("dom", 0U);
    out += fmt::format("{:>5} {:<14} {:<8} {:>3} {:<9} {:>10.1f} {:>10.1f} {:>8.0f}\n", id,
                       fmt::format("({} dev)", dom.value("devices", 0)), "", "", "", dom.value("ops_per_s", 0.0),
                       dom.value("bytes_per_s", 0.0) / 1024.0, dom.value("errors", 0.0));
    for (const auto& d : snap["devices"]) {
      if (d.value("dom", 0U) != id) continue;
      out += fmt::format("{:>5} {:<14} {:<8} {:>3} {:<9} {:>10.1f} {:>10.1f} {:>8.0f}\n", "", d.value("dev", ""),
                         d.value("kind", ""), d.value("worker", 0), d.value("state", ""), d.value("ops_per_s", 0.0),
                         d.value("bytes_per_s", 0.0) / 1024.0, d.value("errors", 0.0));
      if (auto g = d.find("groups"); g != d.end())
        for (const auto& row : *g)
          out += fmt::format("{:>5} {:<14} {:<8} {:>3} {:<9} {:>10.1f} {:>10.1f}\n", "",
                             fmt::format("  {} {}", row.value("group", ""), row.value("name", "")), "", "", "",
                             row.value("ops_per_s", 0.0), row.value("bytes_per_s", 0.0) / 1024.0);
    }
  }
  return out;
}

}  // namespace gears::ctl
