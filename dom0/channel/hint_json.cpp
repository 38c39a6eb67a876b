// TLV hint sets from the channel -> the JSON records gearsd keeps and `gearsctl hints` shows.
#include "common/hints/hints.hpp"
#include "dom0/channel/channel_device.hpp"

namespace gears::chan {

Result<nlohmann::json> decode_hint_set(std::span<const std::byte> tlv) {
  auto set = hints::decode(tlv);  // tlv is already a private copy (the session copied the frame out)
  if (!set) return set.error();
  auto j = nlohmann::json::parse(hints::to_json(*set), nullptr, false);
  if (j.is_discarded()) return Error{EPROTO, "hints: cannot render as JSON"};
  j["text"] = hints::to_string(*set);
  return j;
}

}  // namespace gears::chan
