#include "dom0/gearsd/daemon.hpp"

#include <fcntl.h>
#include <signal.h>
#include <sys/file.h>
#include <sys/signalfd.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <optional>
#include <set>
#include <stdexcept>
#include <system_error>

#include <fmt/format.h>
#include <spdlog/spdlog.h>

#include "dom0/gearsd/hint_text.hpp"
#include "dom0/gearsd/log.hpp"
#include "dom0/gearsd/metrics.hpp"

namespace gears::daemon {

using nlohmann::json;
using Reply = ControlServer::Reply;

std::string_view gears_version() { return GEARS_VERSION; }

// ---------------------------------------------------------------------------------------------------------------

PidFile::PidFile(std::string path) : path_(std::move(path)), fd_(::open(path_.c_str(), O_RDWR | O_CREAT | O_CLOEXEC, 0644)) {
  if (!fd_) throw std::system_error(errno, std::generic_category(), "open pidfile " + path_);
  if (::flock(fd_.get(), LOCK_EX | LOCK_NB) != 0)
    throw std::runtime_error("pidfile " + path_ + " is held by another running gearsd");
  const std::string pid = std::to_string(::getpid()) + "\n";
  if (::ftruncate(fd_.get(), 0) != 0 || ::write(fd_.get(), pid.data(), pid.size()) != static_cast<ssize_t>(pid.size()))
    throw std::system_error(errno, std::generic_category(), "write pidfile " + path_);
}

PidFile::~PidFile() {
  if (fd_) ::unlink(path_.c_str());
}

SignalFd::SignalFd() {
  sigset_t set;
  sigemptyset(&set);
  sigaddset(&set, SIGTERM);
  sigaddset(&set, SIGINT);
  if (pthread_sigmask(SIG_BLOCK, &set, nullptr) != 0) throw std::runtime_error("pthread_sigmask failed");
  fd_.reset(::signalfd(-1, &set, SFD_NONBLOCK | SFD_CLOEXEC));
  if (!fd_) throw std::system_error(errno, std::generic_category(), "signalfd");
}

int SignalFd::read_signal() const {
  signalfd_siginfo si{};
  if (::read(fd_.get(), &si, sizeof si) != static_cast<ssize_t>(sizeof si)) return 0;
  return static_cast<int>(si.ssi_signo);
}

// ---------------------------------------------------------------------------------------------------------------

namespace {

constexpr std::uint32_t kMaxDomid = 0x7FEF;  // DOMID_FIRST_RESERVED - 1
constexpr std::uint32_t kMaxDevid = 0x7FFFFFFF;

// Reads an unsigned integer field. Returns nullopt and sets `err` if it is missing (when required) or invalid.
std::optional<std::uint32_t> get_uint(const json& j, const char* key, std::uint32_t max, bool required,
                                      std::string& err, std::uint32_t fallback = 0) {
  auto it = j.find(key);
  if (it == j.end()) {
    if (required) err = fmt::format("missing \"{}\"", key);
    return required ? std::nullopt : std::optional<std::uint32_t>(fallback);
  }
  if (!it->is_number_integer() || it->get<long long>() < 0 || it->get<long long>() > max) {
    err = fmt::format("\"{}\" must be an integer in 0..{}", key, max);
    return std::nullopt;
  }
  return static_cast<std::uint32_t>(it->get<long long>());
}

std::optional<std::string> get_string(const json& j, const char* key, bool required, std::string& err) {
  auto it = j.find(key);
  if (it == j.end()) {
    if (required) err = fmt::format("missing \"{}\"", key);
    return required ? std::nullopt : std::optional<std::string>(std::string());
  }
  if (!it->is_string()) {
    err = fmt::format("\"{}\" must be a string", key);
    return std::nullopt;
  }
  return it->get<std::string>();
}

json device_row(const DeviceInfo& d) {
  json row = {{"dom", d.spec.key.domid}, {"dev", d.spec.key.name()},     {"kind", d.spec.key.kind},
              {"devid", d.spec.key.devid}, {"worker", d.worker},         {"state", to_string(d.state)},
              {"backend", d.spec.backend_path}};
  if (!d.error.empty()) row["error"] = d.error;
  return row;
}

}  // namespace

Daemon::Daemon(DaemonOptions opts)
    : opts_(std::move(opts)),
      signals_(opts_.handle_signals ? std::make_unique<SignalFd>() : nullptr),
      workers_(opts_.workers, opts_.worker_nice, opts_.worker_batch),
      registry_(main_, workers_) {
  registry_.register_factory("null", [](const DeviceSpec& s) { return std::make_unique<NullDevice>(s); });
  if (!opts_.pidfile.empty()) pidfile_ = std::make_unique<PidFile>(opts_.pidfile);
  control_ = std::make_unique<ControlServer>(main_, opts_.socket_path,
                                             [this](const json& req, Reply reply) { handle(req, std::move(reply)); });
  if (opts_.metrics_port >= 0) {
    if (opts_.metrics_port > 65535) throw std::invalid_argument("metrics port must be 0..65535");
    http_ = std::make_unique<MetricsHttpServer>(main_, opts_.metrics_address,
                                                static_cast<std::uint16_t>(opts_.metrics_port),
                                                [this](MetricsHttpServer::Body done) { render_metrics(std::move(done)); });
  }
  if (signals_) {
    auto w = main_.add_fd(signals_->fd(), EPOLLIN, [this](std::uint32_t) {
      if (const int sig = signals_->read_signal()) begin_shutdown(fmt::format("signal {}", strsignal(sig)));
    });
    if (!w) throw std::system_error(w.error().code, std::generic_category(), "watch signalfd");
  }
}

Daemon::~Daemon() {
  for (auto& d : discovery_) d->stop();
  discovery_.clear();
  http_.reset();
  control_.reset();
  workers_.stop();  // from here no device code runs concurrently: the registry may destroy leftovers
}

void Daemon::add_discovery(std::unique_ptr<DiscoverySource> source) {
  if (running_) source->start(main_, [this](DeviceEvent e) { registry_.on_event(std::move(e)); });
  discovery_.push_back(std::move(source));
}

void Daemon::run() {
  running_ = true;
  for (auto& d : discovery_) {
    spdlog::info("discovery: starting {}", d->name());
    d->start(main_, [this](DeviceEvent e) { registry_.on_event(std::move(e)); });
  }
  if (workers_.batch_error() != 0)
    spdlog::warn("workers: cannot take SCHED_BATCH: {} (they keep the normal policy)", std::strerror(workers_.batch_error()));
  if (workers_.nice_error() != 0)
    spdlog::warn("workers: cannot take nice {}: {} (they run at the inherited priority)", workers_.nice(),
                 std::strerror(workers_.nice_error()));
  spdlog::info("gearsd {} up: socket={} workers={} (nice {}, {}) metrics={}", gears_version(), opts_.socket_path,
               workers_.size(), workers_.effective_nice(),
               workers_.batch() && workers_.batch_error() == 0 ? "SCHED_BATCH" : "SCHED_OTHER",
               http_ ? fmt::format("{}:{}", opts_.metrics_address, http_->port()) : "off");
  main_.run();
  running_ = false;
  workers_.stop();
  spdlog::info("gearsd stopped");
}

void Daemon::begin_shutdown(const std::string& why) {
  if (shutting_down_) return;
  shutting_down_ = true;
  spdlog::info("shutting down ({}): detaching {} device(s)", why, registry_.size());
  for (auto& d : discovery_) d->stop();
  control_.reset();  // no new requests; pending replies are dropped
  // Devices get a bounded time to stop; a wedged worker must not keep the daemon alive.
  using namespace std::chrono_literals;
  auto deadline = main_.add_timer(5s, 0s, [this] {
    spdlog::warn("shutdown: devices did not stop within 5 s; exiting anyway");
    main_.stop();
  });
  (void)deadline;
  registry_.shutdown([this] { main_.stop(); });
}

// ---------------------------------------------------------------------------------------------------------------
// Verbs

void Daemon::handle(const json& req, Reply reply) {
  const std::string verb = req.value("verb", "");
  static const std::set<std::string> kVerbs = {"list", "hints", "stats", "attach", "detach", "version", "metrics", "control"};
  ++requests_[kVerbs.count(verb) || extra_verbs_.count(verb) ? verb : "unknown"];
  spdlog::debug("control: {}", req.dump(-1, ' ', false, json::error_handler_t::replace));
  Reply counted = [this, reply = std::move(reply)](json resp) {
    if (resp.is_object() && resp.value("ok", false) == false) ++request_errors_;
    reply(std::move(resp));
  };
  if (verb == "version") {
    return counted({{"ok", true}, {"version", gears_version()}, {"protocol", kProtocolVersion}});
  }
  if (verb == "list") return verb_list(req, std::move(counted));
  if (verb == "hints") return verb_hints(req, std::move(counted));
  if (verb == "stats") return verb_stats(req, std::move(counted));
  if (verb == "attach") return verb_attach(req, std::move(counted));
  if (verb == "detach") return verb_detach(req, std::move(counted));
  if (verb == "control") return verb_control(req, std::move(counted));
  if (verb == "metrics") {
    return render_metrics([counted = std::move(counted)](std::string text) {
      counted({{"ok", true}, {"text", std::move(text)}});
    });
  }
  if (auto it = extra_verbs_.find(verb); it != extra_verbs_.end()) return it->second(req, std::move(counted));
  counted(error_response(fmt::format("unknown verb '{}' (known: attach, control, detach, hints, list, metrics, stats, version)",
                                     verb.substr(0, 64))));
}

void Daemon::verb_list(const json&, Reply reply) {
  json devices = json::array();
  for (const auto& d : registry_.list()) devices.push_back(device_row(d));
  reply({{"ok", true}, {"devices", std::move(devices)}, {"kinds", registry_.kinds()}});
}

void Daemon::verb_hints(const json& req, Reply reply) {
  std::string err;
  const auto dom = get_uint(req, "dom", kMaxDomid, true, err);
  if (!dom) return reply(error_response(err));
  json statics = registry_.domain_hints(*dom);
  json merged = registry_.hints().to_json(*dom);
  bool known = !statics.is_null() || !merged["records"].empty();
  for (const auto& d : registry_.list()) known = known || d.spec.key.domid == *dom;
  if (!known) return reply(error_response(fmt::format("dom {} has no Gears devices or hints", *dom)));
  const std::uint32_t want = *dom;
  registry_.gather<json>(
      [want](const Device& d) { return d.domid() == want ? d.hints() : json(); },
      [reply = std::move(reply), want, statics = std::move(statics),
       merged = std::move(merged)](std::vector<Sampled<json>> got) {
        json devices = json::object();
        for (auto& s : got)
          if (s.info.spec.key.domid == want) devices[s.info.spec.key.name()] = std::move(s.value);
        reply({{"ok", true}, {"dom", want}, {"static", statics}, {"devices", std::move(devices)},
               {"registry", merged}});
      });
}

void Daemon::verb_stats(const json&, Reply reply) {
  const double uptime = std::chrono::duration<double>(std::chrono::steady_clock::now() - started_).count();
  json workers = json::array();
  for (std::size_t i = 0; i < workers_.size(); ++i)
    workers.push_back({{"id", i}, {"devices", workers_.load(i)}, {"nice", workers_.effective_nice()}});
  registry_.gather<json>([](const Device& d) { return d.stats(); },
                         [reply = std::move(reply), uptime, workers = std::move(workers)](std::vector<Sampled<json>> got) {
                           json devices = json::array();
                           for (auto& s : got) {
                             json row = device_row(s.info);
                             row["stats"] = std::move(s.value);
                             devices.push_back(std::move(row));
                           }
                           reply({{"ok", true},
                                  {"uptime_s", uptime},
                                  {"workers", workers},
                                  {"devices", std::move(devices)}});
                         });
}

void Daemon::verb_attach(const json& req, Reply reply) {
  std::string err;
  const auto dom = get_uint(req, "dom", kMaxDomid, true, err);
  if (!dom) return reply(error_response(err));
  // "hints": one hint set's text, or an array of them (e.g. a domain class plus flow classes), each recorded.
  std::vector<std::pair<std::string, HintCheck>> hint_sets;
  if (auto h = req.find("hints"); h != req.end() && !h->is_null()) {
    const bool many = h->is_array();
    if (!h->is_string() && !many) return reply(error_response("\"hints\" must be a string or an array of strings"));
    const json texts = many ? *h : json::array({*h});
    if (texts.size() > kMaxHintSets)
      return reply(error_response(fmt::format("at most {} hint sets per attach", kMaxHintSets)));
    for (std::size_t i = 0; i < texts.size(); ++i) {
      const std::string where = many ? fmt::format("hints[{}]", i) : "hints";
      if (!texts[i].is_string()) return reply(error_response(where + ": not a string"));
      const auto& text = texts[i].get_ref<const std::string&>();
      if (text.empty() && !many) continue;  // "hints": "" = none
      HintCheck hc = check_hint_text(text);
      if (!hc.ok) return reply(error_response(where + ": " + hc.error));
      hint_sets.emplace_back(text, std::move(hc));
    }
  }

  // Either {"devices":[{kind,devid,...},...]} or one device given inline as {kind, devid, ...}.
  json items = json::array();
  if (auto it = req.find("devices"); it != req.end()) {
    if (!it->is_array()) return reply(error_response("\"devices\" must be an array"));
    if (it->size() > 64) return reply(error_response("at most 64 devices per attach"));
    items = *it;
  } else if (req.contains("kind")) {
    items.push_back(req);
  }
  if (items.empty() && hint_sets.empty()) return reply(error_response("attach needs \"kind\", \"devices\" or \"hints\""));

  std::vector<DeviceSpec> specs;
  std::set<DeviceKey> seen;
  for (const auto& item : items) {
    if (!item.is_object()) return reply(error_response("each device must be an object"));
    DeviceSpec s;
    const auto kind = get_string(item, "kind", true, err);
    if (!kind) return reply(error_response(err));
    if (!valid_device_kind(*kind)) return reply(error_response(fmt::format("invalid device kind '{}'", kind->substr(0, 64))));
    const auto devid = get_uint(item, "devid", kMaxDevid, false, err, 0);
    if (!devid) return reply(error_response(err));
    const auto backend = get_string(item, "backend", false, err);
    if (!backend) return reply(error_response(err));
    if (auto p = item.find("params"); p != item.end()) {
      if (!p->is_object()) return reply(error_response("\"params\" must be an object"));
      s.params = *p;
    }
    s.key = DeviceKey{*kind, *dom, *devid};
    s.backend_path = *backend;
    if (!seen.insert(s.key).second) return reply(error_response("device " + s.key.name() + " listed twice"));
    specs.push_back(std::move(s));
  }

  struct Pending {
    std::size_t left = 0;
    std::vector<DeviceKey> ok;
    std::string first_error;
  };
  auto st = std::make_shared<Pending>();
  st->left = specs.size();
  auto finish = [this, st, dom = *dom, hint_sets, reply]() {
    if (st->first_error.empty()) {
      for (const auto& [text, hc] : hint_sets) registry_.set_domain_hints(dom, text, hc.parsed, hc.set);
      json names = json::array();
      for (const auto& k : st->ok) names.push_back(k.name());
      return reply({{"ok", true}, {"dom", dom}, {"attached", std::move(names)}});
    }
    // All or nothing: undo the devices that did start.
    for (const auto& k : st->ok) registry_.detach(k, [](const std::string&) {});
    reply(error_response(st->first_error));
  };
  if (specs.empty()) return finish();
  for (auto& s : specs) {
    const DeviceKey key = s.key;
    registry_.attach(std::move(s), [st, key, finish](const std::string& e) {
      if (e.empty()) st->ok.push_back(key);
      else if (st->first_error.empty()) st->first_error = fmt::format("dom={} dev={}: {}", key.domid, key.name(), e);
      if (--st->left == 0) finish();
    });
  }
}

// {"verb":"control","dom":D,"kind":K,"devid":N,"op":...}: a device-specific operation (Device::control).
void Daemon::verb_control(const json& req, Reply reply) {
  std::string err;
  const auto dom = get_uint(req, "dom", kMaxDomid, true, err);
  if (!dom) return reply(error_response(err));
  const auto kind = get_string(req, "kind", true, err);
  if (!kind) return reply(error_response(err));
  if (!valid_device_kind(*kind)) return reply(error_response(fmt::format("invalid device kind '{}'", kind->substr(0, 64))));
  const auto devid = get_uint(req, "devid", kMaxDevid, false, err, 0);
  if (!devid) return reply(error_response(err));
  const auto op = get_string(req, "op", true, err);
  if (!op) return reply(error_response(err));
  registry_.control(DeviceKey{*kind, *dom, *devid}, req, std::move(reply));
}

void Daemon::verb_detach(const json& req, Reply reply) {
  std::string err;
  const auto dom = get_uint(req, "dom", kMaxDomid, true, err);
  if (!dom) return reply(error_response(err));
  const auto kind = get_string(req, "kind", false, err);
  if (!kind) return reply(error_response(err));
  if (kind->empty()) {
    return registry_.detach_domain(*dom, [reply, dom = *dom](const std::string& e) {
      reply(e.empty() ? json{{"ok", true}, {"dom", dom}} : error_response(e));
    });
  }
  const auto devid = get_uint(req, "devid", kMaxDevid, false, err, 0);
  if (!devid) return reply(error_response(err));
  const DeviceKey key{*kind, *dom, *devid};
  const bool force = req.contains("force") && req["force"].is_boolean() && req["force"].get<bool>();
  registry_.detach(key, [reply, key](const std::string& e) {
    reply(e.empty() ? json{{"ok", true}, {"dom", key.domid}, {"detached", key.name()}}
                    : error_response(fmt::format("dom={} dev={}: {}", key.domid, key.name(), e)));
  }, force);
}

void Daemon::render_metrics(std::function<void(std::string)> done) {
  MetricSet m;
  m.add("gears_build_info", MetricType::gauge, "gearsd build information.", 1, {{"version", std::string(gears_version())}});
  m.add("gears_uptime_seconds", MetricType::gauge, "Seconds since gearsd started.",
        std::chrono::duration<double>(std::chrono::steady_clock::now() - started_).count());
  for (std::size_t i = 0; i < workers_.size(); ++i)
    m.add("gears_worker_devices", MetricType::gauge, "Devices hosted per worker thread.",
          static_cast<double>(workers_.load(i)), {{"worker", std::to_string(i)}});
  std::map<std::pair<std::string, std::string>, std::size_t> by_kind;
  for (const auto& d : registry_.list()) ++by_kind[{d.spec.key.kind, std::string(to_string(d.state))}];
  for (const auto& [ks, n] : by_kind)
    m.add("gears_devices", MetricType::gauge, "Hosted devices by kind and state.", static_cast<double>(n),
          {{"kind", ks.first}, {"state", ks.second}});
  const auto& c = registry_.counters();
  m.add("gears_device_attach_total", MetricType::counter, "Devices started.", static_cast<double>(c.attached));
  m.add("gears_device_attach_failures_total", MetricType::counter, "Attach requests refused or failed.",
        static_cast<double>(c.attach_failed));
  m.add("gears_device_detach_total", MetricType::counter, "Devices stopped.", static_cast<double>(c.detached));
  for (const auto& [verb, n] : requests_)
    m.add("gears_control_requests_total", MetricType::counter, "Control requests by verb.", static_cast<double>(n),
          {{"verb", verb}});
  m.add("gears_control_errors_total", MetricType::counter, "Control requests answered with an error.",
        static_cast<double>(request_errors_));

  auto shared = std::make_shared<MetricSet>(std::move(m));
  registry_.gather<std::shared_ptr<MetricSet>>(
      [](const Device& d) {
        auto s = std::make_shared<MetricSet>();
        d.metrics(*s);
        return s;
      },
      [shared, done = std::move(done)](std::vector<Sampled<std::shared_ptr<MetricSet>>> got) {
        for (auto& s : got) {
          if (!s.value) continue;
          const auto& k = s.info.spec.key;
          shared->merge(std::move(*s.value), {{"dom", std::to_string(k.domid)}, {"dev", k.name()}, {"kind", k.kind}});
        }
        done(shared->render());
      });
}

}  // namespace gears::daemon
