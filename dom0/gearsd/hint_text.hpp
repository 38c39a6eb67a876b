// The single entry point for checking static hint text ("class=gold,rate=10M,latency=500us"), used by gearsd's
// `attach` and by `gearsctl create`. The grammar is the common/hints text form (gears::hints::parse_text, see
// common/hints/hints.hpp); this wrapper adds a length bound and the JSON form gearsd stores and reports.
#pragma once

#include <cstddef>
#include <string>
#include <string_view>

#include <nlohmann/json.hpp>

#include "common/hints/hints.hpp"

namespace gears::daemon {

struct HintCheck {
  bool ok = false;
  std::string error;        // one line naming the offending key, when !ok (e.g. "class: 'tin' is not gold, ...")
  nlohmann::json parsed;    // gears::hints::to_json of the set, when ok, e.g.
                            // {"scope":"domain","qos":{"class":"gold","weight":0},"rate_bps":10000000,"latency_us":500}
  hints::HintSet set;       // the parsed set, when ok
};

// Bound on the text accepted from the control socket / xl configs (the longest valid canonical text, 16 flow keys
// plus a %-escaped cgroup path, stays below this).
inline constexpr std::size_t kMaxHintText = 4096;

[[nodiscard]] HintCheck check_hint_text(std::string_view text);

// Hint sets one attach (or one xl `gears_hints` list) may record.
inline constexpr std::size_t kMaxHintSets = 16;

}  // namespace gears::daemon
