// DeviceRegistry: the main thread's table of hosted devices. Creates them through per-kind factories, places
// each on the least-loaded worker, and talks to a device only by posting tasks to that worker.
//
// Threading invariant: every method runs on the main thread, and every task that touches a Device is posted to
// its worker from the main thread. Tasks on one Reactor run FIFO, so a task posted before a device's destroy
// task always sees the device alive.
#pragma once

#include <cstddef>
#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include <nlohmann/json.hpp>

#include "dom0/gearsd/device.hpp"
#include "dom0/gearsd/hint_registry.hpp"
#include "dom0/gearsd/reactor.hpp"
#include "dom0/gearsd/workers.hpp"

namespace gears::daemon {

enum class DeviceState { starting, running, failed, stopping };
std::string_view to_string(DeviceState s);

struct DeviceInfo {
  DeviceSpec spec;
  std::size_t worker = 0;
  DeviceState state = DeviceState::starting;
  std::string error;  // why start() failed
};

template <class T>
struct Sampled {
  DeviceInfo info;
  T value{};
};

class DeviceRegistry {
 public:
  // Completion of an attach/detach, on the main thread. Empty string = success, else a one-line reason.
  using Done = std::function<void(const std::string& error)>;

  DeviceRegistry(Reactor& main, WorkerPool& workers) : main_(main), workers_(workers) {}
  // Destroys devices still hosted on the calling thread: only after shutdown() completed or workers stopped.
  ~DeviceRegistry();
  DeviceRegistry(const DeviceRegistry&) = delete;
  DeviceRegistry& operator=(const DeviceRegistry&) = delete;

  void register_factory(std::string kind, DeviceFactory factory);
  [[nodiscard]] bool has_factory(const std::string& kind) const { return factories_.count(kind) != 0; }
  [[nodiscard]] std::vector<std::string> kinds() const;

  // Creates the device and starts it on its worker; `done` runs once start() returned.
  void attach(DeviceSpec spec, Done done);
  // Stops and destroys the device on its worker; `done` runs after that. Unless `force`, the device may refuse
  // (Device::prepare_detach): `done` gets its reason and the device keeps running.
  void detach(const DeviceKey& key, Done done, bool force = true);
  // Runs Device::control(request) on the device's worker; `done` gets the reply on the main thread.
  void control(const DeviceKey& key, nlohmann::json request, std::function<void(nlohmann::json)> done);
  // Detaches every device of `domid` and forgets its static hints.
  void detach_domain(std::uint32_t domid, Done done);
  // Entry point for DiscoverySources (via the main Reactor).
  void on_event(DeviceEvent event);
  // Detaches everything; `done` runs when no device is left.
  void shutdown(std::function<void()> done);

  // Static hints declared for a domain (e.g. `gears_hints` from its xl config); `parsed` is the checked form.
  // Also publishes `set` into hints() (source config, origin "config"; upsert by subject). domain_hints() reports
  // the latest set given; hints() holds every subject's.
  void set_domain_hints(std::uint32_t domid, std::string text, nlohmann::json parsed, const hints::HintSet& set);
  [[nodiscard]] nlohmann::json domain_hints(std::uint32_t domid) const;

  // Every source's hints per domain (thread-safe; devices may keep a reference: it outlives them).
  [[nodiscard]] HintRegistry& hints() { return hints_; }
  [[nodiscard]] const HintRegistry& hints() const { return hints_; }

  [[nodiscard]] std::vector<DeviceInfo> list() const;
  [[nodiscard]] std::size_t size() const { return entries_.size(); }

  // Runs `fn` on each live device's worker and hands all results to `done` on the main thread, in key order.
  template <class T>
  void gather(std::function<T(const Device&)> fn, std::function<void(std::vector<Sampled<T>>)> done);

  struct Counters {
    std::uint64_t attached = 0, attach_failed = 0, detached = 0;
  };
  [[nodiscard]] const Counters& counters() const { return counters_; }

 private:
  // Lives on the worker side: only the owning worker reads or writes it once posted.
  struct Hosted {
    std::unique_ptr<Device> dev;
    bool started = false;
  };
  struct Entry {
    DeviceInfo info;
    std::uint64_t serial = 0;  // tells a re-attached device apart from a stale completion
    std::unique_ptr<Hosted> hosted;  // null once handed to the worker for destruction
  };
  Entry* find(const DeviceKey& key, std::uint64_t serial);

  HintRegistry hints_;  // first: devices destroyed in ~DeviceRegistry may still unsubscribe
  Reactor& main_;
  WorkerPool& workers_;
  std::map<std::string, DeviceFactory> factories_;
  std::map<DeviceKey, Entry> entries_;
  std::map<std::uint32_t, std::pair<std::string, nlohmann::json>> domain_hints_;
  std::uint64_t next_serial_ = 1;
  Counters counters_;
};

template <class T>
void DeviceRegistry::gather(std::function<T(const Device&)> fn, std::function<void(std::vector<Sampled<T>>)> done) {
  struct State {
    std::function<T(const Device&)> fn;  // called concurrently by workers: must be thread-safe
    std::function<void(std::vector<Sampled<T>>)> done;
    std::vector<Sampled<T>> out;
    std::size_t pending = 0;  // main thread only
  };
  auto st = std::make_shared<State>();
  st->fn = std::move(fn);
  st->done = std::move(done);
  std::vector<std::pair<std::size_t, Hosted*>> targets;
  for (auto& [key, e] : entries_) {
    if (!e.hosted) continue;
    targets.emplace_back(e.info.worker, e.hosted.get());
    st->out.push_back(Sampled<T>{e.info, T{}});
  }
  st->pending = targets.size();
  if (targets.empty()) {
    st->done(std::move(st->out));
    return;
  }
  for (std::size_t i = 0; i < targets.size(); ++i) {
    Hosted* h = targets[i].second;
    workers_.reactor(targets[i].first).post([this, st, i, h] {
      T v = st->fn(*h->dev);
      main_.post([st, i, v = std::move(v)]() mutable {
        st->out[i].value = std::move(v);
        if (--st->pending == 0) st->done(std::move(st->out));
      });
    });
  }
}

}  // namespace gears::daemon
