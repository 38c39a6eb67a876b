// Device: what gearsd hosts (a split-driver backend or the semantic channel), and the seams that create them.
#pragma once

#include <compare>
#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <string_view>

#include <nlohmann/json.hpp>

#include "common/util/result.hpp"
#include "dom0/gearsd/metrics.hpp"

namespace gears::daemon {

class Reactor;

// Identity of a hosted device: (kind, frontend domid, devid). `kind` is a registry key such as
// "channel", "vbd", "vif", "vsnd": lower-case letters, digits and '-'.
struct DeviceKey {
  std::string kind;
  std::uint32_t domid = 0;
  std::uint32_t devid = 0;

  [[nodiscard]] std::string name() const { return kind + "/" + std::to_string(devid); }  // "channel/0"
  auto operator<=>(const DeviceKey&) const = default;
  bool operator==(const DeviceKey&) const = default;
};

struct DeviceSpec {
  DeviceKey key;
  std::string backend_path;  // xenstore backend directory; empty for devices attached by hand
  nlohmann::json params = nlohmann::json::object();  // kind-specific, from `attach` or discovery
};

// Contract: gearsd calls every virtual below on the device's owning worker thread only, and never concurrently.
// start() is called once; stop() is called once, and only if start() succeeded, before destruction (which also
// happens on the owning thread). A device must remove all its Reactor registrations in stop().
//
// stats() convention, read by `gearsctl top`: monotonic counters `ops`, `bytes`, `errors` (absent = 0);
// any other fields are shown by `gearsctl list --json` / the `stats` verb as they are.
class Device {
 public:
  explicit Device(DeviceSpec spec) : spec_(std::move(spec)) {}
  virtual ~Device() = default;
  Device(const Device&) = delete;
  Device& operator=(const Device&) = delete;

  [[nodiscard]] const DeviceSpec& spec() const { return spec_; }
  [[nodiscard]] const DeviceKey& key() const { return spec_.key; }
  [[nodiscard]] std::string name() const { return spec_.key.name(); }
  [[nodiscard]] std::uint32_t domid() const { return spec_.key.domid; }
  [[nodiscard]] std::string_view kind() const { return spec_.key.kind; }

  [[nodiscard]] virtual Status start(Reactor& loop) = 0;
  // Called before stop() on a user's detach: "" = go ahead; else a one-line reason to refuse it, and the device
  // must then be left working (e.g. a guest that keeps its disk open). `force` = the user insists: never refuse.
  [[nodiscard]] virtual std::string prepare_detach(bool /*force*/) { return {}; }
  virtual void stop() = 0;
  [[nodiscard]] virtual nlohmann::json stats() const = 0;
  // Prometheus samples; gearsd prepends the labels dom, dev and kind to each.
  virtual void metrics(MetricSet& out) const = 0;
  // Hints this device currently knows for its domain (e.g. received on the semantic channel).
  [[nodiscard]] virtual nlohmann::json hints() const = 0;

  // A device-specific operation from the control socket (`control` verb: {"op": ..., ...}). `done` must be
  // called exactly once, on the owning thread, possibly later (e.g. when the guest answered); a device that
  // stops with an operation pending calls it with an error from stop(). Replies are {"ok":true,...} or
  // {"ok":false,"error":"..."}. Default: no operations.
  using ControlDone = std::function<void(nlohmann::json)>;
  virtual void control(const nlohmann::json& request, ControlDone done);

 private:
  DeviceSpec spec_;
};

// Creates the Device for one spec; runs on the main thread. Throws on setup failure (the message is reported
// to whoever asked for the device).
using DeviceFactory = std::function<std::unique_ptr<Device>(const DeviceSpec&)>;

// What a discovery source reports to the main loop.
struct DeviceEvent {
  enum class Type { appeared, disappeared };
  Type type = Type::appeared;
  DeviceSpec spec;
};

// A source of DeviceEvents (e.g. a xenstore watch on backend/<kind>/). start() runs on the main thread; the
// source may run its own thread or register fds on `main`, and must deliver every event by
// `main.post([...]{ sink(event); })` so that the sink always runs on the main thread.
class DiscoverySource {
 public:
  using Sink = std::function<void(DeviceEvent)>;
  virtual ~DiscoverySource() = default;
  [[nodiscard]] virtual std::string_view name() const = 0;
  virtual void start(Reactor& main, Sink sink) = 0;  // throws on setup failure
  virtual void stop() = 0;                            // main thread; no sink calls after it returns
};

// A device that does nothing but count timer ticks on its worker: for tests and smoke checks (`kind` "null").
class NullDevice final : public Device {
 public:
  explicit NullDevice(DeviceSpec spec) : Device(std::move(spec)) {}
  [[nodiscard]] Status start(Reactor& loop) override;
  void stop() override;
  [[nodiscard]] nlohmann::json stats() const override;
  void metrics(MetricSet& out) const override;
  [[nodiscard]] nlohmann::json hints() const override;

 private:
  Reactor* loop_ = nullptr;
  std::uint64_t timer_ = 0;
  std::uint64_t ticks_ = 0;
};

[[nodiscard]] bool valid_device_kind(std::string_view kind);

}  // namespace gears::daemon
