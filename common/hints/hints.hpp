// The semantic vocabulary: what a guest, an xl config or a GEARS service can tell a backend, and
// a strict, bounded TLV codec for it.
//
// ---- Wire format (a "hint set", version 1) --------------------------------------------------
// A sequence of records, no padding, no set header (the carrier frames the set):
//   u16 kind | u16 len | len bytes of value            (all integers little-endian)
// Bounds: at most kMaxRecords records and kMaxEncodedSize bytes in total. Each kind has an exact
// (or exactly computed) value length; reserved bytes must be zero. Every kind is a singleton
// except flow_key (up to kMaxFlowKeys). The scope record is mandatory. Unknown kinds, bad enum
// values, out-of-range numbers, duplicates, truncation and trailing bytes are all errors: the
// receiver reports them (EPROTO) and drops the whole set.
//
//   kind              len           value
//   1  scope          8             u8 scope, u8 devtype, u16 0, u32 devid  (devtype/devid 0 unless
//                                   scope = device)
//   2  qos            4             u8 class (0..7; gold=0 silver=1 bronze=2), u8 0, u16 weight
//                                   (0 = default, else 1..10000)
//   3  rate           8             u64 bytes/s, > 0
//   4  latency        4             u32 microseconds, > 0
//   5  flow_key       8             u64 opaque (repeatable)
//   6  stream_key     8             u64 opaque
//   7  process_key    8+n | 16      form 1: u8 1, u8 n (1..15), u16 0, u32 pid, n bytes comm
//                                   form 2: u8 2, u8 0, u16 0, u32 0, u64 opaque key
//   8  stream_role    1             u8: voice=1 media=2 alert=3
//   9  access         1             u8: sequential=1 random=2
//   10 process        8+n+m         u32 pid, u8 n (1..15), u8 0, u16 m (0..kMaxCgroupPath),
//                                   n bytes comm, m bytes cgroup path ("/..." printable ASCII)
// Set-level rules: scope = process needs a process_key or process record; scope = flow needs at
// least one flow_key; scope = stream needs a stream_key.
#pragma once

#include <array>
#include <cstddef>
#include <cstdint>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <variant>
#include <vector>

#include "common/util/result.hpp"

