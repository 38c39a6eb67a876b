// gearsctl: command-line client of gearsd. Exit codes: 0 ok, 1 the request failed, 2 bad usage or input.
#include <CLI/CLI.hpp>
#include <fmt/format.h>

#include <algorithm>
#include <chrono>
#include <optional>
#include <vector>
#include <csignal>
#include <cstdio>
#include <iostream>
#include <thread>

#include "dom0/gearsctl/client.hpp"
#include "dom0/gearsctl/create.hpp"
#include "dom0/gearsctl/top.hpp"

using nlohmann::json;
using namespace gears::ctl;

namespace {

// Sends one request; prints the error and returns nullopt when gearsd answers "ok": false.
std::optional<json> call(const std::string& socket, const json& req, bool as_json) {
  ControlClient c(socket);
  json resp = c.request(req);
  if (as_json) std::cout << resp.dump() << "\n";
  if (!resp.value("ok", false)) {
    if (!as_json) std::cerr << "gearsctl: " << resp.value("error", std::string("request failed")) << "\n";
    return std::nullopt;
  }
  return resp;
}

int cmd_list(const std::string& socket, bool as_json) {
  auto r = call(socket, {{"verb", "list"}}, as_json);
  if (!r) return 1;
  if (as_json) return 0;
  std::cout << fmt::format("{:>5} {:<14} {:<8} {:>3} {:<9} {}\n", "DOM", "DEVICE", "KIND", "WKR", "STATE", "BACKEND");
  for (const auto& d : (*r)["devices"])
    std::cout << fmt::format("{:>5} {:<14} {:<8} {:>3} {:<9} {}{}\n", d.value("dom", 0), d.value("dev", ""),
                             d.value("kind", ""), d.value("worker", 0), d.value("state", ""), d.value("backend", ""),
                             d.contains("error") ? "  (" + d.value("error", "") + ")" : "");
  return 0;
}

int cmd_hints(const std::string& socket, std::uint32_t dom, bool as_json) {
  auto r = call(socket, {{"verb", "hints"}, {"dom", dom}}, as_json);
  if (!r) return 1;
  if (as_json) return 0;
  const json& st = (*r)["static"];
  std::cout << fmt::format("dom {}\n  static: {}\n", dom, st.is_null() ? "(none)" : st.value("text", ""));
  for (const auto& [dev, h] : (*r)["devices"].items()) std::cout << fmt::format("  {}: {}\n", dev, h.dump());
  return 0;
}

// "64M" -> 67108864; plain digits are bytes. nullopt when malformed, zero or above 64 GiB.
std::optional<std::uint64_t> parse_size(const std::string& s) {
  if (s.empty() || s.size() > 20) return std::nullopt;
  std::size_t i = 0;
  std::uint64_t v = 0;
  while (i < s.size() && s[i] >= '0' && s[i] <= '9') {
    v = v * 10 + static_cast<std::uint64_t>(s[i] - '0');
    if (v > (64ULL << 30U)) return std::nullopt;
    ++i;
  }
  if (i == 0) return std::nullopt;
  const std::string unit = s.substr(i);
  unsigned shift = 0;
  if (unit == "K" || unit == "k" || unit == "KiB") shift = 10;
  else if (unit == "M" || unit == "MiB") shift = 20;
  else if (unit == "G" || unit == "GiB") shift = 30;
  else if (!unit.empty()) return std::nullopt;
  if (v == 0 || v > ((64ULL << 30U) >> shift)) return std::nullopt;
  return v << shift;
}

struct BenchPlan {
  std::uint32_t dom = 0, devid = 0;
  std::vector<std::string> what;
  std::uint64_t bytes = 0, count = 0, size = 64;
  bool verify = true;
  std::uint64_t timeout_s = 600;
};

// Each measurement is one `control` request to the channel device; the guest's agent runs it.
int cmd_bench(const std::string& socket, const BenchPlan& p, bool as_json) {
  std::vector<std::string> what = p.what;
  if (what.empty() || std::find(what.begin(), what.end(), "all") != what.end())
    what = {"bulk_up", "bulk_down", "msgs", "rtt"};
  ControlClient c(socket, std::chrono::seconds(p.timeout_s + 30));
  json results = json::array();
  bool ok = true;
  bool header = false;
  for (const auto& w : what) {
    json req = {{"verb", "control"}, {"dom", p.dom}, {"kind", "channel"}, {"devid", p.devid}, {"op", "bench"},
                {"what", w}, {"verify", p.verify}, {"timeout_s", p.timeout_s}};
    if (w == "bulk_up" || w == "bulk_down") req["amount"] = p.bytes;
    if (w == "msgs") req["amount"] = p.count ? p.count : 100000, req["size"] = p.size;
    if (w == "rtt") req["amount"] = p.count ? p.count : 1000;
    json resp = c.request(req);
    if (!resp.value("ok", false)) {
      ok = false;
      if (!as_json) std::cerr << fmt::format("gearsctl bench {}: {}\n", w, resp.value("error", std::string("failed")));
      results.push_back({{"what", w}, {"ok", false}, {"error", resp.value("error", std::string("failed"))}});
      continue;
    }
    const json& r = resp["result"];
    if (!as_json && !header) {
      std::cout << fmt::format("dom {} channel/{}: measured by the guest's gears-front agent\n", p.dom, p.devid);
      header = true;
    }
    results.push_back(r);
    ok = ok && r.value("match", false);
    if (as_json) continue;
    if (w == "bulk_up" || w == "bulk_down")
      std::cout << fmt::format("  {:<10} {:>10.1f} MB in {:>7.2f} s  {:>9.1f} MB/s  {}\n", w,
                               r.value("amount", 0.0) / 1e6, r.value("seconds", 0.0), r.value("mb_per_s", 0.0),
                               p.verify ? (r.value("match", false) ? "checksums match" : "CHECKSUM MISMATCH") : "unverified");
    else if (w == "msgs")
      std::cout << fmt::format("  {:<10} {:>10} x {} B {:>7.2f} s  {:>9.0f} msgs/s {}\n", w, r.value("amount", 0),
                               r.value("size", 0), r.value("seconds", 0.0), r.value("msgs_per_s", 0.0),
                               r.value("match", false) ? "match" : "MISMATCH");
    else
      std::cout << fmt::format("  {:<10} {:>10} round trips      p50 {:.0f} us, mean {:.0f} us\n", w, r.value("amount", 0),
                               r.value("p50_us", 0.0), r.value("mean_us", 0.0));
  }
  if (as_json) std::cout << json{{"ok", ok}, {"dom", p.dom}, {"devid", p.devid}, {"results", results}}.dump() << "\n";
  return ok ? 0 : 1;
}

// proctrack's process table of one domain (docs/PROCTRACK.md).
int cmd_ps(const std::string& socket, std::uint32_t dom, bool as_json) {
  auto r = call(socket, {{"verb", "ps"}, {"dom", dom}}, as_json);
  if (!r) return 1;
  if (as_json) return 0;
  const json& c = (*r)["counters"];
  std::cout << fmt::format("dom {}: monitoring {}, {} processes; births {}, exits {}, execs {}; address spaces born {}, "
                           "dead {}; {} CR3 events\n",
                           dom, r->value("monitoring", false) ? "on" : "off", (*r)["processes"].size(),
                           c.value("proc_births", 0), c.value("proc_exits", 0), c.value("proc_execs", 0),
                           c.value("as_births", 0), c.value("as_deaths", 0), c.value("cr3_events", 0));
  std::cout << fmt::format("{:>7} {:>7} {:<16} {:<14} {}\n", "PID", "TGID", "COMM", "AS", "VCPU");
  for (const auto& p : (*r)["processes"]) {
    std::string on;
    for (const auto& v : p["on_vcpus"]) on += (on.empty() ? "" : ",") + std::to_string(v.get<int>());
    std::cout << fmt::format("{:>7} {:>7} {:<16} {:<14} {}\n", p.value("pid", 0), p.value("tgid", 0),
                             p.value("comm", ""), p.value("as", ""), on.empty() ? "-" : on);
  }
  return 0;
}

// proctrack's event log of one domain, from sequence number `since` on.
// With `follow`, polls every 0.5 s and prints new events until Ctrl-C (one JSON response per poll with --json).
int cmd_events(const std::string& socket, std::uint32_t dom, std::uint64_t since, std::uint32_t max, bool follow,
               bool as_json) {
  for (;;) {
    auto r = call(socket, {{"verb", "events"}, {"dom", dom}, {"since", since}, {"max", max}}, as_json);
    if (!r) return 1;
    if (!as_json) {
      for (const auto& e : (*r)["events"])
        std::cout << fmt::format("{:>8} {:>16} {:<8} pid={:<6} comm={:<16} as={}\n", e.value("seq", 0),
                                 e.value("t_ns", 0), e.value("type", ""), e.value("pid", -1), e.value("comm", ""),
                                 e.value("as", ""));
      if (!follow) std::cout << fmt::format("next {} (dropped {})\n", r->value("next", 0), r->value("dropped", 0));
    }
    std::cout.flush();
    if (!follow) return 0;
    since = r->value("next", since);
    std::this_thread::sleep_for(std::chrono::milliseconds(500));
  }
}

volatile std::sig_atomic_t g_stop = 0;

int cmd_top(const std::string& socket, bool batch, int iterations, double delay, bool as_json) {
  std::signal(SIGINT, [](int) { g_stop = 1; });
  ControlClient c(socket);
  json prev;
  auto prev_at = std::chrono::steady_clock::now();
  for (int i = 0; (iterations <= 0 || i < iterations) && !g_stop; ++i) {
    if (i > 0) std::this_thread::sleep_for(std::chrono::duration<double>(delay));
    json cur = c.request({{"verb", "stats"}});
    const auto now = std::chrono::steady_clock::now();
    if (!cur.value("ok", false)) {
      std::cerr << "gearsctl: " << cur.value("error", std::string("stats failed")) << "\n";
      return 1;
    }
    const json snap = top_snapshot(prev, cur, std::chrono::duration<double>(now - prev_at).count());
    if (as_json) {
      std::cout << snap.dump() << "\n";
    } else {
      if (!batch) std::cout << "\033[H\033[2J";
      std::cout << render_top(snap);
      if (batch) std::cout << "\n";
    }
    std::cout.flush();
    prev = std::move(cur);
    prev_at = now;
  }
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  CLI::App app{"gearsctl: control gearsd (Gears dom0 daemon)"};
  app.require_subcommand(1);
  std::string socket = kDefaultSocket;
  app.add_option("--socket", socket, "gearsd control socket")->capture_default_str();
  bool as_json = false;
  auto json_flag = [&](CLI::App* sub) { sub->add_flag("--json", as_json, "Print gearsd's JSON response"); };

  auto* list = app.add_subcommand("list", "List hosted devices");
  json_flag(list);

  std::uint32_t dom = 0;
  auto* hints = app.add_subcommand("hints", "Show the hints gearsd holds for a domain");
  hints->add_option("dom", dom, "Domain id")->required();
  json_flag(hints);

  auto* stats = app.add_subcommand("stats", "Print every device's full statistics as JSON (the `stats` verb)");

  bool batch = false;
  int iterations = 0;
  double delay = 1.0;
  auto* top = app.add_subcommand("top", "Live per-domain/per-device view (like xentop)");
  top->add_flag("-b,--batch", batch, "Print successive tables instead of redrawing the screen");
  top->add_option("-n,--iterations", iterations, "Stop after N refreshes (0 = until Ctrl-C)")->check(CLI::NonNegativeNumber);
  top->add_option("-d,--delay", delay, "Seconds between refreshes")->capture_default_str()->check(CLI::Range(0.1, 3600.0));
  json_flag(top);

  std::string kind, backend;
  std::vector<std::string> hint_texts;
  std::uint32_t devid = 0;
  std::vector<std::string> params;
  auto* attach = app.add_subcommand("attach", "Ask gearsd to host a device (and/or record static hints) for a domain");
  attach->add_option("dom", dom, "Domain id")->required();
  attach->add_option("kind", kind, "Device kind (channel, vbd, vif, null, ...)");
  attach->add_option("devid", devid, "Device id")->capture_default_str();
  attach->add_option("--backend", backend, "xenstore backend path");
  attach->add_option("--param", params, "Device parameter key=value (repeatable)");
  attach->add_option("--hints", hint_texts,
                     "Static hints, e.g. class=gold,rate=10M,latency=500us (repeatable: one hint set each, e.g. "
                     "flow classes: --hints flow=tcp:5201,class=bronze --hints flow=icmp,class=gold)");
  json_flag(attach);

  auto* detach = app.add_subcommand("detach", "Stop a device, or all devices of a domain");
  detach->add_option("dom", dom, "Domain id")->required();
  detach->add_option("kind", kind, "Device kind (all of the domain's devices if omitted)");
  detach->add_option("devid", devid, "Device id")->capture_default_str();
  bool detach_force = false;
  detach->add_flag("--force,-f", detach_force, "Detach even if the guest keeps the device in use (its I/O then fails)");
  json_flag(detach);

  std::vector<std::string> bench_what;
  std::string bench_bytes = "64M";
  std::uint64_t bench_count = 0, bench_size = 64, bench_timeout = 600;
  bool bench_no_verify = false;
  auto* bench = app.add_subcommand(
      "bench", "Measure the semantic channel to a domain, run by its `gears-front agent` (bulk both ways, msgs, rtt)");
  bench->add_option("dom", dom, "Domain id")->required();
  bench->add_option("what", bench_what, "bulk_up bulk_down msgs rtt, or all (default)")
      ->check(CLI::IsMember({"all", "bulk_up", "bulk_down", "msgs", "rtt"}));
  bench->add_option("--devid", devid, "Channel device id")->capture_default_str();
  bench->add_option("--bytes", bench_bytes, "Bulk size (K, M, G suffixes: powers of 1024)")->capture_default_str();
  bench->add_option("--count", bench_count, "Messages (msgs, default 100000) or round trips (rtt, default 1000)");
  bench->add_option("--size", bench_size, "Message size in bytes (msgs)")->capture_default_str()->check(CLI::Range(1, 65536));
  bench->add_option("--timeout", bench_timeout, "Seconds to wait for each measurement")
      ->capture_default_str()->check(CLI::Range(1, 86400));
  bench->add_flag("--no-verify", bench_no_verify, "Skip checksums in bulk transfers");
  json_flag(bench);

  auto* ps = app.add_subcommand("ps", "Processes proctrack sees in a domain (attach kind proctrack first)");
  ps->add_option("dom", dom, "Domain id")->required()->check(CLI::Range(1, 32751));
  json_flag(ps);

  std::uint64_t since = 0;
  std::uint32_t max_events = 1000;
  auto* events = app.add_subcommand("events", "proctrack's process events for a domain");
  events->add_option("dom", dom, "Domain id")->required()->check(CLI::Range(1, 32751));
  events->add_option("--since", since, "Only events after this sequence number")->capture_default_str();
  events->add_option("--max", max_events, "At most this many events")->capture_default_str()->check(CLI::Range(1, 10000));
  bool follow = false;
  events->add_flag("-f,--follow", follow, "Keep polling and print new events until Ctrl-C");
  json_flag(events);

  auto* version = app.add_subcommand("version", "Show gearsd's version");
  json_flag(version);

  CreateOptions co;
  auto* create = app.add_subcommand("create", "Create a domain from an xl config, with its Gears devices");
  create->add_option("config", co.config, "xl domain config")->required();
  create->add_flag("--dry-run", co.dry_run, "Validate and print the plan as JSON; touch nothing");
  create->add_option("--xl", co.xl, "xl binary")->capture_default_str();
  json_flag(create);

  // Media mixer controls (gearsd's media verbs).
  std::string media_stream, media_sink;
  double media_db = 0.0;
  bool media_mute = false;
  auto* media = app.add_subcommand("media", "Media mixer: status, per-stream/per-domain volume and mute, sink");
  json_flag(media);
  auto* m_status = media->add_subcommand("status", "Mixer state and every stream (role, gains, ducking, latency)");
  auto* m_volume = media->add_subcommand("volume", "Set a domain's or a stream's volume / mute");
  std::uint32_t media_dom = 0;
  m_volume->add_option("dom", media_dom, "Domain id")->required()->check(CLI::Range(0, 0x7fef));
  m_volume->add_option("--stream", media_stream, "Stream name (or part, e.g. 0/0); omit for the whole domain");
  m_volume->add_option("--db", media_db, "Gain in dB")->check(CLI::Range(-120.0, 12.0));
  m_volume->add_flag("--mute", media_mute, "Mute (the gain is kept)");
  auto* m_sink = media->add_subcommand("sink", "Switch the mixer's sink");
  m_sink->add_option("spec", media_sink, "wav:<path>, alsa:<pcm> or null")->required();
  media->require_subcommand(1);

  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    const int rc = app.exit(e);
    return rc == 0 ? 0 : 2;
  }

