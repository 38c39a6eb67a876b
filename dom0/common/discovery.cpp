#include "dom0/common/discovery.hpp"

#include <spdlog/spdlog.h>
#include <sys/epoll.h>

#include "common/util/error.hpp"
#include "common/xenbus/nodes.hpp"

namespace gears::backend {

XenbusDiscovery::XenbusDiscovery(std::string be_type, std::string kind)
    : be_type_(std::move(be_type)), kind_(std::move(kind)), name_("xenstore:backend/" + be_type_) {}

void XenbusDiscovery::start(daemon::Reactor& main, Sink sink) {
  main_ = &main;
  sink_ = std::move(sink);
  store_.emplace();
  watch_ = store_->watch(be_root(), "discovery");
  release_watch_ = store_->watch("@releaseDomain", "release");
  auto w = main.add_fd(store_->fd(), EPOLLIN, [this](std::uint32_t) {
    bool any = false, released = false;
    while (auto ev = store_->read_watch()) {
      any = true;
      released = released || ev->token == "release";
    }
    if (released) reap_dead_domains();
    if (any) scan();
  });
  if (!w) throw XenError(name_ + " discovery: epoll", w.error().code);
  fd_watch_ = *w;
}

void XenbusDiscovery::reap_dead_domains() {
  for (const auto& [dom, dev] : known_) {
    if (store_->exists("/local/domain/" + std::to_string(dom))) continue;
    spdlog::info("dom={} dev={}/{}: domain is gone; removing its backend directory", dom, kind_, dev);
    (void)store_->rm(be_root() + "/" + std::to_string(dom));
  }
}

void XenbusDiscovery::stop() {
  if (main_ && fd_watch_) main_->remove(fd_watch_);
  fd_watch_ = 0;
  watch_ = xen::Watch{};
  release_watch_ = xen::Watch{};
  store_.reset();
}

void XenbusDiscovery::scan() {
  std::set<std::pair<std::uint32_t, std::uint32_t>> now;
  const std::string root = be_root();
  if (auto doms = store_->directory(root)) {
    for (const auto& d : *doms) {
      auto dom = xenbus::parse_uint(d, 0x7FEF);  // DOMID_FIRST_RESERVED - 1
      if (!dom) continue;
      auto devs = store_->directory(root + "/" + d);
      if (!devs) continue;
      for (const auto& v : *devs) {
        auto dev = xenbus::parse_uint(v, UINT32_MAX);
        if (!dev) continue;
        // Only complete nodes count: the toolstack writes frontend-id last but one.
        if (!store_->exists(root + "/" + d + "/" + v + "/frontend-id")) continue;
        now.insert({static_cast<std::uint32_t>(*dom), static_cast<std::uint32_t>(*dev)});
      }
    }
  }
  for (const auto& k : now) {
    if (known_.count(k)) continue;
    daemon::DeviceEvent ev;
    ev.type = daemon::DeviceEvent::Type::appeared;
    ev.spec.key = {kind_, k.first, k.second};
    ev.spec.backend_path = root + "/" + std::to_string(k.first) + "/" + std::to_string(k.second);
    main_->post([this, ev = std::move(ev)]() mutable { sink_(std::move(ev)); });
  }
  for (const auto& k : known_) {
    if (now.count(k)) continue;
    daemon::DeviceEvent ev;
    ev.type = daemon::DeviceEvent::Type::disappeared;
    ev.spec.key = {kind_, k.first, k.second};
    main_->post([this, ev = std::move(ev)]() mutable { sink_(std::move(ev)); });
  }
  known_ = std::move(now);
}

}  // namespace gears::backend
