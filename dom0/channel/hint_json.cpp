// TLV hint sets from the channel -> the JSON records gearsd keeps and `gearsctl hints` shows.
#include "common/ring/le.hpp"
#include "dom0/channel/channel_device.hpp"

namespace gears::chan {

// Structural decode only (bounded TLV walk); the vocabulary check moves to common/hints' decoder.
Result<nlohmann::json> decode_hint_set(std::span<const std::byte> tlv) {
  nlohmann::json out = nlohmann::json::array();
  std::size_t off = 0;
  while (off < tlv.size()) {
    if (tlv.size() - off < 4) return Error{EPROTO, "hints: truncated record header"};
    const auto kind = le::load16(tlv.data() + off);
    const auto len = le::load16(tlv.data() + off + 2);
    off += 4;
    if (len > tlv.size() - off) return Error{EPROTO, "hints: record longer than the set"};
    std::string hex;
    for (std::size_t i = 0; i < len; ++i) {
      static constexpr char kHex[] = "0123456789abcdef";
      const auto b = std::to_integer<unsigned>(tlv[off + i]);
      hex += kHex[b >> 4U];
      hex += kHex[b & 15U];
    }
    out.push_back({{"kind", kind}, {"value", hex}});
    off += len;
    if (out.size() > 64) return Error{EPROTO, "hints: too many records"};
  }
  return out;
}

}  // namespace gears::chan
