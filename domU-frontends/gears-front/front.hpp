// gears-front: the domU end of the semantic channel, as a C++ API (this header) and a CLI (main.cpp).
//
//   gears::front::Channel ch;              // finds device/gears/<devid>, runs the xenbus handshake
//   ch.publish_hints(tlv);                 // a TLV hint set (common/hints); dom0 acknowledges
//   ch.session().bulk_up(bytes, seed, true);
//
// Owns the granted ring pair and the event channel; one thread. Destruction closes the device in an
// orderly way (frontend Closed), after which the backend returns to InitWait for the next user.
#pragma once

#include <cstdint>
#include <memory>
#include <optional>
#include <span>
#include <string>

#include "common/channel/frontend_session.hpp"
#include "common/xen/evtchn.hpp"
#include "common/xen/grant.hpp"
#include "common/xen/store.hpp"
#include "common/xenbus/driver.hpp"

namespace gears::front {

// Blocks on the event channel (see FrontendSession's W).
class EvtchnWaiter {
 public:
  explicit EvtchnWaiter(const xen::EventChannel* ch = nullptr) : ch_(ch) {}
  void bind(const xen::EventChannel* ch) { ch_ = ch; }
  [[nodiscard]] Result<bool> wait(int timeout_ms);

 private:
  const xen::EventChannel* ch_;
};

using Session = channel::FrontendSession<xen::EventChannel, EvtchnWaiter>;

struct Options {
  unsigned devid = 0;
  unsigned ring_page_order = channel::kDefaultRingPageOrder;
  int timeout_ms = 30000;
  bool agent = false;  // advertise kFeatureAgent: this process serves dom0's BenchRequests (serve_one)
};

class Channel : private xenbus::FrontendHooks {
 public:
  explicit Channel(Options opts = {});  // connects or throws XenError
  ~Channel() override;
  Channel(const Channel&) = delete;
  Channel& operator=(const Channel&) = delete;

  [[nodiscard]] Session& session() { return *session_; }
  [[nodiscard]] Result<channel::HintsAck> publish_hints(std::span<const std::byte> tlv) {
    return session_->publish_hints(tlv);
  }
  [[nodiscard]] domid_t backend_domain() const { return driver_->be_dom(); }
  [[nodiscard]] std::size_t data_pages() const { return std::size_t{1} << opts_.ring_page_order; }

  // Raw access for the misbehaviour tests (lab.channel.hostile): the up ring as shared with dom0.
  [[nodiscard]] std::span<std::byte> raw_up_ring() const { return up_.bytes(); }
  [[nodiscard]] Status kick() const { return evtchn_->notify(); }
  // Waits until dom0 moves the device away from Connected (it closed us), up to timeout_ms.
  [[nodiscard]] bool wait_closed_by_backend(int timeout_ms);
  // dom0's side still Connected (one xenstore read).
  [[nodiscard]] bool backend_connected();

 private:
  Status setup(xen::Store& s, xen::StoreOps& t, const std::string& fe_path, const std::string& be_path,
               domid_t be_dom) override;
  Status connected(xen::Store& s, const std::string& be_path) override;
  void disconnect() override;
  void pump_store(int timeout_ms);

  Options opts_;
  xen::Store store_;
  xen::GrantSharer sharer_;
  std::optional<xenbus::FrontendDriver> driver_;
  xen::GrantShare up_, down_;
  xen::GrantShare up_dir_, down_dir_;  // each ring's grant refs, one page each (protocol.hpp)
  std::optional<xen::EventChannel> evtchn_;
  EvtchnWaiter waiter_;
  std::unique_ptr<Session> session_;
};

// Domain memcpy bandwidth (the physical limit of any shared-memory channel), MB/s.
[[nodiscard]] double memcpy_mb_s(std::size_t bytes, int rounds);

}  // namespace gears::front
