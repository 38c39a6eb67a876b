// TX coalescing (GRO-style): consecutive TCP frames of one flow in a TX batch become one GSO frame, so the host
// stack sees fewer, bigger frames. Pure: no Xen calls, no allocation. Both frames are private copies the guest
// can no longer touch, but their bytes are still the guest's: every field is bounds-checked before it is read.
//
// try_merge(acc, acc_hdr, next, next_hdr) appends next's TCP payload to acc when all of these hold (the first
// failing rule is reported by merge_frames; acc and acc_hdr are untouched on any refusal):
//   offload   both headers NEEDS_CSUM (CHECKSUM_PARTIAL), csum_start = the TCP header, csum_offset 16; gso_type
//             NONE or the TCP GSO type of the frame's IP version (TCPV4 / TCPV6, no ECN bit), gso_size > 0 with GSO
//   headers   Ethernet [+ one 802.1Q tag] / IPv4 with IHL 5 | IPv6 with next header TCP / TCP; lengths exact
//             (IP total / payload length = the frame's bytes after the IP header start: no trailer, no truncation)
//   same flow identical L2 header (MACs, VLAN tag, ethertype), IP addresses, TCP ports, IPv4 TOS and TTL,
//             IPv6 traffic class, flow label and hop limit
//   IPv4      DF set, MF clear, fragment offset 0, a valid header checksum. IP ids are ignored: with DF they
//             carry no meaning, and the merged frame keeps acc's id (the host's segmentation renumbers from it)
//   TCP       same data offset; option bytes identical except the timestamp option's values, which must not go
//             backwards (serial comparison): the merged frame keeps acc's TSval (the oldest: what the peer's
//             delayed ACK echoes anyway, RFC 7323 4.3) and takes next's TSecr, paired with next's ACK
//   flags     ACK on both; neither has SYN FIN RST URG; CWR on neither; ECE and every other bit of the flag and
//             reserved bits equal. PSH may be on either: the merged frame has PSH if any part had it. (GRO stops
//             at a PSH so as not to hold data back; we never wait, we only join frames already in one batch,
//             and a receiver delivers data whether PSH is set or not. xen-netfront marks most of its GSO
//             packets PSH: iperf3's 128 KiB writes end every few of them)
//   sequence  both carry payload; next.seq == acc.seq + acc's payload length; next.ack not older than acc.ack
//             (next's ack, window and TSecr are taken)
//   checksum  each TCP checksum field holds the CHECKSUM_PARTIAL seed in Linux's form (tcp_v4/v6_send_check:
//             ~csum_tcpudp_magic(saddr, daddr, tcp length, TCP, 0), i.e. the folded, not inverted, sum of the
//             pseudo-header for the frame's whole TCP length); any other seed is left to the host unmerged
//   MSS       mss = acc's gso_size, or acc's payload length when acc is a single segment; acc's payload is a
//             multiple of mss (only the last merged segment may be short); next's gso_size == mss, or next is a
//             single segment of <= mss bytes
//   size      the merged frame fits acc.buf and kMaxPacket (65535: IPv4 total and IPv6 payload lengths fit too)
// The merged frame: IP total / payload length grown and the IPv4 header checksum recomputed, the TCP seed
// recomputed for the new length, PSH if either had it, gso_type TCPV4/6 with gso_size = mss, hdr_len = the
// Ethernet + IP + TCP header bytes.
#pragma once

#include <cstddef>
#include <cstdint>
#include <span>
#include <string_view>

#include "dom0/backends/net/host.hpp"

namespace gears::net {

// A frame being grown in place: buf is its private buffer (capacity), len the frame's bytes at its start.
struct MergeFrame {
  std::span<std::byte> buf;
  std::size_t len = 0;
};

enum class MergeResult : std::uint8_t {
  merged,
  not_csum_partial,   // a header without NEEDS_CSUM, or csum_start/csum_offset not at the TCP checksum
  not_tcp,            // not Ethernet/IPv4|IPv6/TCP (other ethertype, protocol, IPv6 extension header)
  truncated,          // headers cut short, IHL < 5 or TCP data offset < 5
  family_differs,     // IPv4 with IPv6
  l2_differs,         // MACs, VLAN tag
  gso_type,           // unknown gso_type, GSO of the other IP version, or gso_size 0
  ip_options,         // IPv4 IHL != 5
  ip_fragment,        // MF or a fragment offset
  ip_no_df,           // DF clear
  ip_length,          // IP length != the frame's bytes (trailer or truncation)
  ip_checksum,        // IPv4 header checksum wrong
  ip_fields_differ,   // TOS/TTL, traffic class/flow label/hop limit
  addr_differs,       // IP addresses
  ports_differ,       // TCP ports
  tcp_options_differ, // data offset or option bytes (other than the timestamp values)
  tcp_timestamp,      // timestamp values going backwards
  acc_flags,          // SYN/FIN/RST/URG on acc
  next_flags,         // SYN/FIN/RST/URG on next
  cwr,                // CWR on either
  flags_differ,       // ACK missing, ECE or other flag/reserved bits differ
  no_payload,         // a pure ACK (or empty) segment
  seq_gap,            // next does not start where acc ends
  ack_older,          // next acknowledges less than acc
  csum_seed,          // a TCP checksum field that is not the pseudo-header seed
  acc_not_full,       // acc's payload is not a whole number of mss segments
  mss_differs,        // next's gso_size != mss
  next_too_long,      // a single-segment next longer than mss
  too_big,            // the merged frame would exceed the buffer or kMaxPacket
};
inline constexpr std::size_t kMergeResults = static_cast<std::size_t>(MergeResult::too_big) + 1;
[[nodiscard]] std::string_view to_string(MergeResult r);

// Appends `next` (one guest frame and its offload header) to `acc` if the rules above allow it.
[[nodiscard]] MergeResult merge_frames(MergeFrame& acc, virtio_net_hdr& acc_hdr, std::span<const std::byte> next,
                                       const virtio_net_hdr& next_hdr);
[[nodiscard]] inline bool try_merge(MergeFrame& acc, virtio_net_hdr& acc_hdr, std::span<const std::byte> next,
                                    const virtio_net_hdr& next_hdr) {
  return merge_frames(acc, acc_hdr, next, next_hdr) == MergeResult::merged;
}

// The CHECKSUM_PARTIAL seed of a TCP segment (see above): folded pseudo-header sum, not inverted. `addrs` is the
// source and destination address bytes (8 for IPv4, 32 for IPv6), `tcp_len` the TCP header + payload bytes.
[[nodiscard]] std::uint16_t tcp_pseudo_seed(std::span<const std::byte> addrs, std::uint32_t tcp_len);

}  // namespace gears::net
