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
// ceil(n / 4096) requests; response i has offset 0, status = bytes in that page, NETRXF_more_data on all but
// the last. A request whose grant copy fails is answered NETIF_RSP_ERROR and the packet is dropped.
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

// Writes the full Internet checksum of the L4 segment of `frame` (pseudo-header included) into its field.
[[nodiscard]] Status fill_l4_checksum(std::span<std::byte> frame);

// RX: slots needed for a packet of `len` bytes.
[[nodiscard]] constexpr std::size_t rx_slots_for(std::size_t len) { return len == 0 ? 1 : (len + kPage - 1) / kPage; }

}  // namespace gears::net
