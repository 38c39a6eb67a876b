// XenbusDiscovery: watches /local/domain/0/backend/<be_type> and reports device directories appearing and
// disappearing as gearsd DeviceEvents of one kind. Also reaps the backend directories of dead domains
// (libxl removes a dead domain's own nodes, but not backend directories it did not create).
#pragma once

#include <cstdint>
#include <optional>
#include <set>
#include <string>
#include <utility>

#include "common/xen/store.hpp"
#include "dom0/gearsd/device.hpp"
#include "dom0/gearsd/reactor.hpp"

namespace gears::backend {

class XenbusDiscovery final : public daemon::DiscoverySource {
 public:
  // be_type: xenstore backend type ("gears", "gears-vbd", "vsnd", ...); kind: gearsd device kind to report.
  XenbusDiscovery(std::string be_type, std::string kind);
  [[nodiscard]] std::string_view name() const override { return name_; }
  void start(daemon::Reactor& main, Sink sink) override;
  void stop() override;

  [[nodiscard]] std::string be_root() const { return "/local/domain/0/backend/" + be_type_; }

 private:
  void scan();
  void reap_dead_domains();

  std::string be_type_, kind_, name_;
  daemon::Reactor* main_ = nullptr;
  Sink sink_;
  std::optional<xen::Store> store_;
  xen::Watch watch_, release_watch_;
  daemon::WatchId fd_watch_ = 0;
  std::set<std::pair<std::uint32_t, std::uint32_t>> known_;
};

}  // namespace gears::backend