namespace gears::hints {

inline constexpr std::size_t kMaxRecords = 32;
inline constexpr std::size_t kMaxEncodedSize = 2048;
inline constexpr std::size_t kMaxFlowKeys = 16;
inline constexpr std::size_t kMaxComm = 15;  // TASK_COMM_LEN - 1
inline constexpr std::size_t kMaxCgroupPath = 512;
inline constexpr std::uint32_t kMaxPid = 4'194'304;  // PID_MAX_LIMIT
inline constexpr std::uint8_t kMaxQosClass = 7;
inline constexpr std::uint16_t kMaxWeight = 10'000;

enum class Kind : std::uint16_t {
  scope = 1,
  qos = 2,
  rate = 3,
  latency = 4,
  flow_key = 5,
  stream_key = 6,
  process_key = 7,
  stream_role = 8,
  access = 9,
  process = 10,
};

enum class ScopeKind : std::uint8_t { domain = 1, device = 2, process = 3, flow = 4, stream = 5 };
enum class DevType : std::uint8_t { none = 0, vbd = 1, vif = 2, vsnd = 3 };
enum class StreamRole : std::uint8_t { voice = 1, media = 2, alert = 3 };
enum class AccessPattern : std::uint8_t { sequential = 1, random = 2 };

// Named QoS classes; any class 0..kMaxQosClass is valid (0 = highest priority).
inline constexpr std::uint8_t kGold = 0;
inline constexpr std::uint8_t kSilver = 1;
inline constexpr std::uint8_t kBronze = 2;

struct Scope {
  ScopeKind kind = ScopeKind::domain;
  DevType devtype = DevType::none;  // only for kind == device
  std::uint32_t devid = 0;          // only for kind == device (e.g. 51712 for xvda, 0 for vif 0)
  friend bool operator==(const Scope&, const Scope&) = default;
};

struct Qos {
  std::uint8_t cls = kSilver;
  std::uint16_t weight = 0;  // 0 = backend default
  friend bool operator==(const Qos&, const Qos&) = default;
};

struct PidComm {
  std::uint32_t pid = 0;
  std::string comm;
  friend bool operator==(const PidComm&, const PidComm&) = default;
};
// What a hint applies to, as a process: pid + comm, or an opaque key the sender chose.
using ProcessKey = std::variant<PidComm, std::uint64_t>;

struct ProcessIdentity {
  std::uint32_t pid = 0;
  std::string comm;
  std::string cgroup;  // empty = unknown
  friend bool operator==(const ProcessIdentity&, const ProcessIdentity&) = default;
};

struct HintSet {
  Scope scope;
  std::optional<Qos> qos;
  std::optional<std::uint64_t> rate_bps;
  std::optional<std::uint32_t> latency_us;
  std::vector<std::uint64_t> flow_keys;
  std::optional<std::uint64_t> stream_key;
  std::optional<ProcessKey> process_key;
  std::optional<StreamRole> role;
  std::optional<AccessPattern> access;
  std::optional<ProcessIdentity> process;
  friend bool operator==(const HintSet&, const HintSet&) = default;
};

// Semantic validity (the rules in the header comment). Encode and decode both apply it.
[[nodiscard]] Status validate(const HintSet& h);

// Exact encoded size of a valid set.
[[nodiscard]] std::size_t encoded_size(const HintSet& h);

// Encode into `out`. EINVAL: invalid set; E2BIG: over kMaxEncodedSize/kMaxRecords; ENOSPC: `out`
// too small (nothing meaningful written). Returns bytes written. Records go out in kind order.
[[nodiscard]] Result<std::size_t> encode(const HintSet& h, std::span<std::byte> out);

// Decode a set from PRIVATE memory (copy it out of any shared ring first). Every malformed input
// is EPROTO with a static description of the first problem found.
[[nodiscard]] Result<HintSet> decode(std::span<const std::byte> in);

// Names used by the text form and JSON.
[[nodiscard]] std::string_view name(Kind k);
[[nodiscard]] std::string_view name(ScopeKind s);
[[nodiscard]] std::string_view name(DevType d);
[[nodiscard]] std::string_view name(StreamRole r);
[[nodiscard]] std::string_view name(AccessPattern a);
[[nodiscard]] std::string qos_class_name(std::uint8_t cls);  // "gold", "silver", "bronze", "3"

// Flow keys as vifs read them: (IP protocol << 16) | port. Port 0 = every frame of that protocol; protocol 0 = TCP
// or UDP on that port. A frame matches by its source or its destination port. Keys with other bits set match
// nothing on a vif (they stay opaque keys for other consumers).
inline constexpr std::uint8_t kFlowAnyL4 = 0;
[[nodiscard]] constexpr std::uint64_t net_flow_key(std::uint8_t ip_proto, std::uint16_t port) {
  return (std::uint64_t{ip_proto} << 16U) | port;
}

// Canonical text form, accepted back by parse_text (parse_text(to_string(h)) == h).
[[nodiscard]] std::string to_string(const HintSet& h);
// One-line JSON object, e.g. {"scope":"process","qos":{"class":"gold","weight":0},...}.
[[nodiscard]] std::string to_json(const HintSet& h);

// ---- Text form for CLIs and xl configs ---------------------------------------------------------
// Comma-separated key=value items, e.g. "class=gold,rate=10M,latency=500us,pid=123,role=voice".
//   scope=domain|device|process|flow|stream   (inferred when absent: dev -> device, pid/comm/
//                                                cgroup/pkey -> process, stream -> stream,
//                                                flow -> flow, else domain)
//   dev=vbd/51712 | vif/0 | vsnd/0           class=gold|silver|bronze|0..7   weight=1..10000
//   rate=<n>[K|M|G|Ki|Mi|Gi]  (bytes/s; decimal fraction allowed, e.g. 1.5M)
//   latency=<n>[us|ms|s]      (default us)
//   flow=<u64> | tcp[:<port>] | udp[:<port>] | port:<port> | icmp | icmp6   (repeatable; the named forms are
//             net_flow_key()s)   stream=<u64>   pkey=<u64> | <pid>/<comm>   (u64: decimal or 0x hex)
//   pid=<n> comm=<name> cgroup=</path>       (process identity; pid required with comm/cgroup)
//   role=voice|media|alert    access=sequential|seq|random|rand
// Whitespace around items, keys and values is ignored. Keys other than flow may appear once.
// comm, cgroup and the comm of pkey accept %XX escapes; to_string() escapes ',', '%', '=', space
// and tab there, so names like "Web Content" or "a,b" survive the round trip.
struct ParseError {
  std::string key;  // the offending key ("" when the item has none)
  std::string why;
  [[nodiscard]] std::string message() const { return key.empty() ? why : key + ": " + why; }
};

class [[nodiscard]] ParseResult {
 public:
  ParseResult(HintSet h) : v_(std::move(h)) {}     // NOLINT(google-explicit-constructor)
  ParseResult(ParseError e) : v_(std::move(e)) {}  // NOLINT(google-explicit-constructor)
  [[nodiscard]] bool ok() const { return std::holds_alternative<HintSet>(v_); }
  explicit operator bool() const { return ok(); }
  [[nodiscard]] const HintSet& value() const { return std::get<HintSet>(v_); }
  [[nodiscard]] const ParseError& error() const { return std::get<ParseError>(v_); }

 private:
  std::variant<HintSet, ParseError> v_;
};

[[nodiscard]] ParseResult parse_text(std::string_view text);

}  // namespace gears::hints
