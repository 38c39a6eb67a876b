// Daemon: gearsd's process shell. The main thread runs one Reactor with the control socket, the metrics port,
// signals and discovery; devices run on the WorkerPool. Verbs are documented in dom0/gearsd/README.md.
#pragma once

#include <chrono>
#include <functional>
#include <cstdint>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "dom0/gearsd/control.hpp"
#include "dom0/gearsd/device.hpp"
#include "dom0/gearsd/fd.hpp"
#include "dom0/gearsd/reactor.hpp"
#include "dom0/gearsd/registry.hpp"
#include "dom0/gearsd/workers.hpp"

namespace gears::daemon {

inline constexpr int kProtocolVersion = 1;
[[nodiscard]] std::string_view gears_version();

struct DaemonOptions {
  std::string socket_path = "/run/gears/gearsd.sock";
  std::string pidfile;  // empty: none
  std::size_t workers = 2;
  int worker_nice = 0;  // gearsd's command line defaults to -10 (WorkerPool: why)
  bool worker_batch = false;  // SCHED_BATCH workers; gearsd's command line defaults to it (WorkerPool: why)
  int metrics_port = -1;  // <0: no TCP metrics endpoint; 0: ephemeral (tests)
  std::string metrics_address = "127.0.0.1";
  bool handle_signals = true;  // SIGTERM/SIGINT through a signalfd; in-process tests turn this off
};

// Writes the pid, holds an exclusive flock while alive, unlinks on destruction.
class PidFile {
 public:
  explicit PidFile(std::string path);  // throws if another live process holds it
  ~PidFile();
  PidFile(PidFile&&) noexcept = default;
  PidFile& operator=(PidFile&&) noexcept = default;
  PidFile(const PidFile&) = delete;
  PidFile& operator=(const PidFile&) = delete;

 private:
  std::string path_;
  Fd fd_;
};

// Blocks SIGTERM and SIGINT for the calling thread (and threads it creates later) and reads them from a signalfd.
class SignalFd {
 public:
  SignalFd();  // throws
  SignalFd(SignalFd&&) noexcept = default;
  SignalFd& operator=(SignalFd&&) noexcept = default;
  SignalFd(const SignalFd&) = delete;
  SignalFd& operator=(const SignalFd&) = delete;
  [[nodiscard]] int fd() const { return fd_.get(); }
  [[nodiscard]] int read_signal() const;  // 0 if none pending

 private:
  Fd fd_;
};

class Daemon {
 public:
  explicit Daemon(DaemonOptions opts);  // binds sockets and starts workers; throws on setup failure
  ~Daemon();
  Daemon(const Daemon&) = delete;
  Daemon& operator=(const Daemon&) = delete;

  [[nodiscard]] DeviceRegistry& registry() { return registry_; }
  [[nodiscard]] Reactor& loop() { return main_; }
  [[nodiscard]] std::uint16_t metrics_port() const { return http_ ? http_->port() : 0; }
  [[nodiscard]] const DaemonOptions& options() const { return opts_; }

  // Main thread. Starts the source now if run() is underway, else when run() starts.
  void add_discovery(std::unique_ptr<DiscoverySource> source);
  // Runs the main loop until a signal or request_stop(), then detaches every device and stops the workers.
  void run();
  void request_stop() { main_.post([this] { begin_shutdown("stop requested"); }); }  // any thread

  // Extra verbs served by services (e.g. proctrack's `ps`, `events`); main thread, before run(). The handler
  // runs on the main thread and must reply exactly once.
  using VerbHandler = std::function<void(const nlohmann::json& request, ControlServer::Reply reply)>;
  void add_verb(std::string verb, VerbHandler handler) { extra_verbs_[std::move(verb)] = std::move(handler); }

  // One control request (what the socket delivers). Public for in-process tests.
  void handle(const nlohmann::json& request, ControlServer::Reply reply);
  // Prometheus text for the whole daemon, gathered from the workers; `done` runs on the main thread.
  void render_metrics(std::function<void(std::string)> done);

 private:
  void verb_list(const nlohmann::json& req, ControlServer::Reply reply);
  void verb_hints(const nlohmann::json& req, ControlServer::Reply reply);
  void verb_stats(const nlohmann::json& req, ControlServer::Reply reply);
  void verb_attach(const nlohmann::json& req, ControlServer::Reply reply);
  void verb_detach(const nlohmann::json& req, ControlServer::Reply reply);
  void verb_control(const nlohmann::json& req, ControlServer::Reply reply);
  void begin_shutdown(const std::string& why);

  DaemonOptions opts_;
  std::unique_ptr<SignalFd> signals_;  // first: the mask must be set before worker threads exist
  Reactor main_;
  WorkerPool workers_;
  DeviceRegistry registry_;
  std::unique_ptr<PidFile> pidfile_;
  std::unique_ptr<ControlServer> control_;
  std::unique_ptr<MetricsHttpServer> http_;
  std::vector<std::unique_ptr<DiscoverySource>> discovery_;
  bool running_ = false;
  bool shutting_down_ = false;
  std::chrono::steady_clock::time_point started_ = std::chrono::steady_clock::now();
  std::map<std::string, VerbHandler> extra_verbs_;
  std::map<std::string, std::uint64_t> requests_;  // per verb; unknown verbs count as "unknown"
  std::uint64_t request_errors_ = 0;
};

}  // namespace gears::daemon
