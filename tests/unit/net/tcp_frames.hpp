// Test frames: Ethernet [+ 802.1Q] / IPv4 | IPv6 / TCP segments as xen-netfront sends them with checksum
// offload (CHECKSUM_PARTIAL), built field by field, independently of the code under test.
#pragma once

#include <cstddef>
#include <cstdint>
#include <vector>

#include "dom0/backends/net/host.hpp"

namespace gears::net::test {

inline constexpr unsigned kFin = 0x01, kSyn = 0x02, kRst = 0x04, kPsh = 0x08, kAck = 0x10, kUrg = 0x20, kEce = 0x40,
                          kCwr = 0x80;

// NOP, NOP, timestamp (kind 8, length 10): what Linux puts on every segment of an established connection.
inline std::vector<std::byte> ts_option(std::uint32_t tsval, std::uint32_t tsecr) {
  std::vector<std::byte> o = {std::byte{1}, std::byte{1}, std::byte{8}, std::byte{10}};
  for (std::uint32_t v : {tsval, tsecr})
    for (int sh = 24; sh >= 0; sh -= 8) o.push_back(static_cast<std::byte>((v >> static_cast<unsigned>(sh)) & 0xFFU));
  return o;
}

inline std::vector<std::byte> pattern(std::size_t n, unsigned seed) {
  std::vector<std::byte> p(n);
  for (std::size_t i = 0; i < n; ++i) p[i] = static_cast<std::byte>((i * 7U + seed * 13U + (i >> 8U)) & 0xFFU);
  return p;
}

struct Seg {
  bool v6 = false;
  bool vlan = false;
  std::uint16_t vlan_tci = 5;
  std::uint8_t src_mac = 0x22;
  // IP
  std::uint8_t tos = 0, ttl = 64;  // IPv6: traffic class, hop limit
  std::uint32_t flow = 0x12345;    // IPv6 flow label
  std::uint16_t ip_id = 7;
  bool df = true, mf = false;
  std::uint16_t frag_off = 0;
  std::size_t ip_opts = 0;         // IPv4 option bytes (NOPs), a multiple of 4
  std::uint8_t proto = 6;
  std::uint8_t saddr = 1, daddr = 2;  // last address byte
  int ip_len_delta = 0;            // added to the IP length field (a lie about the frame)
  // TCP
  std::uint16_t sport = 40000, dport = 5001;
  std::uint32_t seq = 1000, ack = 5000;
  std::uint16_t win = 502;
  std::uint8_t flags = kAck;
  std::uint8_t reserved = 0;       // the 4 bits after the data offset
  std::vector<std::byte> opts = ts_option(100, 200);
  std::vector<std::byte> payload = pattern(1000, 1);
  std::size_t trailer = 0;         // bytes after the IP packet (Ethernet padding)
  bool bad_seed = false;           // the checksum field without the length (as FreeBSD's TSO seed)
  // Offload header
  std::uint8_t hdr_flags = VIRTIO_NET_HDR_F_NEEDS_CSUM;
  std::uint8_t gso_type = 0;
  std::uint16_t gso_size = 0;

