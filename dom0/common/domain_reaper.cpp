#include "dom0/common/domain_reaper.hpp"

#include <sys/epoll.h>

#include <spdlog/spdlog.h>

#include "common/util/error.hpp"

namespace gears::backend {

DomainReaper::DomainReaper(std::set<std::string> kinds, std::function<std::vector<daemon::DeviceKey>()> devices)
    : kinds_(std::move(kinds)), devices_(std::move(devices)) {}

void DomainReaper::start(daemon::Reactor& main, Sink sink) {
  main_ = &main;
  sink_ = std::move(sink);
  store_.emplace();
  watch_ = store_->watch("@releaseDomain", "release");
  auto w = main.add_fd(store_->fd(), EPOLLIN, [this](std::uint32_t) {
    bool released = false;
    while (auto ev = store_->read_watch()) released = true;
    if (released) reap();
  });
  if (!w) throw XenError("domain reaper: epoll", w.error().code);
  fd_watch_ = *w;
}

void DomainReaper::reap() {
  for (const auto& key : devices_()) {
    if (kinds_.count(key.kind) == 0 || store_->exists("/local/domain/" + std::to_string(key.domid))) continue;
    spdlog::info("dom={} dev={}: domain is gone; detaching", key.domid, key.name());
    daemon::DeviceSpec spec;
    spec.key = key;
    main_->post([sink = sink_, spec] { sink(daemon::DeviceEvent{daemon::DeviceEvent::Type::disappeared, spec}); });
  }
}

void DomainReaper::stop() {
  if (main_ && fd_watch_) main_->remove(fd_watch_);
  fd_watch_ = 0;
  watch_ = xen::Watch{};
  store_.reset();
}

}  // namespace gears::backend
