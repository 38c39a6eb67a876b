// The host side of a Gears vif: where TX frames go and RX frames come from.
//
// TapPort: one TAP device in dom0 (IFF_TAP | IFF_NO_PI | IFF_VNET_HDR), non-blocking, optionally enslaved to a
// bridge. Frames carry a struct virtio_net_hdr in front, so GSO and checksum offload cross the boundary
// without software segmentation: TX writes NEEDS_CSUM / GSO_TCPV4|6 headers (the dom0 kernel finishes them);
// RX asks for no offloads (TUNSETOFFLOAD 0), so every frame read is complete, checksummed and <= MTU + header.
// Owned by the device's worker thread; the fd is closed (and the interface destroyed) in the destructor.
#pragma once

#include <cstddef>
#include <cstdint>
#include <span>
#include <string>

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

// The host side as the device sees it: a non-blocking packet port with a pollable fd. One per vif, owned by
// the device's worker.
class HostPort : NonCopyable {
 public:
  virtual ~HostPort() = default;
  [[nodiscard]] virtual int fd() const = 0;
  [[nodiscard]] virtual std::string name() const = 0;
  // Writes one frame; EAGAIN when the host queue is full (the frame is lost: counted by the caller).
  [[nodiscard]] virtual Status write(const virtio_net_hdr& h, std::span<const std::byte> frame) = 0;
  // Reads one frame into `buf` (its offload header into `h`); EAGAIN when none is queued.
  [[nodiscard]] virtual Result<std::size_t> read(virtio_net_hdr& h, std::span<std::byte> buf) = 0;
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
  [[nodiscard]] Result<std::size_t> read(virtio_net_hdr& h, std::span<std::byte> buf) override;

 private:
  int fd_;
  std::string name_;
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
  [[nodiscard]] Result<std::size_t> read(virtio_net_hdr& h, std::span<std::byte> buf) override;

 private:
  void close_fd();
  int fd_ = -1;
  std::string name_;
};

// A valid Linux interface name (1..15 chars of [A-Za-z0-9._-]).
[[nodiscard]] bool valid_ifname(const std::string& s);

}  // namespace gears::net
