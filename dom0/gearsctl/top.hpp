// `gearsctl top`: rates between two `stats` responses, per device and per domain, rendered like xentop.
#pragma once

#include <string>

#include <nlohmann/json.hpp>

namespace gears::ctl {

// From two `stats` responses `dt_s` seconds apart (prev may be null: rates are then 0) builds
// {"uptime_s", "devices":[{dom,dev,kind,worker,state,ops,bytes,errors,ops_per_s,bytes_per_s}],
//  "domains":[{dom,devices,ops_per_s,bytes_per_s,errors}]}. Counters that went backwards (a re-attached device)
// count from 0.
[[nodiscard]] nlohmann::json top_snapshot(const nlohmann::json& prev, const nlohmann::json& cur, double dt_s);
// A fixed-width table of a snapshot, one domain line followed by its devices.
[[nodiscard]] std::string render_top(const nlohmann::json& snapshot);

}  // namespace gears::ctl
