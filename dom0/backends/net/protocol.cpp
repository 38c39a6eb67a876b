#include "dom0/backends/net/protocol.hpp"

#include <cstring>
#include <optional>

namespace gears::net {
namespace {

std::uint16_t be16(std::span<const std::byte> b, std::size_t off) {
  return static_cast<std::uint16_t>((std::to_integer<unsigned>(b[off]) << 8U) | std::to_integer<unsigned>(b[off + 1]));
}

constexpr std::uint16_t kEthIpv4 = 0x0800, kEthIpv6 = 0x86DD, kEthVlan = 0x8100;
constexpr unsigned kProtoTcp = 6, kProtoUdp = 17;

// The ethertype behind an optional 802.1Q tag, and where the L3 header starts; nullopt when the frame is cut short.
struct L2 {
  std::uint16_t type = 0;
  std::size_t l3 = 0;
};
std::optional<L2> parse_l2(std::span<const std::byte> f) {
  if (f.size() < kEthHlen) return std::nullopt;
  L2 l{be16(f, 12), 14};
  if (l.type == kEthVlan) {
    if (f.size() < l.l3 + 4) return std::nullopt;
    l.type = be16(f, l.l3 + 2);
    l.l3 += 4;
  }
  return l;
}

}  // namespace

TxVerdict TxParser::bad(TxVerdict v, std::string_view why) {
  why_ = why;
  if (v == TxVerdict::fatal) state_ = State::first;  // the vif is closing; nothing more is fed
  return v;
}

TxVerdict TxParser::feed(const netif_tx_request_t& slot) {
  switch (state_) {
    case State::first: {
      pkt_.nslots = 0;
      pkt_.nrsp = 0;
      pkt_.gso.reset();
      why_ = {};
      drop_why_ = {};
      extra_types_ = 0;
      nextras_ = 0;
      pkt_.rsp[pkt_.nrsp++] = slot.id;
      pkt_.len = slot.size;
      pkt_.csum_blank = (slot.flags & NETTXF_csum_blank) != 0;
      pkt_.data_validated = (slot.flags & NETTXF_data_validated) != 0;
      pkt_.slots[pkt_.nslots++] = TxSlot{slot.gref, slot.offset, 0};
      left_ = slot.size;
      more_ = (slot.flags & NETTXF_more_data) != 0;
      if (slot.size < kEthHlen) drop_why_ = "packet shorter than an Ethernet header";
      if (slot.gref >= kMaxGrantRef) drop_why_ = "grant reference out of range";
      if (slot.offset >= kPage) return bad(TxVerdict::fatal, "slot offset beyond its page");
      if ((slot.flags & NETTXF_extra_info) != 0) {
        state_ = State::extra;
        return TxVerdict::need_more;
      }
      if (more_) {
        state_ = State::frag;
        return TxVerdict::need_more;
      }
      return finish();
    }
    case State::extra: {
      netif_extra_info_t x;
      static_assert(sizeof x <= sizeof slot);
      std::memcpy(&x, &slot, sizeof x);  // the same private bytes, read as an extra-info slot
      return extra(x);
    }
    case State::frag: {
      if (pkt_.nslots == kMaxTxDataSlots) return bad(TxVerdict::fatal, "more than 18 data slots in one packet");
      pkt_.rsp[pkt_.nrsp++] = slot.id;
      if (std::size_t{slot.offset} + slot.size > kPage) return bad(TxVerdict::fatal, "fragment crosses its page");
      if (slot.gref >= kMaxGrantRef) drop_why_ = "grant reference out of range";
      if (slot.size > left_) {
        drop_why_ = "fragments exceed the packet's total length";
        left_ = 0;
      } else {
        left_ -= slot.size;
      }
      pkt_.slots[pkt_.nslots++] = TxSlot{slot.gref, slot.offset, slot.size};
      if ((slot.flags & NETTXF_more_data) != 0) return TxVerdict::need_more;
      return finish();
    }
  }
  return bad(TxVerdict::fatal, "parser state corrupt");
}

TxVerdict TxParser::extra(const netif_extra_info_t& x) {
  if (nextras_ == kMaxTxExtras) return bad(TxVerdict::fatal, "extra-info chain longer than 4");
  ++nextras_;
  pkt_.rsp[pkt_.nrsp++] = -1;
  if (x.type == XEN_NETIF_EXTRA_TYPE_NONE || x.type >= XEN_NETIF_EXTRA_TYPE_MAX)
    return bad(TxVerdict::fatal, "unknown extra-info type");
  const unsigned bit = 1U << x.type;
  if ((extra_types_ & bit) != 0) return bad(TxVerdict::fatal, "extra-info type repeated");
  extra_types_ |= bit;
  if ((x.flags & ~XEN_NETIF_EXTRA_FLAG_MORE) != 0) return bad(TxVerdict::fatal, "extra-info flags unknown");
  if (x.type == XEN_NETIF_EXTRA_TYPE_GSO) {
    if (x.u.gso.size == 0) return bad(TxVerdict::fatal, "GSO size is zero");
    if (x.u.gso.type != XEN_NETIF_GSO_TYPE_TCPV4 && x.u.gso.type != XEN_NETIF_GSO_TYPE_TCPV6)
      return bad(TxVerdict::fatal, "GSO type unknown");
    pkt_.gso = TxGso{x.u.gso.type, x.u.gso.size};
  }
  // MCAST_ADD/DEL and HASH are accepted and ignored (no multicast filter, no hash control ring).
  if ((x.flags & XEN_NETIF_EXTRA_FLAG_MORE) != 0) return TxVerdict::need_more;
  if (more_) {
    state_ = State::frag;
    return TxVerdict::need_more;
  }
  return finish();
}

TxVerdict TxParser::finish() {
  state_ = State::first;
  TxSlot& s0 = pkt_.slots[0];
  s0.len = static_cast<std::uint16_t>(left_);
  if (std::size_t{s0.offset} + s0.len > kPage) return bad(TxVerdict::fatal, "first slot crosses its page");
  if (drop_why_.empty() && pkt_.gso && pkt_.gso->size >= pkt_.len) drop_why_ = "GSO size not below the packet length";
  if (drop_why_.empty() && pkt_.gso && !pkt_.csum_blank && !pkt_.data_validated)
    drop_why_ = "GSO packet without checksum offload";
  if (!drop_why_.empty()) return bad(TxVerdict::drop, drop_why_);
  return TxVerdict::ready;
}

Result<L4Info> parse_l4(std::span<const std::byte> f) {
  const Error bad{EINVAL, "net: frame is not Ethernet/IP/TCP|UDP"};
  const auto l2 = parse_l2(f);
  if (!l2) return bad;
  const std::uint16_t type = l2->type;
  std::size_t off = l2->l3;
  L4Info info;
  unsigned proto = 0;
  if (type == kEthIpv4) {
    if (f.size() < off + 20) return bad;
    const unsigned vihl = std::to_integer<unsigned>(f[off]);
    if ((vihl >> 4U) != 4) return bad;
    const std::size_t ihl = (vihl & 0xFU) * 4U;
    if (ihl < 20 || f.size() < off + ihl) return bad;
    if ((be16(f, off + 6) & 0x3FFFU) != 0) return bad;  // a fragment: its L4 checksum spans other frames
    proto = std::to_integer<unsigned>(f[off + 9]);
    off += ihl;
  } else if (type == kEthIpv6) {
    if (f.size() < off + 40) return bad;
    if ((std::to_integer<unsigned>(f[off]) >> 4U) != 6) return bad;
    proto = std::to_integer<unsigned>(f[off + 6]);
    info.ipv6 = true;
    off += 40;
  } else {
    return bad;
  }
  if (off > 0xFFFF - 60) return bad;
  info.csum_start = static_cast<std::uint16_t>(off);
  if (proto == kProtoTcp) {
    if (f.size() < off + 20) return bad;
    const std::size_t doff = (std::to_integer<unsigned>(f[off + 12]) >> 4U) * 4U;
    if (doff < 20 || f.size() < off + doff) return bad;
    info.tcp = true;
    info.csum_offset = 16;
    info.hdr_len = static_cast<std::uint16_t>(off + doff);
  } else if (proto == kProtoUdp) {
    if (f.size() < off + 8) return bad;
    info.csum_offset = 6;
    info.hdr_len = static_cast<std::uint16_t>(off + 8);
  } else {
    return bad;
  }
  return info;
}

FlowTuple flow_tuple(std::span<const std::byte> f) {
  FlowTuple t;
  const auto l2 = parse_l2(f);
  if (!l2) return t;
  const std::uint16_t type = l2->type;
  std::size_t off = l2->l3;
  bool ports = true;
  if (type == kEthIpv4) {
    if (f.size() < off + 20 || (std::to_integer<unsigned>(f[off]) >> 4U) != 4) return t;
    const std::size_t ihl = (std::to_integer<unsigned>(f[off]) & 0xFU) * 4U;
    t.proto = std::to_integer<std::uint8_t>(f[off + 9]);
    ports = ihl >= 20 && (be16(f, off + 6) & 0x1FFFU) == 0;  // later fragments carry no L4 header
    off += ihl;
  } else if (type == kEthIpv6) {
    if (f.size() < off + 40 || (std::to_integer<unsigned>(f[off]) >> 4U) != 6) return t;
    t.proto = std::to_integer<std::uint8_t>(f[off + 6]);
    off += 40;
  } else {
    return t;
  }
  if (ports && (t.proto == kProtoTcp || t.proto == kProtoUdp) && f.size() >= off + 4) {
    t.sport = be16(f, off);
    t.dport = be16(f, off + 2);
  }
  return t;
}

std::optional<PureAck> pure_ack(std::span<const std::byte> f) {
  const auto l2 = parse_l2(f);
  if (!l2) return std::nullopt;
  std::size_t off = l2->l3, l4 = 0, end = 0, addr = 0, addr_len = 0;
  if (l2->type == kEthIpv4) {
    if (f.size() < off + 20 || (std::to_integer<unsigned>(f[off]) >> 4U) != 4) return std::nullopt;
    const std::size_t ihl = (std::to_integer<unsigned>(f[off]) & 0xFU) * 4U;
    end = off + be16(f, off + 2);
    if (ihl < 20 || std::to_integer<unsigned>(f[off + 9]) != kProtoTcp || (be16(f, off + 6) & 0x3FFFU) != 0)
      return std::nullopt;  // not TCP, or a fragment
    l4 = off + ihl;
    addr = off + 12, addr_len = 8;
  } else if (l2->type == kEthIpv6) {
    if (f.size() < off + 40 || (std::to_integer<unsigned>(f[off]) >> 4U) != 6 ||
        std::to_integer<unsigned>(f[off + 6]) != kProtoTcp)
      return std::nullopt;  // extension headers are not looked through
    l4 = off + 40;
    end = l4 + be16(f, off + 4);
    addr = off + 8, addr_len = 32;
  } else {
    return std::nullopt;
  }
  if (end > f.size() || l4 + 20 > end) return std::nullopt;
  const std::size_t thl = (std::to_integer<unsigned>(f[l4 + 12]) >> 4U) * 4U;
  if (thl < 20 || l4 + thl != end) return std::nullopt;  // a header that lies, or payload
  if ((std::to_integer<unsigned>(f[l4 + 12]) & 0xFU) != 0 || std::to_integer<unsigned>(f[l4 + 13]) != 0x10U)
    return std::nullopt;  // anything but a bare ACK
  for (std::size_t o = l4 + 20; o < end;) {
    const unsigned kind = std::to_integer<unsigned>(f[o]);
    if (kind == 0) break;  // EOL
    if (kind == 1) {
      ++o;
      continue;
    }
    if (kind != 8 || o + 10 > end || std::to_integer<unsigned>(f[o + 1]) != 10) return std::nullopt;
    o += 10;
  }
  PureAck a;
  auto put = [&](std::size_t from, std::size_t n) {
    std::memcpy(a.key.data() + a.key_len, f.data() + from, n);
    a.key_len = static_cast<std::uint8_t>(a.key_len + n);
  };
  put(0, l2->l3);
  put(addr, addr_len);
  put(l4, 4);  // ports
  a.ack = (std::uint32_t{be16(f, l4 + 8)} << 16U) | be16(f, l4 + 10);
  return a;
}

bool supersedes(const PureAck& newer, const PureAck& older) {
  return newer.key_len == older.key_len && newer.key == older.key &&
         static_cast<std::int32_t>(newer.ack - older.ack) > 0;
}

Status fill_l4_checksum(std::span<std::byte> f) {
  auto l4 = parse_l4(f);
  if (!l4) return l4.error();
  const std::span<const std::byte> c = f;
  const std::size_t ip = l4->csum_start - (l4->ipv6 ? 40U : 0U);
  std::uint64_t sum = 0;
  std::size_t l4_len = 0;
  auto add_words = [&](std::size_t from, std::size_t n) {
    for (std::size_t i = 0; i + 1 < n; i += 2) sum += be16(c, from + i);
    if (n % 2 != 0) sum += std::to_integer<unsigned>(c[from + n - 1]) << 8U;
  };
  if (l4->ipv6) {
    l4_len = be16(c, ip + 4);
    add_words(ip + 8, 32);  // source + destination
  } else {
    const std::size_t ip4 = be16(c, 12) == kEthVlan ? kEthHlen + 4 : kEthHlen;
    const std::size_t hl = (std::to_integer<unsigned>(c[ip4]) & 0xFU) * 4U;
    const std::size_t tot = be16(c, ip4 + 2);
    if (tot < hl) return Error{EINVAL, "net: IPv4 total length below its header"};
    l4_len = tot - hl;
    add_words(ip4 + 12, 8);
  }
  if (l4_len < std::size_t{l4->hdr_len} - l4->csum_start || l4->csum_start + l4_len > f.size())
    return Error{EINVAL, "net: L4 length outside the frame"};
  sum += l4->tcp ? kProtoTcp : kProtoUdp;
  sum += l4_len;
  const std::size_t field = std::size_t{l4->csum_start} + l4->csum_offset;
  f[field] = std::byte{0};
  f[field + 1] = std::byte{0};
  add_words(l4->csum_start, l4_len);
  while ((sum >> 16U) != 0) sum = (sum & 0xFFFFU) + (sum >> 16U);
  auto x = static_cast<std::uint16_t>(~sum & 0xFFFFU);
  if (x == 0 && !l4->tcp) x = 0xFFFF;
  f[field] = static_cast<std::byte>(x >> 8U);
  f[field + 1] = static_cast<std::byte>(x & 0xFFU);
  return {};
}

Status complete_partial_csum(std::span<std::byte> f, std::size_t start, std::size_t offset) {
  if (start >= f.size() || offset > f.size() - start || f.size() - start - offset < 2)
    return Error{EINVAL, "net: checksum offsets outside the frame"};
  const std::span<const std::byte> c = f;
  const std::size_t n = f.size() - start;
  std::uint64_t sum = 0;
  for (std::size_t i = 0; i + 1 < n; i += 2) sum += be16(c, start + i);
  if (n % 2 != 0) sum += std::to_integer<unsigned>(c[start + n - 1]) << 8U;
  while ((sum >> 16U) != 0) sum = (sum & 0xFFFFU) + (sum >> 16U);
  auto x = static_cast<std::uint16_t>(~sum & 0xFFFFU);
  if (x == 0) x = 0xFFFF;  // CSUM_MANGLED_0: 0 means "no checksum" to UDP; the same sum to TCP
  f[start + offset] = static_cast<std::byte>(x >> 8U);
  f[start + offset + 1] = static_cast<std::byte>(x & 0xFFU);
  return {};
}

Result<RxPlan> plan_rx(const RxHeader& h, std::span<const std::byte> frame, const RxCaps& caps) {
  RxPlan p;
  p.data_slots = rx_slots_for(frame.size());
  if (p.data_slots > XEN_NETIF_NR_SLOTS_MIN) return Error{EINVAL, "rx: frame longer than 18 pages"};
  if (p.data_slots > 1 && !caps.sg) return Error{EINVAL, "rx: frame spans pages and the frontend has no feature-sg"};
  const bool partial = (h.flags & kVnetNeedsCsum) != 0;
  if (partial && (h.csum_start >= frame.size() || std::size_t{h.csum_offset} + 2 > frame.size() - h.csum_start))
    return Error{EINVAL, "rx: checksum offsets outside the frame"};
  if (h.gso_type != kVnetGsoNone) {
    const bool v6 = h.gso_type == kVnetGsoTcp6;
    if ((h.gso_type != kVnetGsoTcp4 && !v6) || !(v6 ? caps.host_tso6() : caps.host_tso4()))
      return Error{EINVAL, "rx: GSO type the frontend did not ask for"};
    if (!partial) return Error{EINVAL, "rx: GSO frame without a partial checksum"};
    if (h.gso_size == 0) return Error{EINVAL, "rx: GSO size 0"};
    auto l4 = parse_l4(frame);
    if (!l4 || !l4->tcp || l4->ipv6 != v6 || l4->csum_start != h.csum_start || l4->csum_offset != h.csum_offset)
      return Error{EINVAL, "rx: GSO frame is not the TCP segment its header describes"};
    netif_extra_info e{};
    e.type = XEN_NETIF_EXTRA_TYPE_GSO;
    e.u.gso.size = h.gso_size;
    e.u.gso.type = v6 ? XEN_NETIF_GSO_TYPE_TCPV6 : XEN_NETIF_GSO_TYPE_TCPV4;
    p.gso = e;
    p.flags = NETRXF_csum_blank | NETRXF_data_validated | NETRXF_extra_info;
    return p;
  }
  if (partial) {
    // The frontend re-parses the headers of a csum_blank packet (skb_checksum_setup): only hand it ones it parses
    // to the same offsets, for an IP version it takes; complete the rest here.
    auto l4 = parse_l4(frame);
    if (l4 && l4->csum_start == h.csum_start && l4->csum_offset == h.csum_offset && (l4->ipv6 ? caps.csum6 : caps.csum4))
      p.flags = NETRXF_csum_blank | NETRXF_data_validated;
    else
      p.sw_csum = true;
    return p;
  }
  if ((h.flags & kVnetDataValid) != 0) p.flags = NETRXF_data_validated;
  return p;
}

}  // namespace gears::net
