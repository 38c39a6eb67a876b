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

class TestNetfront final : private xenbus::FrontendHooks {
 public:
  // fe_path: device/vif/<devid> of the current domain (relative or absolute). Throws XenError.
  TestNetfront(xen::Store& store, std::string fe_path);
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

  // Posts every free rx page and notifies.
  [[nodiscard]] Status post_rx();
  // Receives one complete frame if one is ready (consumes rx responses).
  [[nodiscard]] std::optional<std::vector<std::byte>> recv();
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
  std::vector<std::byte> partial_;
};

}  // namespace gears::netfront
