#include "dom0/backends/net/host.hpp"

#include <fcntl.h>
#include <linux/if.h>
#include <linux/if_tun.h>
#include <linux/sockios.h>
#include <net/if_arp.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <sys/uio.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <system_error>

namespace gears::net {
namespace {

[[noreturn]] void fail(const std::string& what) { throw std::system_error(errno, std::generic_category(), what); }

void set_name(ifreq& ifr, const std::string& n) {
  std::memset(&ifr, 0, sizeof ifr);
  std::memcpy(ifr.ifr_name, n.data(), std::min(n.size(), std::size_t{IFNAMSIZ - 1}));
}

struct Sock {
  int fd = ::socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
  ~Sock() {
    if (fd >= 0) ::close(fd);
  }
};

}  // namespace

bool valid_ifname(const std::string& s) {
  if (s.empty() || s.size() >= IFNAMSIZ || s == "." || s == "..") return false;
  for (char c : s)
    if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '.' || c == '_' ||
          c == '-'))
      return false;
  return true;
}

TapPort::TapPort(const std::string& ifname, unsigned mtu, const std::string& bridge) : name_(ifname) {
  if (!valid_ifname(ifname)) {
    errno = EINVAL;
    fail("tap: bad interface name '" + ifname + "'");
  }
  fd_ = ::open("/dev/net/tun", O_RDWR | O_NONBLOCK | O_CLOEXEC);
  if (fd_ < 0) fail("tap: open /dev/net/tun");
  try {
    ifreq ifr;
    set_name(ifr, ifname);
    ifr.ifr_flags = IFF_TAP | IFF_NO_PI | IFF_VNET_HDR;
    if (::ioctl(fd_, TUNSETIFF, &ifr) != 0) fail("tap: TUNSETIFF " + ifname);
    int hdr = sizeof(virtio_net_hdr);
    if (::ioctl(fd_, TUNSETVNETHDRSZ, &hdr) != 0) fail("tap: TUNSETVNETHDRSZ");
    if (::ioctl(fd_, TUNSETOFFLOAD, 0UL) != 0) fail("tap: TUNSETOFFLOAD");
    Sock s;
    if (s.fd < 0) fail("tap: socket");
    // The TAP's own MAC never appears on the wire; fe:ff:ff:ff:ff:ff keeps it out of the bridge's choice of
    // address, as the stock vif-bridge does.
    set_name(ifr, ifname);
    ifr.ifr_hwaddr.sa_family = ARPHRD_ETHER;
    const unsigned char mac[6] = {0xfe, 0xff, 0xff, 0xff, 0xff, 0xff};
    std::memcpy(ifr.ifr_hwaddr.sa_data, mac, 6);
    if (::ioctl(s.fd, SIOCSIFHWADDR, &ifr) != 0) fail("tap: SIOCSIFHWADDR " + ifname);
    set_name(ifr, ifname);
    ifr.ifr_mtu = static_cast<int>(mtu);
    if (::ioctl(s.fd, SIOCSIFMTU, &ifr) != 0) fail("tap: set MTU of " + ifname);
    set_name(ifr, ifname);
    if (::ioctl(s.fd, SIOCGIFFLAGS, &ifr) != 0) fail("tap: SIOCGIFFLAGS " + ifname);
    ifr.ifr_flags = static_cast<short>(ifr.ifr_flags | IFF_UP);
    if (::ioctl(s.fd, SIOCSIFFLAGS, &ifr) != 0) fail("tap: bring up " + ifname);
    if (!bridge.empty()) {
      if (!valid_ifname(bridge)) {
        errno = EINVAL;
        fail("tap: bad bridge name '" + bridge + "'");
      }
      set_name(ifr, ifname);
      if (::ioctl(s.fd, SIOCGIFINDEX, &ifr) != 0) fail("tap: ifindex of " + ifname);
      const int idx = ifr.ifr_ifindex;
      set_name(ifr, bridge);
      ifr.ifr_ifindex = idx;
      if (::ioctl(s.fd, SIOCBRADDIF, &ifr) != 0) fail("tap: add " + ifname + " to bridge " + bridge);
    }
  } catch (...) {
    close_fd();
    throw;
  }
}