  [[nodiscard]] std::size_t l3() const { return vlan ? 18 : 14; }
  [[nodiscard]] std::size_t l4() const { return l3() + (v6 ? 40 : 20 + ip_opts); }
  [[nodiscard]] std::size_t thl() const { return 20 + opts.size(); }
  [[nodiscard]] std::size_t hdr_len() const { return l4() + thl(); }
};

inline std::uint16_t rd16(const std::vector<std::byte>& f, std::size_t off) {
  return static_cast<std::uint16_t>((std::to_integer<unsigned>(f[off]) << 8U) | std::to_integer<unsigned>(f[off + 1]));
}
inline std::uint32_t rd32(const std::vector<std::byte>& f, std::size_t off) {
  return (std::uint32_t{rd16(f, off)} << 16U) | rd16(f, off + 2);
}
inline void wr16(std::vector<std::byte>& f, std::size_t off, std::uint16_t v) {
  f[off] = static_cast<std::byte>(v >> 8U);
  f[off + 1] = static_cast<std::byte>(v & 0xFFU);
}

// Linux's arithmetic, spelled out: csum_fold(sum) is the inverted 16-bit end-around-carry sum; the
// CHECKSUM_PARTIAL seed that tcp_v4_send_check / tcp_v6_send_check store is ~csum_tcpudp_magic(saddr, daddr,
// len, IPPROTO_TCP, 0) = ~csum_fold(pseudo-header sum), len being the TCP header + payload bytes of the skb.
inline std::uint16_t csum_fold(std::uint64_t sum) {
  while ((sum >> 16U) != 0) sum = (sum & 0xFFFFU) + (sum >> 16U);
  return static_cast<std::uint16_t>(~sum & 0xFFFFU);
}
inline std::uint64_t sum16(const std::vector<std::byte>& f, std::size_t off, std::size_t n) {
  std::uint64_t s = 0;
  for (std::size_t i = 0; i + 1 < n; i += 2) s += rd16(f, off + i);
  if (n % 2 != 0) s += std::to_integer<unsigned>(f[off + n - 1]) << 8U;
  return s;
}
inline std::uint64_t pseudo_sum(const std::vector<std::byte>& f, bool v6, std::size_t l3, std::uint32_t tcp_len) {
  return (v6 ? sum16(f, l3 + 8, 32) : sum16(f, l3 + 12, 8)) + 6U + (tcp_len >> 16U) + (tcp_len & 0xFFFFU);
}
inline std::uint16_t linux_seed(const std::vector<std::byte>& f, bool v6, std::size_t l3, std::uint32_t tcp_len) {
  const std::uint16_t magic = csum_fold(pseudo_sum(f, v6, l3, tcp_len));  // csum_tcpudp_magic / csum_ipv6_magic
  return static_cast<std::uint16_t>(~magic & 0xFFFFU);
}

inline std::vector<std::byte> build(const Seg& s) {
  std::vector<std::byte> f;
  auto p8 = [&](unsigned v) { f.push_back(static_cast<std::byte>(v & 0xFFU)); };
  auto p16 = [&](unsigned v) { p8(v >> 8U), p8(v); };
  auto p32 = [&](std::uint32_t v) { p16(v >> 16U), p16(v & 0xFFFFU); };
  for (unsigned b : {0x02U, 0U, 0U, 0U, 0U, 1U}) p8(b);
  for (unsigned b : {0x02U, 0U, 0U, 0U, 0U, unsigned{s.src_mac}}) p8(b);
  if (s.vlan) p16(0x8100), p16(s.vlan_tci);
  p16(s.v6 ? 0x86DD : 0x0800);
  const std::size_t l3 = f.size();
  const std::size_t tcp_len = s.thl() + s.payload.size();
  if (!s.v6) {
    const std::size_t ihl = 20 + s.ip_opts;
    p8(0x40U | static_cast<unsigned>(ihl / 4)), p8(s.tos);
    p16(static_cast<unsigned>(static_cast<int>(ihl + tcp_len) + s.ip_len_delta));
    p16(s.ip_id);
    p16((s.df ? 0x4000U : 0U) | (s.mf ? 0x2000U : 0U) | s.frag_off);
    p8(s.ttl), p8(s.proto), p16(0);
    p32(0x0A000000U | s.saddr), p32(0x0A000000U | s.daddr);
    for (std::size_t i = 0; i < s.ip_opts; ++i) p8(1);
    wr16(f, l3 + 10, csum_fold(sum16(f, l3, ihl)));
  } else {
    p32(0x60000000U | (std::uint32_t{s.tos} << 20U) | (s.flow & 0xFFFFFU));
    p16(static_cast<unsigned>(static_cast<int>(tcp_len) + s.ip_len_delta));
    p8(s.proto), p8(s.ttl);
    for (std::uint8_t last : {s.saddr, s.daddr}) {
      p32(0x20010db8U), p32(0), p32(0), p32(last);
    }
  }
  const std::size_t l4 = f.size();
  p16(s.sport), p16(s.dport), p32(s.seq), p32(s.ack);
  p8(static_cast<unsigned>(s.thl() / 4) << 4U | s.reserved), p8(s.flags), p16(s.win), p16(0), p16(0);
  f.insert(f.end(), s.opts.begin(), s.opts.end());
  f.insert(f.end(), s.payload.begin(), s.payload.end());
  const auto len = static_cast<std::uint32_t>(tcp_len);
  wr16(f, l4 + 16, s.bad_seed ? linux_seed(f, s.v6, l3, 0) : linux_seed(f, s.v6, l3, len));
  f.resize(f.size() + s.trailer);
  return f;
}

inline virtio_net_hdr hdr_of(const Seg& s) {
  virtio_net_hdr h{};
  h.flags = s.hdr_flags;
  h.gso_type = s.gso_type;
  h.gso_size = s.gso_size;
  h.hdr_len = s.gso_type != 0 ? static_cast<std::uint16_t>(s.hdr_len()) : 0;
  h.csum_start = static_cast<std::uint16_t>(s.l4());
  h.csum_offset = 16;
  return h;
}

// What the host kernel does with a NEEDS_CSUM frame (skb_checksum_help): sums from csum_start to the end of the
// packet, the seed in the field included, and stores the folded, inverted sum. True if the result then
// verifies against a pseudo-header computed from the final IP header.
inline bool host_checksum_verifies(std::vector<std::byte> f, bool v6, std::size_t l3, std::size_t l4) {
  const std::size_t end = v6 ? l3 + 40 + rd16(f, l3 + 4) : l3 + rd16(f, l3 + 2);
  if (end > f.size() || end < l4 + 20) return false;
  wr16(f, l4 + 16, csum_fold(sum16(f, l4, end - l4)));
  const auto tcp_len = static_cast<std::uint32_t>(end - l4);
  return csum_fold(pseudo_sum(f, v6, l3, tcp_len) + sum16(f, l4, end - l4)) == 0;
}

}  // namespace gears::net::test
