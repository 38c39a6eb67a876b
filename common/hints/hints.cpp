#include "common/hints/hints.hpp"

#include <algorithm>
#include <cerrno>
#include <charconv>
#include <cmath>
#include <cstring>

#include "common/ring/le.hpp"

namespace gears::hints {
namespace {

constexpr std::size_t kRecHdr = 4;

bool printable_ascii(std::string_view s) {
  return std::all_of(s.begin(), s.end(), [](char c) { return c >= 0x20 && c < 0x7F; });
}
bool valid_comm(std::string_view c) { return !c.empty() && c.size() <= kMaxComm && printable_ascii(c); }
bool valid_cgroup(std::string_view c) {
  return c.empty() || (c.size() <= kMaxCgroupPath && c.front() == '/' && printable_ascii(c));
}
bool valid_pid(std::uint32_t pid) { return pid > 0 && pid <= kMaxPid; }

bool valid(ScopeKind s) { return s >= ScopeKind::domain && s <= ScopeKind::stream; }
bool valid(DevType d) { return d >= DevType::vbd && d <= DevType::vsnd; }
bool valid(StreamRole r) { return r >= StreamRole::voice && r <= StreamRole::alert; }
bool valid(AccessPattern a) { return a >= AccessPattern::sequential && a <= AccessPattern::random; }

// Semantic rules shared by encode and decode; `proto` picks the errno (EPROTO on receive).
Status check(const HintSet& h, int code) {
  const auto err = [code](std::string_view w) { return Error{code, w}; };
  if (!valid(h.scope.kind)) return err("hints: bad scope");
  if (h.scope.kind == ScopeKind::device) {
    if (!valid(h.scope.devtype)) return err("hints: bad device type in scope");
  } else if (h.scope.devtype != DevType::none || h.scope.devid != 0) {
    return err("hints: device fields set on a non-device scope");
  }
  if (h.qos) {
    if (h.qos->cls > kMaxQosClass) return err("hints: qos class out of range");
    if (h.qos->weight > kMaxWeight) return err("hints: qos weight out of range");
  }
  if (h.rate_bps && *h.rate_bps == 0) return err("hints: rate is zero");
  if (h.latency_us && *h.latency_us == 0) return err("hints: latency is zero");
  if (h.flow_keys.size() > kMaxFlowKeys) return err("hints: too many flow keys");
  if (h.process_key) {
    if (const auto* pc = std::get_if<PidComm>(&*h.process_key)) {
      if (!valid_pid(pc->pid)) return err("hints: process key pid out of range");
      if (!valid_comm(pc->comm)) return err("hints: process key comm invalid");
    }
  }
  if (h.role && !valid(*h.role)) return err("hints: bad stream role");
  if (h.access && !valid(*h.access)) return err("hints: bad access pattern");
  if (h.process) {
    if (!valid_pid(h.process->pid)) return err("hints: process pid out of range");
    if (!valid_comm(h.process->comm)) return err("hints: process comm invalid");
    if (!valid_cgroup(h.process->cgroup)) return err("hints: process cgroup path invalid");
  }
  switch (h.scope.kind) {
    case ScopeKind::process:
      if (!h.process_key && !h.process) return err("hints: process scope without a process key");
      break;
    case ScopeKind::flow:
      if (h.flow_keys.empty()) return err("hints: flow scope without a flow key");
      break;
    case ScopeKind::stream:
      if (!h.stream_key) return err("hints: stream scope without a stream key");
      break;
    case ScopeKind::domain:
    case ScopeKind::device:
      break;
  }
  return {};
}

std::size_t record_count(const HintSet& h) {
  return 1 + (h.qos ? 1U : 0U) + (h.rate_bps ? 1U : 0U) + (h.latency_us ? 1U : 0U) +
         h.flow_keys.size() + (h.stream_key ? 1U : 0U) + (h.process_key ? 1U : 0U) +
         (h.role ? 1U : 0U) + (h.access ? 1U : 0U) + (h.process ? 1U : 0U);
}

class Writer {
 public:
  explicit Writer(std::span<std::byte> out) : out_(out) {}
  // Starts a record of `len` value bytes; returns its value area.
  std::byte* record(Kind k, std::size_t len) {
    std::byte* p = out_.data() + off_;
    le::store16(p, static_cast<std::uint16_t>(k));
    le::store16(p + 2, static_cast<std::uint16_t>(len));
    std::memset(p + kRecHdr, 0, len);
    off_ += kRecHdr + len;
    return p + kRecHdr;
  }
  [[nodiscard]] std::size_t size() const { return off_; }

