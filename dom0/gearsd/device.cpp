#include "dom0/gearsd/device.hpp"

#include <chrono>

#include "dom0/gearsd/reactor.hpp"

namespace gears::daemon {

bool valid_device_kind(std::string_view kind) {
  if (kind.empty() || kind.size() > 32) return false;
  for (char c : kind)
    if (!((c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '-')) return false;
  return true;
}

void Device::control(const nlohmann::json& /*request*/, ControlDone done) {
  done({{"ok", false}, {"error", "devices of kind '" + spec_.key.kind + "' have no control operations"}});
}

Status NullDevice::start(Reactor& loop) {
  using namespace std::chrono_literals;
  auto t = loop.add_timer(1s, 1s, [this] { ++ticks_; });
  if (!t) return t.error();
  loop_ = &loop;
  timer_ = t.value();
  return {};
}

void NullDevice::stop() {
  if (loop_) loop_->remove(timer_);
  loop_ = nullptr;
}

nlohmann::json NullDevice::stats() const {
  return {{"ops", ticks_}, {"bytes", 0}, {"errors", 0}, {"ticks", ticks_}};
}

void NullDevice::metrics(MetricSet& out) const {
  out.add("gears_null_ticks_total", MetricType::counter, "Timer ticks seen by a null device.",
          static_cast<double>(ticks_));
}

nlohmann::json NullDevice::hints() const { return nlohmann::json::object(); }

}  // namespace gears::daemon