TapPort::~TapPort() { close_fd(); }

void TapPort::close_fd() {
  if (fd_ >= 0) ::close(fd_);  // a non-persistent TAP disappears (and leaves its bridge) with its last fd
  fd_ = -1;
}

Status HostPort::write_gather(const virtio_net_hdr&, std::span<const iovec>) {
  return Error{ENOTSUP, "host port: no gather writes"};
}

Status TapPort::write(const virtio_net_hdr& h, std::span<const std::byte> frame) {
  const iovec part{const_cast<std::byte*>(frame.data()), frame.size()};
  return write_gather(h, {&part, 1});
}

Status TapPort::write_gather(const virtio_net_hdr& h, std::span<const iovec> parts) {
  if (parts.size() > kMaxGatherParts) return Error{EINVAL, "tap: too many parts"};
  iovec iov[kMaxGatherParts + 1];
  iov[0] = {const_cast<virtio_net_hdr*>(&h), sizeof h};
  std::copy(parts.begin(), parts.end(), iov + 1);
  if (::writev(fd_, iov, static_cast<int>(parts.size() + 1)) < 0) return errno_error("tap: write");
  return {};
}

Result<std::size_t> TapPort::read(virtio_net_hdr& h, std::span<std::byte> buf) {
  iovec iov[2] = {{&h, sizeof h}, {buf.data(), buf.size()}};
  const ssize_t n = ::readv(fd_, iov, 2);
  if (n < 0) return errno_error("tap: read");
  if (static_cast<std::size_t>(n) < sizeof h) return Error{EIO, "tap: short read"};
  return static_cast<std::size_t>(n) - sizeof h;
}

Status TapPort::set_rx_offloads(const HostRxOffloads& o) {
  unsigned long f = 0;
  if (o.csum) {
    f |= TUN_F_CSUM;
    if (o.tso4) f |= TUN_F_TSO4;
    if (o.tso6) f |= TUN_F_TSO6;
  }
  if (::ioctl(fd_, TUNSETOFFLOAD, f) != 0) return errno_error("tap: TUNSETOFFLOAD");
  return {};
}

SeqpacketPort::SeqpacketPort(int fd, std::string name) : fd_(fd), name_(std::move(name)) {}

SeqpacketPort::~SeqpacketPort() {
  if (fd_ >= 0) ::close(fd_);
}

Status SeqpacketPort::write(const virtio_net_hdr& h, std::span<const std::byte> frame) {
  const iovec part{const_cast<std::byte*>(frame.data()), frame.size()};
  return write_gather(h, {&part, 1});
}

Status SeqpacketPort::write_gather(const virtio_net_hdr& h, std::span<const iovec> parts) {
  if (parts.size() > kMaxGatherParts) return Error{EINVAL, "seqpacket: too many parts"};
  iovec iov[kMaxGatherParts + 1];
  iov[0] = {const_cast<virtio_net_hdr*>(&h), sizeof h};
  std::copy(parts.begin(), parts.end(), iov + 1);
  msghdr m{};
  m.msg_iov = iov;
  m.msg_iovlen = parts.size() + 1;
  if (::sendmsg(fd_, &m, MSG_DONTWAIT | MSG_NOSIGNAL) < 0) return errno_error("seqpacket: send");
  return {};
}

Result<std::size_t> SeqpacketPort::read(virtio_net_hdr& h, std::span<std::byte> buf) {
  iovec iov[2] = {{&h, sizeof h}, {buf.data(), buf.size()}};
  msghdr m{};
  m.msg_iov = iov;
  m.msg_iovlen = 2;
  const ssize_t n = ::recvmsg(fd_, &m, MSG_DONTWAIT);
  if (n < 0) return errno_error("seqpacket: recv");
  if (static_cast<std::size_t>(n) < sizeof h) return Error{EIO, "seqpacket: short record"};
  return static_cast<std::size_t>(n) - sizeof h;
}

}  // namespace gears::net
