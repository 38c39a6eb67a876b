// The host side of a Gears vif: where TX frames go and RX frames come from.
//
// TapPort: one TAP device in dom0 (IFF_TAP | IFF_NO_PI | IFF_VNET_HDR), non-blocking, optionally enslaved to a
// bridge. Frames carry a struct virtio_net_hdr in front, so GSO and checksum offload cross the boundary
// without software segmentation: TX writes NEEDS_CSUM / GSO_TCPV4|6 headers (the dom0 kernel finishes them);
// RX: created with no offloads (TUNSETOFFLOAD 0: every frame read is complete, checksummed and <= MTU + header);
// set_rx_offloads() then asks for what the frontend takes (partial checksums, TSO frames up to 64 KiB).
// Owned by the device's worker thread; the fd is closed (and the interface destroyed) in the destructor.
//
// XskPort: an AF_XDP socket (libxdp) on queue 0 of an existing interface. libxdp attaches its default XDP
// program, which redirects every frame arriving on that queue into the socket: the interface becomes the vif's
// wire and the dom0 stack no longer sees its traffic (until the port is destroyed and the program detached).
//   UMEM     kXskFrames frames of 4 KiB: the RX half sits on the fill ring whenever it is not being read; the TX
//            half is on a free list, on the TX ring, or on the completion ring.
//   RX       read() copies one frame out of the RX ring and puts its chunk straight back on the fill ring.
//   TX       write() copies into a free TX frame and publishes the descriptor; flush() (once per TX batch, and
//            every kXskKickEvery frames) kicks the kernel with one sendto(). Completions are reclaimed lazily.
//   Offloads none cross AF_XDP: offloads() is false, so the vif advertises no GSO, and a NEEDS_CSUM frame has
//            its L4 checksum computed here. RX frames must carry complete checksums: a NIC's wire traffic does;
//            the dom0 end of a veth pair needs `ethtool -K <peer> tx off`.
//   Modes    native (driver XDP), skb (generic XDP, copy), or automatic (native, then skb).
// The rings are single-producer/single-consumer and belong to the device's worker thread.
#pragma once

#include <cstddef>
#include <cstdint>
#include <memory>
#include <span>
#include <string>

#include <sys/uio.h>

#include <nlohmann/json.hpp>

#include "common/util/noncopyable.hpp"
#include "common/util/result.hpp"

namespace gears::net {

// The TAP offload header (struct virtio_net_hdr of <linux/virtio_net.h>, the TUNSETVNETHDRSZ = 10 form). That
// kernel header cannot be included from C++ (a member is named `class`), so its ABI is spelled here.
struct virtio_net_hdr {
  std::uint8_t flags;
  std::uint8_t gso_type;
  std::uint16_t hdr_len;
  std::uint16_t gso_size;
  std::uint16_t csum_start;
  std::uint16_t csum_offset;
};
static_assert(sizeof(virtio_net_hdr) == 10);
inline constexpr std::uint8_t VIRTIO_NET_HDR_F_NEEDS_CSUM = 1;
inline constexpr std::uint8_t VIRTIO_NET_HDR_F_DATA_VALID = 2;
inline constexpr std::uint8_t VIRTIO_NET_HDR_GSO_TCPV4 = 1;
inline constexpr std::uint8_t VIRTIO_NET_HDR_GSO_TCPV6 = 4;

inline constexpr std::size_t kMaxGatherParts = 32;

// What the device lets the host leave undone in the frames it reads (RX towards the guest): partial checksums
// (NEEDS_CSUM) and TCP segmentation (GSO_TCPV4/6). Set from the frontend's features at each connect.
struct HostRxOffloads {
  bool csum = false;
  bool tso4 = false;  // need csum
  bool tso6 = false;  // need csum
  bool operator==(const HostRxOffloads&) const = default;
};

// The host side as the device sees it: a non-blocking packet port with a pollable fd. One per vif, owned by
// the device's worker.
class HostPort : NonCopyable {
 public:
  virtual ~HostPort() = default;
  [[nodiscard]] virtual int fd() const = 0;
  [[nodiscard]] virtual std::string name() const = 0;
  // Writes one frame; EAGAIN when the host queue is full (the frame is lost: counted by the caller).
  [[nodiscard]] virtual Status write(const virtio_net_hdr& h, std::span<const std::byte> frame) = 0;
  // Writes one frame gathered from `parts` (at most kMaxGatherParts), where gathers() is true; ENOTSUP elsewhere.
  // The frame is copied out of `parts` before this returns: nothing keeps a reference to their memory.
  [[nodiscard]] virtual Status write_gather(const virtio_net_hdr& h, std::span<const iovec> parts);
  [[nodiscard]] virtual bool gathers() const { return false; }
  // Reads one frame into `buf` (its offload header into `h`); EAGAIN when none is queued. A frame that does not
  // fit is consumed and reported as length 0.
  [[nodiscard]] virtual Result<std::size_t> read(virtio_net_hdr& h, std::span<std::byte> buf) = 0;
  // Hands the frames queued by write() to the host: called once per TX batch. No-op where write() is immediate.
  virtual void flush() {}
  // False when no offload header reaches the host: the vif then advertises no GSO.
  [[nodiscard]] virtual bool offloads() const { return true; }
  // Asks for frames with these offloads left undone (TAP: TUNSETOFFLOAD). Frames already queued keep the header
  // they were read with, so the device handles every header whatever it asked. A port that cannot (AF_XDP)
  // keeps delivering complete frames: not an error.
  [[nodiscard]] virtual Status set_rx_offloads(const HostRxOffloads&) { return {}; }
  // Port-specific counters for `gearsctl stats` (null: none).
  [[nodiscard]] virtual nlohmann::json stats() const { return nullptr; }
};

// A SOCK_SEQPACKET socket carrying [virtio_net_hdr | frame] records: the host side in unit tests (the test
// holds the peer socket). Takes ownership of `fd`.
class SeqpacketPort final : public HostPort {
 public:
  SeqpacketPort(int fd, std::string name);
  ~SeqpacketPort() override;
  [[nodiscard]] int fd() const override { return fd_; }
  [[nodiscard]] std::string name() const override { return name_; }
  [[nodiscard]] Status write(const virtio_net_hdr& h, std::span<const std::byte> frame) override;
  [[nodiscard]] Status write_gather(const virtio_net_hdr& h, std::span<const iovec> parts) override;
  [[nodiscard]] bool gathers() const override { return true; }
  [[nodiscard]] Result<std::size_t> read(virtio_net_hdr& h, std::span<std::byte> buf) override;
  [[nodiscard]] Status set_rx_offloads(const HostRxOffloads& o) override {
    rx_offloads_ = o;
    return {};
  }
  // What the device last asked for (tests).
  [[nodiscard]] HostRxOffloads rx_offloads() const { return rx_offloads_; }

