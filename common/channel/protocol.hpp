// The semantic channel: a per-domain dom0<->domU link carrying hints, control and bulk data.
//
// Transport: two StreamRings (common/ring/stream_ring.hpp), one per direction, granted by the frontend
// (domU), mapped by the backend (dom0), and one interdomain event channel shared by both directions.
//   up   ring: domU produces, dom0 consumes
//   down ring: dom0 produces, domU consumes
//
// Xenbus (device type "gears"):
//   backend  /local/domain/0/backend/gears/<domU>/<devid>/
//     feature-gears-hints = 1, max-ring-page-order = <n>, max-frame = <bytes>
//   frontend /local/domain/<domU>/device/gears/<devid>/
//     ring-page-order = <k>  (each ring has 1 header page + 2^k data pages)
//     up-ring-dir-ref, down-ring-dir-ref = <gref>  one page per ring, granted read-only, holding that ring's
//       1 + 2^k grant refs as u32 from offset 0 (page i of the ring = entry i). dom0 copies the entries out
//       once, then maps them (a bad entry fails the map). Two keys instead of 2 + 2^(k+1): each xenstore
//       access is a round trip through dom0, ~8 s for 514 keys under TCG.
//     up-ring-ref<i>, down-ring-ref<i>, i in [0, 1 + 2^k): the older form, still accepted when no
//       directory key is present
//     event-channel = <port>
//
// Frames (header from StreamRing: u32 len, u16 type, u16 flags; payloads little-endian):
//   Hello     both  {u32 version, u32 features}                       first frame each way
//   Hints     up    TLV hint set (common/hints)                       dom0 answers HintsAck
//   HintsAck  down  {u32 status (0 ok / errno), u32 records}
//   BulkBegin up    {u8 dir, u8 verify, u16 0, u32 0, u64 bytes, u64 seed}
//   Data      both  bulk bytes (<= max-frame)
//   BulkEnd   both  {u64 bytes, u64 checksum}                          sender's, then receiver's
//   Ping/Pong both  {u64 seq, u64 t_ns}
//   Msg       up    small message (channel.msgs benchmark)
//   MsgEnd    both  {u64 count, u64 checksum}
//   BenchRequest down {u32 id, u8 kind, u8 verify, u16 0, u64 amount, u32 size, u32 0}   dom0 asks an agent
//   BenchResult  up   {u32 id, u32 status, u64 amount, u64 elapsed_ns, u64 p50_ns, u8 match, u8[7] 0}
// Agent mode: a frontend whose Hello sets kFeatureAgent serves BenchRequests (one at a time): it runs the
// named measurement with the ordinary frontend-initiated frames above, then answers with a BenchResult.
// dom0 sends a BenchRequest only to such a frontend, and never a second one before the first's result; a
// BenchResult nobody asked for is a protocol violation.
// Any other type, a malformed payload, a Data frame outside a bulk transfer, or too many control frames
// per second or more than 4096 unread replies (flood) is a protocol violation: dom0 closes the channel and logs why.
#pragma once

#include <cstddef>
#include <cstdint>
#include <span>
#include <string_view>

#include "common/util/result.hpp"

