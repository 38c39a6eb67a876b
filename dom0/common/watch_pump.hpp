// Drains a device's xenstore watch events into its xenbus state machine: the one loop every dom0 backend
// runs when its store fd is readable.
#pragma once

#include <cstdint>
#include <string_view>

#include "common/xen/store.hpp"
#include "common/xenbus/driver.hpp"

namespace gears::backend {

enum class WatchPump : std::uint8_t { live, removed };

// Feeds every pending watch event to `driver`; a failing hook is logged and the loop goes on.
// Returns `removed` as soon as the frontend or backend directory has gone (the caller tears down;
// remaining events belong to a dead connection and are left unread).
[[nodiscard]] WatchPump pump_watches(xen::Store& store, xenbus::BackendDriver* driver, std::uint32_t domid,
                                     std::string_view dev_name, std::string_view what);

}  // namespace gears::backend
