// Logging: spdlog to stderr and optionally a file. Device lines read `dom=5 dev=channel/0: <message>`.
#pragma once

#include <optional>
#include <string>
#include <string_view>

#include <spdlog/spdlog.h>

#include "dom0/gearsd/device.hpp"

namespace gears::daemon {

// Parses trace|debug|info|warn|error|critical|off.
[[nodiscard]] std::optional<spdlog::level::level_enum> parse_log_level(std::string_view s);
// Installs the default logger. Throws spdlog::spdlog_ex if the file cannot be opened.
void setup_logging(spdlog::level::level_enum level, const std::string& log_file);

template <class... Args>
void log_device(spdlog::level::level_enum lvl, const DeviceKey& key, fmt::format_string<Args...> f,
                Args&&... args) {
  if (!spdlog::should_log(lvl)) return;
  spdlog::log(lvl, "dom={} dev={}: {}", key.domid, key.name(), fmt::format(f, std::forward<Args>(args)...));
}

}  // namespace gears::daemon