namespace gears::channel {

inline constexpr std::string_view kDeviceType = "gears";
inline constexpr std::uint32_t kVersion = 1;
inline constexpr unsigned kMaxRingPageOrder = 9;      // 512 data pages (2 MiB) per direction
// A ring's directory (1 + 2^kMaxRingPageOrder u32 refs) fits one page.
static_assert((1 + (std::size_t{1} << kMaxRingPageOrder)) * sizeof(std::uint32_t) <= 4096);
inline constexpr unsigned kDefaultRingPageOrder = 8;  // 1 MiB per direction
inline constexpr std::uint32_t kMaxFrame = 64 * 1024;
inline constexpr std::uint32_t kMaxControlFramesPerSec = 500;  // hint sets per second beyond this: flood

enum class FrameType : std::uint16_t {
  Hello = 1,
  Hints = 2,
  HintsAck = 3,
  BulkBegin = 4,
  Data = 5,
  BulkEnd = 6,
  Ping = 7,
  Pong = 8,
  Msg = 9,
  MsgEnd = 10,
  BenchRequest = 11,
  BenchResult = 12,
};

inline constexpr std::uint32_t kFeatureAgent = 1U << 0U;  // Hello.features from the frontend

enum class BenchKind : std::uint8_t { BulkUp = 1, BulkDown = 2, Msgs = 3, Rtt = 4 };
[[nodiscard]] std::string_view bench_kind_name(BenchKind k);  // "bulk_up", "bulk_down", "msgs", "rtt"

enum class Direction : std::uint8_t { Up = 0, Down = 1 };

struct Hello {
  std::uint32_t version = kVersion;
  std::uint32_t features = 0;
};
struct HintsAck {
  std::uint32_t status = 0;
  std::uint32_t records = 0;
};
struct BulkBegin {
  Direction dir = Direction::Up;
  bool verify = true;
  std::uint64_t bytes = 0;
  std::uint64_t seed = 0;
};
struct BulkEnd {
  std::uint64_t bytes = 0;
  std::uint64_t checksum = 0;
};
struct Ping {
  std::uint64_t seq = 0;
  std::uint64_t t_ns = 0;
};
struct MsgEnd {
  std::uint64_t count = 0;
  std::uint64_t checksum = 0;
};

// amount: bytes (bulk), messages (msgs) or round trips (rtt); size: message bytes (msgs only, else 0).
struct BenchRequest {
  std::uint32_t id = 0;
  BenchKind kind = BenchKind::BulkUp;
  bool verify = true;
  std::uint64_t amount = 0;
  std::uint32_t size = 0;
};
// status: 0 or the errno of the agent's failure. p50_ns: median round trip (rtt), else 0.
struct BenchResult {
  std::uint32_t id = 0;
  std::uint32_t status = 0;
  std::uint64_t amount = 0;
  std::uint64_t elapsed_ns = 0;
  std::uint64_t p50_ns = 0;
  bool match = false;
};
// Bounds an agent accepts (and dom0 asks for at most).
inline constexpr std::uint64_t kMaxBenchBytes = 64ULL << 30U;
inline constexpr std::uint64_t kMaxBenchCount = 100'000'000ULL;

inline constexpr std::size_t kHelloSize = 8;
inline constexpr std::size_t kHintsAckSize = 8;
inline constexpr std::size_t kBulkBeginSize = 24;
inline constexpr std::size_t kBulkEndSize = 16;
inline constexpr std::size_t kPingSize = 16;
inline constexpr std::size_t kMsgEndSize = 16;
inline constexpr std::size_t kBenchRequestSize = 24;
inline constexpr std::size_t kBenchResultSize = 40;

// Encoders write exactly k*Size bytes into `out` (which must be at least that long).
void encode(const Hello& m, std::span<std::byte, kHelloSize> out);
void encode(const HintsAck& m, std::span<std::byte, kHintsAckSize> out);
void encode(const BulkBegin& m, std::span<std::byte, kBulkBeginSize> out);
void encode(const BulkEnd& m, std::span<std::byte, kBulkEndSize> out);
void encode(const Ping& m, std::span<std::byte, kPingSize> out);
void encode(const MsgEnd& m, std::span<std::byte, kMsgEndSize> out);
void encode(const BenchRequest& m, std::span<std::byte, kBenchRequestSize> out);
void encode(const BenchResult& m, std::span<std::byte, kBenchResultSize> out);

// Decoders are strict: exact length, enum values in range, reserved bytes zero.
[[nodiscard]] Result<Hello> decode_hello(std::span<const std::byte> in);
[[nodiscard]] Result<HintsAck> decode_hints_ack(std::span<const std::byte> in);
[[nodiscard]] Result<BulkBegin> decode_bulk_begin(std::span<const std::byte> in);
[[nodiscard]] Result<BulkEnd> decode_bulk_end(std::span<const std::byte> in);
[[nodiscard]] Result<Ping> decode_ping(std::span<const std::byte> in);
[[nodiscard]] Result<MsgEnd> decode_msg_end(std::span<const std::byte> in);
// Also bounds the request: kind known, amount in (0, kMaxBench*], size 1..kMaxFrame for msgs, 0 otherwise.
[[nodiscard]] Result<BenchRequest> decode_bench_request(std::span<const std::byte> in);
[[nodiscard]] Result<BenchResult> decode_bench_result(std::span<const std::byte> in);

[[nodiscard]] std::string_view frame_name(std::uint16_t type);

}  // namespace gears::channel
