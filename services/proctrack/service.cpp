#include "services/proctrack/service.hpp"

#include <fmt/format.h>

#include "dom0/gearsd/daemon.hpp"
#include "services/proctrack/directory.hpp"
#include "services/proctrack/proctrack_device.hpp"

namespace gears::proctrack {
namespace {

using nlohmann::json;

// An unsigned integer argument in [lo, hi]; `def` if absent and not required. Sets `err` on failure.
std::optional<std::uint64_t> arg(const json& req, const char* name, bool required, std::uint64_t def, std::uint64_t lo,
                                 std::uint64_t hi, std::string& err) {
  auto it = req.find(name);
  if (it == req.end()) {
    if (required) err = fmt::format("missing \"{}\"", name);
    return required ? std::nullopt : std::optional<std::uint64_t>(def);
  }
  if (!it->is_number_unsigned() && !(it->is_number_integer() && it->get<std::int64_t>() >= 0)) {
    err = fmt::format("\"{}\" must be a non-negative integer", name);
    return std::nullopt;
  }
  const auto v = it->get<std::uint64_t>();
  if (v < lo || v > hi) {
    err = fmt::format("\"{}\" must be in {}..{}", name, lo, hi);
    return std::nullopt;
  }
  return v;
}

}  // namespace

namespace {
// Directory::global() as the registry's process identity source.
class DirectoryOracle final : public daemon::ProcessOracle {
 public:
  std::optional<daemon::GuestProcess> submitter(std::uint32_t dom, std::uint32_t vcpu,
                                                std::int64_t t_ns) const override {
    auto who = Directory::global().who_ran(dom, vcpu, t_ns);
    if (!who) return std::nullopt;
    return daemon::GuestProcess{who->pid, who->comm, who->as};
  }
};
}  // namespace

void register_service(daemon::Daemon& d) {
  d.registry().register_factory("proctrack", make_proctrack_device);
  d.registry().hints().set_process_oracle(std::make_shared<DirectoryOracle>());
  d.add_verb("ps", [](const json& req, daemon::ControlServer::Reply reply) {
    std::string err;
    const auto dom = arg(req, "dom", true, 0, 1, 32751, err);
    if (!dom) return reply(daemon::error_response(err));
    json r = Directory::global().ps(static_cast<std::uint32_t>(*dom));
    if (r.is_null()) return reply(daemon::error_response(fmt::format("proctrack has never monitored dom {}", *dom)));
    r["ok"] = true;
    reply(std::move(r));
  });
  d.add_verb("events", [](const json& req, daemon::ControlServer::Reply reply) {
    std::string err;
    const auto dom = arg(req, "dom", true, 0, 1, 32751, err);
    const auto since = dom ? arg(req, "since", false, 0, 0, UINT64_MAX, err) : std::nullopt;
    const auto max = since ? arg(req, "max", false, 1000, 1, 10000, err) : std::nullopt;
    if (!dom || !since || !max) return reply(daemon::error_response(err));
    json r = Directory::global().events(static_cast<std::uint32_t>(*dom), *since, *max);
    if (r.is_null()) return reply(daemon::error_response(fmt::format("proctrack has never monitored dom {}", *dom)));
    r["ok"] = true;
    reply(std::move(r));
  });
}

}  // namespace gears::proctrack
