// DomainReaper: detaches the devices of domains that are gone. xenbus kinds are reaped with their backend
// directories (XenbusDiscovery); devices without one (guest-context services such as proctrack, attached by
// `gearsctl attach`) would otherwise outlive their domain. On @releaseDomain it reports every device of the
// given kinds whose /local/domain/<id> no longer exists as `disappeared`, which detaches it.
#pragma once

#include <functional>
#include <optional>
#include <set>
#include <string>
#include <vector>

#include "common/xen/store.hpp"
#include "dom0/gearsd/device.hpp"
#include "dom0/gearsd/reactor.hpp"

namespace gears::backend {

class DomainReaper final : public daemon::DiscoverySource {
 public:
  // devices: the daemon's devices now (called on the main thread).
  DomainReaper(std::set<std::string> kinds, std::function<std::vector<daemon::DeviceKey>()> devices);
  [[nodiscard]] std::string_view name() const override { return "domain-reaper"; }
  void start(daemon::Reactor& main, Sink sink) override;
  void stop() override;

 private:
  void reap();

  std::set<std::string> kinds_;
  std::function<std::vector<daemon::DeviceKey>()> devices_;
  daemon::Reactor* main_ = nullptr;
  Sink sink_;
  std::optional<xen::Store> store_;
  xen::Watch watch_;
  daemon::WatchId fd_watch_ = 0;
};

}  // namespace gears::backend
