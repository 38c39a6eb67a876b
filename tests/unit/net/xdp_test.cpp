// XskPort (the AF_XDP host side of a vif) against a real kernel: a veth pair in a private network namespace, the
// port on one end, an AF_PACKET socket on the other. Needs root (BPF, netns); run by lab.semnet.xdp_port inside
// the lab's dom0, or by hand as root on any Linux >= 5.10 host.
#include <gtest/gtest.h>
#include <arpa/inet.h>
#include <linux/if_packet.h>
#include <net/ethernet.h>
#include <net/if.h>
#include <poll.h>
#include <sched.h>
#include <sys/socket.h>
#include <unistd.h>

#include <chrono>
#include <cstdlib>
#include <cstring>
#include <optional>
#include <string>
#include <system_error>
#include <vector>

#include "dom0/backends/net/host.hpp"
#include "dom0/backends/net/protocol.hpp"

namespace gears::net {
namespace {

constexpr const char* kPortIf = "gx0";
constexpr const char* kWireIf = "gx1";

int sh(const std::string& cmd) { return std::system(cmd.c_str()); }

bool xdp_attached(const char* ifname) {
  return sh(std::string("ip -d link show ") + ifname + " | grep -q 'prog/xdp'") == 0;
}

// The wire end: raw Ethernet frames in and out of kWireIf.
class Wire {
 public:
  Wire() {
    fd_ = ::socket(AF_PACKET, SOCK_RAW | SOCK_CLOEXEC, htons(ETH_P_ALL));
    if (fd_ < 0) throw std::system_error(errno, std::generic_category(), "AF_PACKET socket");
    int big = 8 << 20;
    (void)::setsockopt(fd_, SOL_SOCKET, SO_RCVBUFFORCE, &big, sizeof big);
    sockaddr_ll a{};
    a.sll_family = AF_PACKET;
    a.sll_protocol = htons(ETH_P_ALL);
    a.sll_ifindex = static_cast<int>(::if_nametoindex(kWireIf));
    if (::bind(fd_, reinterpret_cast<sockaddr*>(&a), sizeof a) != 0)
      throw std::system_error(errno, std::generic_category(), "bind to gx1");
  }
  Wire(const Wire&) = delete;
  Wire& operator=(const Wire&) = delete;
  ~Wire() { ::close(fd_); }
  void send(const std::vector<std::byte>& f) const {
    ASSERT_EQ(::send(fd_, f.data(), f.size(), 0), static_cast<ssize_t>(f.size())) << std::strerror(errno);
  }
  // The next frame from the port (skipping the kernel's own IPv6 chatter), or nothing within `ms`.
  std::optional<std::vector<std::byte>> recv(int ms = 5000) const {
    const auto end = std::chrono::steady_clock::now() + std::chrono::milliseconds(ms);
    while (std::chrono::steady_clock::now() < end) {
      pollfd p{fd_, POLLIN, 0};
      if (::poll(&p, 1, 100) <= 0) continue;
      std::vector<std::byte> b(9000);
      const ssize_t n = ::recv(fd_, b.data(), b.size(), MSG_DONTWAIT);
      if (n <= 0) continue;
      b.resize(static_cast<std::size_t>(n));
      if (n >= 14 && b[12] == std::byte{0x86} && b[13] == std::byte{0xdd}) continue;  // IPv6 (DAD, MLD)
      return b;
    }
    return std::nullopt;
  }

