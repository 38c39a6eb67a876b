#include "dom0/gearsd/registry.hpp"

#include <spdlog/spdlog.h>

#include <cstring>

#include "dom0/gearsd/log.hpp"

namespace gears::daemon {

std::string_view to_string(DeviceState s) {
  switch (s) {
    case DeviceState::starting: return "starting";
    case DeviceState::running: return "running";
    case DeviceState::failed: return "failed";
    case DeviceState::stopping: return "stopping";
  }
  return "?";
}

DeviceRegistry::~DeviceRegistry() {
  for (auto& [key, e] : entries_)
    if (e.hosted && e.hosted->started) e.hosted->dev->stop();
}

void DeviceRegistry::register_factory(std::string kind, DeviceFactory factory) {
  factories_[std::move(kind)] = std::move(factory);
}

std::vector<std::string> DeviceRegistry::kinds() const {
  std::vector<std::string> out;
  for (const auto& [k, f] : factories_) out.push_back(k);
  return out;
}

DeviceRegistry::Entry* DeviceRegistry::find(const DeviceKey& key, std::uint64_t serial) {
  auto it = entries_.find(key);
  return it != entries_.end() && it->second.serial == serial ? &it->second : nullptr;
}

void DeviceRegistry::attach(DeviceSpec spec, Done done) {
  const DeviceKey key = spec.key;
  auto fail = [&](const std::string& why) {
    ++counters_.attach_failed;
    log_device(spdlog::level::warn, key, "attach refused: {}", why);
    done(why);
  };
  if (!valid_device_kind(key.kind)) return fail("invalid device kind '" + key.kind + "'");
  if (entries_.count(key)) return fail("already attached");
  auto f = factories_.find(key.kind);
  if (f == factories_.end()) return fail("no factory for kind '" + key.kind + "' in this gearsd");

  auto hosted = std::make_unique<Hosted>();
  try {
    hosted->dev = f->second(spec);
  } catch (const std::exception& ex) {
    return fail(std::string("create failed: ") + ex.what());
  }
  if (!hosted->dev) return fail("create failed: factory returned no device");

  const std::size_t w = workers_.least_loaded();
  workers_.add_load(w, +1);
  const std::uint64_t serial = next_serial_++;
  Hosted* h = hosted.get();
  Entry& e = entries_[key];
  e.info = DeviceInfo{std::move(spec), w, DeviceState::starting, {}};
  e.serial = serial;
  e.hosted = std::move(hosted);
  log_device(spdlog::level::info, key, "attaching on worker {}", w);

  Reactor& loop = workers_.reactor(w);
  loop.post([this, h, &loop, key, serial, done = std::move(done)]() mutable {
    const Status s = h->dev->start(loop);
    h->started = s.ok();
    std::string err;
    if (!s.ok()) err = fmt::format("start failed: {}: {}", s.error().what, std::strerror(s.error().code));
    main_.post([this, key, serial, err = std::move(err), done = std::move(done)] {
      if (Entry* ent = find(key, serial); ent && ent->info.state == DeviceState::starting) {
        ent->info.state = err.empty() ? DeviceState::running : DeviceState::failed;
        ent->info.error = err;
      }
      if (err.empty()) {
        ++counters_.attached;
        log_device(spdlog::level::info, key, "running");
      } else {
        ++counters_.attach_failed;
        log_device(spdlog::level::err, key, "{}", err);
      }
      done(err);
    });
  });
}

void DeviceRegistry::detach(const DeviceKey& key, Done done, bool force) {
  auto it = entries_.find(key);
  if (it == entries_.end()) return done("not attached");
  Entry& e = it->second;
  if (!e.hosted || e.info.state == DeviceState::stopping) return done("already detaching");
  const DeviceState before = e.info.state;
  e.info.state = DeviceState::stopping;
  const std::size_t w = e.info.worker;
  const std::uint64_t serial = e.serial;
  log_device(spdlog::level::info, key, "detaching{}", force ? " (forced)" : "");
  Hosted* h = e.hosted.get();  // alive when the task runs: only this detach can hand it over for destruction
  auto shared_done = std::make_shared<Done>(std::move(done));
  workers_.reactor(w).post([this, h, key, serial, w, force, before, shared_done] {
    std::string refused = h->started ? h->dev->prepare_detach(force) : std::string{};
    main_.post([this, key, serial, w, before, shared_done, refused = std::move(refused)] {
      Entry* cur = find(key, serial);
      if (!cur) return (*shared_done)("not attached");
      if (!refused.empty()) {
        cur->info.state = before;
        log_device(spdlog::level::warn, key, "detach refused: {}", refused);
        return (*shared_done)(refused);
      }
      workers_.reactor(w).post([this, hosted = std::move(cur->hosted), key, serial, w, shared_done]() mutable {
        if (hosted->started) hosted->dev->stop();
        hosted.reset();  // destroyed on the owning thread
        main_.post([this, key, serial, w, shared_done] {
          if (find(key, serial)) entries_.erase(key);
          workers_.add_load(w, -1);
          ++counters_.detached;
          log_device(spdlog::level::info, key, "detached");
          (*shared_done)("");
        });
      });
    });
  });
}

void DeviceRegistry::control(const DeviceKey& key, nlohmann::json request, std::function<void(nlohmann::json)> done) {
  auto it = entries_.find(key);
  if (it == entries_.end() || !it->second.hosted)
    return done({{"ok", false}, {"error", "dom " + std::to_string(key.domid) + " has no device " + key.name()}});
  if (it->second.info.state != DeviceState::running)
    return done({{"ok", false}, {"error", "device " + key.name() + " is " + std::string(to_string(it->second.info.state))}});
  Hosted* h = it->second.hosted.get();  // alive when the task runs: a destroy task can only be queued after it
  auto shared_done = std::make_shared<std::function<void(nlohmann::json)>>(std::move(done));
  workers_.reactor(it->second.info.worker).post([this, h, request = std::move(request), shared_done] {
    h->dev->control(request, [this, shared_done](nlohmann::json reply) {
      main_.post([shared_done, reply = std::move(reply)]() mutable { (*shared_done)(std::move(reply)); });
    });
  });
}

void DeviceRegistry::detach_domain(std::uint32_t domid, Done done) {
  domain_hints_.erase(domid);
  hints_.forget_domain(domid);
  std::vector<DeviceKey> keys;
  for (const auto& [key, e] : entries_)
    if (key.domid == domid && e.hosted) keys.push_back(key);
  if (keys.empty()) return done("");
  auto pending = std::make_shared<std::size_t>(keys.size());
  auto first_error = std::make_shared<std::string>();
  auto shared_done = std::make_shared<Done>(std::move(done));
  for (const auto& k : keys) {
    detach(k, [pending, first_error, shared_done, k](const std::string& err) {
      if (!err.empty() && first_error->empty()) *first_error = k.name() + ": " + err;
      if (--*pending == 0) (*shared_done)(*first_error);
    });
  }
}

void DeviceRegistry::on_event(DeviceEvent event) {
  const DeviceKey key = event.spec.key;
  if (event.type == DeviceEvent::Type::appeared) {
    // A device attached by request also shows up in discovery (its own xenstore nodes): nothing to do.
    if (entries_.count(key)) return;
    attach(std::move(event.spec), [](const std::string&) {});  // outcome already logged by attach()
  } else {
    detach(key, [key](const std::string& err) {
      if (!err.empty()) log_device(spdlog::level::debug, key, "disappeared: {}", err);
    });
  }
}

void DeviceRegistry::shutdown(std::function<void()> done) {
  std::vector<DeviceKey> keys;
  for (const auto& [key, e] : entries_)
    if (e.hosted) keys.push_back(key);
  auto pending = std::make_shared<std::size_t>(keys.size() + 1);  // +1: released below, after posting all
  auto shared_done = std::make_shared<std::function<void()>>(std::move(done));
  auto one_done = [pending, shared_done](const std::string&) {
    if (--*pending == 0) (*shared_done)();
  };
  for (const auto& k : keys) detach(k, one_done);
  one_done("");
}

void DeviceRegistry::set_domain_hints(std::uint32_t domid, std::string text, nlohmann::json parsed,
                                      const hints::HintSet& set) {
  (void)hints_.publish(domid, HintSource::config, "config", set);
  domain_hints_[domid] = {std::move(text), std::move(parsed)};
}

nlohmann::json DeviceRegistry::domain_hints(std::uint32_t domid) const {
  auto it = domain_hints_.find(domid);
  if (it == domain_hints_.end()) return nullptr;
  return {{"text", it->second.first}, {"parsed", it->second.second}};
}

std::vector<DeviceInfo> DeviceRegistry::list() const {
  std::vector<DeviceInfo> out;
  out.reserve(entries_.size());
  for (const auto& [key, e] : entries_) out.push_back(e.info);
  return out;
}

}  // namespace gears::daemon
