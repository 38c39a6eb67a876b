// QosFeed: the newest QoS hints of each domain, handed from gearsd's main thread to the vifs' workers.
//
// Sources (main thread, QosFeedPump below): static hints recorded by `attach --hints` (xl `gears_hints`,
// `gearsctl attach <dom> --hints class=gold,...`) and hint sets a domU publishes live on the semantic channel
// (gears-front hint ...). Whichever changed last wins. Each vif polls the feed from a 200 ms timer on its
// worker (control path: the mutex is never taken per packet) and applies a newer version with set_policy(),
// without touching its rings. This stands in for gearsd's shared hint registry until that lands.
#pragma once

#include <chrono>
#include <cstdint>
#include <map>
#include <mutex>
#include <optional>
#include <string>
#include <utility>

#include <nlohmann/json.hpp>

namespace gears::daemon {
class Daemon;
}

namespace gears::net {

class QosFeed {
 public:
  static QosFeed& instance();
  // Any thread. `parsed` is check_hint_text()'s JSON form (or an equivalent decoded hint set).
  void publish(std::uint32_t dom, nlohmann::json parsed);
  void forget(std::uint32_t dom);
  // Any thread: the domain's hints if their version is newer than `seen` (then updated).
  [[nodiscard]] std::optional<nlohmann::json> lookup(std::uint32_t dom, std::uint64_t& seen) const;

 private:
  mutable std::mutex mu_;
  std::map<std::uint32_t, std::pair<std::uint64_t, nlohmann::json>> doms_;
  std::uint64_t next_ = 1;
};

// Feeds QosFeed from a Daemon every `period` (main thread): static domain hints and channel hint sets.
void install_qos_feed_pump(daemon::Daemon& d, std::chrono::milliseconds period = std::chrono::milliseconds(200));

}  // namespace gears::net