 private:
  int fd_;
  std::string name_;
  HostRxOffloads rx_offloads_;
};

class TapPort final : public HostPort {
 public:
  // Creates (or attaches to) TAP `ifname`, sets `mtu`, brings it up and, if `bridge` is not empty, adds it to
  // that bridge. Throws std::system_error naming the step.
  TapPort(const std::string& ifname, unsigned mtu, const std::string& bridge);
  ~TapPort() override;

  [[nodiscard]] int fd() const override { return fd_; }
  [[nodiscard]] std::string name() const override { return name_; }
  [[nodiscard]] Status write(const virtio_net_hdr& h, std::span<const std::byte> frame) override;
  [[nodiscard]] Status write_gather(const virtio_net_hdr& h, std::span<const iovec> parts) override;
  [[nodiscard]] bool gathers() const override { return true; }
  [[nodiscard]] Result<std::size_t> read(virtio_net_hdr& h, std::span<std::byte> buf) override;
  [[nodiscard]] Status set_rx_offloads(const HostRxOffloads& o) override;

 private:
  void close_fd();
  int fd_ = -1;
  std::string name_;
};

enum class XdpMode { automatic, native, skb };
[[nodiscard]] const char* to_string(XdpMode m);

inline constexpr std::uint32_t kXskFrameSize = 4096;  // >= kMaxMtu + Ethernet header: every vif frame fits
inline constexpr std::uint32_t kXskRxFrames = 1024;  // = fill ring size = RX ring size
inline constexpr std::uint32_t kXskTxFrames = 1024;  // = TX ring size = completion ring size
inline constexpr std::uint32_t kXskKickEvery = 64;

class XskPort final : public HostPort {
 public:
  // Binds to queue 0 of `ifname` (which must exist). Throws std::system_error naming the step and, in automatic
  // mode, both attempts.
  XskPort(const std::string& ifname, XdpMode mode);
  ~XskPort() override;

  [[nodiscard]] int fd() const override;
  [[nodiscard]] std::string name() const override { return name_; }
  [[nodiscard]] Status write(const virtio_net_hdr& h, std::span<const std::byte> frame) override;
  [[nodiscard]] Result<std::size_t> read(virtio_net_hdr& h, std::span<std::byte> buf) override;
  void flush() override;
  [[nodiscard]] bool offloads() const override { return false; }
  [[nodiscard]] nlohmann::json stats() const override;
  [[nodiscard]] XdpMode mode() const;  // native or skb: the mode that bound

 private:
  struct Impl;  // keeps <xdp/xsk.h> out of this header
  std::unique_ptr<Impl> impl_;
  std::string name_;
};

// A valid Linux interface name (1..15 chars of [A-Za-z0-9._-]).
[[nodiscard]] bool valid_ifname(const std::string& s);

}  // namespace gears::net
