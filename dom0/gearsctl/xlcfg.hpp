// Reading an xl domain config with libxlutil and checking its Gears keys (gears_*). Pure: touches no Xen state,
// so `gearsctl create --dry-run` and the unit tests run it anywhere.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>
#include <variant>
#include <vector>

#include <nlohmann/json.hpp>

namespace gears::ctl {

// A rejected config. line is 1-based; 0 when the problem has no line (unreadable file, missing key).
struct ConfigError {
  std::string file;
  int line = 0;
  std::string key;  // the offending key; empty for a syntax error outside any statement
  std::string message;
  // "FILE:LINE: KEY: MESSAGE" (LINE and KEY left out when unknown).
  [[nodiscard]] std::string format() const;
};

// One device the config asks gearsd for.
struct PlannedDevice {
  std::string kind;  // "channel", "vbd", "vif"
  std::uint32_t devid = 0;
  nlohmann::json params = nlohmann::json::object();
  std::string key;   // the config key that declared it
  int line = 0;
};

struct GearsPlan {
  std::string file;
  std::string name;  // the domain's `name`
  std::string type;  // `type` (pv/pvh/hvm); empty if unset
  std::string hints;  // gears_hints text as written (a string); empty if unset or a list
  nlohmann::json hints_parsed;
  // gears_hints as a list of strings: one hint set each (e.g. the domain's class and its flow classes).
  std::vector<std::string> hint_sets;
  std::vector<nlohmann::json> hint_sets_parsed;
  std::vector<PlannedDevice> devices;

  // The `attach` request gearsd receives once the domain exists.
  [[nodiscard]] nlohmann::json attach_request(std::uint32_t domid) const;
  // What `create` will do, for --dry-run.
  [[nodiscard]] nlohmann::json to_json(const std::string& xl = "xl") const;
  [[nodiscard]] nlohmann::json hints_json() const;
  [[nodiscard]] bool wants_gearsd() const { return !devices.empty() || !hints.empty() || !hint_sets.empty(); }
};

using ConfigResult = std::variant<GearsPlan, ConfigError>;

// Parses `path` with libxlutil and validates every gears_* key. Never throws for bad input.
[[nodiscard]] ConfigResult load_gears_config(const std::string& path);

// The Gears keys this gearsctl understands.
[[nodiscard]] const std::vector<std::string_view>& known_gears_keys();

// Top-level `key =` / `key +=` statements of an xl config text, with their 1-based lines, in order. Follows the
// xl lexer closely enough for that: # comments, "..." and '...' strings, [ ] lists spanning lines, ';'.
struct KeyLine {
  std::string key;
  int line = 0;
};
[[nodiscard]] std::vector<KeyLine> scan_config_keys(std::string_view text);

}  // namespace gears::ctl
