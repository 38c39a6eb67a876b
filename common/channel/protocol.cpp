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

void encode(const BenchRequest& m, std::span<std::byte, kBenchRequestSize> out) {
  le::store32(out.data(), m.id);
  out[4] = static_cast<std::byte>(m.kind);
  out[5] = static_cast<std::byte>(m.verify ? 1 : 0);
  le::store16(out.data() + 6, 0);
  le::store64(out.data() + 8, m.amount);
  le::store32(out.data() + 16, m.size);
  le::store32(out.data() + 20, 0);
}
void encode(const BenchResult& m, std::span<std::byte, kBenchResultSize> out) {
  le::store32(out.data(), m.id);
  le::store32(out.data() + 4, m.status);
  le::store64(out.data() + 8, m.amount);
  le::store64(out.data() + 16, m.elapsed_ns);
  le::store64(out.data() + 24, m.p50_ns);
  out[32] = static_cast<std::byte>(m.match ? 1 : 0);
  for (std::size_t i = 33; i < kBenchResultSize; ++i) out[i] = std::byte{0};
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

Result<BenchRequest> decode_bench_request(std::span<const std::byte> in) {
  if (in.size() != kBenchRequestSize) return kBadLength;
  const auto kind = std::to_integer<unsigned>(in[4]);
  const auto verify = std::to_integer<unsigned>(in[5]);
  if (kind < 1 || kind > 4) return Error{EPROTO, "channel: bench kind out of range"};
  if (verify > 1) return Error{EPROTO, "channel: bench verify flag out of range"};
  if (le::load16(in.data() + 6) != 0 || le::load32(in.data() + 20) != 0)
    return Error{EPROTO, "channel: reserved bench bytes not zero"};
  BenchRequest r;
  r.id = le::load32(in.data());
  r.kind = static_cast<BenchKind>(kind);
  r.verify = verify == 1;
  r.amount = le::load64(in.data() + 8);
  r.size = le::load32(in.data() + 16);
  const bool bulk = r.kind == BenchKind::BulkUp || r.kind == BenchKind::BulkDown;
  if (r.amount == 0 || r.amount > (bulk ? kMaxBenchBytes : kMaxBenchCount))
    return Error{EPROTO, "channel: bench amount out of range"};
  if (r.kind == BenchKind::Msgs ? (r.size == 0 || r.size > kMaxFrame) : r.size != 0)
    return Error{EPROTO, "channel: bench message size out of range"};
  return r;
}
Result<BenchResult> decode_bench_result(std::span<const std::byte> in) {
  if (in.size() != kBenchResultSize) return kBadLength;
  const auto match = std::to_integer<unsigned>(in[32]);
  if (match > 1) return Error{EPROTO, "channel: bench match flag out of range"};
  for (std::size_t i = 33; i < kBenchResultSize; ++i)
    if (in[i] != std::byte{0}) return Error{EPROTO, "channel: reserved bench bytes not zero"};
  BenchResult r;
  r.id = le::load32(in.data());
  r.status = le::load32(in.data() + 4);
  r.amount = le::load64(in.data() + 8);
  r.elapsed_ns = le::load64(in.data() + 16);
  r.p50_ns = le::load64(in.data() + 24);
  r.match = match == 1;
  return r;
}

std::string_view bench_kind_name(BenchKind k) {
  switch (k) {
    case BenchKind::BulkUp: return "bulk_up";
    case BenchKind::BulkDown: return "bulk_down";
    case BenchKind::Msgs: return "msgs";
    case BenchKind::Rtt: return "rtt";
  }
  return "unknown";
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
    case FrameType::BenchRequest: return "BenchRequest";
    case FrameType::BenchResult: return "BenchResult";
  }
  return "unknown";
}

}  // namespace gears::channel