  try {
    if (*media) {
      json req;
      if (*m_status) req = {{"verb", "media"}};
      if (*m_volume) {
        req = {{"verb", "media-volume"}, {"dom", media_dom}, {"db", media_db}, {"mute", media_mute}};
        if (!media_stream.empty()) req["stream"] = media_stream;
      }
      if (*m_sink) req = {{"verb", "media-sink"}, {"sink", media_sink}};
      auto r = call(socket, req, as_json);
      if (r && !as_json) {
        if (*m_status) {
          const json& mx = (*r)["mixer"];
          std::cout << fmt::format("mixer: sink {} rate {} out {:.1f} s voice_active {}\n", mx.value("sink", ""),
                                   mx.value("rate", 0), mx.value("seconds_out", 0.0), mx.value("voice_active", false));
          std::cout << fmt::format("{:>5} {:<22} {:<6} {:>6} {:>7} {:>5} {:>8} {:>9}\n", "DOM", "STREAM", "ROLE", "RATE",
                                   "GAIN", "MUTE", "DUCK_DB", "LAT_MS");
          for (const auto& st : (*r)["streams"])
            std::cout << fmt::format("{:>5} {:<22} {:<6} {:>6} {:>7.3f} {:>5} {:>8.1f} {:>9.1f}\n", st.value("dom", 0),
                                     st.value("stream", ""), st.value("role", ""), st.value("rate", 0),
                                     st.value("gain", 0.0) * st.value("dom_gain", 0.0),
                                     st.value("mute", false) || st.value("dom_mute", false) ? "yes" : "no",
                                     st.value("ducked_db", 0.0), st.value("latency_ms_median", 0.0));
        } else {
          std::cout << r->dump() << "\n";
        }
      }
      return r ? 0 : 1;
    }
    if (*list) return cmd_list(socket, as_json);
    if (*hints) return cmd_hints(socket, dom, as_json);
    if (*ps) return cmd_ps(socket, dom, as_json);
    if (*events) return cmd_events(socket, dom, since, max_events, follow, as_json);
    if (*stats) return call(socket, {{"verb", "stats"}}, true) ? 0 : 1;
    if (*top) return cmd_top(socket, batch, iterations, delay, as_json);
    if (*version) {
      auto r = call(socket, {{"verb", "version"}}, as_json);
      if (r && !as_json) std::cout << fmt::format("gearsd {} (protocol {})\n", r->value("version", "?"), r->value("protocol", 0));
      return r ? 0 : 1;
    }
    if (*attach) {
      json req = {{"verb", "attach"}, {"dom", dom}};
      if (!kind.empty()) {
        req["kind"] = kind;
        req["devid"] = devid;
        if (!backend.empty()) req["backend"] = backend;
        json p = json::object();
        for (const auto& kv : params) {
          const auto eq = kv.find('=');
          if (eq == std::string::npos || eq == 0) {
            std::cerr << "gearsctl attach: --param '" << kv << "' is not key=value\n";
            return 2;
          }
          p[kv.substr(0, eq)] = kv.substr(eq + 1);
        }
        if (!p.empty()) req["params"] = p;
      } else if (hint_texts.empty()) {
        std::cerr << "gearsctl attach: give a device kind, --hints, or both\n";
        return 2;
      }
      if (hint_texts.size() == 1) req["hints"] = hint_texts[0];
      else if (!hint_texts.empty()) req["hints"] = hint_texts;
      auto r = call(socket, req, as_json);
      if (r && !as_json) std::cout << fmt::format("dom {}: attached {}\n", dom, (*r)["attached"].dump());
      return r ? 0 : 1;
    }
    if (*detach) {
      json req = {{"verb", "detach"}, {"dom", dom}};
      if (!kind.empty()) req["kind"] = kind, req["devid"] = devid;
      if (detach_force) req["force"] = true;
      auto r = call(socket, req, as_json);
      if (r && !as_json) std::cout << fmt::format("dom {}: detached {}\n", dom, kind.empty() ? "all devices" : kind + "/" + std::to_string(devid));
      return r ? 0 : 1;
    }
    if (*bench) {
      const auto bytes = parse_size(bench_bytes);
      if (!bytes) {
        std::cerr << "gearsctl bench: --bytes '" << bench_bytes << "' is not a size such as 64M or 1G\n";
        return 2;
      }
      BenchPlan plan{dom, devid, bench_what, *bytes, bench_count, bench_size, !bench_no_verify, bench_timeout};
      return cmd_bench(socket, plan, as_json);
    }
    if (*create) {
      co.socket = socket;
      co.json = as_json;
      return run_create(co, std::cout, std::cerr);
    }
  } catch (const CtlError& e) {
    if (as_json) std::cout << json{{"ok", false}, {"error", e.what()}}.dump() << "\n";
    std::cerr << "gearsctl: " << e.what() << "\n";
    return 1;
  } catch (const std::exception& e) {
    std::cerr << "gearsctl: " << e.what() << "\n";
    return 1;
  }
  return 2;
}
