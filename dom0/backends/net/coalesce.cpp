#include "dom0/backends/net/coalesce.hpp"

#include <cstring>

#include "dom0/backends/net/protocol.hpp"

namespace gears::net {
namespace {

using R = MergeResult;
constexpr R kOk = R::merged;  // "no objection" from a check below

constexpr std::uint16_t kEthIpv4 = 0x0800, kEthIpv6 = 0x86DD, kEthVlan = 0x8100;
constexpr unsigned kProtoTcp = 6;
constexpr unsigned kFin = 0x01, kSyn = 0x02, kRst = 0x04, kPsh = 0x08, kAck = 0x10, kUrg = 0x20, kCwr = 0x80;
constexpr std::uint16_t kIpDf = 0x4000, kIpMfOffset = 0x3FFF;
constexpr std::size_t kTcpCsumField = 16;

unsigned u8(std::span<const std::byte> b, std::size_t off) { return std::to_integer<unsigned>(b[off]); }
std::uint16_t be16(std::span<const std::byte> b, std::size_t off) {
  return static_cast<std::uint16_t>((u8(b, off) << 8U) | u8(b, off + 1));
}
std::uint32_t be32(std::span<const std::byte> b, std::size_t off) {
  return (std::uint32_t{be16(b, off)} << 16U) | be16(b, off + 2);
}
void put16(std::span<std::byte> b, std::size_t off, std::uint16_t v) {
  b[off] = static_cast<std::byte>(v >> 8U);
  b[off + 1] = static_cast<std::byte>(v & 0xFFU);
}
void put32(std::span<std::byte> b, std::size_t off, std::uint32_t v) {
  put16(b, off, static_cast<std::uint16_t>(v >> 16U));
  put16(b, off + 2, static_cast<std::uint16_t>(v & 0xFFFFU));
}
std::uint16_t fold(std::uint64_t sum) {
  while ((sum >> 16U) != 0) sum = (sum & 0xFFFFU) + (sum >> 16U);
  return static_cast<std::uint16_t>(sum);
}
// One's-complement sum of the 16-bit big-endian words of `b` (even length).
std::uint64_t sum_words(std::span<const std::byte> b) {
  std::uint64_t s = 0;
  for (std::size_t i = 0; i + 1 < b.size(); i += 2) s += be16(b, i);
  return s;
}
// Serial-number comparison (RFC 1982 style): a is b or after it.
bool not_before(std::uint32_t a, std::uint32_t b) { return static_cast<std::int32_t>(a - b) >= 0; }

// A frame's header layout. Invariant after parse() == kOk: l3 + IP header <= l4, l4 + thl <= len == frame size.
struct Tcp {
  std::size_t l3 = 0, l4 = 0, thl = 0, len = 0;
  bool v6 = false;
  [[nodiscard]] std::size_t payload_off() const { return l4 + thl; }
  [[nodiscard]] std::size_t payload() const { return len - l4 - thl; }
  [[nodiscard]] std::size_t addrs_off() const { return l3 + (v6 ? 8U : 12U); }
  [[nodiscard]] std::size_t addrs_len() const { return v6 ? 32U : 8U; }
};

R parse(std::span<const std::byte> f, Tcp& t) {
  if (f.size() < kEthHlen) return R::truncated;
  std::uint16_t type = be16(f, 12);
  std::size_t off = kEthHlen;
  if (type == kEthVlan) {
    if (f.size() < off + 4) return R::truncated;
    type = be16(f, off + 2);
    off += 4;
  }
  t.l3 = off;
  t.len = f.size();
  if (type == kEthIpv4) {
    if (f.size() < off + 20) return R::truncated;
    if ((u8(f, off) >> 4U) != 4) return R::not_tcp;
    const std::size_t ihl = (u8(f, off) & 0xFU) * 4U;
    if (ihl < 20 || f.size() < off + ihl) return R::truncated;
    if (u8(f, off + 9) != kProtoTcp) return R::not_tcp;
    t.v6 = false;
    t.l4 = off + ihl;
  } else if (type == kEthIpv6) {
    if (f.size() < off + 40) return R::truncated;
    if ((u8(f, off) >> 4U) != 6) return R::not_tcp;
    if (u8(f, off + 6) != kProtoTcp) return R::not_tcp;  // extension headers are not merged
    t.v6 = true;
    t.l4 = off + 40;
  } else {
    return R::not_tcp;
  }
  if (f.size() < t.l4 + 20) return R::truncated;
  t.thl = (u8(f, t.l4 + 12) >> 4U) * 4U;
  if (t.thl < 20 || f.size() < t.l4 + t.thl) return R::truncated;
  return kOk;
}

// The checks that concern one frame alone.
R check_one(std::span<const std::byte> f, const virtio_net_hdr& h, Tcp& t) {
  if ((h.flags & VIRTIO_NET_HDR_F_NEEDS_CSUM) == 0) return R::not_csum_partial;
  if (const R r = parse(f, t); r != kOk) return r;
  if (h.csum_start != t.l4 || h.csum_offset != kTcpCsumField) return R::not_csum_partial;
  const std::uint8_t gso_tcp = t.v6 ? VIRTIO_NET_HDR_GSO_TCPV6 : VIRTIO_NET_HDR_GSO_TCPV4;
  if (h.gso_type != 0 && (h.gso_type != gso_tcp || h.gso_size == 0)) return R::gso_type;
  if (t.v6) {
    if (be16(f, t.l3 + 4) != t.len - t.l3 - 40) return R::ip_length;
  } else {
    if (t.l4 - t.l3 != 20) return R::ip_options;
    const std::uint16_t frag = be16(f, t.l3 + 6);
    if ((frag & kIpMfOffset) != 0) return R::ip_fragment;
    if ((frag & kIpDf) == 0) return R::ip_no_df;
    if (be16(f, t.l3 + 2) != t.len - t.l3) return R::ip_length;
    if (fold(sum_words(f.subspan(t.l3, 20))) != 0xFFFF) return R::ip_checksum;
  }
  const auto tcp_len = static_cast<std::uint32_t>(t.len - t.l4);
  if (be16(f, t.l4 + kTcpCsumField) != tcp_pseudo_seed(f.subspan(t.addrs_off(), t.addrs_len()), tcp_len))
    return R::csum_seed;
  return kOk;
}

// Offset of a well-formed timestamp option (kind 8, length 10) in the TCP header at l4, or 0 if none.
std::size_t find_timestamp(std::span<const std::byte> f, const Tcp& t) {
  const std::size_t end = t.l4 + t.thl;
  std::size_t i = t.l4 + 20;
  while (i < end) {
    const unsigned kind = u8(f, i);
    if (kind == 0) break;  // end of options
    if (kind == 1) {       // NOP
      ++i;
      continue;
    }
    if (i + 1 >= end) break;
    const std::size_t len = u8(f, i + 1);
    if (len < 2 || i + len > end) break;  // malformed: compared byte for byte, no exception
    if (kind == 8 && len == 10) return i;
    i += len;
  }
  return 0;
}

}  // namespace

std::string_view to_string(MergeResult r) {
  switch (r) {
    case R::merged: return "merged";
    case R::not_csum_partial: return "not checksum-partial";
    case R::not_tcp: return "not Ethernet/IP/TCP";
    case R::truncated: return "truncated headers";
    case R::family_differs: return "IPv4 with IPv6";
    case R::l2_differs: return "Ethernet header differs";
    case R::gso_type: return "bad GSO type";
    case R::ip_options: return "IPv4 options";
    case R::ip_fragment: return "IPv4 fragment";
    case R::ip_no_df: return "IPv4 without DF";
    case R::ip_length: return "IP length does not match the frame";
    case R::ip_checksum: return "IPv4 header checksum wrong";
    case R::ip_fields_differ: return "IP header fields differ";
    case R::addr_differs: return "IP addresses differ";
    case R::ports_differ: return "TCP ports differ";
    case R::tcp_options_differ: return "TCP options differ";
    case R::tcp_timestamp: return "TCP timestamp goes backwards";
    case R::acc_flags: return "SYN/FIN/RST/URG on the first frame";
    case R::next_flags: return "flags forbid merging the next frame";
    case R::cwr: return "CWR set";
    case R::flags_differ: return "TCP flags differ";
    case R::no_payload: return "no payload";
    case R::seq_gap: return "sequence gap";
    case R::ack_older: return "ACK goes backwards";
    case R::csum_seed: return "TCP checksum field is not the pseudo-header seed";
    case R::acc_not_full: return "first frame ends with a short segment";
    case R::mss_differs: return "MSS differs";
    case R::next_too_long: return "segment longer than the MSS";
    case R::too_big: return "merged frame too big";
  }
  return "?";
}

std::uint16_t tcp_pseudo_seed(std::span<const std::byte> addrs, std::uint32_t tcp_len) {
  return fold(sum_words(addrs) + kProtoTcp + (tcp_len >> 16U) + (tcp_len & 0xFFFFU));
}

MergeResult merge_frames(MergeFrame& acc, virtio_net_hdr& acc_hdr, std::span<const std::byte> next,
                         const virtio_net_hdr& next_hdr) {
  if (acc.len > acc.buf.size()) return R::too_big;  // a caller's bug; never read beyond the buffer
  const std::span<const std::byte> a = acc.buf.first(acc.len);
  const std::span<const std::byte> n = next;
  Tcp ta, tn;
  if (const R r = check_one(a, acc_hdr, ta); r != kOk) return r;
  if (const R r = check_one(n, next_hdr, tn); r != kOk) return r;

  // Same flow. Equal l3 and l4 offsets follow from the equal L2 header and IHL 5 / fixed IPv6 header.
  if (ta.v6 != tn.v6) return R::family_differs;
  if (ta.l3 != tn.l3 || std::memcmp(a.data(), n.data(), ta.l3) != 0) return R::l2_differs;
  if (ta.v6) {
    if (std::memcmp(a.data() + ta.l3, n.data() + tn.l3, 4) != 0 || u8(a, ta.l3 + 7) != u8(n, tn.l3 + 7))
      return R::ip_fields_differ;
  } else {
    if (u8(a, ta.l3 + 1) != u8(n, tn.l3 + 1) || u8(a, ta.l3 + 8) != u8(n, tn.l3 + 8)) return R::ip_fields_differ;
  }
  if (std::memcmp(a.data() + ta.addrs_off(), n.data() + tn.addrs_off(), ta.addrs_len()) != 0) return R::addr_differs;
  const std::size_t l4 = ta.l4;
  if (std::memcmp(a.data() + l4, n.data() + l4, 4) != 0) return R::ports_differ;

  // Options: identical bytes but for the timestamp values.
  if (ta.thl != tn.thl) return R::tcp_options_differ;
  const std::size_t ts = find_timestamp(a, ta);
  for (std::size_t i = l4 + 20; i < l4 + ta.thl; ++i) {
    if (ts != 0 && i >= ts + 2 && i < ts + 10) continue;
    if (a[i] != n[i]) return R::tcp_options_differ;
  }
  if (ts != 0 && (!not_before(be32(n, ts + 2), be32(a, ts + 2)) || !not_before(be32(n, ts + 6), be32(a, ts + 6))))
    return R::tcp_timestamp;

  // Flags.
  const unsigned af = u8(a, l4 + 13), nf = u8(n, l4 + 13);
  if ((af & (kSyn | kFin | kRst | kUrg)) != 0) return R::acc_flags;
  if ((nf & (kSyn | kFin | kRst | kUrg)) != 0) return R::next_flags;
  if (((af | nf) & kCwr) != 0) return R::cwr;
  if ((af & kAck) == 0 || ((af ^ nf) & ~kPsh) != 0 || u8(a, l4 + 12) != u8(n, l4 + 12)) return R::flags_differ;

  // Sequence space.
  const std::size_t apay = ta.payload(), npay = tn.payload();
  if (apay == 0 || npay == 0) return R::no_payload;
  if (be32(n, l4 + 4) != static_cast<std::uint32_t>(be32(a, l4 + 4) + apay)) return R::seq_gap;
  if (!not_before(be32(n, l4 + 8), be32(a, l4 + 8))) return R::ack_older;

  // Segment sizes: every segment but the last is exactly mss.
  const std::size_t mss = acc_hdr.gso_type != 0 ? acc_hdr.gso_size : apay;
  if (apay % mss != 0) return R::acc_not_full;
  if (next_hdr.gso_type != 0 ? next_hdr.gso_size != mss : npay > mss)
    return next_hdr.gso_type != 0 ? R::mss_differs : R::next_too_long;
  const std::size_t len = acc.len + npay;
  if (len > acc.buf.size() || len > kMaxPacket) return R::too_big;

  // Every check passed: rewrite acc in place. len <= 65535 bounds the IP lengths and the seed's TCP length.
  const std::span<std::byte> w = acc.buf;
  std::memcpy(w.data() + acc.len, n.data() + tn.payload_off(), npay);
  if (ta.v6) {
    put16(w, ta.l3 + 4, static_cast<std::uint16_t>(len - ta.l3 - 40));
  } else {
    put16(w, ta.l3 + 2, static_cast<std::uint16_t>(len - ta.l3));
    put16(w, ta.l3 + 10, 0);
    put16(w, ta.l3 + 10, static_cast<std::uint16_t>(~fold(sum_words(w.subspan(ta.l3, 20))) & 0xFFFFU));
  }
  put32(w, l4 + 8, be32(n, l4 + 8));                                  // ack
  w[l4 + 13] = static_cast<std::byte>(af | (nf & kPsh));               // PSH if any merged segment had it
  put16(w, l4 + 14, be16(n, l4 + 14));                                 // window
  if (ts != 0) std::memcpy(w.data() + ts + 6, n.data() + ts + 6, 4);  // TSecr, paired with the ack
  put16(w, l4 + kTcpCsumField,
        tcp_pseudo_seed(w.subspan(ta.addrs_off(), ta.addrs_len()), static_cast<std::uint32_t>(len - l4)));
  acc.len = len;
  acc_hdr.gso_type = ta.v6 ? VIRTIO_NET_HDR_GSO_TCPV6 : VIRTIO_NET_HDR_GSO_TCPV4;
  acc_hdr.gso_size = static_cast<std::uint16_t>(mss);
  acc_hdr.hdr_len = static_cast<std::uint16_t>(ta.payload_off());
  return R::merged;
}

}  // namespace gears::net
