// The single entry point for checking static hint text ("class=gold,rate=10M,latency=500us"), used by gearsd's
// `attach` and by `gearsctl create`. When common/hints (gears::hints) lands, switch the body of
// check_hint_text() to its parser; callers do not change.
#pragma once

#include <string>
#include <string_view>

#include <nlohmann/json.hpp>

namespace gears::daemon {

struct HintCheck {
  bool ok = false;
  std::string error;       // one line naming the offending item, when !ok
  nlohmann::json parsed;   // object, e.g. {"class":"gold","rate":10000000,"latency_ns":500000}, when ok
};

inline constexpr std::size_t kMaxHintText = 256;

[[nodiscard]] HintCheck check_hint_text(std::string_view text);

}  // namespace gears::daemon
