// ack-filter's classifier (protocol.hpp: pure_ack, supersedes): which RX frames are pure cumulative ACKs that a later
// ACK of the same connection may replace, and every frame that must never be dropped for it.
#include <gtest/gtest.h>

#include "dom0/backends/net/protocol.hpp"
#include "tests/unit/net/tcp_frames.hpp"

namespace gears::net {
namespace {

using test::Seg;

Seg ack(std::uint32_t a, bool v6 = false) {
  Seg s;
  s.v6 = v6;
  s.flags = test::kAck;
  s.ack = a;
  s.payload.clear();
  return s;
}

std::optional<PureAck> classify(const Seg& s) { return pure_ack(test::build(s)); }

TEST(NetAckFilter, BareAcksOverIpv4Ipv6AndVlanArePure) {
  for (bool v6 : {false, true}) {
    for (bool vlan : {false, true}) {
      Seg s = ack(7000, v6);
      s.vlan = vlan;
      const auto a = classify(s);
      ASSERT_TRUE(a) << v6 << vlan;
      EXPECT_EQ(a->ack, 7000U);
    }
  }
  Seg no_opts = ack(1);
  no_opts.opts.clear();
  EXPECT_TRUE(classify(no_opts));
  Seg padded = ack(1);
  padded.trailer = 6;  // Ethernet padding of a 54-byte frame: not payload
  padded.opts.clear();
  EXPECT_TRUE(classify(padded));
  Seg eol = ack(1);
  eol.opts = {std::byte{1}, std::byte{1}, std::byte{1}, std::byte{0}};  // NOPs, then end of options
  EXPECT_TRUE(classify(eol));
}

TEST(NetAckFilter, AnythingButABareAckIsKept) {
  std::vector<std::pair<const char*, Seg>> keep;
  auto add = [&](const char* why, auto change) {
    Seg s = ack(9000);
    change(s);
    keep.emplace_back(why, s);
  };
  add("payload", [](Seg& s) { s.payload = test::pattern(1, 0); });
  for (unsigned f : {test::kFin, test::kSyn, test::kRst, test::kPsh, test::kUrg, test::kEce, test::kCwr})
    add("flag", [f](Seg& s) { s.flags = static_cast<std::uint8_t>(test::kAck | f); });
  add("no ACK flag", [](Seg& s) { s.flags = 0; });
  add("AE/reserved bit", [](Seg& s) { s.reserved = 1; });
  add("SACK block", [](Seg& s) {
    s.opts = {std::byte{1}, std::byte{1}, std::byte{5}, std::byte{10}, std::byte{0}, std::byte{0}, std::byte{0},
              std::byte{1}, std::byte{0}, std::byte{0}, std::byte{0}, std::byte{2}};
  });
  add("window scale option", [](Seg& s) { s.opts = {std::byte{1}, std::byte{3}, std::byte{3}, std::byte{7}}; });
  add("timestamp option of a wrong length", [](Seg& s) { s.opts[3] = std::byte{8}; });
  add("timestamp cut by the header end", [](Seg& s) { s.opts.resize(8); });
  add("UDP", [](Seg& s) { s.proto = 17; });
  add("IPv4 fragment (more fragments)", [](Seg& s) { s.mf = true; });
  add("IPv4 fragment (offset)", [](Seg& s) { s.frag_off = 8; });
  add("IP length beyond the frame", [](Seg& s) { s.ip_len_delta = 4; });
  add("IP length cutting the TCP header", [](Seg& s) { s.ip_len_delta = -4; });
  for (const auto& [why, s] : keep) EXPECT_FALSE(classify(s)) << why;

  Seg v6ext = ack(9000, true);
  v6ext.proto = 0;  // a hop-by-hop header first: not looked through
  EXPECT_FALSE(classify(v6ext));
  auto f = test::build(ack(9000));
  f[12] = std::byte{0x88}, f[13] = std::byte{0xB5};  // not IP
  EXPECT_FALSE(pure_ack(f));
  const auto whole = test::build(ack(9000));
  for (std::size_t n : {std::size_t{0}, std::size_t{13}, std::size_t{20}, std::size_t{40}, std::size_t{60}})
    EXPECT_FALSE(pure_ack(std::span<const std::byte>(whole).first(n))) << n;  // cut short
}

TEST(NetAckFilter, OnlyAHigherAckOfTheSameConnectionSupersedes) {
  const auto a = *classify(ack(1000));
  EXPECT_TRUE(supersedes(*classify(ack(1001)), a));
  EXPECT_FALSE(supersedes(*classify(ack(1000)), a)) << "a duplicate ACK drives fast retransmit";
  EXPECT_FALSE(supersedes(*classify(ack(999)), a)) << "an older ACK arriving late";
  EXPECT_FALSE(supersedes(a, *classify(ack(1001))));
  // Sequence space wraps.
  EXPECT_TRUE(supersedes(*classify(ack(5)), *classify(ack(0xFFFFFFF0U))));
  EXPECT_FALSE(supersedes(*classify(ack(0xFFFFFFF0U)), *classify(ack(5))));
  // A window update with the same ack number is kept; a later ACK may carry a different window.
  Seg w = ack(1000);
  w.win = 900;
  EXPECT_FALSE(supersedes(*classify(w), a));
  w.ack = 2000;
  EXPECT_TRUE(supersedes(*classify(w), a));
  // Other connections, addresses, VLANs or IP versions.
  std::vector<Seg> others(7, ack(5000));
  others[0].sport = 40001;
  others[1].dport = 5002;
  others[2].saddr = 9;
  others[3].daddr = 9;
  others[4].vlan = true;
  others[5].src_mac = 0x23;
  others[6].v6 = true;
  for (std::size_t i = 0; i < others.size(); ++i) EXPECT_FALSE(supersedes(*classify(others[i]), a)) << i;
  Seg vlan_a = ack(1), vlan_b = ack(2);
  vlan_a.vlan = vlan_b.vlan = true;
  vlan_b.vlan_tci = 6;
  EXPECT_FALSE(supersedes(*classify(vlan_b), *classify(vlan_a)));
  vlan_b.vlan_tci = vlan_a.vlan_tci;
  EXPECT_TRUE(supersedes(*classify(vlan_b), *classify(vlan_a)));
}

}  // namespace
}  // namespace gears::net
