// RX towards the frontend: which frames go as GSO / partial checksum / completed checksum, what is dropped, and the
// checksum completion itself (against Linux's arithmetic, spelled out in tcp_frames.hpp).
#include <gtest/gtest.h>

#include <functional>
#include <string>
#include <vector>

#include "dom0/backends/net/protocol.hpp"
#include "tests/unit/net/tcp_frames.hpp"

namespace gears::net {
namespace {

using test::Seg;

RxHeader rx_hdr(const Seg& s) {
  const virtio_net_hdr h = test::hdr_of(s);
  return RxHeader{h.flags, h.gso_type, h.gso_size, h.csum_start, h.csum_offset};
}

constexpr RxCaps kAll{true, true, true, true, true};
constexpr RxCaps kNone{false, false, false, false, false};

// True if the TCP checksum of frame f (as built from s) verifies against its pseudo-header.
bool verifies(const std::vector<std::byte>& f, const Seg& s) {
  const std::size_t end = f.size() - s.trailer;
  const auto tcp_len = static_cast<std::uint32_t>(end - s.l4());
  return test::csum_fold(test::pseudo_sum(f, s.v6, s.l3(), tcp_len) + test::sum16(f, s.l4(), end - s.l4())) == 0;
}

TEST(NetRxPlan, PlainFrameTakesItsPagesWithNoFlags) {
  Seg s;
  s.hdr_flags = 0;
  auto f = test::build(s);
  auto p = plan_rx(rx_hdr(s), f, kNone);
  ASSERT_TRUE(p);
  EXPECT_EQ(p->data_slots, 1U);
  EXPECT_EQ(p->ring_slots(), 1U);
  EXPECT_EQ(p->flags, 0);
  EXPECT_FALSE(p->gso);
  EXPECT_FALSE(p->sw_csum);
}

TEST(NetRxPlan, HostVerifiedChecksumIsDataValidated) {
  Seg s;
  s.hdr_flags = VIRTIO_NET_HDR_F_DATA_VALID;
  auto f = test::build(s);
  auto p = plan_rx(rx_hdr(s), f, kNone);
  ASSERT_TRUE(p);
  EXPECT_EQ(p->flags, NETRXF_data_validated);
}

TEST(NetRxPlan, PartialChecksumGoesBlankWhenTheFrontendTakesIt) {
  for (bool v6 : {false, true}) {
    Seg s;
    s.v6 = v6;
    auto f = test::build(s);
    auto p = plan_rx(rx_hdr(s), f, kAll);
    ASSERT_TRUE(p) << v6;
    EXPECT_EQ(p->flags, NETRXF_csum_blank | NETRXF_data_validated) << v6;
    EXPECT_FALSE(p->sw_csum) << v6;
  }
}

TEST(NetRxPlan, PartialChecksumIsCompletedWhenTheFrontendCannot) {
  // IPv4 with feature-no-csum-offload; IPv6 without feature-ipv6-csum-offload.
  for (auto [v6, caps] : {std::pair{false, RxCaps{true, false, true, false, false}},
                          std::pair{true, RxCaps{true, true, false, true, false}}}) {
    Seg s;
    s.v6 = v6;
    s.payload = test::pattern(1001, 3);  // odd length
    auto f = test::build(s);
    auto p = plan_rx(rx_hdr(s), f, caps);
    ASSERT_TRUE(p) << v6;
    EXPECT_TRUE(p->sw_csum) << v6;
    EXPECT_EQ(p->flags, 0) << v6;
    EXPECT_FALSE(verifies(f, s));
    ASSERT_TRUE(complete_partial_csum(f, s.l4(), 16));
    EXPECT_TRUE(verifies(f, s)) << v6;
  }
}

TEST(NetRxPlan, PartialChecksumTheFrontendWouldNotParseIsCompleted) {
  // An IPv4 fragment: the frontend's checksum_setup refuses it, so it must arrive complete.
  Seg s;
  s.mf = true;
  auto f = test::build(s);
  auto p = plan_rx(rx_hdr(s), f, kAll);
  ASSERT_TRUE(p);
  EXPECT_TRUE(p->sw_csum);
  // Offsets that do not match the headers (a checksum elsewhere than TCP's field): also completed here.
  Seg t;
  auto g = test::build(t);
  RxHeader h = rx_hdr(t);
  h.csum_offset = 6;
  auto q = plan_rx(h, g, kAll);
  ASSERT_TRUE(q);
  EXPECT_TRUE(q->sw_csum);
}

TEST(NetRxPlan, TsoFrameGoesWholeWithAGsoExtra) {
  for (bool v6 : {false, true}) {
    Seg s;
    s.v6 = v6;
    s.payload = test::pattern(20 * 1448, 5);
    s.gso_type = v6 ? VIRTIO_NET_HDR_GSO_TCPV6 : VIRTIO_NET_HDR_GSO_TCPV4;
    s.gso_size = 1448;
    auto f = test::build(s);
    auto p = plan_rx(rx_hdr(s), f, kAll);
    ASSERT_TRUE(p) << v6;
    EXPECT_EQ(p->data_slots, (f.size() + 4095) / 4096);
    EXPECT_EQ(p->ring_slots(), p->data_slots + 1);
    EXPECT_EQ(p->flags, NETRXF_csum_blank | NETRXF_data_validated | NETRXF_extra_info);
    ASSERT_TRUE(p->gso);
    EXPECT_EQ(p->gso->type, XEN_NETIF_EXTRA_TYPE_GSO);
    EXPECT_EQ(p->gso->flags, 0);
    EXPECT_EQ(p->gso->u.gso.size, 1448);
    EXPECT_EQ(p->gso->u.gso.type, v6 ? XEN_NETIF_GSO_TYPE_TCPV6 : XEN_NETIF_GSO_TYPE_TCPV4);
    EXPECT_FALSE(p->sw_csum);
  }
}

TEST(NetRxPlan, TheLargestTsoFrameFitsTheSlotLimit) {
  Seg s;
  s.payload = test::pattern(65535 - 20 - 32, 9);  // IPv4 total length 65535
  s.gso_type = VIRTIO_NET_HDR_GSO_TCPV4;
  s.gso_size = 1448;
  auto f = test::build(s);
  auto p = plan_rx(rx_hdr(s), f, kAll);
  ASSERT_TRUE(p);
  EXPECT_EQ(p->data_slots, 17U);
  EXPECT_LE(p->data_slots, std::size_t{XEN_NETIF_NR_SLOTS_MIN});
}

struct Refusal {
  const char* name;
  std::function<void(Seg&, RxHeader&, RxCaps&, std::vector<std::byte>&)> make;
};

TEST(NetRxPlanRefused, EveryBadFrameIsDroppedWithAReason) {
  const Refusal cases[] = {
      {"tso4 the frontend did not ask for", [](Seg&, RxHeader&, RxCaps& c, auto&) { c.gso4 = false; }},
      {"tso without sg", [](Seg&, RxHeader&, RxCaps& c, auto&) { c.sg = false; }},
      {"tso without csum", [](Seg&, RxHeader&, RxCaps& c, auto&) { c.csum4 = false; }},
      {"tso6 on a v4-only frontend", [](Seg& s, RxHeader& h, RxCaps& c, auto& f) {
         s.v6 = true, s.gso_type = VIRTIO_NET_HDR_GSO_TCPV6, c.gso6 = false;
         f = test::build(s), h = rx_hdr(s);
       }},
      {"tso6 without ipv6 csum", [](Seg& s, RxHeader& h, RxCaps& c, auto& f) {
         s.v6 = true, s.gso_type = VIRTIO_NET_HDR_GSO_TCPV6, c.csum6 = false;
         f = test::build(s), h = rx_hdr(s);
       }},
      {"gso type UDP", [](Seg&, RxHeader& h, RxCaps&, auto&) { h.gso_type = 3; }},
      {"gso with the ECN bit", [](Seg&, RxHeader& h, RxCaps&, auto&) { h.gso_type = 0x81; }},
      {"gso without a partial checksum", [](Seg&, RxHeader& h, RxCaps&, auto&) { h.flags = 0; }},
      {"gso size 0", [](Seg&, RxHeader& h, RxCaps&, auto&) { h.gso_size = 0; }},
      {"gso v4 header on a v6 frame", [](Seg& s, RxHeader& h, RxCaps&, auto& f) {
         s.v6 = true, f = test::build(s), h = rx_hdr(s), h.gso_type = VIRTIO_NET_HDR_GSO_TCPV4;
       }},
      {"gso on UDP", [](Seg& s, RxHeader& h, RxCaps&, auto& f) { s.proto = 17, f = test::build(s), h = rx_hdr(s); }},
      {"gso csum_start off the TCP header", [](Seg&, RxHeader& h, RxCaps&, auto&) { h.csum_start += 4; }},
      {"csum_start beyond the frame", [](Seg&, RxHeader& h, RxCaps&, auto& f) {
         h.gso_type = 0, h.csum_start = static_cast<std::uint16_t>(f.size());
       }},
      {"csum field beyond the frame", [](Seg&, RxHeader& h, RxCaps&, auto& f) {
         h.gso_type = 0, h.csum_start = static_cast<std::uint16_t>(f.size() - 10), h.csum_offset = 9;
       }},
      {"multi-page frame without sg", [](Seg&, RxHeader& h, RxCaps& c, auto&) { h.gso_type = 0, c.sg = false; }},
      {"more than 18 pages", [](Seg&, RxHeader& h, RxCaps&, auto& f) {
         h.gso_type = 0, h.flags = 0, f.resize(18 * 4096 + 1);
       }},
  };
  for (const auto& c : cases) {
    Seg s;
    s.payload = test::pattern(10 * 1448, 2);
    s.gso_type = VIRTIO_NET_HDR_GSO_TCPV4;
    s.gso_size = 1448;
    auto f = test::build(s);
    RxHeader h = rx_hdr(s);
    RxCaps caps = kAll;
    c.make(s, h, caps, f);
    auto p = plan_rx(h, f, caps);
    EXPECT_FALSE(p) << c.name;
    if (!p) {
      EXPECT_NE(std::string(p.error().what).find("rx: "), std::string::npos) << c.name;
    }
  }
}

TEST(NetRxCsum, CompletionVerifiesAndManglesZero) {
  Seg s;
  auto f = test::build(s);
  ASSERT_TRUE(complete_partial_csum(f, s.l4(), 16));
  EXPECT_TRUE(verifies(f, s));
  // A segment whose sum folds to zero is stored as 0xFFFF (never 0: "no checksum" to UDP).
  std::vector<std::byte> z(8, std::byte{0});
  z[0] = std::byte{0xFF}, z[1] = std::byte{0xFF};
  ASSERT_TRUE(complete_partial_csum(z, 0, 6));
  EXPECT_EQ(test::rd16(z, 6), 0xFFFF);
  EXPECT_FALSE(complete_partial_csum(z, 8, 0));  // start at the end
  EXPECT_FALSE(complete_partial_csum(z, 0, 7));  // field's second byte beyond the end
  EXPECT_FALSE(complete_partial_csum(z, 6, 1));
  EXPECT_TRUE(complete_partial_csum(z, 6, 0));
}

}  // namespace
}  // namespace gears::net
