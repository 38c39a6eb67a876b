// The netif TX parser and header parsing: valid packets and every malformed case the backend must survive.
#include "dom0/backends/net/protocol.hpp"

#include <gtest/gtest.h>

#include <cstring>
#include <vector>

namespace gears::net {
namespace {

netif_tx_request_t req(grant_ref_t gref, std::uint16_t off, std::uint16_t flags, std::uint16_t id, std::uint16_t size) {
  netif_tx_request_t r{};
  r.gref = gref;
  r.offset = off;
  r.flags = flags;
  r.id = id;
  r.size = size;
  return r;
}

netif_tx_request_t extra(std::uint8_t type, std::uint8_t flags, std::uint16_t gso_size = 1448,
                         std::uint8_t gso_type = XEN_NETIF_GSO_TYPE_TCPV4) {
  netif_extra_info_t x{};
  x.type = type;
  x.flags = flags;
  if (type == XEN_NETIF_EXTRA_TYPE_GSO) {
    x.u.gso.size = gso_size;
    x.u.gso.type = gso_type;
  }
  netif_tx_request_t r{};
  std::memcpy(&r, &x, sizeof x);
  return r;
}

// Feeds slots; returns the verdict of the last one.
TxVerdict feed_all(TxParser& p, const std::vector<netif_tx_request_t>& slots) {
  TxVerdict v = TxVerdict::need_more;
  for (const auto& s : slots) v = p.feed(s);
  return v;
}

constexpr std::uint16_t kMore = NETTXF_more_data, kExtra = NETTXF_extra_info, kCsum = NETTXF_csum_blank;

TEST(NetTxParser, SingleSlotPacket) {
  TxParser p;
  ASSERT_EQ(p.feed(req(7, 100, 0, 3, 60)), TxVerdict::ready);
  const auto& pk = p.packet();
  EXPECT_EQ(pk.len, 60U);
  ASSERT_EQ(pk.nslots, 1U);
  EXPECT_EQ(pk.slots[0].gref, 7U);
  EXPECT_EQ(pk.slots[0].offset, 100U);
  EXPECT_EQ(pk.slots[0].len, 60U);
  ASSERT_EQ(pk.nrsp, 1U);
  EXPECT_EQ(pk.rsp[0], 3);
  EXPECT_FALSE(p.partial());
}

TEST(NetTxParser, GsoPacketWithFragments) {
  TxParser p;
  // 9000 bytes: 1000 in slot 0, then 4096 + 3904.
  EXPECT_EQ(p.feed(req(1, 3096, kMore | kExtra | kCsum, 10, 9000)), TxVerdict::need_more);
  EXPECT_TRUE(p.partial());
  EXPECT_EQ(p.feed(extra(XEN_NETIF_EXTRA_TYPE_GSO, 0)), TxVerdict::need_more);
  EXPECT_EQ(p.feed(req(2, 0, kMore, 11, 4096)), TxVerdict::need_more);
  ASSERT_EQ(p.feed(req(3, 0, 0, 12, 3904)), TxVerdict::ready);
  const auto& pk = p.packet();
  EXPECT_EQ(pk.len, 9000U);
  ASSERT_EQ(pk.nslots, 3U);
  EXPECT_EQ(pk.slots[0].len, 1000U);
  ASSERT_TRUE(pk.gso);
  EXPECT_EQ(pk.gso->size, 1448U);
  EXPECT_TRUE(pk.csum_blank);
  // Responses in slot order; the extra slot answers RSP_NULL (-1 here).
  ASSERT_EQ(pk.nrsp, 4U);
  EXPECT_EQ(pk.rsp[0], 10);
  EXPECT_EQ(pk.rsp[1], -1);
  EXPECT_EQ(pk.rsp[2], 11);
  EXPECT_EQ(pk.rsp[3], 12);
}

TEST(NetTxParser, ExtraChainOfDistinctTypesIsAccepted) {
  TxParser p;
  EXPECT_EQ(p.feed(req(1, 0, kExtra | kCsum, 1, 3000)), TxVerdict::need_more);
  EXPECT_EQ(p.feed(extra(XEN_NETIF_EXTRA_TYPE_GSO, XEN_NETIF_EXTRA_FLAG_MORE)), TxVerdict::need_more);
  EXPECT_EQ(p.feed(extra(XEN_NETIF_EXTRA_TYPE_MCAST_ADD, XEN_NETIF_EXTRA_FLAG_MORE)), TxVerdict::need_more);
  EXPECT_EQ(p.feed(extra(XEN_NETIF_EXTRA_TYPE_HASH, 0)), TxVerdict::ready);
  EXPECT_EQ(p.packet().nrsp, 4U);
}

TEST(NetTxParser, MaximalPacketOf18Slots) {
  TxParser p;
  std::vector<netif_tx_request_t> s{req(1, 0, kMore, 0, 65535)};
  std::uint32_t left = 65535 - 4096;
  for (std::uint16_t i = 1; i < 18; ++i) {
    const auto n = static_cast<std::uint16_t>(std::min<std::uint32_t>(left, 4096));
    left -= n;
    s.push_back(req(1, 0, static_cast<std::uint16_t>(i < 17 ? kMore : 0), i, n));
  }
  ASSERT_EQ(feed_all(p, s), TxVerdict::ready);
  EXPECT_EQ(p.packet().nslots, 18U);
  EXPECT_EQ(p.packet().slots[0].len, 4096U);
}

// ---- malformed: dropped (error response, counted, vif stays up) --------------------------------------------

TEST(NetTxMalformed, ShorterThanEthernetHeaderIsDropped) {
  TxParser p;
  EXPECT_EQ(p.feed(req(1, 0, 0, 1, 13)), TxVerdict::drop);
  EXPECT_EQ(p.packet().nrsp, 1U);
}

TEST(NetTxMalformed, ZeroLengthPacketIsDropped) {
  TxParser p;
  EXPECT_EQ(p.feed(req(1, 0, 0, 1, 0)), TxVerdict::drop);
}

TEST(NetTxMalformed, FragmentsLongerThanTotalAreDropped) {
  TxParser p;
  EXPECT_EQ(feed_all(p, {req(1, 0, kMore, 1, 100), req(2, 0, 0, 2, 200)}), TxVerdict::drop);
  EXPECT_EQ(p.packet().nrsp, 2U);  // both slots are answered
}

TEST(NetTxMalformed, GrantRefOutOfRangeInFirstSlotIsDropped) {
  TxParser p;
  EXPECT_EQ(p.feed(req(kMaxGrantRef, 0, 0, 1, 60)), TxVerdict::drop);
}

TEST(NetTxMalformed, GrantRefOutOfRangeInFragmentIsDropped) {
  TxParser p;
  EXPECT_EQ(feed_all(p, {req(1, 0, kMore, 1, 200), req(0xFFFFFFFFU, 0, 0, 2, 100)}), TxVerdict::drop);
}

TEST(NetTxMalformed, GsoSizeNotBelowPacketLengthIsDropped) {
  TxParser p;
  EXPECT_EQ(feed_all(p, {req(1, 0, kExtra | kCsum, 1, 1000), extra(XEN_NETIF_EXTRA_TYPE_GSO, 0, 1000)}),
            TxVerdict::drop);
}

TEST(NetTxMalformed, GsoWithoutChecksumOffloadIsDropped) {
  TxParser p;
  EXPECT_EQ(feed_all(p, {req(1, 0, kExtra, 1, 3000), extra(XEN_NETIF_EXTRA_TYPE_GSO, 0)}), TxVerdict::drop);
}

TEST(NetTxMalformed, ParserRecoversAfterADrop) {
  TxParser p;
  EXPECT_EQ(p.feed(req(1, 0, 0, 1, 5)), TxVerdict::drop);
  EXPECT_EQ(p.feed(req(1, 0, 0, 2, 60)), TxVerdict::ready);
  EXPECT_EQ(p.packet().rsp[0], 2);
}

// ---- malformed: fatal (the vif is closed) -----------------------------------------------------------------------

TEST(NetTxMalformed, FirstSlotOffsetBeyondPageIsFatal) {
  TxParser p;
  EXPECT_EQ(p.feed(req(1, 4096, 0, 1, 60)), TxVerdict::fatal);
  EXPECT_EQ(p.why(), "slot offset beyond its page");
}

TEST(NetTxMalformed, FirstSlotCrossingItsPageIsFatal) {
  TxParser p;
  EXPECT_EQ(p.feed(req(1, 4000, 0, 1, 200)), TxVerdict::fatal);
  EXPECT_EQ(p.why(), "first slot crosses its page");
}

TEST(NetTxMalformed, FragmentCrossingItsPageIsFatal) {
  TxParser p;
  EXPECT_EQ(feed_all(p, {req(1, 0, kMore, 1, 3000), req(2, 2000, 0, 2, 2500)}), TxVerdict::fatal);
  EXPECT_EQ(p.why(), "fragment crosses its page");
}

TEST(NetTxMalformed, NineteenDataSlotsAreFatal) {
  TxParser p;
  std::vector<netif_tx_request_t> s{req(1, 0, kMore, 0, 65535)};
  for (std::uint16_t i = 1; i < 19; ++i) s.push_back(req(1, 0, kMore, i, 10));
  EXPECT_EQ(feed_all(p, s), TxVerdict::fatal);
  EXPECT_EQ(p.why(), "more than 18 data slots in one packet");
}

TEST(NetTxMalformed, EndlessMoreDataChainIsFatal) {
  TxParser p;
  TxVerdict v = p.feed(req(1, 0, kMore, 0, 1000));
  for (std::uint16_t i = 1; i < 100 && v == TxVerdict::need_more; ++i) v = p.feed(req(1, 0, kMore, i, 0));
  EXPECT_EQ(v, TxVerdict::fatal);
}

TEST(NetTxMalformed, ExtraTypeNoneIsFatal) {
  TxParser p;
  EXPECT_EQ(feed_all(p, {req(1, 0, kExtra, 1, 60), extra(XEN_NETIF_EXTRA_TYPE_NONE, 0)}), TxVerdict::fatal);
  EXPECT_EQ(p.why(), "unknown extra-info type");
}

TEST(NetTxMalformed, ExtraTypeBeyondMaxIsFatal) {
  TxParser p;
  EXPECT_EQ(feed_all(p, {req(1, 0, kExtra, 1, 60), extra(XEN_NETIF_EXTRA_TYPE_MAX, 0)}), TxVerdict::fatal);
  EXPECT_EQ(feed_all(p, {req(1, 0, kExtra, 1, 60), extra(0xFF, 0)}), TxVerdict::fatal);
}

TEST(NetTxMalformed, RepeatedExtraTypeIsFatal) {
  TxParser p;
  EXPECT_EQ(feed_all(p, {req(1, 0, kExtra | kCsum, 1, 3000), extra(XEN_NETIF_EXTRA_TYPE_GSO, XEN_NETIF_EXTRA_FLAG_MORE),
                         extra(XEN_NETIF_EXTRA_TYPE_GSO, 0)}),
            TxVerdict::fatal);
  EXPECT_EQ(p.why(), "extra-info type repeated");
}

TEST(NetTxMalformed, ExtraChainLongerThanFourIsFatal) {
  TxParser p;
  std::vector<netif_tx_request_t> s{req(1, 0, kExtra | kCsum, 1, 3000)};
  const std::uint8_t types[] = {1, 2, 3, 4, 2};
  for (auto t : types) s.push_back(extra(t, XEN_NETIF_EXTRA_FLAG_MORE));
  EXPECT_EQ(feed_all(p, s), TxVerdict::fatal);
  EXPECT_EQ(p.why(), "extra-info chain longer than 4");
}

TEST(NetTxMalformed, UnknownExtraFlagsAreFatal) {
  TxParser p;
  EXPECT_EQ(feed_all(p, {req(1, 0, kExtra, 1, 60), extra(XEN_NETIF_EXTRA_TYPE_MCAST_ADD, 0x80)}), TxVerdict::fatal);
}

TEST(NetTxMalformed, GsoSizeZeroIsFatal) {
  TxParser p;
  EXPECT_EQ(feed_all(p, {req(1, 0, kExtra | kCsum, 1, 3000), extra(XEN_NETIF_EXTRA_TYPE_GSO, 0, 0)}), TxVerdict::fatal);
  EXPECT_EQ(p.why(), "GSO size is zero");
}

TEST(NetTxMalformed, GsoTypeUnknownIsFatal) {
  TxParser p;
  EXPECT_EQ(feed_all(p, {req(1, 0, kExtra | kCsum, 1, 3000), extra(XEN_NETIF_EXTRA_TYPE_GSO, 0, 1448, 9)}),
            TxVerdict::fatal);
  EXPECT_EQ(p.why(), "GSO type unknown");
}

// ---- frame headers -----------------------------------------------------------------------------------------------

std::vector<std::byte> tcp4_frame(std::size_t payload, bool vlan = false) {
  std::vector<std::byte> f(14 + (vlan ? 4 : 0) + 20 + 20 + payload);
  auto put = [&](std::size_t off, unsigned v) { f[off] = static_cast<std::byte>(v); };
  std::size_t o = 12;
  if (vlan) {
    put(o, 0x81), put(o + 1, 0x00), o += 4;
  }
  put(o, 0x08), put(o + 1, 0x00);
  o += 2;
  put(o, 0x45);
  const std::size_t tot = 40 + payload;
  put(o + 2, static_cast<unsigned>(tot >> 8U)), put(o + 3, static_cast<unsigned>(tot & 0xFFU));
  put(o + 9, 6);
  put(o + 12, 10), put(o + 15, 1), put(o + 16, 10), put(o + 19, 2);
  o += 20;
  put(o + 12, 0x50);
  for (std::size_t i = 0; i < payload; ++i) put(o + 20 + i, static_cast<unsigned>(i * 7U + 1U) & 0xFFU);
  return f;
}

TEST(NetFrame, ParsesTcpOverIpv4AndVlan) {
  auto f = tcp4_frame(100);
  auto l4 = parse_l4(f);
  ASSERT_TRUE(l4);
  EXPECT_EQ(l4->csum_start, 34U);
  EXPECT_EQ(l4->csum_offset, 16U);
  EXPECT_EQ(l4->hdr_len, 54U);
  EXPECT_TRUE(l4->tcp);
  auto v = tcp4_frame(10, true);
  auto l4v = parse_l4(v);
  ASSERT_TRUE(l4v);
  EXPECT_EQ(l4v->csum_start, 38U);
}

TEST(NetFrame, ChecksumVerifiesToZero) {
  auto f = tcp4_frame(101);
  ASSERT_TRUE(fill_l4_checksum(f));
  // Re-summing the segment with its checksum in place gives 0xFFFF (one's complement zero).
  std::uint64_t sum = 0;
  auto w = [&](std::size_t off) { return (std::to_integer<unsigned>(f[off]) << 8U) | std::to_integer<unsigned>(f[off + 1]); };
  for (std::size_t i = 26; i < 34; i += 2) sum += w(i);
  sum += 6 + 20 + 101;
  for (std::size_t i = 34; i + 1 < f.size(); i += 2) sum += w(i);
  sum += std::to_integer<unsigned>(f.back()) << 8U;
  while ((sum >> 16U) != 0) sum = (sum & 0xFFFFU) + (sum >> 16U);
  EXPECT_EQ(sum, 0xFFFFU);
}

TEST(NetFrameMalformed, TruncatedAndForeignFramesAreRejected) {
  auto f = tcp4_frame(0);
  EXPECT_FALSE(parse_l4(std::span(f).first(13)));   // no Ethernet header
  EXPECT_FALSE(parse_l4(std::span(f).first(30)));   // truncated IPv4 header
  EXPECT_FALSE(parse_l4(std::span(f).first(40)));   // truncated TCP header
  auto g = f;
  g[12] = std::byte{0x08}, g[13] = std::byte{0x06};  // ARP
  EXPECT_FALSE(parse_l4(g));
  auto h = f;
  h[14] = std::byte{0x44};  // IHL 4
  EXPECT_FALSE(parse_l4(h));
  auto k = f;
  k[14 + 6] = std::byte{0x20};  // More Fragments
  EXPECT_FALSE(parse_l4(k));
  auto m = f;
  m[14 + 20 + 12] = std::byte{0x40};  // TCP data offset 4
  EXPECT_FALSE(parse_l4(m));
}

}  // namespace
}  // namespace gears::net
