// gearsctl: command-line client of gearsd. Exit codes: 0 ok, 1 the request failed, 2 bad usage or input.
#include <CLI/CLI.hpp>
#include <fmt/format.h>

#include <chrono>
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

  std::string kind, backend, hint_text;
  std::uint32_t devid = 0;
  std::vector<std::string> params;
  auto* attach = app.add_subcommand("attach", "Ask gearsd to host a device (and/or record static hints) for a domain");
  attach->add_option("dom", dom, "Domain id")->required();
  attach->add_option("kind", kind, "Device kind (channel, vbd, vif, null, ...)");
  attach->add_option("devid", devid, "Device id")->capture_default_str();
  attach->add_option("--backend", backend, "xenstore backend path");
  attach->add_option("--param", params, "Device parameter key=value (repeatable)");
  attach->add_option("--hints", hint_text, "Static hints, e.g. class=gold,rate=10M,latency=500us");
  json_flag(attach);

  auto* detach = app.add_subcommand("detach", "Stop a device, or all devices of a domain");
  detach->add_option("dom", dom, "Domain id")->required();
  detach->add_option("kind", kind, "Device kind (all of the domain's devices if omitted)");
  detach->add_option("devid", devid, "Device id")->capture_default_str();
  json_flag(detach);

  auto* bench = app.add_subcommand("bench", "Benchmark the dom0<->domU paths (not implemented yet)");
  json_flag(bench);

  auto* version = app.add_subcommand("version", "Show gearsd's version");
  json_flag(version);

  CreateOptions co;
  auto* create = app.add_subcommand("create", "Create a domain from an xl config, with its Gears devices");
  create->add_option("config", co.config, "xl domain config")->required();
  create->add_flag("--dry-run", co.dry_run, "Validate and print the plan as JSON; touch nothing");
  create->add_option("--xl", co.xl, "xl binary")->capture_default_str();
  json_flag(create);

  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    const int rc = app.exit(e);
    return rc == 0 ? 0 : 2;
  }

  try {
    if (*list) return cmd_list(socket, as_json);
    if (*hints) return cmd_hints(socket, dom, as_json);
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
      } else if (hint_text.empty()) {
        std::cerr << "gearsctl attach: give a device kind, --hints, or both\n";
        return 2;
      }
      if (!hint_text.empty()) req["hints"] = hint_text;
      auto r = call(socket, req, as_json);
      if (r && !as_json) std::cout << fmt::format("dom {}: attached {}\n", dom, (*r)["attached"].dump());
      return r ? 0 : 1;
    }
    if (*detach) {
      json req = {{"verb", "detach"}, {"dom", dom}};
      if (!kind.empty()) req["kind"] = kind, req["devid"] = devid;
      auto r = call(socket, req, as_json);
      if (r && !as_json) std::cout << fmt::format("dom {}: detached {}\n", dom, kind.empty() ? "all devices" : kind + "/" + std::to_string(devid));
      return r ? 0 : 1;
    }
    if (*bench) {
      if (as_json) std::cout << json{{"ok", false}, {"error", "not implemented yet"}}.dump() << "\n";
      std::cerr << "gearsctl bench: not implemented yet (use `make bench` for the lab benchmarks)\n";
      return 1;
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