 private:
  int fd_ = -1;
};

// An IPv4/TCP frame between two test addresses; `tag` varies the payload.
std::vector<std::byte> tcp_frame(std::size_t payload, unsigned tag) {
  std::vector<std::byte> f(14 + 20 + 20 + payload);
  auto put = [&](std::size_t off, unsigned v) { f[off] = static_cast<std::byte>(v & 0xFFU); };
  for (std::size_t i = 0; i < 6; ++i) put(i, 0x02), put(6 + i, 0x04);  // locally administered MACs
  put(12, 0x08), put(13, 0x00);
  put(14, 0x45);
  const std::size_t tot = 40 + payload;
  put(16, static_cast<unsigned>(tot >> 8U)), put(17, static_cast<unsigned>(tot));
  put(22, 64), put(23, 6);
  put(26, 10), put(29, 1), put(30, 10), put(33, 2);
  put(34, 0x13), put(35, 0x88), put(36, 0x00), put(37, 0x50);
  put(46, 0x50);
  for (std::size_t i = 0; i < payload; ++i) put(54 + i, static_cast<unsigned>(i * 13U + tag));
  return f;
}

// The one's complement sum of the TCP pseudo-header and segment: 0xFFFF when the checksum is right.
unsigned tcp_sum(const std::vector<std::byte>& f) {
  auto w = [&](std::size_t o) { return (std::to_integer<unsigned>(f[o]) << 8U) | std::to_integer<unsigned>(f[o + 1]); };
  std::uint64_t sum = 6 + (f.size() - 34);
  for (std::size_t i = 26; i < 34; i += 2) sum += w(i);
  std::size_t i = 34;
  for (; i + 1 < f.size(); i += 2) sum += w(i);
  if (i < f.size()) sum += std::to_integer<unsigned>(f[i]) << 8U;
  while ((sum >> 16U) != 0) sum = (sum & 0xFFFFU) + (sum >> 16U);
  return static_cast<unsigned>(sum);
}

// Waits for the port's fd to become readable, then reads one frame.
std::optional<std::vector<std::byte>> port_recv(XskPort& port, int ms = 5000) {
  const auto end = std::chrono::steady_clock::now() + std::chrono::milliseconds(ms);
  std::vector<std::byte> buf(kXskFrameSize);
  while (std::chrono::steady_clock::now() < end) {
    virtio_net_hdr h{};
    auto r = port.read(h, buf);
    if (r) {
      EXPECT_EQ(h.flags, 0) << "no offload metadata crosses AF_XDP";
      buf.resize(*r);
      return buf;
    }
    pollfd p{port.fd(), POLLIN, 0};
    (void)::poll(&p, 1, 100);
  }
  return std::nullopt;
}

class XdpPort : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    ASSERT_EQ(::geteuid(), 0U) << "this test needs root (BPF and a private network namespace)";
    ASSERT_EQ(::unshare(CLONE_NEWNET), 0) << std::strerror(errno);
    ASSERT_EQ(sh("ip link set lo up && ip link add gx0 type veth peer name gx1 && ip link set gx0 up && "
                 "ip link set gx1 up && echo 1 > /proc/sys/net/ipv6/conf/gx0/disable_ipv6 && "
                 "echo 1 > /proc/sys/net/ipv6/conf/gx1/disable_ipv6"),
              0);
  }
};

TEST_F(XdpPort, FramesFromTheWireReachThePortInOrder) {
  XskPort port(kPortIf, XdpMode::automatic);
  EXPECT_TRUE(xdp_attached(kPortIf));
  EXPECT_FALSE(port.offloads());
  Wire wire;
  for (unsigned i = 0; i < 100; ++i) {
    const auto f = tcp_frame(64 + i * 13, i);
    wire.send(f);
    auto got = port_recv(port);
    ASSERT_TRUE(got) << "frame " << i << " never reached the port";
    EXPECT_EQ(*got, f) << "frame " << i;
  }
  const auto st = port.stats();
  EXPECT_EQ(st["rx_frames"].get<std::uint64_t>(), 100U);
  EXPECT_EQ(st["kind"], "af_xdp");
}

TEST_F(XdpPort, FramesFromThePortReachTheWireWithTheirChecksumCompleted) {
  XskPort port(kPortIf, XdpMode::automatic);
  Wire wire;
  auto f = tcp_frame(333, 7);
  f[50] = std::byte{0xAB}, f[51] = std::byte{0xCD};  // garbage where the guest left the checksum blank
  virtio_net_hdr h{};
  h.flags = VIRTIO_NET_HDR_F_NEEDS_CSUM;
  h.csum_start = 34;
  h.csum_offset = 16;
  ASSERT_TRUE(port.write(h, f));
  port.flush();
  auto got = wire.recv();
  ASSERT_TRUE(got) << "the frame never left the port";
  ASSERT_EQ(got->size(), f.size());
  EXPECT_EQ(tcp_sum(*got), 0xFFFFU) << "checksum not completed";
  EXPECT_TRUE(std::equal(got->begin(), got->begin() + 50, f.begin())) << "headers changed";
  EXPECT_TRUE(std::equal(got->begin() + 52, got->end(), f.begin() + 52)) << "payload changed";

  auto plain = tcp_frame(100, 9);  // no NEEDS_CSUM: sent byte for byte
  ASSERT_TRUE(port.write(virtio_net_hdr{}, plain));
  port.flush();
  got = wire.recv();
  ASSERT_TRUE(got);
  EXPECT_EQ(*got, plain);
  EXPECT_EQ(port.stats()["tx_csum"].get<std::uint64_t>(), 1U);
}

