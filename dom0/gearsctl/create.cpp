#include "dom0/gearsctl/create.hpp"

#include <optional>
#include <ostream>
#include <variant>

#include <fmt/format.h>

#include "dom0/gearsctl/client.hpp"
#include "dom0/gearsctl/process.hpp"
#include "dom0/gearsctl/xlcfg.hpp"

namespace gears::ctl {

using nlohmann::json;

namespace {

bool parse_domid(const std::string& s, std::uint32_t& out) {
  std::size_t i = 0;
  while (i < s.size() && (s[i] == ' ' || s[i] == '\n')) ++i;
  std::uint64_t v = 0;
  bool digits = false;
  while (i < s.size() && s[i] >= '0' && s[i] <= '9' && v < 0x10000) v = v * 10 + static_cast<unsigned>(s[i++] - '0'), digits = true;
  while (i < s.size() && (s[i] == ' ' || s[i] == '\n')) ++i;
  if (!digits || i != s.size() || v == 0 || v >= 0x7FF0) return false;
  out = static_cast<std::uint32_t>(v);
  return true;
}

}  // namespace

int run_create(const CreateOptions& o, std::ostream& out, std::ostream& err) {
  const ConfigResult loaded = load_gears_config(o.config);
  if (const auto* e = std::get_if<ConfigError>(&loaded)) {
    if (o.json) out << json{{"ok", false}, {"file", e->file}, {"line", e->line}, {"key", e->key}, {"error", e->message}}.dump() << "\n";
    err << "gearsctl create: " << e->format() << "\n";
    return 2;
  }
  const GearsPlan& plan = std::get<GearsPlan>(loaded);
  if (o.dry_run) {
    out << plan.to_json(o.xl).dump(2) << "\n";
    return 0;
  }

  auto fail = [&](const std::string& msg) {
    if (o.json) out << json{{"ok", false}, {"error", msg}}.dump() << "\n";
    err << "gearsctl create: " << msg << "\n";
    return 1;
  };

  // Reach gearsd before creating anything, so an absent daemon changes nothing.
  std::optional<ControlClient> client;
  if (plan.wants_gearsd()) {
    try {
      client.emplace(o.socket);
      const json v = client->request({{"verb", "version"}});
      if (!v.value("ok", false)) return fail("gearsd refused `version`: " + v.value("error", std::string("?")));
    } catch (const CtlError& e) {
      return fail(e.what());
    }
  }

  if (const auto r = run_process({o.xl, "create", "-p", o.config}, false); r.exit_code != 0)
    return fail(fmt::format("`{} create -p {}` failed (exit {}); no domain was left behind by gearsctl", o.xl, o.config, r.exit_code));

  std::uint32_t domid = 0;
  const auto id = run_process({o.xl, "domid", plan.name}, true);
  if (id.exit_code != 0 || !parse_domid(id.out, domid)) {
    (void)run_process({o.xl, "destroy", plan.name}, false);
    return fail(fmt::format("could not find the domid of '{}' (`{} domid` exit {}); destroyed it", plan.name, o.xl, id.exit_code));
  }

  auto destroy = [&](const std::string& why, bool detach) {
    if (detach && client) {
      try {
        (void)client->request({{"verb", "detach"}, {"dom", domid}});
      } catch (const CtlError&) {
        // gearsd is gone: its devices went with it
      }
    }
    const auto d = run_process({o.xl, "destroy", std::to_string(domid)}, false);
    return fail(fmt::format("{}; destroyed domain {} ({}){}", why, plan.name, domid,
                            d.exit_code == 0 ? "" : fmt::format(", but `xl destroy` failed (exit {})", d.exit_code)));
  };

  json attached = json::array();
  if (plan.wants_gearsd()) {
    try {
      const json resp = client->request(plan.attach_request(domid));
      if (!resp.value("ok", false)) return destroy("gearsd attach failed: " + resp.value("error", std::string("?")), false);
      attached = resp.value("attached", json::array());
    } catch (const CtlError& e) {
      return destroy(e.what(), true);
    }
  }

  if (const auto r = run_process({o.xl, "unpause", std::to_string(domid)}, false); r.exit_code != 0)
    return destroy(fmt::format("`{} unpause {}` failed (exit {})", o.xl, domid, r.exit_code), true);

  if (o.json) {
    out << json{{"ok", true}, {"name", plan.name}, {"dom", domid}, {"attached", attached}}.dump() << "\n";
  } else {
    std::string devs;
    for (const auto& a : attached) devs += (devs.empty() ? "" : ", ") + a.get<std::string>();
    out << fmt::format("created domain {} (domid {}){}\n", plan.name, domid,
                       devs.empty() ? std::string() : " with Gears devices " + devs);
  }
  return 0;
}

}  // namespace gears::ctl
