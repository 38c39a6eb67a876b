// XskPort: the AF_XDP host side of a vif (contract in host.hpp).
#include <linux/if_link.h>
#include <linux/if_xdp.h>
#include <net/if.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <unistd.h>
#include <bpf/libbpf.h>
#include <spdlog/spdlog.h>
#include <xdp/libxdp.h>
#include <xdp/xsk.h>

#include <cerrno>
#include <cstdarg>
#include <cstdio>
#include <cstring>
#include <system_error>
#include <vector>

#include "dom0/backends/net/host.hpp"
#include "dom0/backends/net/protocol.hpp"

namespace gears::net {
namespace {

constexpr std::uint64_t kXskArea = std::uint64_t{kXskFrameSize} * (kXskRxFrames + kXskTxFrames);

[[noreturn]] void fail(int err, const std::string& what) { throw std::system_error(err, std::generic_category(), what); }

// libxdp and libbpf narrate on stderr (e.g. "No bpffs found ... falling back"): into the daemon's log instead.
int log_lib(bool warn, const char* fmt, va_list ap) {
  char buf[512];
  const int n = std::vsnprintf(buf, sizeof buf, fmt, ap);
  std::string_view line(buf, n < 0 ? 0 : std::min<std::size_t>(static_cast<std::size_t>(n), sizeof buf - 1));
  while (!line.empty() && line.back() == '\n') line.remove_suffix(1);
  if (warn) spdlog::warn("xdp: {}", line);
  else spdlog::debug("xdp: {}", line);
  return n;
}
int log_libxdp(libxdp_print_level level, const char* fmt, va_list ap) {
  return log_lib(level == LIBXDP_WARN && std::strstr(fmt, "bpffs") == nullptr, fmt, ap);
}
int log_libbpf(libbpf_print_level level, const char* fmt, va_list ap) { return log_lib(level == LIBBPF_WARN, fmt, ap); }

}  // namespace

const char* to_string(XdpMode m) {
  switch (m) {
    case XdpMode::native: return "native";
    case XdpMode::skb: return "skb";
    case XdpMode::automatic: break;
  }
  return "auto";
}

// One bound socket and its UMEM. Destruction order: socket (detaches libxdp's program once its last socket is
// gone), UMEM, then the memory behind it.
struct XskPort::Impl {
  void* area = MAP_FAILED;
  xsk_umem* umem = nullptr;
  xsk_socket* xsk = nullptr;
  xsk_ring_prod fill{}, tx{};
  xsk_ring_cons comp{}, rx{};
  std::vector<std::uint64_t> tx_free;  // TX frame addresses owned by userspace
  std::uint32_t tx_unkicked = 0;
  XdpMode mode = XdpMode::automatic;
  std::uint64_t tx_frames = 0, rx_frames = 0, kicks = 0, tx_ring_full = 0, rx_oversize = 0, tx_csum = 0;

  Impl() = default;
  Impl(const Impl&) = delete;
  Impl& operator=(const Impl&) = delete;
  ~Impl() { release(); }

  void release() {
    if (xsk) xsk_socket__delete(xsk);
    xsk = nullptr;
    if (umem) (void)xsk_umem__delete(umem);
    umem = nullptr;
    if (area != MAP_FAILED) ::munmap(area, kXskArea);
    area = MAP_FAILED;
  }

