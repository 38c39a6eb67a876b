#include "dom0/common/watch_pump.hpp"

#include <spdlog/spdlog.h>

namespace gears::backend {

WatchPump pump_watches(xen::Store& store, xenbus::BackendDriver* driver, std::uint32_t domid,
                       std::string_view dev_name, std::string_view what) {
  for (;;) {
    auto ev = store.read_watch();
    if (!ev) return WatchPump::live;
    if (!driver) continue;
    if (auto s = driver->on_watch(*ev); !s)
      spdlog::warn("dom={} dev={}: xenbus: {} (state {})", domid, dev_name, s.error().what,
                   xenbus::state_name(driver->state()));
    if (driver->removed()) {
      spdlog::info("dom={} dev={}: frontend or backend directory gone; {} down", domid, dev_name, what);
      return WatchPump::removed;
    }
  }
}

}  // namespace gears::backend