TEST_F(XdpPort, MoreFramesThanTheTxPoolAllArriveAcrossKicks) {
  XskPort port(kPortIf, XdpMode::automatic);
  Wire wire;
  constexpr unsigned kN = 3 * kXskTxFrames;
  unsigned sent = 0;
  for (unsigned i = 0; i < kN; ++i) {
    auto f = tcp_frame(60, i);
    f[54] = static_cast<std::byte>(i >> 8U), f[55] = static_cast<std::byte>(i & 0xFFU);
    if (port.write(virtio_net_hdr{}, f)) ++sent;
    if (i % 200 == 199) port.flush();
  }
  port.flush();
  EXPECT_EQ(sent, kN) << "the pool recycles completions: a slow kernel may refuse (EAGAIN), here it must not";
  unsigned got = 0, next = 0;
  while (auto f = wire.recv(2000)) {
    const unsigned seq = (std::to_integer<unsigned>((*f)[54]) << 8U) | std::to_integer<unsigned>((*f)[55]);
    EXPECT_EQ(seq, next) << "out of order";
    next = seq + 1;
    if (++got == sent) break;
  }
  EXPECT_EQ(got, sent);
  EXPECT_GE(port.stats()["kicks"].get<std::uint64_t>(), std::uint64_t{kN / kXskKickEvery});
}

TEST_F(XdpPort, BadFramesAreRefusedAndTheRingStaysUsable) {
  XskPort port(kPortIf, XdpMode::automatic);
  Wire wire;
  virtio_net_hdr gso{};
  gso.gso_type = VIRTIO_NET_HDR_GSO_TCPV4;
  gso.gso_size = 1448;
  auto r = port.write(gso, tcp_frame(100, 1));
  ASSERT_FALSE(r);
  EXPECT_EQ(r.error().code, EINVAL);
  r = port.write(virtio_net_hdr{}, std::vector<std::byte>(kXskFrameSize + 1));
  ASSERT_FALSE(r);
  EXPECT_EQ(r.error().code, EMSGSIZE);
  r = port.write(virtio_net_hdr{}, std::vector<std::byte>(13));
  ASSERT_FALSE(r);
  EXPECT_EQ(r.error().code, EMSGSIZE);
  virtio_net_hdr csum{};
  csum.flags = VIRTIO_NET_HDR_F_NEEDS_CSUM;
  auto arp = tcp_frame(10, 1);
  arp[12] = std::byte{0x08}, arp[13] = std::byte{0x06};
  r = port.write(csum, arp);
  ASSERT_FALSE(r) << "NEEDS_CSUM on a frame that is not TCP/UDP";
  EXPECT_EQ(r.error().code, EINVAL);
  const auto good = tcp_frame(80, 3);
  ASSERT_TRUE(port.write(virtio_net_hdr{}, good));
  port.flush();
  auto got = wire.recv();
  ASSERT_TRUE(got);
  EXPECT_EQ(*got, good);
}

TEST_F(XdpPort, ExplicitSkbModeBindsAndDestroyReturnsTheInterface) {
  {
    XskPort port(kPortIf, XdpMode::skb);
    EXPECT_EQ(port.mode(), XdpMode::skb);
    EXPECT_EQ(port.stats()["mode"], "skb");
    EXPECT_TRUE(xdp_attached(kPortIf));
  }
  EXPECT_FALSE(xdp_attached(kPortIf)) << "the redirect program outlived its last socket";
}

TEST_F(XdpPort, MissingOrBadInterfaceIsAClearError) {
  try {
    XskPort port("gx-none", XdpMode::automatic);
    FAIL() << "bound to a missing interface";
  } catch (const std::system_error& e) {
    EXPECT_NE(std::string(e.what()).find("no interface 'gx-none'"), std::string::npos) << e.what();
  }
  EXPECT_THROW(XskPort("bad name", XdpMode::automatic), std::system_error);
}

}  // namespace
}  // namespace gears::net
