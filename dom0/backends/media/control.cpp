#include "dom0/backends/media/control.hpp"

#include <cmath>
#include <exception>

namespace gears::media {
namespace {
nlohmann::json err(const std::string& what) { return {{"ok", false}, {"error", what}}; }
}  // namespace

nlohmann::json media_request(Mixer& mixer, const nlohmann::json& req) {
  const std::string verb = req.value("verb", "");
  if (verb == "media") return {{"ok", true}, {"mixer", mixer.stats()}, {"streams", mixer.streams_json()}};
  if (verb == "media-volume") {
    const auto dom = req.find("dom");
    if (dom == req.end() || !dom->is_number_unsigned() || dom->get<std::uint64_t>() > 0x7fef)
      return err("media-volume needs \"dom\": a domain id");
    const auto db = req.find("db");
    if (db != req.end() && (!db->is_number() || !std::isfinite(db->get<double>()) || db->get<double>() < -120.0 ||
                            db->get<double>() > 12.0))
      return err("\"db\" must be a number in [-120, 12]");
    const auto mute = req.find("mute");
    if (mute != req.end() && !mute->is_boolean()) return err("\"mute\" must be true or false");
    const auto stream = req.find("stream");
    if (stream != req.end() && (!stream->is_string() || stream->get<std::string>().size() > 64))
      return err("\"stream\" must be a string (a stream name or part of it)");
    const float gain = db == req.end() ? 1.0F : static_cast<float>(std::pow(10.0, db->get<double>() / 20.0));
    const bool m = mute != req.end() && mute->get<bool>();
    const auto d = dom->get<std::uint32_t>();
    if (stream == req.end()) {
      mixer.set_domain(d, gain, m);
      return {{"ok", true}, {"dom", d}, {"gain", gain}, {"mute", m}};
    }
    const int n = mixer.set_stream(d, stream->get<std::string>(), gain, m);
    if (n == 0) return err("no stream of dom " + std::to_string(d) + " matches '" + stream->get<std::string>() + "'");
    return {{"ok", true}, {"dom", d}, {"streams", n}, {"gain", gain}, {"mute", m}};
  }
  if (verb == "media-sink") {
    const auto sink = req.find("sink");
    if (sink == req.end() || !sink->is_string())
      return err("media-sink needs \"sink\": wav:<path>, alsa:<device> or null");
    try {
      mixer.set_sink(make_sink(sink->get<std::string>(), mixer.config().rate));
    } catch (const std::exception& e) {
      return err(e.what());
    }
    return {{"ok", true}, {"sink", sink->get<std::string>()}};
  }
  return err("unknown media verb '" + verb.substr(0, 64) + "' (known: media, media-volume, media-sink)");
}

}  // namespace gears::media
