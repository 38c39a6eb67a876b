#include "common/channel/protocol.hpp"

#include "common/ring/le.hpp"

namespace gears::channel {
namespace {

constexpr Error kBadLength{EPROTO, "channel: payload has the wrong length"};

}  // namespace

void encode(const Hello& m, std::span<std::byte, kHelloSize> out) {
  le::store32(out.data(), m.version);
  le::store32(out.data() + 4, m.features);
}
void encode(const HintsAck& m, std::span<std::byte, kHintsAckSize> out) {
  le::store32(out.data(), m.status);
  le::store32(out.data() + 4, m.records);
}
void encode(const BulkBegin& m, std::span<std::byte, kBulkBeginSize> out) {
  out[0] = static_cast<std::byte>(m.dir);
  out[1] = static_cast<std::byte>(m.verify ? 1 : 0);
  le::store16(out.data() + 2, 0);
  le::store32(out.data() + 4, 0);
  le::store64(out.data() + 8, m.bytes);
  le::store64(out.data() + 16, m.seed);
}
void encode(const BulkEnd& m, std::span<std::byte, kBulkEndSize> out) {
  le::store64(out.data(), m.bytes);
  le::store64(out.data() + 8, m.checksum);
}
void encode(const Ping& m, std::span<std::byte, kPingSize> out) {
  le::store64(out.data(), m.seq);
  le::store64(out.data() + 8, m.t_ns);
}
void encode(const MsgEnd& m, std::span<std::byte, kMsgEndSize> out) {
  le::store64(out.data(), m.count);
  le::store64(out.data() + 8, m.checksum);
}

Result<Hello> decode_hello(std::span<const std::byte> in) {
  if (in.size() != kHelloSize) return kBadLength;
  return Hello{le::load32(in.data()), le::load32(in.data() + 4)};
}
Result<HintsAck> decode_hints_ack(std::span<const std::byte> in) {
  if (in.size() != kHintsAckSize) return kBadLength;
  return HintsAck{le::load32(in.data()), le::load32(in.data() + 4)};
}
Result<BulkBegin> decode_bulk_begin(std::span<const std::byte> in) {
  if (in.size() != kBulkBeginSize) return kBadLength;
  const auto dir = std::to_integer<unsigned>(in[0]);
  const auto verify = std::to_integer<unsigned>(in[1]);
  if (dir > 1) return Error{EPROTO, "channel: bulk direction out of range"};
  if (verify > 1) return Error{EPROTO, "channel: bulk verify flag out of range"};
  if (le::load16(in.data() + 2) != 0 || le::load32(in.data() + 4) != 0)
    return Error{EPROTO, "channel: reserved bulk bytes not zero"};
  BulkBegin b;
  b.dir = static_cast<Direction>(dir);
  b.verify = verify == 1;
  b.bytes = le::load64(in.data() + 8);
  b.seed = le::load64(in.data() + 16);
  return b;
}
Result<BulkEnd> decode_bulk_end(std::span<const std::byte> in) {
  if (in.size() != kBulkEndSize) return kBadLength;
  return BulkEnd{le::load64(in.data()), le::load64(in.data() + 8)};
}
Result<Ping> decode_ping(std::span<const std::byte> in) {
  if (in.size() != kPingSize) return kBadLength;
  return Ping{le::load64(in.data()), le::load64(in.data() + 8)};
}
Result<MsgEnd> decode_msg_end(std::span<const std::byte> in) {
  if (in.size() != kMsgEndSize) return kBadLength;
  return MsgEnd{le::load64(in.data()), le::load64(in.data() + 8)};
}

std::string_view frame_name(std::uint16_t type) {
  switch (static_cast<FrameType>(type)) {
    case FrameType::Hello: return "Hello";
    case FrameType::Hints: return "Hints";
    case FrameType::HintsAck: return "HintsAck";
    case FrameType::BulkBegin: return "BulkBegin";
    case FrameType::Data: return "Data";
    case FrameType::BulkEnd: return "BulkEnd";
    case FrameType::Ping: return "Ping";
    case FrameType::Pong: return "Pong";
    case FrameType::Msg: return "Msg";
    case FrameType::MsgEnd: return "MsgEnd";
  }
  return "unknown";
}

}  // namespace gears::channel
