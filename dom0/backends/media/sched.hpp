// The media scheduler: stream roles and the ducking policy.
//
// Roles come from the hint registry (dom0/gearsd/hint_registry.hpp), newest first:
//   1. a stream-scoped set (scope=stream, stream=<key>) of the stream's domain whose key equals the stream key;
//   2. a device-scoped set for (vsnd, devid), then a domain-scoped set (HintRegistry::effective);
//   3. the device's static default (gearsd --media-default-role, else media).
// The stream key of an sndif stream is its xenstore `unique-id` (written by libxl from `vsnd=`): the number
// itself when it is a decimal u64, else the FNV-1a 64 hash of the string (`gearsctl` prints it).
//
// Ducking: while any voice stream plays (has delivered audio within `hold_ms`), every media stream's gain
// ramps down to -duck_db dB (attack_ms) and back up to 0 dB (release_ms) after. Alert streams are never ducked.
#pragma once

#include <cstdint>
#include <optional>
#include <string_view>
#include <vector>

#include "dom0/gearsd/hint_registry.hpp"

namespace gears::media {

enum class Role : std::uint8_t { voice = 1, media = 2, alert = 3 };
[[nodiscard]] std::string_view role_name(Role r);
[[nodiscard]] std::optional<Role> role_from_name(std::string_view s);

struct DuckPolicy {
  float duck_db = 20.0F;       // attenuation of media streams while voice plays
  std::uint32_t attack_ms = 30;
  std::uint32_t release_ms = 300;
  std::uint32_t hold_ms = 200;  // voice counts as playing this long after its last audio
};

// The stream key of a unique-id (see above).
[[nodiscard]] std::uint64_t stream_key(std::string_view unique_id);

// Resolves a role from the domain's hint records (HintRegistry::snapshot, oldest first) and its effective
// device/domain set.
[[nodiscard]] Role resolve_role(const std::vector<daemon::HintRecord>& records, const hints::HintSet& effective,
                                std::uint64_t key, Role fallback);

// Gain of one stream for the next tick, moving `current` toward the target by one tick's share of the ramp.
[[nodiscard]] float duck_step(const DuckPolicy& p, Role role, bool voice_active, float current, std::uint32_t tick_ms);

}  // namespace gears::media
