#include "common/hints/hints.hpp"

#include <gtest/gtest.h>

#include <vector>

#include "common/ring/le.hpp"

namespace gears::hints {
namespace {

using Bytes = std::vector<std::byte>;

HintSet full_set() {
  HintSet h;
  h.scope = {ScopeKind::process, DevType::none, 0};
  h.qos = Qos{kGold, 300};
  h.rate_bps = 10'000'000;
  h.latency_us = 500;
  h.flow_keys = {0x1122334455667788ULL, 7};
  h.stream_key = 42;
  h.process_key = PidComm{123, "pulseaudio"};
  h.role = StreamRole::voice;
  h.access = AccessPattern::sequential;
  h.process = ProcessIdentity{123, "pulseaudio", "/user.slice/user-1000.slice"};
  return h;
}

Bytes enc(const HintSet& h) {
  Bytes b(kMaxEncodedSize);
  auto n = encode(h, b);
  EXPECT_TRUE(n.ok()) << (n.ok() ? "" : n.error().what);
  b.resize(n.ok() ? *n : 0);
  return b;
}

void rec(Bytes& b, std::uint16_t kind, const Bytes& value) {
  const auto at = b.size();
  b.resize(at + 4);
  le::store16(b.data() + at, kind);
  le::store16(b.data() + at + 2, static_cast<std::uint16_t>(value.size()));
  b.insert(b.end(), value.begin(), value.end());
}
Bytes bytes(std::initializer_list<unsigned> v) {
  Bytes b;
  for (auto x : v) b.push_back(static_cast<std::byte>(x));
  return b;
}
Bytes domain_scope() { return bytes({1, 0, 0, 0, 0, 0, 0, 0}); }

std::string_view decode_error(const Bytes& b) {
  auto r = decode(b);
  if (r.ok()) return "OK";
  EXPECT_EQ(r.error().code, EPROTO);
  return r.error().what;
}

// ---- round trips ----

TEST(HintsCodec, FullSetRoundTrips) {
  const auto h = full_set();
  const auto b = enc(h);
  EXPECT_EQ(b.size(), encoded_size(h));
  auto d = decode(b);
  ASSERT_TRUE(d.ok()) << d.error().what;
  EXPECT_EQ(*d, h);
}

TEST(HintsCodec, MinimalSetIsJustTheScope) {
  HintSet h;
  const auto b = enc(h);
  EXPECT_EQ(b, [] { Bytes x; rec(x, 1, domain_scope()); return x; }());
  EXPECT_EQ(*decode(b), h);
}

TEST(HintsCodec, WireBytesAreLittleEndianAndFixed) {
  HintSet h;
  h.rate_bps = 0x0102030405060708ULL;
  h.qos = Qos{kBronze, 0x1234};
  const auto b = enc(h);
  Bytes want;
  rec(want, 1, domain_scope());
  rec(want, 2, bytes({2, 0, 0x34, 0x12}));
  rec(want, 3, bytes({8, 7, 6, 5, 4, 3, 2, 1}));
  EXPECT_EQ(b, want);
}

TEST(HintsCodec, OpaqueProcessKeyAndDeviceScopeRoundTrip) {
  HintSet h;
  h.scope = {ScopeKind::device, DevType::vbd, 51712};
  h.process_key = ProcessKey{std::uint64_t{0xdeadbeefcafeULL}};
  h.access = AccessPattern::random;
  EXPECT_EQ(*decode(enc(h)), h);
  h.scope = {ScopeKind::stream, DevType::none, 0};
  h.stream_key = 9;
  h.role = StreamRole::alert;
  EXPECT_EQ(*decode(enc(h)), h);
}

TEST(HintsCodec, EveryQosClassAndMaxFlowKeys) {
  HintSet h;
  h.scope.kind = ScopeKind::flow;
  for (std::uint64_t i = 0; i < kMaxFlowKeys; ++i) h.flow_keys.push_back(i);
  for (std::uint8_t c = 0; c <= kMaxQosClass; ++c) {
    h.qos = Qos{c, kMaxWeight};
    EXPECT_EQ(*decode(enc(h)), h);
  }
}

// ---- encode refuses invalid sets ----

TEST(HintsCodec, EncodeRejectsInvalidSets) {
  Bytes out(kMaxEncodedSize);
  auto bad = [&](auto mutate) {
    HintSet h = full_set();
    mutate(h);
    auto r = encode(h, out);
    return r.ok() ? 0 : r.error().code;
  };
  EXPECT_EQ(bad([](HintSet& h) { h.qos->cls = 8; }), EINVAL);
  EXPECT_EQ(bad([](HintSet& h) { h.qos->weight = kMaxWeight + 1; }), EINVAL);
  EXPECT_EQ(bad([](HintSet& h) { h.rate_bps = 0; }), EINVAL);
  EXPECT_EQ(bad([](HintSet& h) { h.latency_us = 0; }), EINVAL);
  EXPECT_EQ(bad([](HintSet& h) { h.process->comm = ""; }), EINVAL);
  EXPECT_EQ(bad([](HintSet& h) { h.process->comm = std::string(16, 'a'); }), EINVAL);
  EXPECT_EQ(bad([](HintSet& h) { h.process->cgroup = "relative"; }), EINVAL);
  EXPECT_EQ(bad([](HintSet& h) { h.process->pid = 0; }), EINVAL);
  EXPECT_EQ(bad([](HintSet& h) { h.process_key = PidComm{1, "a\nb"}; }), EINVAL);
  EXPECT_EQ(bad([](HintSet& h) { h.role = static_cast<StreamRole>(9); }), EINVAL);
  EXPECT_EQ(bad([](HintSet& h) { h.scope.devid = 3; }), EINVAL);  // device field, process scope
  EXPECT_EQ(bad([](HintSet& h) { h.process.reset(); h.process_key.reset(); }), EINVAL);
  EXPECT_EQ(bad([](HintSet& h) { h.flow_keys.assign(kMaxFlowKeys + 1, 1); }), EINVAL);
  EXPECT_EQ(bad([](HintSet&) {}), 0);
}

TEST(HintsCodec, EncodeReportsSmallBufferAndOversize) {
  const auto h = full_set();
  Bytes small(encoded_size(h) - 1);
  EXPECT_EQ(encode(h, small).error().code, ENOSPC);
  // The largest valid set (every kind, longest strings, all flow keys) still fits the limits, so
  // E2BIG is defensive only: any set that validates can be sent.
  HintSet big = full_set();
  big.process->cgroup = "/" + std::string(kMaxCgroupPath - 1, 'x');
  big.process->comm = std::string(kMaxComm, 'c');
  big.process_key = PidComm{kMaxPid, std::string(kMaxComm, 'k')};
  big.flow_keys.assign(kMaxFlowKeys, 5);
  EXPECT_LE(encoded_size(big), kMaxEncodedSize);
  Bytes out(encoded_size(big));
  ASSERT_TRUE(encode(big, out).ok());
  EXPECT_EQ(*decode(out), big);
}

// ---- decode rejects every malformed input ----

TEST(HintsDecode, EveryStrictPrefixOfAFullSetIsRejectedOrAShorterValidSet) {
  const auto b = enc(full_set());
  for (std::size_t n = 0; n < b.size(); ++n) {
    auto r = decode(std::span(b).first(n));
    if (r.ok()) {
      EXPECT_NE(*r, full_set()) << n;
    }
  }
  // Cut inside the last record: truncation.
  EXPECT_EQ(decode_error(Bytes(b.begin(), b.end() - 1)), "hints: record truncated");
  EXPECT_EQ(decode_error(Bytes{}), "hints: scope record missing");
}

TEST(HintsDecode, TrailingBytes) {
  Bytes b;
  rec(b, 1, domain_scope());
  b.push_back(std::byte{0});
  EXPECT_EQ(decode_error(b), "hints: trailing bytes after the last record");
  b.push_back(std::byte{0});
  b.push_back(std::byte{0});
  EXPECT_EQ(decode_error(b), "hints: trailing bytes after the last record");
}

TEST(HintsDecode, OverlongAndWrongLengths) {
  Bytes b;
  rec(b, 1, domain_scope());
  rec(b, 3, bytes({1, 0, 0, 0, 0, 0, 0, 0}));
  le::store16(b.data() + 12 + 2, 9);  // rate len 9, only 8 bytes follow
  EXPECT_EQ(decode_error(b), "hints: record truncated");
  le::store16(b.data() + 12 + 2, 0xFFFF);
  EXPECT_EQ(decode_error(b), "hints: record truncated");
  Bytes c;
  rec(c, 1, domain_scope());
  rec(c, 4, bytes({1, 0, 0, 0, 0}));  // latency with 5 bytes
  EXPECT_EQ(decode_error(c), "hints: latency record has the wrong length");
  Bytes d;
  rec(d, 1, bytes({1, 0, 0, 0}));
  EXPECT_EQ(decode_error(d), "hints: scope record has the wrong length");
  Bytes e;
  rec(e, 1, domain_scope());
  rec(e, 8, bytes({}));
  EXPECT_EQ(decode_error(e), "hints: stream_role record has the wrong length");
}

TEST(HintsDecode, UnknownKindsAreErrors) {
  for (std::uint16_t k : {std::uint16_t{0}, std::uint16_t{11}, std::uint16_t{0xFFFF}}) {
    Bytes b;
    rec(b, 1, domain_scope());
    rec(b, k, bytes({1}));
    EXPECT_EQ(decode_error(b), "hints: unknown kind") << k;
  }
}

TEST(HintsDecode, BadEnumValues) {
  auto with = [](std::uint16_t kind, Bytes v, Bytes scope = domain_scope()) {
    Bytes b;
    rec(b, 1, scope);
    if (kind != 0) rec(b, kind, std::move(v));
    return b;
  };
  EXPECT_EQ(decode_error(with(8, bytes({0}))), "hints: bad stream role");
  EXPECT_EQ(decode_error(with(8, bytes({4}))), "hints: bad stream role");
  EXPECT_EQ(decode_error(with(9, bytes({3}))), "hints: bad access pattern");
  EXPECT_EQ(decode_error(with(2, bytes({8, 0, 0, 0}))), "hints: qos class out of range");
  EXPECT_EQ(decode_error(with(2, bytes({0, 0, 0x11, 0x27}))), "hints: qos weight out of range");
  EXPECT_EQ(decode_error(with(0, {}, bytes({6, 0, 0, 0, 0, 0, 0, 0}))), "hints: bad scope");
  EXPECT_EQ(decode_error(with(0, {}, bytes({2, 4, 0, 0, 0, 0, 0, 0}))), "hints: bad device type in scope");
  EXPECT_EQ(decode_error(with(0, {}, bytes({2, 0, 0, 0, 0, 0, 0, 0}))), "hints: bad device type in scope");
  EXPECT_EQ(decode_error(with(0, {}, bytes({1, 1, 0, 0, 0, 0, 0, 0}))),
            "hints: device fields set on a non-device scope");
  EXPECT_EQ(decode_error(with(7, bytes({3, 0, 0, 0, 0, 0, 0, 0}))), "hints: bad process_key form");
  EXPECT_EQ(decode_error(with(3, bytes({0, 0, 0, 0, 0, 0, 0, 0}))), "hints: rate is zero");
  EXPECT_EQ(decode_error(with(4, bytes({0, 0, 0, 0}))), "hints: latency is zero");
}

TEST(HintsDecode, ReservedBytesMustBeZero) {
  Bytes a;
  rec(a, 1, bytes({1, 0, 1, 0, 0, 0, 0, 0}));
  EXPECT_EQ(decode_error(a), "hints: reserved bytes not zero");
  Bytes b;
  rec(b, 1, domain_scope());
  rec(b, 2, bytes({0, 1, 0, 0}));
  EXPECT_EQ(decode_error(b), "hints: reserved bytes not zero");
  Bytes c;
  rec(c, 1, domain_scope());
  rec(c, 7, bytes({2, 0, 0, 0, 0, 0, 0, 1, 1, 2, 3, 4, 5, 6, 7, 8}));
  EXPECT_EQ(decode_error(c), "hints: reserved bytes not zero");
}

TEST(HintsDecode, DuplicateSingletonsRejectedFlowKeysRepeatable) {
  Bytes b;
  rec(b, 1, domain_scope());
  rec(b, 1, domain_scope());
  EXPECT_EQ(decode_error(b), "hints: duplicate singleton kind");
  Bytes c;
  rec(c, 1, domain_scope());
  rec(c, 9, bytes({1}));
  rec(c, 9, bytes({2}));
  EXPECT_EQ(decode_error(c), "hints: duplicate singleton kind");
  Bytes d;
  rec(d, 1, domain_scope());
  for (std::size_t i = 0; i < kMaxFlowKeys; ++i) rec(d, 5, bytes({1, 2, 3, 4, 5, 6, 7, 8}));
  EXPECT_EQ(decode_error(d), "OK");
  rec(d, 5, bytes({1, 2, 3, 4, 5, 6, 7, 8}));
  EXPECT_EQ(decode_error(d), "hints: too many flow keys");
}

TEST(HintsDecode, ProcessRecordsAreBoundedAndChecked) {
  auto proc = [](std::uint32_t pid, std::string_view comm, std::string_view cg, int len_delta = 0) {
    Bytes v(8);
    le::store32(v.data(), pid);
    v[4] = static_cast<std::byte>(comm.size());
    le::store16(v.data() + 6, static_cast<std::uint16_t>(cg.size()));
    for (char ch : comm) v.push_back(static_cast<std::byte>(ch));
    for (char ch : cg) v.push_back(static_cast<std::byte>(ch));
    if (len_delta > 0) v.push_back(std::byte{0});
    if (len_delta < 0) v.pop_back();
    Bytes b;
    rec(b, 1, bytes({3, 0, 0, 0, 0, 0, 0, 0}));
    rec(b, 10, v);
    return b;
  };
  EXPECT_EQ(decode_error(proc(7, "bash", "/a")), "OK");
  EXPECT_EQ(decode_error(proc(7, "bash", "/a", 1)), "hints: process record has the wrong length");
  EXPECT_EQ(decode_error(proc(7, "bash", "/a", -1)), "hints: process record has the wrong length");
  EXPECT_EQ(decode_error(proc(0, "bash", "")), "hints: process pid out of range");
  EXPECT_EQ(decode_error(proc(kMaxPid + 1, "bash", "")), "hints: process pid out of range");
  EXPECT_EQ(decode_error(proc(7, "", "")), "hints: process comm invalid");
  EXPECT_EQ(decode_error(proc(7, "sixteen-chars-xx", "")), "hints: process comm invalid");
  EXPECT_EQ(decode_error(proc(7, std::string_view("a\0b", 3), "")), "hints: process comm invalid");
  EXPECT_EQ(decode_error(proc(7, "bash", "no-slash")), "hints: process cgroup path invalid");
  EXPECT_EQ(decode_error(proc(7, "bash", "/" + std::string(kMaxCgroupPath, 'x'))),
            "hints: process cgroup path invalid");
}

TEST(HintsDecode, ScopeNeedsItsKey) {
  Bytes a;
  rec(a, 1, bytes({3, 0, 0, 0, 0, 0, 0, 0}));
  EXPECT_EQ(decode_error(a), "hints: process scope without a process key");
  Bytes b;
  rec(b, 1, bytes({4, 0, 0, 0, 0, 0, 0, 0}));
  EXPECT_EQ(decode_error(b), "hints: flow scope without a flow key");
  Bytes c;
  rec(c, 1, bytes({5, 0, 0, 0, 0, 0, 0, 0}));
  EXPECT_EQ(decode_error(c), "hints: stream scope without a stream key");
}

TEST(HintsDecode, RecordAndSizeLimits) {
  Bytes b;
  rec(b, 1, bytes({4, 0, 0, 0, 0, 0, 0, 0}));
  for (int i = 0; i < 31; ++i) rec(b, 5, bytes({1, 2, 3, 4, 5, 6, 7, 8}));
  EXPECT_EQ(decode_error(b), "hints: too many flow keys");  // flow cap hits first
  Bytes c;
  rec(c, 1, domain_scope());
  for (int i = 0; i < 40; ++i) rec(c, 9, bytes({1}));
  EXPECT_EQ(decode_error(c), "hints: duplicate singleton kind");
  Bytes big(kMaxEncodedSize + 1);
  EXPECT_EQ(decode_error(big), "hints: set longer than the maximum");
}

// ---- text form ----

TEST(HintsText, ParsesTheExample) {
  auto r = parse_text("class=gold,rate=10M,latency=500us,pid=123,comm=mumble,role=voice");
  ASSERT_TRUE(r.ok()) << r.error().message();
  const auto& h = r.value();
  EXPECT_EQ(h.scope.kind, ScopeKind::process);  // inferred from pid
  EXPECT_EQ(h.qos, (Qos{kGold, 0}));
  EXPECT_EQ(h.rate_bps, 10'000'000U);
  EXPECT_EQ(h.latency_us, 500U);
  EXPECT_EQ(h.process, (ProcessIdentity{123, "mumble", ""}));
  EXPECT_EQ(h.role, StreamRole::voice);
}

TEST(HintsText, UnitsAndForms) {
  auto v = [](std::string_view t) {
    auto r = parse_text(t);
    EXPECT_TRUE(r.ok()) << t << ": " << (r.ok() ? "" : r.error().message());
    return r.ok() ? r.value() : HintSet{};
  };
  EXPECT_EQ(v("rate=1.5M").rate_bps, 1'500'000U);
  EXPECT_EQ(v("rate=2Ki").rate_bps, 2048U);
  EXPECT_EQ(v("rate=1Gi").rate_bps, 1ULL << 30U);
  EXPECT_EQ(v("rate=123").rate_bps, 123U);
  EXPECT_EQ(v("latency=2ms").latency_us, 2000U);
  EXPECT_EQ(v("latency=1.5s").latency_us, 1'500'000U);
  EXPECT_EQ(v("latency=7").latency_us, 7U);
  EXPECT_EQ(v(" class = 5 , weight = 10 ").qos, (Qos{5, 10}));
  EXPECT_EQ(v("flow=0x10,flow=3").flow_keys, (std::vector<std::uint64_t>{16, 3}));
  EXPECT_EQ(v("flow=1").scope.kind, ScopeKind::flow);
  // Vif flow keys by name: (IP protocol << 16) | port.
  EXPECT_EQ(v("flow=tcp:5201,flow=udp:53,flow=port:80").flow_keys,
            (std::vector<std::uint64_t>{0x61451, 0x110035, 0x50}));
  EXPECT_EQ(v("flow=tcp,flow=icmp,flow=icmp6").flow_keys, (std::vector<std::uint64_t>{0x60000, 0x10000, 0x3a0000}));
  EXPECT_EQ(net_flow_key(6, 5201), 0x61451U);
  EXPECT_EQ(v("stream=1").scope.kind, ScopeKind::stream);
  EXPECT_EQ(v("pkey=0xff").process_key, ProcessKey{std::uint64_t{255}});
  EXPECT_EQ(v("pkey=77/nginx").process_key, (ProcessKey{PidComm{77, "nginx"}}));
  EXPECT_EQ(v("dev=vbd/51712,access=seq").scope, (Scope{ScopeKind::device, DevType::vbd, 51712}));
  EXPECT_EQ(v("scope=domain,class=bronze").scope.kind, ScopeKind::domain);
  EXPECT_EQ(v("pid=1,comm=init,cgroup=/init.scope").process->cgroup, "/init.scope");
}

TEST(HintsText, ErrorsNameTheKeyAndTheReason) {
  auto e = [](std::string_view t) {
    auto r = parse_text(t);
    EXPECT_FALSE(r.ok()) << t;
    return r.ok() ? ParseError{} : r.error();
  };
  auto has = [](const ParseError& pe, std::string_view key, std::string_view why_part) {
    EXPECT_EQ(pe.key, key) << pe.message();
    EXPECT_NE(pe.why.find(why_part), std::string::npos) << pe.message();
  };
  has(e(""), "", "empty hint text");
  has(e("class=gold,,rate=1"), "", "empty item");
  has(e("class=gold,"), "", "empty item");
  has(e("gold"), "gold", "expected key=value");
  has(e("=gold"), "", "missing key");
  has(e("class="), "class", "missing value");
  has(e("class=platinum"), "class", "'platinum' is not gold, silver, bronze");
  has(e("class=8"), "class", "class 0..7");
  has(e("class=gold,class=silver"), "class", "more than once");
  has(e("weight=5"), "weight", "needs class=");
  has(e("class=gold,weight=0"), "weight", "1..10000");
  has(e("rate=10X"), "rate", "unknown unit 'X'");
  has(e("rate=M"), "rate", "expected a number");
  has(e("rate=0"), "rate", "greater than zero");
  has(e("rate=1."), "rate", "digits after '.'");
  has(e("rate=99999999999999999999"), "rate", "out of range");
  has(e("rate=20000000000Gi"), "rate", "too large");
  has(e("latency=5min"), "latency", "unknown unit 'min'");
  has(e("latency=0ms"), "latency", "at least 1us");
  has(e("latency=5000s"), "latency", "too large");
  has(e("latency=1.5us"), "latency", "smallest unit");
  has(e("pid=0,comm=x"), "pid", "not a pid");
  has(e("pid=12"), "pid", "needs comm=");
  has(e("comm=bash"), "comm", "needs pid=");
  has(e("pid=1,comm=waytoolongprocessname"), "comm", "1..15 printable");
  has(e("pid=1,comm=x,cgroup=rel"), "cgroup", "absolute path");
  has(e("role=music"), "role", "not voice, media or alert");
  has(e("access=strided"), "access", "not sequential or random");
  has(e("flow=abc"), "flow", "not a 64-bit key");
  for (const char* bad : {"flow=tcp:0", "flow=tcp:65536", "flow=udp:x", "flow=port", "flow=icmp:1", "flow=sctp:1"})
    has(e(bad), "flow", "tcp[:<port>]");
  has(e("pkey=0/x"), "pkey", "pid '0' out of range");
  has(e("dev=disk/1"), "dev", "'disk' is not vbd, vif or vsnd");
  has(e("dev=vbd"), "dev", "expected <type>/<id>");
  has(e("dev=vbd/99999999999"), "dev", "not a u32");
  has(e("scope=device"), "scope", "needs dev=");
  has(e("scope=process"), "scope", "needs pid=/comm= or pkey=");
  has(e("scope=flow"), "scope", "needs flow=");
  has(e("scope=stream"), "scope", "needs stream=");
  has(e("scope=vm"), "scope", "not one of domain");
  has(e("scope=domain,dev=vif/0"), "dev", "only valid with scope=device");
  has(e("colour=blue"), "colour", "unknown key");
  std::string many;
  for (std::size_t i = 0; i <= kMaxFlowKeys; ++i) many += (i ? ",flow=" : "flow=") + std::to_string(i);
  has(e(many), "flow", "more than 16");
  EXPECT_EQ(e("rate=1x").message(), "rate: unknown unit 'x' in '1x' (use bytes/s with K, M, G, Ki, Mi or Gi)");
}

TEST(HintsText, ToStringRoundTripsThroughTheParser) {
  for (const auto& h : {full_set(), HintSet{}}) {
    const auto s = to_string(h);
    auto r = parse_text(s);
    ASSERT_TRUE(r.ok()) << s << ": " << r.error().message();
    EXPECT_EQ(r.value(), h) << s;
  }
  HintSet d;
  d.scope = {ScopeKind::device, DevType::vsnd, 0};
  d.process_key = ProcessKey{std::uint64_t{1}};
  EXPECT_EQ(parse_text(to_string(d)).value(), d);
  EXPECT_EQ(to_string(d), "scope=device,dev=vsnd/0,pkey=0x1");
}

TEST(HintsText, SeparatorsInNamesAreEscaped) {
  // Found by the fuzzer: a cgroup path with a comma broke to_string -> parse_text.
  HintSet h;
  h.scope.kind = ScopeKind::process;
  h.process = ProcessIdentity{5, "Web Content", "/a,b=c/100%"};
  h.process_key = PidComm{5, " x,"};
  const auto s = to_string(h);
  EXPECT_EQ(s, "scope=process,pkey=5/%20x%2C,pid=5,comm=Web%20Content,cgroup=/a%2Cb%3Dc/100%25");
  auto r = parse_text(s);
  ASSERT_TRUE(r.ok()) << r.error().message();
  EXPECT_EQ(r.value(), h);
  EXPECT_EQ(parse_text("pid=1,comm=a%2").error().message(), "comm: bad %-escape in 'a%2'");
  EXPECT_EQ(parse_text("pid=1,comm=a%zz").error().key, "comm");
}

TEST(HintsText, TextEncodesAndDecodesToTheSameSet) {
  auto r = parse_text("class=silver,weight=20,rate=1Mi,flow=0xabc,access=random");
  ASSERT_TRUE(r.ok());
  Bytes b(kMaxEncodedSize);
  auto n = encode(r.value(), b);
  ASSERT_TRUE(n.ok());
  b.resize(*n);
  EXPECT_EQ(*decode(b), r.value());
}

TEST(HintsJson, RendersEveryField) {
  auto h = full_set();
  h.process->comm = "a\"b";
  EXPECT_EQ(to_json(h),
            "{\"scope\":\"process\",\"qos\":{\"class\":\"gold\",\"weight\":300},"
            "\"rate_bps\":10000000,\"latency_us\":500,"
            "\"flow_keys\":[\"0x1122334455667788\",\"0x7\"],\"stream_key\":\"0x2a\","
            "\"process_key\":{\"pid\":123,\"comm\":\"pulseaudio\"},\"role\":\"voice\","
            "\"access\":\"sequential\",\"process\":{\"pid\":123,\"comm\":\"a\\\"b\","
            "\"cgroup\":\"/user.slice/user-1000.slice\"}}");
  HintSet d;
  d.scope = {ScopeKind::device, DevType::vif, 2};
  EXPECT_EQ(to_json(d), "{\"scope\":\"device\",\"device\":{\"type\":\"vif\",\"id\":2}}");
}

}  // namespace
}  // namespace gears::hints
