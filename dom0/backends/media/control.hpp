// The media control verbs, served on gearsd's control socket (Daemon::add_verb; gearsctl media ...).
// One JSON object per request, one back:
//   {"verb":"media"}                                              -> mixer stats + streams
//   {"verb":"media-volume","dom":N,"stream":"0/0","db":-6,"mute":false}
//       per stream (streams of dom N whose name contains "stream"), or per domain without "stream"
//   {"verb":"media-sink","sink":"wav:/path.wav"|"null"}          -> switch the sink at the next tick
// Bad input gets {"ok":false,"error":...}; nothing here throws.
#pragma once

#include <nlohmann/json.hpp>

#include "dom0/backends/media/sink.hpp"

namespace gears::media {

[[nodiscard]] nlohmann::json media_request(Mixer& mixer, const nlohmann::json& req);

}  // namespace gears::media
