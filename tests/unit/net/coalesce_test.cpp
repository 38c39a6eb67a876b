// TX coalescing (coalesce.hpp): every refusal rule, byte-exact merges for IPv4 and IPv6, segmented random
// payloads merged back into the frame built directly, and hostile bytes.
#include "dom0/backends/net/coalesce.hpp"

#include <gtest/gtest.h>

#include <algorithm>
#include <functional>
#include <random>
#include <set>
#include <string>
#include <vector>

#include "dom0/backends/net/protocol.hpp"
#include "tests/unit/net/tcp_frames.hpp"

namespace gears::net {
namespace {

using namespace gears::net::test;  // NOLINT(google-build-using-namespace)

// An accumulator over a private buffer of kMaxPacket bytes, as flush_tx has.
struct Acc {
  explicit Acc(const Seg& s, std::size_t cap = kMaxPacket) : buf(cap), hdr(hdr_of(s)) {
    const auto f = build(s);
    std::copy(f.begin(), f.end(), buf.begin());
    frame = MergeFrame{buf, f.size()};
  }
  MergeResult merge(const Seg& s) { return merge(build(s), hdr_of(s)); }
  MergeResult merge(const std::vector<std::byte>& f, const virtio_net_hdr& h) { return merge_frames(frame, hdr, f, h); }
  [[nodiscard]] std::vector<std::byte> bytes() const {
    return {buf.begin(), buf.begin() + static_cast<std::ptrdiff_t>(frame.len)};
  }
  std::vector<std::byte> buf;
  virtio_net_hdr hdr;
  MergeFrame frame;
};

bool same_hdr(const virtio_net_hdr& a, const virtio_net_hdr& b) {
  return a.flags == b.flags && a.gso_type == b.gso_type && a.hdr_len == b.hdr_len && a.gso_size == b.gso_size &&
         a.csum_start == b.csum_start && a.csum_offset == b.csum_offset;
}

// b continues a: same flow, next sequence number.
std::pair<Seg, Seg> pair_v4() {
  Seg a, b;
  b.seq = a.seq + static_cast<std::uint32_t>(a.payload.size());
  b.ip_id = 8;
  b.payload = pattern(1000, 2);
  return {a, b};
}

struct Refusal {
  using Edit = std::function<void(Seg& a, Seg& b)>;
  // Raw edits after building: both frames and their headers.
  using Raw = std::function<void(std::vector<std::byte>& fa, std::vector<std::byte>& fb, virtio_net_hdr& ha,
                                 virtio_net_hdr& hb)>;
  Refusal(std::string n, MergeResult w, Edit e, Raw r = {}, std::size_t c = kMaxPacket)
      : name(std::move(n)), why(w), edit(std::move(e)), raw(std::move(r)), cap(c) {}
  std::string name;
  MergeResult why;
  Edit edit;
  Raw raw;
  std::size_t cap;
};

std::vector<Refusal> refusals() {
  using R = MergeResult;
  auto v6 = [](Seg& a, Seg& b) { a.v6 = b.v6 = true; };
  return {
      {"next_without_needs_csum", R::not_csum_partial, [](Seg&, Seg& b) { b.hdr_flags = VIRTIO_NET_HDR_F_DATA_VALID; }},
      {"acc_without_needs_csum", R::not_csum_partial, [](Seg& a, Seg&) { a.hdr_flags = 0; }},
      {"csum_start_not_tcp", R::not_csum_partial, {}, [](auto&, auto&, auto&, auto& hb) { hb.csum_start = 14; }},
      {"csum_offset_udp", R::not_csum_partial, {}, [](auto&, auto&, auto& ha, auto&) { ha.csum_offset = 6; }},
      {"udp", R::not_tcp, [](Seg& a, Seg& b) { a.proto = b.proto = 17; }},
      {"ipv6_extension_header", R::not_tcp, [v6](Seg& a, Seg& b) { v6(a, b), b.proto = 0; }},
      {"arp_ethertype", R::not_tcp, {}, [](auto& fa, auto&, auto&, auto&) { wr16(fa, 12, 0x0806); }},
      {"truncated_tcp_header", R::truncated, {}, [](auto&, auto& fb, auto&, auto&) { fb.resize(40); }},
      {"truncated_ethernet", R::truncated, {}, [](auto&, auto& fb, auto&, auto&) { fb.resize(13); }},
      {"truncated_ipv6_header", R::truncated, v6, [](auto&, auto& fb, auto&, auto&) { fb.resize(50); }},
      {"tcp_data_offset_4", R::truncated, {}, [](auto&, auto& fb, auto&, auto&) { fb[34 + 12] = std::byte{0x40}; }},
      {"ipv4_ihl_4", R::truncated, {}, [](auto&, auto& fb, auto&, auto&) { fb[14] = std::byte{0x44}; }},
      {"ipv4_with_ipv6", R::family_differs, [](Seg&, Seg& b) { b.v6 = true; }},
      {"source_mac", R::l2_differs, [](Seg&, Seg& b) { b.src_mac = 0x23; }},
      {"vlan_on_one", R::l2_differs, [](Seg&, Seg& b) { b.vlan = true; }},
      {"vlan_tag", R::l2_differs, [](Seg& a, Seg& b) { a.vlan = b.vlan = true, b.vlan_tci = 6; }},
      {"gso_v6_on_v4", R::gso_type, [](Seg&, Seg& b) { b.gso_type = VIRTIO_NET_HDR_GSO_TCPV6, b.gso_size = 1000; }},
      {"gso_ecn_bit", R::gso_type, [](Seg& a, Seg&) { a.gso_type = 0x81, a.gso_size = 1000; }},
      {"gso_size_zero", R::gso_type, [](Seg&, Seg& b) { b.gso_type = VIRTIO_NET_HDR_GSO_TCPV4, b.gso_size = 0; }},
      {"ip_options", R::ip_options, [](Seg& a, Seg& b) { a.ip_opts = b.ip_opts = 4; }},
      {"more_fragments", R::ip_fragment, [](Seg&, Seg& b) { b.mf = true; }},
      {"fragment_offset", R::ip_fragment, [](Seg& a, Seg&) { a.frag_off = 185; }},
      {"no_df", R::ip_no_df, [](Seg& a, Seg& b) { a.df = b.df = false; }},
      {"ethernet_padding", R::ip_length, [](Seg&, Seg& b) { b.trailer = 2; }},
      {"ip_length_beyond_frame", R::ip_length, [](Seg& a, Seg&) { a.ip_len_delta = 8; }},
      {"ipv6_payload_length", R::ip_length, [v6](Seg& a, Seg& b) { v6(a, b), b.ip_len_delta = -1; }},
      {"ip_header_checksum", R::ip_checksum, {}, [](auto&, auto& fb, auto&, auto&) { fb[24] ^= std::byte{1}; }},
      {"ttl", R::ip_fields_differ, [](Seg&, Seg& b) { b.ttl = 63; }},
      {"tos", R::ip_fields_differ, [](Seg&, Seg& b) { b.tos = 0x10; }},
      {"ipv6_flow_label", R::ip_fields_differ, [v6](Seg& a, Seg& b) { v6(a, b), b.flow = 7; }},
      {"ipv6_hop_limit", R::ip_fields_differ, [v6](Seg& a, Seg& b) { v6(a, b), b.ttl = 1; }},
      {"destination_address", R::addr_differs, [](Seg&, Seg& b) { b.daddr = 3; }},
      {"ipv6_source_address", R::addr_differs, [v6](Seg& a, Seg& b) { v6(a, b), b.saddr = 9; }},
      {"destination_port", R::ports_differ, [](Seg&, Seg& b) { b.dport = 5002; }},
      {"source_port", R::ports_differ, [](Seg&, Seg& b) { b.sport = 40001; }},
      {"options_missing", R::tcp_options_differ, [](Seg&, Seg& b) { b.opts.clear(); }},
      {"options_reordered", R::tcp_options_differ,
       [](Seg&, Seg& b) {
         b.opts = ts_option(100, 200);
         std::rotate(b.opts.begin(), b.opts.begin() + 2, b.opts.end());  // TS, then the two NOPs
       }},
      {"sack_block_differs", R::tcp_options_differ,
       [](Seg& a, Seg& b) {
         a.opts = {std::byte{1}, std::byte{1}, std::byte{5}, std::byte{10}, std::byte{0}, std::byte{0}, std::byte{0},
                   std::byte{1}, std::byte{0}, std::byte{0}, std::byte{0}, std::byte{2}};
         b.opts = a.opts;
         b.opts[11] = std::byte{3};
       }},
      {"tsval_backwards", R::tcp_timestamp, [](Seg&, Seg& b) { b.opts = ts_option(99, 200); }},
      {"tsecr_backwards", R::tcp_timestamp, [](Seg&, Seg& b) { b.opts = ts_option(100, 199); }},
      {"fin_on_acc", R::acc_flags, [](Seg& a, Seg&) { a.flags = kAck | kFin; }},
      {"syn_on_acc", R::acc_flags, [](Seg& a, Seg&) { a.flags = kSyn | kAck; }},
      {"urg_on_acc", R::acc_flags, [](Seg& a, Seg&) { a.flags = kAck | kUrg; }},
      {"rst_on_next", R::next_flags, [](Seg&, Seg& b) { b.flags = kAck | kRst; }},
      {"fin_on_next", R::next_flags, [](Seg&, Seg& b) { b.flags = kAck | kFin; }},
      {"syn_on_next", R::next_flags, [](Seg&, Seg& b) { b.flags = kAck | kSyn; }},
      {"cwr_on_next", R::cwr, [](Seg&, Seg& b) { b.flags = kAck | kCwr; }},
      {"cwr_on_both", R::cwr, [](Seg& a, Seg& b) { a.flags = b.flags = kAck | kCwr; }},
      {"ece_on_one", R::flags_differ, [](Seg&, Seg& b) { b.flags = kAck | kEce; }},
      {"no_ack", R::flags_differ, [](Seg& a, Seg& b) { a.flags = b.flags = 0; }},
      {"reserved_bit", R::flags_differ, [](Seg&, Seg& b) { b.reserved = 1; }},
      {"pure_ack_next", R::no_payload, [](Seg&, Seg& b) { b.payload.clear(); }},
      {"pure_ack_acc", R::no_payload, [](Seg& a, Seg& b) { a.payload.clear(), b.seq = a.seq; }},
      {"sequence_gap", R::seq_gap, [](Seg&, Seg& b) { ++b.seq; }},
      {"retransmission_overlap", R::seq_gap, [](Seg&, Seg& b) { b.seq -= 10; }},
      {"ack_older", R::ack_older, [](Seg&, Seg& b) { b.ack = 4999; }},
      {"bsd_style_seed", R::csum_seed, [](Seg&, Seg& b) { b.bad_seed = true; }},
      {"seed_on_acc", R::csum_seed, {}, [](auto& fa, auto&, auto&, auto&) { fa[34 + 17] ^= std::byte{4}; }},
      {"acc_ends_short", R::acc_not_full,
       [](Seg& a, Seg& b) {
         a.payload = pattern(2500, 1), a.gso_type = VIRTIO_NET_HDR_GSO_TCPV4, a.gso_size = 1000;
         b.seq = a.seq + 2500;
       }},
      {"gso_size_differs", R::mss_differs,
       [](Seg& a, Seg& b) {
         a.payload = pattern(2000, 1), a.gso_type = VIRTIO_NET_HDR_GSO_TCPV4, a.gso_size = 1000;
         b.payload = pattern(2000, 2), b.gso_type = VIRTIO_NET_HDR_GSO_TCPV4, b.gso_size = 500;
         b.seq = a.seq + 2000;
       }},
      {"gso_after_single_segment", R::mss_differs,
       [](Seg&, Seg& b) { b.payload = pattern(2400, 2), b.gso_type = VIRTIO_NET_HDR_GSO_TCPV4, b.gso_size = 1200; }},
      {"next_longer_than_mss", R::next_too_long, [](Seg&, Seg& b) { b.payload = pattern(1001, 2); }},
      {"over_64k", R::too_big,
       [](Seg& a, Seg& b) {
         a.payload = pattern(62000, 1), a.gso_type = VIRTIO_NET_HDR_GSO_TCPV4, a.gso_size = 1000;
         b.payload = pattern(4000, 2), b.gso_type = VIRTIO_NET_HDR_GSO_TCPV4, b.gso_size = 1000;
         b.seq = a.seq + 62000;
       }},
      {"over_buffer", R::too_big, {}, {}, 2000},
  };
}

TEST(NetCoalesce, EveryRefusalLeavesTheAccumulatorUntouched) {
  std::set<MergeResult> reasons;
  for (const auto& c : refusals()) {
    auto [a, b] = pair_v4();
    if (c.edit) c.edit(a, b);
    auto fa = build(a), fb = build(b);
    auto ha = hdr_of(a), hb = hdr_of(b);
    if (c.raw) c.raw(fa, fb, ha, hb);
    std::vector<std::byte> buf(c.cap);
    std::copy(fa.begin(), fa.end(), buf.begin());
    MergeFrame acc{buf, fa.size()};
    const virtio_net_hdr before = ha;
    const MergeResult r = merge_frames(acc, ha, fb, hb);
    EXPECT_EQ(r, c.why) << c.name << ": got '" << to_string(r) << "', want '" << to_string(c.why) << "'";
    EXPECT_EQ(acc.len, fa.size()) << c.name;
    EXPECT_TRUE(std::equal(fa.begin(), fa.end(), buf.begin())) << c.name << ": acc modified";
    EXPECT_TRUE(same_hdr(ha, before)) << c.name << ": acc header modified";
    reasons.insert(r);
  }
  EXPECT_GE(reasons.size(), 20U);
  EXPECT_EQ(reasons.count(MergeResult::merged), 0U);
}

TEST(NetCoalesce, TheUneditedPairMerges) {  // the refusal table's base case is a valid merge
  auto [a, b] = pair_v4();
  Acc acc(a);
  EXPECT_EQ(acc.merge(b), MergeResult::merged);
  auto [c, d] = pair_v4();
  c.v6 = d.v6 = true;
  Acc acc6(c);
  EXPECT_EQ(acc6.merge(d), MergeResult::merged);
}

TEST(NetCoalesce, AccLengthBeyondItsBufferIsRefused) {
  auto [a, b] = pair_v4();
  Acc acc(a, 2000);
  acc.frame.len = 2001;
  EXPECT_EQ(acc.merge(b), MergeResult::too_big);
}

TEST(NetCoalesce, Ipv4PairBecomesOneGsoFrameByteForByte) {
  Seg a;
  a.payload = pattern(1448, 1);
  a.opts = ts_option(1000, 7000);
  Seg b = a;
  b.seq = a.seq + 1448;
  b.ip_id = 8;
  b.ack = 5100;
  b.win = 600;
  b.flags = kAck | kPsh;
  b.opts = ts_option(1001, 7002);
  b.payload = pattern(1448, 2);
  Acc acc(a);
  ASSERT_EQ(acc.merge(b), MergeResult::merged);
  const auto got = acc.bytes();
  ASSERT_EQ(got.size(), 14U + 20 + 32 + 2896);
  // Field by field.
  EXPECT_EQ(rd16(got, 16), 20U + 32 + 2896) << "IPv4 total length";
  EXPECT_EQ(rd16(got, 18), 7U) << "the first frame's IP id";
  EXPECT_EQ(csum_fold(sum16(got, 14, 20)), 0U) << "IPv4 header checksum";
  EXPECT_EQ(rd32(got, 34 + 4), 1000U) << "seq";
  EXPECT_EQ(rd32(got, 34 + 8), 5100U) << "next's ack";
  EXPECT_EQ(std::to_integer<unsigned>(got[34 + 13]), kAck | kPsh) << "PSH carried over";
  EXPECT_EQ(rd16(got, 34 + 14), 600U) << "next's window";
  EXPECT_EQ(rd32(got, 34 + 20 + 4), 1000U) << "acc's TSval";
  EXPECT_EQ(rd32(got, 34 + 20 + 8), 7002U) << "next's TSecr";
  EXPECT_EQ(rd16(got, 34 + 16), linux_seed(got, false, 14, 32 + 2896)) << "seed for the new TCP length";
  EXPECT_TRUE(std::equal(a.payload.begin(), a.payload.end(), got.begin() + 66));
  EXPECT_TRUE(std::equal(b.payload.begin(), b.payload.end(), got.begin() + 66 + 1448));
  EXPECT_TRUE(host_checksum_verifies(got, false, 14, 34));
  // The whole frame against one built directly.
  Seg m = a;
  m.payload.insert(m.payload.end(), b.payload.begin(), b.payload.end());
  m.ack = b.ack, m.win = b.win, m.flags = kAck | kPsh, m.opts = ts_option(1000, 7002);
  EXPECT_EQ(got, build(m));
  EXPECT_EQ(acc.hdr.flags, VIRTIO_NET_HDR_F_NEEDS_CSUM);
  EXPECT_EQ(acc.hdr.gso_type, VIRTIO_NET_HDR_GSO_TCPV4);
  EXPECT_EQ(acc.hdr.gso_size, 1448U);
  EXPECT_EQ(acc.hdr.hdr_len, 66U);
  EXPECT_EQ(acc.hdr.csum_start, 34U);
  EXPECT_EQ(acc.hdr.csum_offset, 16U);
  // A PSH in the middle does not end the run (the frames are all here already); the merged frame keeps it.
  Seg c = b;
  c.seq = b.seq + 1448;
  c.flags = kAck;
  c.opts = ts_option(1002, 7003);
  c.payload = pattern(1448, 3);
  ASSERT_EQ(acc.merge(c), MergeResult::merged);
  EXPECT_EQ(std::to_integer<unsigned>(acc.bytes()[34 + 13]), kAck | kPsh) << "PSH kept from the middle segment";
  m.payload.insert(m.payload.end(), c.payload.begin(), c.payload.end());
  m.opts = ts_option(1000, 7003);
  EXPECT_EQ(acc.bytes(), build(m));
  EXPECT_TRUE(host_checksum_verifies(acc.bytes(), false, 14, 34));
}

TEST(NetCoalesce, Ipv6GsoFramesOverVlanMergeByteForByte) {
  Seg a;
  a.v6 = a.vlan = true;
  a.gso_type = VIRTIO_NET_HDR_GSO_TCPV6, a.gso_size = 1000;
  a.payload = pattern(3000, 1);
  Seg b = a;
  b.seq = a.seq + 3000;
  b.payload = pattern(2500, 2);  // ends short: the last one
  Acc acc(a);
  ASSERT_EQ(acc.merge(b), MergeResult::merged);
  const auto got = acc.bytes();
  const std::size_t l3 = 18, l4 = 58;
  ASSERT_EQ(got.size(), l4 + 32 + 5500);
  EXPECT_EQ(rd16(got, l3 + 4), 32U + 5500) << "IPv6 payload length";
  EXPECT_EQ(rd16(got, l4 + 16), linux_seed(got, true, l3, 32 + 5500));
  EXPECT_TRUE(host_checksum_verifies(got, true, l3, l4));
  Seg m = a;
  m.payload.insert(m.payload.end(), b.payload.begin(), b.payload.end());
  EXPECT_EQ(got, build(m));
  EXPECT_EQ(acc.hdr.gso_type, VIRTIO_NET_HDR_GSO_TCPV6);
  EXPECT_EQ(acc.hdr.gso_size, 1000U);
  EXPECT_EQ(acc.hdr.hdr_len, l4 + 32);
  EXPECT_EQ(acc.hdr.csum_start, l4);
  // Short segment merged: nothing may follow.
  Seg c = b;
  c.seq = b.seq + 2500;
  c.payload = pattern(1000, 3);
  EXPECT_EQ(acc.merge(c), MergeResult::acc_not_full);
}

TEST(NetCoalesce, SeedMatchesTheChecksumThatFillL4Computes) {
  // Cross-check with the backend's own full-checksum code: the host's completion of the merged frame equals
  // fill_l4_checksum's answer.
  for (bool v6 : {false, true}) {
    auto [a, b] = pair_v4();
    a.v6 = b.v6 = v6;
    Acc acc(a);
    ASSERT_EQ(acc.merge(b), MergeResult::merged);
    auto host = acc.bytes();
    const std::size_t l4 = v6 ? 54 : 34;
    wr16(host, l4 + 16, csum_fold(sum16(host, l4, host.size() - l4)));
    auto full = acc.bytes();
    ASSERT_TRUE(fill_l4_checksum(full));
    EXPECT_EQ(rd16(host, l4 + 16), rd16(full, l4 + 16)) << "v6=" << v6;
  }
}

TEST(NetCoalesce, SequenceAndTimestampWrapAround) {
  Seg a;
  a.seq = 0xFFFFFF00U;
  a.ack = 0xFFFFFFF0U;
  a.opts = ts_option(0xFFFFFFFFU, 0xFFFFFFFEU);
  Seg b = a;
  b.seq = a.seq + 1000;  // wraps
  b.ack = 0x10;          // newer across the wrap
  b.opts = ts_option(0, 1);
  b.payload = pattern(1000, 2);
  Acc acc(a);
  EXPECT_EQ(acc.merge(b), MergeResult::merged);
}

TEST(NetCoalesce, SingleSegmentsUpToTheMssJoinAGsoFrame) {
  Seg a;
  a.gso_type = VIRTIO_NET_HDR_GSO_TCPV4, a.gso_size = 500;
  a.payload = pattern(1500, 1);
  Acc acc(a);
  std::uint32_t seq = a.seq + 1500;
  for (int i = 0; i < 3; ++i) {  // full-size single segments
    Seg s = a;
    s.gso_type = 0, s.gso_size = 0;
    s.seq = seq;
    s.payload = pattern(500, static_cast<unsigned>(i));
    ASSERT_EQ(acc.merge(s), MergeResult::merged) << i;
    seq += 500;
  }
  Seg g = a;  // then another GSO frame of the same MSS
  g.seq = seq;
  ASSERT_EQ(acc.merge(g), MergeResult::merged);
  EXPECT_EQ(acc.frame.len, 66U + 1500 * 2 + 1500);
  EXPECT_EQ(acc.hdr.gso_size, 500U);
}

// Segments a random payload the way a sender would (GSO frames of whole MSS multiples and single segments,
// only the last one short), merges them in order, and compares with the frame built directly.
TEST(NetCoalesce, SegmentedRandomPayloadMergesBackIntoOneFrame) {
  std::mt19937 rng(20240611);
  auto uni = [&](std::size_t lo, std::size_t hi) { return std::uniform_int_distribution<std::size_t>(lo, hi)(rng); };
  int checked = 0;
  for (int iter = 0; iter < 300; ++iter) {
    Seg base;
    base.v6 = uni(0, 1) == 1;
    base.vlan = uni(0, 3) == 0;
    base.seq = static_cast<std::uint32_t>(rng());
    base.ack = static_cast<std::uint32_t>(rng());
    const auto tsval = static_cast<std::uint32_t>(rng()), tsecr = static_cast<std::uint32_t>(rng());
    base.opts = uni(0, 4) == 0 ? std::vector<std::byte>{} : ts_option(tsval, tsecr);
    const std::size_t mss = uni(0, 3) == 0 ? uni(1, 64) : uni(500, 1460);
    const std::size_t total = uni(mss + 1, 65535 - base.hdr_len());
    const auto payload = pattern(total, static_cast<unsigned>(iter));
    std::vector<Seg> segs;
    std::size_t off = 0;
    std::uint32_t ack = base.ack, ecr = tsecr;
    while (off < total) {
      Seg s = base;
      const std::size_t left = total - off;
      std::size_t n = 0;
      if (left <= mss) {
        n = left;  // the last, maybe short, single segment
      } else {
        const std::size_t k = uni(1, std::min<std::size_t>(left / mss, 40));
        n = k * mss;
        if (k > 1 || uni(0, 2) == 0) s.gso_type = base.v6 ? VIRTIO_NET_HDR_GSO_TCPV6 : VIRTIO_NET_HDR_GSO_TCPV4;
        if (k * mss + mss > left && uni(0, 1) == 1) n = left, s.gso_type = base.v6 ? VIRTIO_NET_HDR_GSO_TCPV6
                                                                                    : VIRTIO_NET_HDR_GSO_TCPV4;
      }
      if (s.gso_type != 0) s.gso_size = static_cast<std::uint16_t>(mss);
      s.seq = base.seq + static_cast<std::uint32_t>(off);
      ack += static_cast<std::uint32_t>(uni(0, 3000));
      ecr += static_cast<std::uint32_t>(uni(0, 2));
      s.ack = ack;
      s.win = static_cast<std::uint16_t>(uni(100, 65535));
      if (!s.opts.empty()) s.opts = ts_option(tsval + static_cast<std::uint32_t>(segs.size()), ecr);
      s.ip_id = static_cast<std::uint16_t>(rng());
      s.payload.assign(payload.begin() + static_cast<std::ptrdiff_t>(off),
                       payload.begin() + static_cast<std::ptrdiff_t>(off + n));
      off += n;
      segs.push_back(std::move(s));
    }
    if (segs.size() < 2) continue;
    bool psh = false;
    for (auto& sg : segs)
      if (uni(0, 3) == 0) sg.flags = kAck | kPsh, psh = true;
    Acc acc(segs[0]);
    for (std::size_t i = 1; i < segs.size(); ++i) {
      const MergeResult r = acc.merge(segs[i]);
      ASSERT_EQ(r, MergeResult::merged) << "iter " << iter << " segment " << i << ": " << to_string(r);
    }
    Seg whole = segs[0];
    whole.payload = payload;
    whole.ack = segs.back().ack, whole.win = segs.back().win, whole.flags = psh ? kAck | kPsh : kAck;
    if (!whole.opts.empty()) whole.opts = ts_option(tsval, ecr);
    ASSERT_EQ(acc.bytes(), build(whole)) << "iter " << iter;
    EXPECT_EQ(acc.hdr.gso_size, mss);
    EXPECT_EQ(acc.hdr.gso_type, base.v6 ? VIRTIO_NET_HDR_GSO_TCPV6 : VIRTIO_NET_HDR_GSO_TCPV4);
    EXPECT_EQ(acc.hdr.hdr_len, whole.hdr_len());
    EXPECT_TRUE(host_checksum_verifies(acc.bytes(), base.v6, whole.l3(), whole.l4()));
    ++checked;
  }
  EXPECT_GT(checked, 250);
}

// Hostile bytes: random edits of a valid pair never read out of bounds (ASan/UBSan), and whatever merges is a
// consistent frame.
TEST(NetCoalesce, RandomlyCorruptedFramesAreHandled) {
  std::mt19937 rng(7);
  int merged = 0;
  for (int iter = 0; iter < 5000; ++iter) {
    auto [a, b] = pair_v4();
    a.v6 = b.v6 = (iter % 2) == 1;
    auto fa = build(a), fb = build(b);
    auto ha = hdr_of(a), hb = hdr_of(b);
    auto& f = (rng() % 2) != 0 ? fa : fb;
    const int edits = 1 + static_cast<int>(rng() % 3);
    for (int e = 0; e < edits; ++e) f[rng() % std::min<std::size_t>(f.size(), 90)] = static_cast<std::byte>(rng());
    if (rng() % 4 == 0) f.resize(rng() % f.size());
    if (rng() % 8 == 0) hb.csum_start = static_cast<std::uint16_t>(rng());
    std::vector<std::byte> buf(kMaxPacket);
    std::copy(fa.begin(), fa.end(), buf.begin());
    MergeFrame acc{buf, fa.size()};
    if (merge_frames(acc, ha, fb, hb) != MergeResult::merged) continue;
    ++merged;
    const std::vector<std::byte> got(buf.begin(), buf.begin() + static_cast<std::ptrdiff_t>(acc.len));
    EXPECT_TRUE(parse_l4(got)) << iter;
  }
  EXPECT_GT(merged, 0) << "some edits (payload, ids) keep the pair mergeable";
}

}  // namespace
}  // namespace gears::net