  // 0 or a negative errno. On failure everything is released, ready for another attempt.
  int bind(const std::string& ifname, std::uint32_t xdp_flags) {
    area = ::mmap(nullptr, kXskArea, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_POPULATE, -1, 0);
    if (area == MAP_FAILED) return -errno;
    xsk_umem_config uc{};
    uc.fill_size = kXskRxFrames;
    uc.comp_size = kXskTxFrames;
    uc.frame_size = kXskFrameSize;
    uc.frame_headroom = 0;
    uc.flags = 0;
    int r = xsk_umem__create(&umem, area, kXskArea, &fill, &comp, &uc);
    if (r != 0) {
      umem = nullptr;
      release();
      return r;
    }
    xsk_socket_config sc{};
    sc.rx_size = kXskRxFrames;
    sc.tx_size = kXskTxFrames;
    sc.libxdp_flags = 0;  // let libxdp attach its default redirect program
    sc.xdp_flags = xdp_flags;
    sc.bind_flags = XDP_USE_NEED_WAKEUP;
    r = xsk_socket__create(&xsk, ifname.c_str(), 0, umem, &rx, &tx, &sc);
    if (r != 0) {
      xsk = nullptr;
      release();
      return r;
    }
    std::uint32_t idx = 0;
    if (xsk_ring_prod__reserve(&fill, kXskRxFrames, &idx) != kXskRxFrames) {
      release();
      return -ENOSPC;
    }
    for (std::uint32_t i = 0; i < kXskRxFrames; ++i)
      *xsk_ring_prod__fill_addr(&fill, idx + i) = std::uint64_t{i} * kXskFrameSize;
    xsk_ring_prod__submit(&fill, kXskRxFrames);
    tx_free.clear();
    for (std::uint32_t i = kXskRxFrames; i < kXskRxFrames + kXskTxFrames; ++i)
      tx_free.push_back(std::uint64_t{i} * kXskFrameSize);
    return 0;
  }

  [[nodiscard]] int fd() const { return xsk_socket__fd(xsk); }

  // Copy-mode TX sends at most a small batch (32 frames in Linux 6.1) per sendto() and answers EAGAIN while
  // more remain, so one kick loops until the ring is drained. ENOBUFS/EBUSY (the device is busy): what is left
  // stays on the ring for the next kick.
  void kick() {
    for (std::uint32_t i = 0; i < kXskTxFrames; ++i) {
      ++kicks;
      if (::sendto(fd(), nullptr, 0, MSG_DONTWAIT, nullptr, 0) >= 0 || errno != EAGAIN) break;
    }
  }

