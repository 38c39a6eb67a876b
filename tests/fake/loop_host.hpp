// dom0's side of a device end-to-end test over the fake hypervisor: one gearsd Reactor on its own thread (as a
// gearsd worker) owning devices keyed by frontend domain. Every device call runs on that thread (the Device
// contract); the test thread waits for each result.
#pragma once

#include <chrono>
#include <functional>
#include <future>
#include <map>
#include <memory>
#include <thread>
#include <utility>

#include <nlohmann/json.hpp>

#include "common/util/result.hpp"
#include "dom0/gearsd/device.hpp"
#include "dom0/gearsd/reactor.hpp"

namespace gears::fake {

// Polls `pred` every 2 ms until it holds (true) or `ms` milliseconds pass (false).
inline bool eventually(const std::function<bool()>& pred, int ms = 10000) {
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::milliseconds(ms);
  while (!pred()) {
    if (std::chrono::steady_clock::now() > deadline) return false;
    std::this_thread::sleep_for(std::chrono::milliseconds(2));
  }
  return true;
}

template <class D = daemon::Device>
class LoopHost {
 public:
  LoopHost() : thread_([this] { loop_.run(); }) {}
  ~LoopHost() { shutdown(); }
  LoopHost(const LoopHost&) = delete;
  LoopHost& operator=(const LoopHost&) = delete;

  // Runs `f` on the loop thread and returns its result.
  template <class F>
  auto on_loop(F f) -> decltype(f()) {
    std::packaged_task<decltype(f())()> task(std::move(f));
    auto fut = task.get_future();
    loop_.post([&task] { task(); });
    return fut.get();
  }

  // start() on the loop thread; on success the device is kept as `dom`'s.
  [[nodiscard]] Status start(unsigned dom, std::unique_ptr<D> d) {
    return on_loop([&] {
      Status s = d->start(loop_);
      if (s) devices_[dom] = std::move(d);
      return s;
    });
  }
  nlohmann::json stats(unsigned dom) {
    return on_loop([this, dom] { return devices_.at(dom)->stats(); });
  }
  // Device::control on the loop; waits for the (possibly later) reply.
  nlohmann::json control(unsigned dom, nlohmann::json req) {
    std::promise<nlohmann::json> p;
    auto fut = p.get_future();
    loop_.post([&] { devices_.at(dom)->control(req, [&p](nlohmann::json r) { p.set_value(std::move(r)); }); });
    return fut.get();
  }
  // stop() and destruction on the loop thread.
  void remove(unsigned dom) {
    on_loop([this, dom] {
      devices_.at(dom)->stop();
      devices_.erase(dom);
      return 0;
    });
  }
  // Only on the loop thread (inside on_loop).
  D& device(unsigned dom) { return *devices_.at(dom); }
  daemon::Reactor& loop() { return loop_; }

  // Every device stopped and destroyed on the loop thread, then the loop ends. Idempotent.
  void shutdown() {
    if (!thread_.joinable()) return;
    on_loop([this] {
      for (auto& [dom, d] : devices_) d->stop();
      devices_.clear();
      return 0;
    });
    loop_.stop();
    thread_.join();
  }

 private:
  daemon::Reactor loop_;
  std::map<unsigned, std::unique_ptr<D>> devices_;
  std::thread thread_;  // last: starts after the members it uses exist
};

}  // namespace gears::fake
