// The dom0 end of the semantic channel, hosted by gearsd: one Device per (domU, devid).
// Owns its xenstore connection, the xenbus backend driver, the mapped ring pair and the event channel;
// all of it lives on the device's worker thread. A protocol violation closes the channel (xenbus Closing,
// rings unmapped) with one log line naming the domain, the device and the reason; other devices are
// untouched.
#pragma once

#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <utility>

#include "common/channel/session.hpp"
#include "common/xen/evtchn.hpp"
#include "common/xen/grant.hpp"
#include "common/xen/store.hpp"
#include "common/xenbus/driver.hpp"
#include "common/xenbus/nodes.hpp"
#include "dom0/gearsd/device.hpp"
#include "dom0/gearsd/hint_registry.hpp"
#include "dom0/gearsd/reactor.hpp"

namespace gears::chan {

// Decodes a TLV hint set into JSON records (the registry form), or a protocol error.
using HintDecoder = std::function<Result<nlohmann::json>(std::span<const std::byte>)>;

class ChannelDevice final : public daemon::Device, private xenbus::BackendHooks {
 public:
  // `registry` (optional) receives every accepted hint set (source channel, origin = device name); the
  // device withdraws them when it stops.
  ChannelDevice(daemon::DeviceSpec spec, HintDecoder decode, daemon::HintRegistry* registry = nullptr);
  ~ChannelDevice() override;

  [[nodiscard]] Status start(daemon::Reactor& loop) override;
  void stop() override;
  [[nodiscard]] nlohmann::json stats() const override;
  void metrics(daemon::MetricSet& out) const override;
  [[nodiscard]] nlohmann::json hints() const override;
  // op "bench": {"what":"bulk_up|bulk_down|msgs|rtt","amount":N,"size":B,"verify":bool,"timeout_s":S}.
  // The guest must run `gears-front agent`; the reply carries the agent's measurement (see docs/CHANNEL.md).
  void control(const nlohmann::json& request, ControlDone done) override;

 private:
  Status advertise(xen::StoreOps& t, const std::string& be_path) override;
  Status connect(xen::Store& s, const std::string& fe_path, domid_t fe_dom) override;
  // One ring's 1 + 2^k grant refs, from its directory page or (older frontends) one xenstore key per page.
  [[nodiscard]] Result<std::vector<grant_ref_t>> ring_refs(xen::Store& s, const std::string& fe_path,
                                                           std::string_view dir, std::size_t pages, domid_t fe_dom);
  void disconnect() override;

  void on_store();
  void on_event();
  void pump();
  void close(const Error& e, const std::string& detail);
  void finish_bench(nlohmann::json reply);

  struct PendingBench {
    ControlDone done;
    daemon::WatchId timer = 0;
    std::uint32_t id = 0;
  };
  std::optional<PendingBench> bench_;
  std::uint32_t next_bench_id_ = 1;
  std::uint64_t benches_ = 0;

  HintDecoder decode_;
  daemon::HintRegistry* registry_ = nullptr;
  daemon::Reactor* loop_ = nullptr;
  std::optional<xen::Store> store_;
  std::optional<xenbus::BackendDriver> driver_;
  std::optional<xen::GrantTable> gnt_;
  xen::GrantMapping up_, down_;
  std::optional<xen::EventChannel> evtchn_;
  std::unique_ptr<channel::BackendSession<xen::EventChannel>> session_;
  daemon::WatchId store_watch_ = 0, evtchn_watch_ = 0;
  bool pump_posted_ = false;
  std::shared_ptr<const char> alive_ = std::make_shared<const char>('\0');  // expires with the device

  // What the frontend told us, newest last (bounded), and counters that survive reconnects.
  nlohmann::json hints_ = nlohmann::json::array();
  channel::BackendStats totals_{};
  std::uint64_t connects_ = 0, closes_for_violation_ = 0, events_ = 0;
  std::string last_error_;
};

// The hint decoder gearsd uses (common/hints TLV -> JSON records).
[[nodiscard]] Result<nlohmann::json> decode_hint_set(std::span<const std::byte> tlv);

// gearsd's factory for kind "channel".
[[nodiscard]] std::unique_ptr<daemon::Device> make_channel_device(const daemon::DeviceSpec& spec,
                                                                 daemon::HintRegistry* registry = nullptr);

// Creates the xenstore nodes of a channel device the way libxl creates vbd/vif nodes (frontend dir owned by the
// domU and readable by dom0, backend dir owned by dom0 and readable by the domU). Idempotent. Throws XenError.
xenbus::DeviceNodes channel_nodes(domid_t domu, unsigned devid);
void create_channel_nodes(xen::Store& s, domid_t domu, unsigned devid);
void remove_channel_nodes(xen::Store& s, domid_t domu, unsigned devid);

// Discovery of channel devices: backend/gears directories (dom0/common/discovery.hpp).
[[nodiscard]] std::unique_ptr<daemon::DiscoverySource> make_channel_discovery();

}  // namespace gears::chan
