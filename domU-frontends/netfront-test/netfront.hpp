// A userspace netif frontend for tests: speaks the same xenbus keys and rings as xen-netfront (single queue,
// split event channels, rx-copy), and can also put arbitrary (malformed) TX slots on the ring. Used by the unit
// tests over the fake hypervisor and by gears-netfront-hostile in a lab domU. Single-threaded.
#pragma once

#include <chrono>
#include <cstdint>
#include <optional>
#include <span>
#include <string>
#include <vector>

// clang-format off
#include <xen/xen.h>
#include <xen/grant_table.h>
#include <xen/io/netif.h>
// clang-format on

#include "common/ring/xen_ring.hpp"
#include "common/xen/evtchn.hpp"
#include "common/xen/grant.hpp"
#include "common/xen/store.hpp"
#include "common/xenbus/driver.hpp"

namespace gears::netfront {

inline constexpr std::size_t kDataPages = 64;  // TX pages and RX pages each

// What the frontend writes about its RX side (netif.h keys), and how many rx pages it posts when it connects.
struct NetfrontFeatures {
  bool sg = true;         // feature-sg
  bool csum = true;       // feature-no-csum-offload = 0
  bool ipv6_csum = false; // feature-ipv6-csum-offload
  bool gso4 = false;      // feature-gso-tcpv4
  bool gso6 = false;      // feature-gso-tcpv6
  std::size_t rx_initial = 64;  // rx pages posted at connect (<= kDataPages)
};

// One received packet: its bytes, the first response's NETRXF flags, its GSO extra if any, and whether every
// response sat in the ring slot of the request it answers (xen-netfront's assumption: it ignores ids).
struct RxPacket {
  std::vector<std::byte> bytes;
  std::uint16_t flags = 0;
  std::optional<netif_extra_info> gso;
  bool in_place = true;
  bool error = false;  // a response carried a negative status
};

class TestNetfront final : private xenbus::FrontendHooks {
 public:
  // fe_path: device/vif/<devid> of the current domain (relative or absolute). Throws XenError.
  TestNetfront(xen::Store& store, std::string fe_path, NetfrontFeatures features = {});
  ~TestNetfront() override;
  TestNetfront(const TestNetfront&) = delete;
  TestNetfront& operator=(const TestNetfront&) = delete;

  // Starts the xenbus handshake and pumps xenstore until the backend is Connected (false on timeout/close).
  [[nodiscard]] bool connect(std::chrono::milliseconds timeout);
  // Drains queued xenstore watch events (state changes).
  void pump_store();
  [[nodiscard]] bool connected() const { return driver_.connected() && tx_.has_value(); }
  // The backend closed us: its state is Closing or Closed.
  [[nodiscard]] bool closed_by_backend() const;

  // Sends one frame (split over pages, offset 0), optionally with NETTXF flags on the first slot.
  [[nodiscard]] Status send(std::span<const std::byte> frame, std::uint16_t flags = 0);
  // Puts raw slots on the tx ring as they are (grant refs are ours: use tx_ref(i)), then notifies.
  [[nodiscard]] Status push_raw(std::span<const netif_tx_request_t> slots);
  // Writes a raw req_prod (for ring-index attacks) and notifies.
  void set_req_prod(RING_IDX v);
  [[nodiscard]] grant_ref_t tx_ref(std::size_t i) const { return tx_data_.refs()[i]; }
  [[nodiscard]] std::span<std::byte> tx_page(std::size_t i) const { return tx_data_.bytes().subspan(i * 4096, 4096); }
  // TX responses received so far (status per id), reaping new ones.
  std::size_t reap_tx(std::vector<netif_tx_response_t>* out = nullptr);

  // Posts free rx pages (at most `max`) and notifies.
  [[nodiscard]] Status post_rx(std::size_t max = SIZE_MAX);
  // Receives one complete frame if one is ready (consumes rx responses); empty on an error status.
  [[nodiscard]] std::optional<std::vector<std::byte>> recv();
  // The same with what the responses said about it (extras parsed as xen-netfront does).
  [[nodiscard]] std::optional<RxPacket> recv_packet();
  [[nodiscard]] int rx_fd() const { return ev_rx_ ? ev_rx_->fd() : -1; }
  [[nodiscard]] int tx_fd() const { return ev_tx_ ? ev_tx_->fd() : -1; }
  void ack_events();

 private:
  Status setup(xen::Store& s, xen::StoreOps& t, const std::string& fe_path, const std::string& be_path,
               domid_t be_dom) override;
  Status connected(xen::Store& s, const std::string& be_path) override;
  void disconnect() override;

  xen::Store& store_;
  std::string fe_path_;
  xen::GrantSharer sharer_;
  xen::GrantShare tx_ring_page_, rx_ring_page_, tx_data_, rx_data_;
  std::optional<ring::FrontRing<netif_tx_sring>> tx_;
  std::optional<ring::FrontRing<netif_rx_sring>> rx_;
  std::optional<xen::EventChannel> ev_tx_, ev_rx_;
  xenbus::FrontendDriver driver_;
  std::size_t next_tx_page_ = 0;
  std::vector<bool> rx_posted_;
  std::vector<std::uint16_t> rx_slot_page_;  // ring slot -> the page its request posted
  NetfrontFeatures features_;
  RxPacket partial_;
  bool in_packet_ = false;
  bool want_extra_ = false;
};

}  // namespace gears::netfront
