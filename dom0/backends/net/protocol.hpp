// netif protocol binding (xen/io/netif.h): pure, no Xen calls. The frontend is hostile.
//
// ---- TX (domU -> dom0) ---------------------------------------------------------------------------------------
// A packet is a run of consecutive tx-ring slots, each copied out of the ring (BackRing::consume) before it is
// fed here; nothing is read twice from shared memory:
//   slot 0        netif_tx_request: gref, offset, flags, id, size = TOTAL packet length
//   extras        if slot 0 has NETTXF_extra_info: netif_extra_info slots, chained by XEN_NETIF_EXTRA_FLAG_MORE
//   fragments     while the previous data slot has NETTXF_more_data: netif_tx_request, size = this slot's bytes
// Slot 0 carries total - sum(fragment sizes) bytes. Every consumed slot gets one response, in slot order:
// data slots echo their id, extra slots answer NETIF_RSP_NULL.
//
// Verdicts (TxParser::feed):
//   need_more   the packet continues in the next slot
//   ready       a complete, valid packet (TxParser::packet())
//   drop        a bad but harmless packet: answer NETIF_RSP_ERROR on its slots, count it, go on
//   fatal       the frontend broke the protocol: close the vif (TxParser::why() names the rule)
// Rules (kMax* below): total >= ETH_HLEN (drop); a fragment larger than what is left of the total (drop);
// offset + bytes of any data slot beyond its page (fatal); more than kMaxTxDataSlots data slots (fatal); extra
// types NONE or >= XEN_NETIF_EXTRA_TYPE_MAX, a repeated type or a chain longer than kMaxTxExtras (fatal); GSO
// extra with size 0, size > total, or a type other than TCPv4/TCPv6 (fatal); a grant ref >= kMaxGrantRef (drop).
//
// ---- RX (dom0 -> domU) ---------------------------------------------------------------------------------------
// The frontend posts netif_rx_request{id, gref}: one whole page each. A packet of n bytes takes
// ceil(n / 4096) requests for its data, plus one for a GSO extra (plan_rx below); response i has offset 0,
// status = bytes in that page, NETRXF_more_data on all data slots but the last. xen-netfront ignores response
// ids: response k must sit in the ring slot of request k, extra included (it overlays the response). A request
// whose grant copy fails is answered NETIF_RSP_ERROR and the packet is dropped.
#pragma once

#include <array>
#include <cstddef>
#include <cstdint>
#include <optional>
#include <span>
#include <string_view>

// clang-format off
#include <xen/xen.h>
#include <xen/grant_table.h>
#include <xen/io/netif.h>
// clang-format on

#include "common/util/result.hpp"

namespace gears::net {

inline constexpr std::size_t kPage = 4096;
inline constexpr std::size_t kEthHlen = 14;
inline constexpr std::size_t kMaxPacket = XEN_NETIF_MAX_TX_SIZE;           // 65535: <= 64 KiB per packet
inline constexpr std::size_t kMaxTxDataSlots = XEN_NETIF_NR_SLOTS_MIN;      // 18, as xen-netfront guarantees
inline constexpr std::size_t kMaxTxExtras = XEN_NETIF_EXTRA_TYPE_MAX - 1;   // one of each type
inline constexpr std::size_t kMaxTxSlots = kMaxTxDataSlots + kMaxTxExtras;
inline constexpr grant_ref_t kMaxGrantRef = 1U << 20;  // far above any grant table Xen hands out (v1: 64 frames)

struct TxSlot {
  grant_ref_t gref = 0;
  std::uint16_t offset = 0;
  std::uint16_t len = 0;  // bytes of this slot that belong to the packet
};

struct TxGso {
  std::uint8_t type = XEN_NETIF_GSO_TYPE_NONE;  // TCPV4 or TCPV6
  std::uint16_t size = 0;                        // MSS
};

// One validated TX packet. rsp[i] is the response id of the i-th consumed slot, or -1 for an extra slot.
struct TxPacket {
  std::array<TxSlot, kMaxTxDataSlots> slots{};
  std::size_t nslots = 0;
  std::array<std::int32_t, kMaxTxSlots> rsp{};
  std::size_t nrsp = 0;
  std::uint32_t len = 0;  // total bytes
  bool csum_blank = false;
  bool data_validated = false;
  std::optional<TxGso> gso;
};

enum class TxVerdict { need_more, ready, drop, fatal };

// Reassembles TX packets from copied slots. Holds one partial packet across ring batches.
class TxParser {
 public:
  // `slot` is the private copy of one tx-ring entry (read as netif_tx_request or, for an extra slot, as
  // netif_extra_info from the same bytes).
  [[nodiscard]] TxVerdict feed(const netif_tx_request_t& slot);
  // After ready or drop: the packet (on drop, only rsp/nrsp are meaningful); the parser is reset by the next feed.
  [[nodiscard]] const TxPacket& packet() const { return pkt_; }
  // After drop or fatal: the rule broken (static text).
  [[nodiscard]] std::string_view why() const { return why_; }
  // True while a packet is partially fed.
  [[nodiscard]] bool partial() const { return state_ != State::first; }