  void reclaim() {
    std::uint32_t idx = 0;
    const std::uint32_t n = xsk_ring_cons__peek(&comp, kXskTxFrames, &idx);
    for (std::uint32_t i = 0; i < n; ++i) tx_free.push_back(*xsk_ring_cons__comp_addr(&comp, idx + i));
    if (n) xsk_ring_cons__release(&comp, n);
  }
};

XskPort::XskPort(const std::string& ifname, XdpMode mode) : impl_(std::make_unique<Impl>()), name_("xdp:" + ifname) {
  static const bool quiet = [] {
    libxdp_set_print(log_libxdp);
    libbpf_set_print(log_libbpf);
    return true;
  }();
  (void)quiet;
  if (!valid_ifname(ifname)) fail(EINVAL, "xdp: bad interface name '" + ifname + "'");
  if (::if_nametoindex(ifname.c_str()) == 0) fail(errno, "xdp: no interface '" + ifname + "'");
  std::string tried;
  for (const XdpMode m : {XdpMode::native, XdpMode::skb}) {
    if (mode != XdpMode::automatic && mode != m) continue;
    int r = 0;
    // EBUSY right after a previous socket on this queue closed: the kernel releases its buffer pool from a
    // workqueue. Setup-time only, bounded to 2 s.
    for (int tries = 0; tries < 40; ++tries) {
      r = impl_->bind(ifname, m == XdpMode::native ? XDP_FLAGS_DRV_MODE : XDP_FLAGS_SKB_MODE);
      if (r != -EBUSY) break;
      ::usleep(50'000);
    }
    if (r == 0) {
      impl_->mode = m;
      return;
    }
    tried += std::string(tried.empty() ? "" : "; ") + to_string(m) + ": " + std::strerror(-r);
  }
  fail(EIO, "xdp: cannot bind an AF_XDP socket to " + ifname + " queue 0 (" + tried + ")");
}

XskPort::~XskPort() = default;

int XskPort::fd() const { return impl_->fd(); }

XdpMode XskPort::mode() const { return impl_->mode; }

Status XskPort::write(const virtio_net_hdr& h, std::span<const std::byte> frame) {
  Impl& m = *impl_;
  if (h.gso_type != 0) return Error{EINVAL, "xdp: a GSO frame on a port without offloads"};
  if (frame.size() < kEthHlen || frame.size() > kXskFrameSize) return Error{EMSGSIZE, "xdp: frame size"};
  m.reclaim();
  if (m.tx_free.empty()) {
    m.kick();
    m.tx_unkicked = 0;
    m.reclaim();
    if (m.tx_free.empty()) {
      ++m.tx_ring_full;
      return Error{EAGAIN, "xdp: TX ring full"};
    }
  }
  const std::uint64_t addr = m.tx_free.back();
  auto* data = static_cast<std::byte*>(xsk_umem__get_data(m.area, addr));
  std::memcpy(data, frame.data(), frame.size());
  if (h.flags & VIRTIO_NET_HDR_F_NEEDS_CSUM) {  // the device found a TCP/UDP segment; sum it in full here
    if (auto s = fill_l4_checksum({data, frame.size()}); !s) return s;
    ++m.tx_csum;
  }
  std::uint32_t idx = 0;
  if (xsk_ring_prod__reserve(&m.tx, 1, &idx) != 1) {  // cannot happen: the TX ring holds every TX frame
    ++m.tx_ring_full;
    return Error{EAGAIN, "xdp: TX ring full"};
  }
  m.tx_free.pop_back();
  xdp_desc* d = xsk_ring_prod__tx_desc(&m.tx, idx);
  d->addr = addr;
  d->len = static_cast<std::uint32_t>(frame.size());
  d->options = 0;
  xsk_ring_prod__submit(&m.tx, 1);
  ++m.tx_frames;
  if (++m.tx_unkicked >= kXskKickEvery) flush();
  return {};
}

void XskPort::flush() {
  Impl& m = *impl_;
  if (m.tx_unkicked == 0) return;
  m.tx_unkicked = 0;
  m.kick();  // copy mode transmits inside sendto(); native mode only needs it when the ring asks
}

Result<std::size_t> XskPort::read(virtio_net_hdr& h, std::span<std::byte> buf) {
  Impl& m = *impl_;
  h = {};
  std::uint32_t idx = 0;
  if (xsk_ring_cons__peek(&m.rx, 1, &idx) != 1) {
    if (xsk_ring_prod__needs_wakeup(&m.fill)) (void)::recvfrom(m.fd(), nullptr, 0, MSG_DONTWAIT, nullptr, nullptr);
    return Error{EAGAIN, "xdp: no frame"};
  }
  const xdp_desc d = *xsk_ring_cons__rx_desc(&m.rx, idx);
  xsk_ring_cons__release(&m.rx, 1);
  std::size_t n = 0;
  if (d.len <= buf.size() && d.addr <= kXskArea - d.len) {
    std::memcpy(buf.data(), xsk_umem__get_data(m.area, d.addr), d.len);
    n = d.len;
  } else {
    ++m.rx_oversize;
  }
  std::uint32_t fidx = 0;
  if (xsk_ring_prod__reserve(&m.fill, 1, &fidx) == 1) {  // always: the fill ring holds every RX frame
    *xsk_ring_prod__fill_addr(&m.fill, fidx) = xsk_umem__extract_addr(d.addr);
    xsk_ring_prod__submit(&m.fill, 1);
  }
  ++m.rx_frames;
  return n;
}

nlohmann::json XskPort::stats() const {
  const Impl& m = *impl_;
  nlohmann::json j = {{"kind", "af_xdp"},   {"mode", to_string(m.mode)},       {"queue", 0},
                      {"tx_frames", m.tx_frames}, {"rx_frames", m.rx_frames},  {"kicks", m.kicks},
                      {"tx_ring_full", m.tx_ring_full}, {"rx_oversize", m.rx_oversize}, {"tx_csum", m.tx_csum}};
  xdp_statistics st{};
  socklen_t len = sizeof st;
  if (::getsockopt(m.fd(), SOL_XDP, XDP_STATISTICS, &st, &len) == 0) {
    j["rx_dropped"] = st.rx_dropped;
    j["rx_invalid_descs"] = st.rx_invalid_descs;
    j["tx_invalid_descs"] = st.tx_invalid_descs;
    j["rx_ring_full"] = st.rx_ring_full;
    j["rx_fill_ring_empty"] = st.rx_fill_ring_empty_descs;
  }
  return j;
}

}  // namespace gears::net
