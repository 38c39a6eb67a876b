#include "dom0/backends/net/qos_feed.hpp"

#include <memory>
#include <set>

#include "dom0/gearsd/daemon.hpp"

namespace gears::net {

QosFeed& QosFeed::instance() {
  static QosFeed f;
  return f;
}

void QosFeed::publish(std::uint32_t dom, nlohmann::json parsed) {
  std::lock_guard lk(mu_);
  doms_[dom] = {next_++, std::move(parsed)};
}

void QosFeed::forget(std::uint32_t dom) {
  std::lock_guard lk(mu_);
  doms_.erase(dom);
}

std::optional<nlohmann::json> QosFeed::lookup(std::uint32_t dom, std::uint64_t& seen) const {
  std::lock_guard lk(mu_);
  auto it = doms_.find(dom);
  if (it == doms_.end() || it->second.first <= seen) return std::nullopt;
  seen = it->second.first;
  return it->second.second;
}

namespace {

struct PumpState {
  std::map<std::uint32_t, std::string> static_text;        // last static hint text seen per domain
  std::map<std::uint32_t, std::uint64_t> channel_stamp;    // received_ns of the last channel hint set seen
  bool gathering = false;
};

}  // namespace

void install_qos_feed_pump(daemon::Daemon& d, std::chrono::milliseconds period) {
  auto st = std::make_shared<PumpState>();
  auto* dp = &d;
  (void)d.loop().add_timer(period, period, [dp, st] {
    auto& reg = dp->registry();
    std::set<std::uint32_t> doms;
    for (const auto& info : reg.list()) doms.insert(info.spec.key.domid);
    for (auto dom : doms) {
      const auto h = reg.domain_hints(dom);
      if (!h.is_object()) continue;
      const std::string text = h.value("text", std::string());
      auto& seen = st->static_text[dom];
      if (text != seen) {
        seen = text;
        QosFeed::instance().publish(dom, h.value("parsed", nlohmann::json()));
      }
    }
    if (st->gathering) return;
    st->gathering = true;
    reg.gather<nlohmann::json>(
        [](const daemon::Device& dev) -> nlohmann::json {
          if (dev.kind() != "channel") return nullptr;
          const auto h = dev.hints();
          return h.is_array() && !h.empty() ? h.back() : nlohmann::json();
        },
        [st](std::vector<daemon::Sampled<nlohmann::json>> all) {
          st->gathering = false;
          for (const auto& s : all) {
            if (!s.value.is_object()) continue;
            const auto stamp = s.value.value("received_ns", std::uint64_t{0});
            auto& seen = st->channel_stamp[s.info.spec.key.domid];
            if (stamp == seen) continue;
            seen = stamp;
            auto hints = s.value.value("hints", nlohmann::json());
            // A set may hold several records; the domain-scoped one carries the QoS.
            if (hints.is_array() && !hints.empty()) hints = hints.front();
            QosFeed::instance().publish(s.info.spec.key.domid, std::move(hints));
          }
        });
  });
}

}  // namespace gears::net
