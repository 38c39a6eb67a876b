#include "dom0/backends/media/sched.hpp"

#include <algorithm>
#include <charconv>
#include <cmath>

namespace gears::media {

std::string_view role_name(Role r) {
  switch (r) {
    case Role::voice: return "voice";
    case Role::media: return "media";
    case Role::alert: return "alert";
  }
  return "media";
}

std::optional<Role> role_from_name(std::string_view s) {
  if (s == "voice") return Role::voice;
  if (s == "media") return Role::media;
  if (s == "alert") return Role::alert;
  return std::nullopt;
}

std::uint64_t stream_key(std::string_view id) {
  std::uint64_t v = 0;
  auto [end, ec] = std::from_chars(id.data(), id.data() + id.size(), v);
  if (!id.empty() && id.size() <= 20 && ec == std::errc{} && end == id.data() + id.size()) return v;
  std::uint64_t h = 14695981039346656037ULL;
  for (char c : id) {
    h ^= static_cast<unsigned char>(c);
    h *= 1099511628211ULL;
  }
  return h;
}

namespace {
Role from_hint(hints::StreamRole r) {
  switch (r) {
    case hints::StreamRole::voice: return Role::voice;
    case hints::StreamRole::alert: return Role::alert;
    case hints::StreamRole::media: return Role::media;
  }
  return Role::media;
}
}  // namespace

Role resolve_role(const std::vector<daemon::HintRecord>& records, const hints::HintSet& effective, std::uint64_t key,
                  Role fallback) {
  const daemon::HintRecord* best = nullptr;
  for (const auto& r : records) {
    if (r.set.scope.kind != hints::ScopeKind::stream || !r.set.role || r.set.stream_key != key) continue;
    if (!best || r.seq > best->seq) best = &r;
  }
  if (best) return from_hint(*best->set.role);
  if (effective.role) return from_hint(*effective.role);
  return fallback;
}

float duck_step(const DuckPolicy& p, Role role, bool voice_active, float current, std::uint32_t tick_ms) {
  const float floor_gain = std::pow(10.0F, -p.duck_db / 20.0F);
  const float target = (role == Role::media && voice_active) ? floor_gain : 1.0F;
  if (current == target) return current;
  // Linear ramp in dB: the full duck range in attack_ms (down) or release_ms (up).
  const float ms = target < current ? static_cast<float>(std::max<std::uint32_t>(p.attack_ms, 1))
                                    : static_cast<float>(std::max<std::uint32_t>(p.release_ms, 1));
  const float step_db = p.duck_db * static_cast<float>(tick_ms) / ms;
  const float cur_db = 20.0F * std::log10(std::max(current, 1e-6F));
  const float tgt_db = 20.0F * std::log10(target);
  const float next_db = target < current ? std::max(cur_db - step_db, tgt_db) : std::min(cur_db + step_db, tgt_db);
  if (std::fabs(next_db - tgt_db) < 1e-3F) return target;
  return std::pow(10.0F, next_db / 20.0F);
}

}  // namespace gears::media