 private:
  enum class State { first, extra, frag };
  TxVerdict extra(const netif_extra_info_t& x);
  TxVerdict finish();
  TxVerdict bad(TxVerdict v, std::string_view why);

  State state_ = State::first;
  TxPacket pkt_;
  std::uint32_t left_ = 0;       // total minus fragment bytes seen so far
  bool more_ = false;            // fragments follow the extras
  unsigned extra_types_ = 0;     // bitmask of extra types seen
  std::size_t nextras_ = 0;
  std::string_view why_;
  std::string_view drop_why_;    // a drop decided before the packet's last slot
};

// ---- Checksum / GSO offsets for a frame (Ethernet [+ 802.1Q] / IPv4 | IPv6 / TCP | UDP) ----------------------
struct L4Info {
  std::uint16_t csum_start = 0;   // offset of the L4 header
  std::uint16_t csum_offset = 0;  // checksum field offset within it (TCP 16, UDP 6)
  std::uint16_t hdr_len = 0;      // Ethernet + IP + L4 header bytes
  bool tcp = false;
  bool ipv6 = false;
};
// Parses the headers of `frame` (which may be only its first bytes). EINVAL: not a checksummable frame
// (unknown ethertype/protocol, IPv6 extension headers, truncated or inconsistent headers).
[[nodiscard]] Result<L4Info> parse_l4(std::span<const std::byte> frame);

// What classifies a frame into a flow class (sched.hpp): its IP protocol and L4 ports. proto 0: not IP (or not
// parseable); ports 0: no ports (not TCP/UDP, a later IPv4 fragment, an IPv6 extension header first, or cut off).
struct FlowTuple {
  std::uint8_t proto = 0;
  std::uint16_t sport = 0, dport = 0;
};
[[nodiscard]] FlowTuple flow_tuple(std::span<const std::byte> frame);

// ACK filtering (RX, ack-filter=on): a pure cumulative TCP ACK is redundant when a later ACK of the same
// connection, with a higher ack number, is delivered in the same batch (RFC 3449 5.2.2; CAKE's ack-filter).
// Pure: no payload, flags exactly ACK (no SYN/FIN/RST/PSH/URG/ECE/CWR, no reserved or AE bit), options only NOP,
// EOL and timestamps (no SACK: those carry loss information), IPv4 without fragmentation or IPv6 without
// extension headers, the IP length consistent with the frame. An equal ack number is never superseded: duplicate
// ACKs and window updates drive fast retransmit and flow control.
struct PureAck {
  std::array<std::byte, 54> key{};  // the L2 header (MACs, VLAN tag) + addresses + ports, zero-padded
  std::uint8_t key_len = 0;
  std::uint32_t ack = 0;
};
[[nodiscard]] std::optional<PureAck> pure_ack(std::span<const std::byte> frame);
[[nodiscard]] bool supersedes(const PureAck& newer, const PureAck& older);

// Writes the full Internet checksum of the L4 segment of `frame` (pseudo-header included) into its field.
[[nodiscard]] Status fill_l4_checksum(std::span<std::byte> frame);

// RX: data slots needed for a packet of `len` bytes.
[[nodiscard]] constexpr std::size_t rx_slots_for(std::size_t len) { return len == 0 ? 1 : (len + kPage - 1) / kPage; }

// Completes a partial Internet checksum as Linux's skb_checksum_help does: the 16-bit field at start + offset holds
// the pseudo-header seed; the ones' complement sum of [start, end of frame) is folded into it. EINVAL when the
// field is not inside the frame.
[[nodiscard]] Status complete_partial_csum(std::span<std::byte> frame, std::size_t start, std::size_t offset);

// ---- RX offloads (dom0 -> domU) --------------------------------------------------------------------------------
// What the frontend said it can receive (its own xenstore directory, netif.h): feature-sg (a packet over several
// rx slots), feature-no-csum-offload (absent = IPv4 partial checksums are fine), feature-ipv6-csum-offload
// (absent = not for IPv6), feature-gso-tcpv4/-tcpv6 (absent = no large TCP packets).
struct RxCaps {
  bool sg = false;
  bool csum4 = false;
  bool csum6 = false;
  bool gso4 = false;
  bool gso6 = false;
  // What the host may hand us with these: partial checksums, and TSO that the frontend can take whole.
  [[nodiscard]] bool host_csum() const { return csum4; }
  [[nodiscard]] bool host_tso4() const { return sg && csum4 && gso4; }
  [[nodiscard]] bool host_tso6() const { return sg && csum4 && csum6 && gso6; }
};

// How one host frame (virtio-net header + bytes) goes to the frontend:
//   [first data slot: flags | NETRXF_extra_info if gso] [GSO extra] [further data slots, NETRXF_more_data chained]
// The first slot's flags: NETRXF_csum_blank | NETRXF_data_validated for a partial checksum the frontend takes
// (the field keeps the pseudo-header seed, as Linux's CHECKSUM_PARTIAL), NETRXF_data_validated for a host-verified
// one, none otherwise. A partial checksum the frontend cannot take (no csum offload for that IP version, or a frame
// its checksum_setup would not parse) is completed here first (sw_csum). Drops (the frame is lost and counted):
// GSO the frontend did not ask for or with a bad MSS, checksum offsets outside the frame, a multi-slot frame
// without feature-sg, more than XEN_NETIF_NR_SLOTS_MIN data slots.
struct RxPlan {
  std::size_t data_slots = 0;
  std::uint16_t flags = 0;                       // of the first data slot (before NETRXF_more_data)
  std::optional<netif_extra_info> gso;           // the GSO extra slot, after the first data slot
  bool sw_csum = false;                          // complete_partial_csum(csum_start, csum_offset) before copying
  [[nodiscard]] std::size_t ring_slots() const { return data_slots + (gso ? 1U : 0U); }
};
inline constexpr std::uint8_t kVnetNeedsCsum = 1;  // VIRTIO_NET_HDR_F_NEEDS_CSUM
inline constexpr std::uint8_t kVnetDataValid = 2;  // VIRTIO_NET_HDR_F_DATA_VALID
inline constexpr std::uint8_t kVnetGsoNone = 0, kVnetGsoTcp4 = 1, kVnetGsoTcp6 = 4;
struct RxHeader {  // the fields of the host's virtio-net header that matter here
  std::uint8_t flags = 0;
  std::uint8_t gso_type = kVnetGsoNone;
  std::uint16_t gso_size = 0;
  std::uint16_t csum_start = 0;
  std::uint16_t csum_offset = 0;
};
// EINVAL with the reason for a frame to drop.
[[nodiscard]] Result<RxPlan> plan_rx(const RxHeader& h, std::span<const std::byte> frame, const RxCaps& caps);

}  // namespace gears::net