 private:
  std::span<std::byte> out_;
  std::size_t off_ = 0;
};

void put_u64(Writer& w, Kind k, std::uint64_t v) { le::store64(w.record(k, 8), v); }

}  // namespace

Status validate(const HintSet& h) { return check(h, EINVAL); }

std::size_t encoded_size(const HintSet& h) {
  std::size_t n = kRecHdr + 8;  // scope
  if (h.qos) n += kRecHdr + 4;
  if (h.rate_bps) n += kRecHdr + 8;
  if (h.latency_us) n += kRecHdr + 4;
  n += h.flow_keys.size() * (kRecHdr + 8);
  if (h.stream_key) n += kRecHdr + 8;
  if (h.process_key) {
    const auto* pc = std::get_if<PidComm>(&*h.process_key);
    n += kRecHdr + (pc != nullptr ? 8 + pc->comm.size() : 16);
  }
  if (h.role) n += kRecHdr + 1;
  if (h.access) n += kRecHdr + 1;
  if (h.process) n += kRecHdr + 8 + h.process->comm.size() + h.process->cgroup.size();
  return n;
}

Result<std::size_t> encode(const HintSet& h, std::span<std::byte> out) {
  if (auto st = validate(h); !st) return st.error();
  const std::size_t need = encoded_size(h);
  if (need > kMaxEncodedSize || record_count(h) > kMaxRecords)
    return Error{E2BIG, "hints: set exceeds the encoded size or record limit"};
  if (out.size() < need) return Error{ENOSPC, "hints: output buffer too small"};
  Writer w(out);
  std::byte* v = w.record(Kind::scope, 8);
  v[0] = static_cast<std::byte>(h.scope.kind);
  v[1] = static_cast<std::byte>(h.scope.devtype);
  le::store32(v + 4, h.scope.devid);
  if (h.qos) {
    v = w.record(Kind::qos, 4);
    v[0] = static_cast<std::byte>(h.qos->cls);
    le::store16(v + 2, h.qos->weight);
  }
  if (h.rate_bps) put_u64(w, Kind::rate, *h.rate_bps);
  if (h.latency_us) le::store32(w.record(Kind::latency, 4), *h.latency_us);
  for (const auto f : h.flow_keys) put_u64(w, Kind::flow_key, f);
  if (h.stream_key) put_u64(w, Kind::stream_key, *h.stream_key);
  if (h.process_key) {
    if (const auto* pc = std::get_if<PidComm>(&*h.process_key)) {
      v = w.record(Kind::process_key, 8 + pc->comm.size());
      v[0] = std::byte{1};
      v[1] = static_cast<std::byte>(pc->comm.size());
      le::store32(v + 4, pc->pid);
      std::memcpy(v + 8, pc->comm.data(), pc->comm.size());
    } else {
      v = w.record(Kind::process_key, 16);
      v[0] = std::byte{2};
      le::store64(v + 8, std::get<std::uint64_t>(*h.process_key));
    }
  }
  if (h.role) w.record(Kind::stream_role, 1)[0] = static_cast<std::byte>(*h.role);
  if (h.access) w.record(Kind::access, 1)[0] = static_cast<std::byte>(*h.access);
  if (h.process) {
    const auto& p = *h.process;
    v = w.record(Kind::process, 8 + p.comm.size() + p.cgroup.size());
    le::store32(v, p.pid);
    v[4] = static_cast<std::byte>(p.comm.size());
    le::store16(v + 6, static_cast<std::uint16_t>(p.cgroup.size()));
    std::memcpy(v + 8, p.comm.data(), p.comm.size());
    std::memcpy(v + 8 + p.comm.size(), p.cgroup.data(), p.cgroup.size());
  }
  return w.size();
}

namespace {

constexpr Error proto(std::string_view w) { return Error{EPROTO, w}; }

bool zero(std::span<const std::byte> b) {
  return std::all_of(b.begin(), b.end(), [](std::byte x) { return x == std::byte{0}; });
}
std::string str(std::span<const std::byte> b) {
  return {reinterpret_cast<const char*>(b.data()), b.size()};
}

}  // namespace

Result<HintSet> decode(std::span<const std::byte> in) {
  if (in.size() > kMaxEncodedSize) return proto("hints: set longer than the maximum");
  HintSet h;
  bool seen[11] = {};
  std::size_t off = 0;
  std::size_t records = 0;
  while (off < in.size()) {
    if (in.size() - off < kRecHdr) return proto("hints: trailing bytes after the last record");
    if (++records > kMaxRecords) return proto("hints: too many records");
    const std::uint16_t kind = le::load16(in.data() + off);
    const std::uint16_t len = le::load16(in.data() + off + 2);
    off += kRecHdr;
    if (len > in.size() - off) return proto("hints: record truncated");
    const auto v = in.subspan(off, len);
    off += len;
    if (kind < 1 || kind > 10) return proto("hints: unknown kind");
    const auto k = static_cast<Kind>(kind);
    if (k != Kind::flow_key && seen[kind]) return proto("hints: duplicate singleton kind");
    seen[kind] = true;
    const auto want = [len](std::size_t n) { return len == n; };
    switch (k) {
      case Kind::scope: {
        if (!want(8)) return proto("hints: scope record has the wrong length");
        if (v[2] != std::byte{0} || v[3] != std::byte{0}) return proto("hints: reserved bytes not zero");
        h.scope.kind = static_cast<ScopeKind>(v[0]);
        h.scope.devtype = static_cast<DevType>(v[1]);
        h.scope.devid = le::load32(v.data() + 4);
        if (!valid(h.scope.kind)) return proto("hints: bad scope");
        if (h.scope.devtype != DevType::none && !valid(h.scope.devtype))
          return proto("hints: bad device type in scope");
        break;
      }
      case Kind::qos:
        if (!want(4)) return proto("hints: qos record has the wrong length");
        if (v[1] != std::byte{0}) return proto("hints: reserved bytes not zero");
        h.qos = Qos{std::to_integer<std::uint8_t>(v[0]), le::load16(v.data() + 2)};
        break;
      case Kind::rate:
        if (!want(8)) return proto("hints: rate record has the wrong length");
        h.rate_bps = le::load64(v.data());
        break;
      case Kind::latency:
        if (!want(4)) return proto("hints: latency record has the wrong length");
        h.latency_us = le::load32(v.data());
        break;
      case Kind::flow_key:
        if (!want(8)) return proto("hints: flow_key record has the wrong length");
        if (h.flow_keys.size() == kMaxFlowKeys) return proto("hints: too many flow keys");
        h.flow_keys.push_back(le::load64(v.data()));
        break;
      case Kind::stream_key:
        if (!want(8)) return proto("hints: stream_key record has the wrong length");
        h.stream_key = le::load64(v.data());
        break;
      case Kind::process_key: {
        if (len < 8) return proto("hints: process_key record has the wrong length");
        const auto form = std::to_integer<unsigned>(v[0]);
        if (form == 1) {
          const std::size_t n = std::to_integer<std::size_t>(v[1]);
          if (len != 8 + n) return proto("hints: process_key record has the wrong length");
          if (!zero(v.subspan(2, 2))) return proto("hints: reserved bytes not zero");
          h.process_key = PidComm{le::load32(v.data() + 4), str(v.subspan(8, n))};
        } else if (form == 2) {
          if (!want(16)) return proto("hints: process_key record has the wrong length");
          if (!zero(v.subspan(1, 7))) return proto("hints: reserved bytes not zero");
          h.process_key = std::uint64_t{le::load64(v.data() + 8)};
        } else {
          return proto("hints: bad process_key form");
        }
        break;
      }
      case Kind::stream_role:
        if (!want(1)) return proto("hints: stream_role record has the wrong length");
        h.role = static_cast<StreamRole>(v[0]);
        break;
      case Kind::access:
        if (!want(1)) return proto("hints: access record has the wrong length");
        h.access = static_cast<AccessPattern>(v[0]);
        break;
      case Kind::process: {
        if (len < 8) return proto("hints: process record has the wrong length");
        const std::size_t n = std::to_integer<std::size_t>(v[4]);
        const std::size_t m = le::load16(v.data() + 6);
        if (v[5] != std::byte{0}) return proto("hints: reserved bytes not zero");
        if (len != 8 + n + m) return proto("hints: process record has the wrong length");
        h.process = ProcessIdentity{le::load32(v.data()), str(v.subspan(8, n)), str(v.subspan(8 + n, m))};
        break;
      }
    }
  }
  if (!seen[static_cast<unsigned>(Kind::scope)]) return proto("hints: scope record missing");
  if (auto st = check(h, EPROTO); !st) return st.error();
  return h;
}

// ---- names, text, JSON ----

std::string_view name(Kind k) {
  switch (k) {
    case Kind::scope: return "scope";
    case Kind::qos: return "qos";
    case Kind::rate: return "rate";
    case Kind::latency: return "latency";
    case Kind::flow_key: return "flow_key";
    case Kind::stream_key: return "stream_key";
    case Kind::process_key: return "process_key";
    case Kind::stream_role: return "stream_role";
    case Kind::access: return "access";
    case Kind::process: return "process";
  }
  return "?";
}
std::string_view name(ScopeKind s) {
  switch (s) {
    case ScopeKind::domain: return "domain";
    case ScopeKind::device: return "device";
    case ScopeKind::process: return "process";
    case ScopeKind::flow: return "flow";
    case ScopeKind::stream: return "stream";
  }
  return "?";
}
std::string_view name(DevType d) {
  switch (d) {
    case DevType::none: return "none";
    case DevType::vbd: return "vbd";
    case DevType::vif: return "vif";
    case DevType::vsnd: return "vsnd";
  }
  return "?";
}
std::string_view name(StreamRole r) {
  switch (r) {
    case StreamRole::voice: return "voice";
    case StreamRole::media: return "media";
    case StreamRole::alert: return "alert";
  }
  return "?";
}
std::string_view name(AccessPattern a) {
  switch (a) {
    case AccessPattern::sequential: return "sequential";
    case AccessPattern::random: return "random";
  }
  return "?";
}
std::string qos_class_name(std::uint8_t cls) {
  switch (cls) {
    case kGold: return "gold";
    case kSilver: return "silver";
    case kBronze: return "bronze";
    default: return std::to_string(cls);
  }
}

namespace {

std::string hex64(std::uint64_t v) {
  char buf[19] = "0x";
  auto r = std::to_chars(buf + 2, buf + sizeof buf, v, 16);
  return {buf, r.ptr};
}

// Text-form values are comma-separated and whitespace-trimmed: escape what would not survive.
std::string pct_encode(std::string_view v) {
  static constexpr char kHex[] = "0123456789ABCDEF";
  std::string out;
  for (const char c : v) {
    if (c == ',' || c == '%' || c == '=' || c == ' ' || c == '\t') {
      out += '%';
      out += kHex[(static_cast<unsigned char>(c) >> 4U) & 0xFU];
      out += kHex[static_cast<unsigned char>(c) & 0xFU];
    } else {
      out += c;
    }
  }
  return out;
}

void json_string(std::string& out, std::string_view s) {
  out += '"';
  for (const char c : s) {
    if (c == '"' || c == '\\') {
      out += '\\';
      out += c;
    } else if (static_cast<unsigned char>(c) < 0x20) {
      static constexpr char kHex[] = "0123456789abcdef";
      out += "\\u00";
      out += kHex[(static_cast<unsigned char>(c) >> 4U) & 0xFU];
      out += kHex[static_cast<unsigned char>(c) & 0xFU];
    } else {
      out += c;
    }
  }
  out += '"';
}

}  // namespace

std::string to_string(const HintSet& h) {
  std::string s = "scope=" + std::string(name(h.scope.kind));
  const auto add = [&s](std::string_view k, const std::string& v) {
    s += ',';
    s += k;
    s += '=';
    s += v;
  };
  if (h.scope.kind == ScopeKind::device)
    add("dev", std::string(name(h.scope.devtype)) + "/" + std::to_string(h.scope.devid));
  if (h.qos) {
    add("class", qos_class_name(h.qos->cls));
    if (h.qos->weight != 0) add("weight", std::to_string(h.qos->weight));
  }
  if (h.rate_bps) add("rate", std::to_string(*h.rate_bps));
  if (h.latency_us) add("latency", std::to_string(*h.latency_us) + "us");
  for (const auto f : h.flow_keys) add("flow", hex64(f));
  if (h.stream_key) add("stream", hex64(*h.stream_key));
  if (h.process_key) {
    if (const auto* pc = std::get_if<PidComm>(&*h.process_key))
      add("pkey", std::to_string(pc->pid) + "/" + pct_encode(pc->comm));
    else
      add("pkey", hex64(std::get<std::uint64_t>(*h.process_key)));
  }
  if (h.role) add("role", std::string(name(*h.role)));
  if (h.access) add("access", std::string(name(*h.access)));
  if (h.process) {
    add("pid", std::to_string(h.process->pid));
    add("comm", pct_encode(h.process->comm));
    if (!h.process->cgroup.empty()) add("cgroup", pct_encode(h.process->cgroup));
  }
  return s;
}

std::string to_json(const HintSet& h) {
  std::string o = "{\"scope\":";
  json_string(o, name(h.scope.kind));
  if (h.scope.kind == ScopeKind::device) {
    o += ",\"device\":{\"type\":";
    json_string(o, name(h.scope.devtype));
    o += ",\"id\":" + std::to_string(h.scope.devid) + "}";
  }
  if (h.qos) {
    o += ",\"qos\":{\"class\":";
    json_string(o, qos_class_name(h.qos->cls));
    o += ",\"weight\":" + std::to_string(h.qos->weight) + "}";
  }
  if (h.rate_bps) o += ",\"rate_bps\":" + std::to_string(*h.rate_bps);
  if (h.latency_us) o += ",\"latency_us\":" + std::to_string(*h.latency_us);
  if (!h.flow_keys.empty()) {
    o += ",\"flow_keys\":[";
    for (std::size_t i = 0; i < h.flow_keys.size(); ++i) {
      if (i != 0) o += ',';
      json_string(o, hex64(h.flow_keys[i]));
    }
    o += ']';
  }
  if (h.stream_key) {
    o += ",\"stream_key\":";
    json_string(o, hex64(*h.stream_key));
  }
  if (h.process_key) {
    o += ",\"process_key\":";
    if (const auto* pc = std::get_if<PidComm>(&*h.process_key)) {
      o += "{\"pid\":" + std::to_string(pc->pid) + ",\"comm\":";
      json_string(o, pc->comm);
      o += '}';
    } else {
      o += "{\"key\":";
      json_string(o, hex64(std::get<std::uint64_t>(*h.process_key)));
      o += '}';
    }
  }
  if (h.role) {
    o += ",\"role\":";
    json_string(o, name(*h.role));
  }
  if (h.access) {
    o += ",\"access\":";
    json_string(o, name(*h.access));
  }
  if (h.process) {
    o += ",\"process\":{\"pid\":" + std::to_string(h.process->pid) + ",\"comm\":";
    json_string(o, h.process->comm);
    if (!h.process->cgroup.empty()) {
      o += ",\"cgroup\":";
      json_string(o, h.process->cgroup);
    }
    o += '}';
  }
  o += '}';
  return o;
}

// ---- text parser ----

namespace {

std::string_view trim(std::string_view s) {
  while (!s.empty() && (s.front() == ' ' || s.front() == '\t')) s.remove_prefix(1);
  while (!s.empty() && (s.back() == ' ' || s.back() == '\t')) s.remove_suffix(1);
  return s;
}

// Undo pct_encode: "%XX" (hex) -> byte. nullopt on a malformed escape.
std::optional<std::string> pct_decode(std::string_view v) {
  std::string out;
  for (std::size_t i = 0; i < v.size(); ++i) {
    if (v[i] != '%') {
      out += v[i];
      continue;
    }
    unsigned b = 0;
    if (v.size() - i < 3) return std::nullopt;
    const auto r = std::from_chars(v.data() + i + 1, v.data() + i + 3, b, 16);
    if (r.ec != std::errc{} || r.ptr != v.data() + i + 3) return std::nullopt;
    out += static_cast<char>(b);
    i += 2;
  }
  return out;
}

ParseError perr(std::string_view key, std::string why) { return {std::string(key), std::move(why)}; }
std::string quoted(std::string_view v) { return "'" + std::string(v) + "'"; }

// Unsigned integer, decimal or 0x hex, whole string.
std::optional<std::uint64_t> parse_u64(std::string_view v) {
  int base = 10;
  if (v.size() > 2 && v[0] == '0' && (v[1] == 'x' || v[1] == 'X')) {
    v.remove_prefix(2);
    base = 16;
  }
  if (v.empty()) return std::nullopt;
  std::uint64_t out = 0;
  const auto r = std::from_chars(v.data(), v.data() + v.size(), out, base);
  if (r.ec != std::errc{} || r.ptr != v.data() + v.size()) return std::nullopt;
  return out;
}

// flow=: a u64, or a vif flow key by name (net_flow_key).
std::optional<std::uint64_t> parse_flow_key(std::string_view v) {
  static constexpr std::pair<std::string_view, std::uint8_t> kProto[] = {
      {"tcp", 6}, {"udp", 17}, {"port", kFlowAnyL4}, {"icmp", 1}, {"icmp6", 58}};
  const std::size_t colon = v.find(':');
  const std::string_view name = v.substr(0, colon);
  for (const auto& [n, proto] : kProto) {
    if (name != n) continue;
    if (colon == std::string_view::npos) {
      if (proto == kFlowAnyL4) return std::nullopt;  // port needs a number
      return net_flow_key(proto, 0);
    }
    if (proto == 1 || proto == 58) return std::nullopt;  // no ports
    const auto port = parse_u64(v.substr(colon + 1));
    if (!port || *port == 0 || *port > 0xFFFF) return std::nullopt;
    return net_flow_key(proto, static_cast<std::uint16_t>(*port));
  }
  return parse_u64(v);
}

// "<digits>[.<digits>]" followed by a unit from `units`; scaled exactly (no floating point).
struct Unit {
  std::string_view suffix;
  std::uint64_t mult;
};
std::variant<std::uint64_t, std::string> parse_scaled(std::string_view v, std::span<const Unit> units,
                                                      std::string_view unit_help) {
  std::size_t i = 0;
  while (i < v.size() && v[i] >= '0' && v[i] <= '9') ++i;
  std::size_t int_end = i;
  std::size_t frac_begin = i;
  std::size_t frac_end = i;
  if (i < v.size() && v[i] == '.') {
    frac_begin = ++i;
    while (i < v.size() && v[i] >= '0' && v[i] <= '9') ++i;
    frac_end = i;
    if (frac_end == frac_begin) return std::string("expected digits after '.' in ") + quoted(v);
  }
  if (int_end == 0) return "expected a number, got " + quoted(v);
  const std::string_view unit = v.substr(i);
  std::uint64_t mult = 0;
  for (const auto& u : units)
    if (unit == u.suffix) mult = u.mult;
  if (mult == 0)
    return "unknown unit " + quoted(unit) + " in " + quoted(v) + " (use " + std::string(unit_help) + ")";
  const auto whole = parse_u64(v.substr(0, int_end));
  if (!whole) return "number out of range in " + quoted(v);
  if (*whole > UINT64_MAX / mult) return "value too large: " + quoted(v);
  std::uint64_t out = *whole * mult;
  // Fraction: digit by digit, truncating below 1 unit.
  std::uint64_t scale = mult;
  for (std::size_t j = frac_begin; j < frac_end && scale >= 10; ++j) {
    scale /= 10;
    const auto d = static_cast<std::uint64_t>(v[j] - '0');
    if (out > UINT64_MAX - d * scale) return "value too large: " + quoted(v);
    out += d * scale;
  }
  if (frac_end > frac_begin && scale == mult) return "fraction below the smallest unit in " + quoted(v);
  return out;
}

constexpr Unit kRateUnits[] = {{"", 1},
                               {"K", 1'000},
                               {"M", 1'000'000},
                               {"G", 1'000'000'000},
                               {"Ki", 1ULL << 10U},
                               {"Mi", 1ULL << 20U},
                               {"Gi", 1ULL << 30U}};
constexpr Unit kLatencyUnits[] = {{"", 1}, {"us", 1}, {"ms", 1'000}, {"s", 1'000'000}};

template <class E, std::size_t N>
std::optional<E> lookup(std::string_view v, const std::pair<std::string_view, E> (&table)[N]) {
  for (const auto& [k, e] : table)
    if (v == k) return e;
  return std::nullopt;
}

}  // namespace

ParseResult parse_text(std::string_view text) {
  HintSet h;
  std::optional<ScopeKind> scope;
  std::optional<std::pair<DevType, std::uint32_t>> dev;
  std::optional<std::uint32_t> pid;
  std::optional<std::string> comm;
  std::optional<std::string> cgroup;
  std::vector<std::string> seen;
  std::optional<std::uint8_t> cls;
  std::optional<std::uint16_t> weight;

  text = trim(text);
  if (text.empty()) return perr("", "empty hint text");
  while (true) {
    const std::size_t comma = text.find(',');
    const std::string_view item = trim(text.substr(0, comma));
    if (item.empty()) return perr("", "empty item (stray comma?)");
    const std::size_t eq = item.find('=');
    if (eq == std::string_view::npos) return perr(item, "expected key=value");
    const std::string_view key = trim(item.substr(0, eq));
    const std::string_view val = trim(item.substr(eq + 1));
    if (key.empty()) return perr("", "missing key before '=' in " + quoted(item));
    if (val.empty()) return perr(key, "missing value");
    if (key != "flow") {
      if (std::find(seen.begin(), seen.end(), key) != seen.end()) return perr(key, "given more than once");
      seen.emplace_back(key);
    }

    if (key == "scope") {
      static constexpr std::pair<std::string_view, ScopeKind> kT[] = {
          {"domain", ScopeKind::domain}, {"device", ScopeKind::device}, {"process", ScopeKind::process},
          {"flow", ScopeKind::flow}, {"stream", ScopeKind::stream}};
      scope = lookup(val, kT);
      if (!scope) return perr(key, quoted(val) + " is not one of domain, device, process, flow, stream");
    } else if (key == "dev") {
      static constexpr std::pair<std::string_view, DevType> kT[] = {
          {"vbd", DevType::vbd}, {"vif", DevType::vif}, {"vsnd", DevType::vsnd}};
      const std::size_t slash = val.find('/');
      if (slash == std::string_view::npos) return perr(key, "expected <type>/<id>, e.g. vbd/51712");
      const auto t = lookup(val.substr(0, slash), kT);
      if (!t) return perr(key, "device type " + quoted(val.substr(0, slash)) + " is not vbd, vif or vsnd");
      const auto id = parse_u64(val.substr(slash + 1));
      if (!id || *id > UINT32_MAX) return perr(key, "device id " + quoted(val.substr(slash + 1)) + " is not a u32");
      dev = std::pair{*t, static_cast<std::uint32_t>(*id)};
    } else if (key == "class") {
      if (val == "gold") cls = kGold;
      else if (val == "silver") cls = kSilver;
      else if (val == "bronze") cls = kBronze;
      else {
        const auto n = parse_u64(val);
        if (!n || *n > kMaxQosClass)
          return perr(key, quoted(val) + " is not gold, silver, bronze or a class 0.." + std::to_string(kMaxQosClass));
        cls = static_cast<std::uint8_t>(*n);
      }
    } else if (key == "weight") {
      const auto n = parse_u64(val);
      if (!n || *n == 0 || *n > kMaxWeight)
        return perr(key, quoted(val) + " is not an integer in 1.." + std::to_string(kMaxWeight));
      weight = static_cast<std::uint16_t>(*n);
    } else if (key == "rate") {
      auto r = parse_scaled(val, kRateUnits, "bytes/s with K, M, G, Ki, Mi or Gi");
      if (auto* e = std::get_if<std::string>(&r)) return perr(key, *e);
      if (std::get<std::uint64_t>(r) == 0) return perr(key, "must be greater than zero");
      h.rate_bps = std::get<std::uint64_t>(r);
    } else if (key == "latency") {
      auto r = parse_scaled(val, kLatencyUnits, "us, ms or s");
      if (auto* e = std::get_if<std::string>(&r)) return perr(key, *e);
      const auto us = std::get<std::uint64_t>(r);
      if (us == 0) return perr(key, "must be at least 1us");
      if (us > UINT32_MAX) return perr(key, "too large (max " + std::to_string(UINT32_MAX) + "us)");
      h.latency_us = static_cast<std::uint32_t>(us);
    } else if (key == "flow") {
      const auto n = parse_flow_key(val);
      if (!n) return perr(key, quoted(val) + " is not a 64-bit key (decimal or 0x hex), tcp[:<port>], udp[:<port>], "
                                             "port:<port>, icmp or icmp6");
      if (h.flow_keys.size() == kMaxFlowKeys)
        return perr(key, "more than " + std::to_string(kMaxFlowKeys) + " flow keys");
      h.flow_keys.push_back(*n);
    } else if (key == "stream") {
      const auto n = parse_u64(val);
      if (!n) return perr(key, quoted(val) + " is not a 64-bit key (decimal or 0x hex)");
      h.stream_key = *n;
    } else if (key == "pkey") {
      const std::size_t slash = val.find('/');
      if (slash == std::string_view::npos) {
        const auto n = parse_u64(val);
        if (!n) return perr(key, quoted(val) + " is not a 64-bit key or <pid>/<comm>");
        h.process_key = ProcessKey{*n};
      } else {
        const auto p = parse_u64(val.substr(0, slash));
        const auto cd = pct_decode(val.substr(slash + 1));
        if (!cd) return perr(key, "bad %-escape in " + quoted(val));
        const std::string_view c = *cd;
        if (!p || *p == 0 || *p > kMaxPid) return perr(key, "pid " + quoted(val.substr(0, slash)) + " out of range");
        if (!valid_comm(c)) return perr(key, "comm " + quoted(c) + " must be 1.." + std::to_string(kMaxComm) + " printable characters");
        h.process_key = ProcessKey{PidComm{static_cast<std::uint32_t>(*p), std::string(c)}};
      }
    } else if (key == "pid") {
      const auto n = parse_u64(val);
      if (!n || *n == 0 || *n > kMaxPid)
        return perr(key, quoted(val) + " is not a pid in 1.." + std::to_string(kMaxPid));
      pid = static_cast<std::uint32_t>(*n);
    } else if (key == "comm") {
      const auto cd = pct_decode(val);
      if (!cd) return perr(key, "bad %-escape in " + quoted(val));
      if (!valid_comm(*cd)) return perr(key, quoted(val) + " must be 1.." + std::to_string(kMaxComm) + " printable characters");
      comm = *cd;
    } else if (key == "cgroup") {
      const auto cd = pct_decode(val);
      if (!cd) return perr(key, "bad %-escape in " + quoted(val));
      if (!valid_cgroup(*cd) || cd->empty())
        return perr(key, "must be an absolute path of printable characters, at most " + std::to_string(kMaxCgroupPath) + " bytes");
      cgroup = *cd;
    } else if (key == "role") {
      static constexpr std::pair<std::string_view, StreamRole> kT[] = {
          {"voice", StreamRole::voice}, {"media", StreamRole::media}, {"alert", StreamRole::alert}};
      h.role = lookup(val, kT);
      if (!h.role) return perr(key, quoted(val) + " is not voice, media or alert");
    } else if (key == "access") {
      static constexpr std::pair<std::string_view, AccessPattern> kT[] = {
          {"sequential", AccessPattern::sequential}, {"seq", AccessPattern::sequential},
          {"random", AccessPattern::random}, {"rand", AccessPattern::random}};
      h.access = lookup(val, kT);
      if (!h.access) return perr(key, quoted(val) + " is not sequential or random");
    } else {
      return perr(key, "unknown key (known: scope, dev, class, weight, rate, latency, flow, stream, "
                       "pkey, pid, comm, cgroup, role, access)");
    }
    if (comma == std::string_view::npos) break;
    text = text.substr(comma + 1);
  }

  if (weight && !cls) return perr("weight", "needs class= as well");
  if (cls) h.qos = Qos{*cls, weight.value_or(0)};
  if (pid || comm || cgroup) {
    if (!pid) return perr(comm ? "comm" : "cgroup", "needs pid= as well");
    if (!comm) return perr("pid", "needs comm= as well (the process name)");
    h.process = ProcessIdentity{*pid, *comm, cgroup.value_or("")};
  }
  if (!scope) {
    if (dev) scope = ScopeKind::device;
    else if (h.process || h.process_key) scope = ScopeKind::process;
    else if (h.stream_key) scope = ScopeKind::stream;
    else if (!h.flow_keys.empty()) scope = ScopeKind::flow;
    else scope = ScopeKind::domain;
  }
  h.scope.kind = *scope;
  if (*scope == ScopeKind::device) {
    if (!dev) return perr("scope", "device scope needs dev=<type>/<id>");
    h.scope.devtype = dev->first;
    h.scope.devid = dev->second;
  } else if (dev) {
    return perr("dev", "only valid with scope=device");
  }
  if (*scope == ScopeKind::process && !h.process && !h.process_key)
    return perr("scope", "process scope needs pid=/comm= or pkey=");
  if (*scope == ScopeKind::flow && h.flow_keys.empty()) return perr("scope", "flow scope needs flow=");
  if (*scope == ScopeKind::stream && !h.stream_key) return perr("scope", "stream scope needs stream=");
  if (encoded_size(h) > kMaxEncodedSize) return perr("", "hint set too large to encode");
  return h;
}

}  // namespace gears::hints
