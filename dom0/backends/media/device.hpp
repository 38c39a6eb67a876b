// The sndif backend device hosted by gearsd (kind "vsnd"): one per (domU, vsnd devid), serving stock
// snd-xen-front. Owns its xenstore connection, the xenbus backend driver, and per stream: the request ring
// (BackRing<xen_sndif_sring>, one page), the event page (EventPage), two event channels and, while the stream
// is open, the mapped PCM buffer and a MixStream registered with the shared Mixer.
// All of it lives on the device's worker thread (one owner per ring); the mixer only sees the MixStreams.
// A ring-protocol violation closes the device (xenbus Closing, everything unmapped) with one log line; a bad
// request only gets an error response (rules in protocol.hpp).
#pragma once

#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "common/ring/xen_ring.hpp"
#include "common/xen/evtchn.hpp"
#include "common/xen/grant.hpp"
#include "common/xen/store.hpp"
#include "common/xenbus/driver.hpp"
#include "dom0/backends/media/protocol.hpp"
#include "dom0/backends/media/sched.hpp"
#include "dom0/backends/media/sink.hpp"
#include "dom0/gearsd/device.hpp"
#include "dom0/gearsd/hint_registry.hpp"
#include "dom0/gearsd/reactor.hpp"

namespace gears::media {

// The capture source: "sine:<hz>" (default sine:440) or "file:<path>" (any libsndfile format, looped, first
// channel, sample-and-hold rate mapping).
class CaptureSource {
 public:
  explicit CaptureSource(const std::string& spec);  // throws std::invalid_argument / std::runtime_error
  // Sample `n` (mono, float) at `rate`.
  [[nodiscard]] float sample(std::uint64_t n, std::uint32_t rate) const;
  [[nodiscard]] const std::string& spec() const { return spec_; }

 private:
  std::string spec_;
  double hz_ = 440.0;
  std::vector<float> file_;
  std::uint32_t file_rate_ = 0;
};

// Shared by every vsnd device of one gearsd.
struct MediaContext {
  Mixer* mixer = nullptr;
  daemon::HintRegistry* hints = nullptr;
  Role default_role = Role::media;
  std::shared_ptr<const CaptureSource> capture;
};

class VsndDevice final : public daemon::Device, private xenbus::BackendHooks {
 public:
  VsndDevice(daemon::DeviceSpec spec, MediaContext ctx);
  ~VsndDevice() override;

  [[nodiscard]] Status start(daemon::Reactor& loop) override;
  void stop() override;
  [[nodiscard]] nlohmann::json stats() const override;
  void metrics(daemon::MetricSet& out) const override;
  [[nodiscard]] nlohmann::json hints() const override;

  using SRing = ring::BackRing<xen_sndif_sring>;

 private:
  struct Stream;

  Status advertise(xen::StoreOps& t, const std::string& be_path) override;
  Status connect(xen::Store& s, const std::string& fe_path, domid_t fe_dom) override;
  void disconnect() override;

  void on_store();
  void on_request(Stream& st);
  [[nodiscard]] Status serve(Stream& st);  // error = ring violation
  xensnd_resp handle(Stream& st, const xensnd_req& req);
  int do_open(Stream& st, const OpenParams& p);
  void do_close(Stream& st);
  void on_tick();
  void update_timer();
  void refresh_roles();
  void close(const Error& e, const std::string& detail);

  MediaContext ctx_;
  daemon::Reactor* loop_ = nullptr;
  std::optional<xen::Store> store_;
  std::optional<xenbus::BackendDriver> driver_;
  std::optional<xen::GrantTable> gnt_;  // declared before streams_: mappings die first
  std::vector<std::unique_ptr<Stream>> streams_;
  daemon::WatchId store_watch_ = 0, timer_ = 0;
  std::uint64_t hint_sub_ = 0;
  std::shared_ptr<const char> alive_ = std::make_shared<const char>('\0');

  // Counters that survive reconnects.
  std::uint64_t requests_ = 0, bad_requests_ = 0, bytes_ = 0, events_sent_ = 0, violations_ = 0, connects_ = 0;
  std::string last_error_, last_bad_;
};

[[nodiscard]] std::unique_ptr<daemon::Device> make_vsnd_device(const daemon::DeviceSpec& spec, MediaContext ctx);
// Discovery of vsnd devices: backend/vsnd directories written by libxl from `vsnd=`.
[[nodiscard]] std::unique_ptr<daemon::DiscoverySource> make_vsnd_discovery();

}  // namespace gears::media
