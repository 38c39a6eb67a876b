// gearsd: the Gears dom0 daemon. Foreground process; see README.md in this directory.
#include <CLI/CLI.hpp>
#include <spdlog/spdlog.h>

#include <cstdio>
#include <exception>
#include <set>
#include <vector>

#include "dom0/common/domain_reaper.hpp"
#include "dom0/backends/blk/device.hpp"
#include "dom0/backends/media/control.hpp"
#include "dom0/backends/media/device.hpp"
#include "dom0/backends/net/device.hpp"
#include "dom0/channel/channel_device.hpp"
#include "dom0/gearsd/control.hpp"
#include "dom0/gearsd/daemon.hpp"
#include "dom0/gearsd/log.hpp"
#include "services/proctrack/service.hpp"

int main(int argc, char** argv) {
  using namespace gears::daemon;
  DaemonOptions opts;
  std::string log_level = "info";
  std::string log_file;
  CLI::App app{"gearsd: Gears dom0 daemon (split-driver backends, semantic channel, hints)"};
  app.set_version_flag("--version", std::string(gears_version()));
  app.add_option("--socket", opts.socket_path, "Control socket path")->capture_default_str();
  app.add_option("--workers", opts.workers, "Worker threads (each owns its devices)")
      ->capture_default_str()->check(CLI::Range(1, 256));
  opts.worker_nice = -10;
  app.add_option("--worker-nice", opts.worker_nice,
                 "Nice value of the worker threads (the data plane): below dom0's other tasks, so a process a worker "
                 "wakes does not preempt it")
      ->capture_default_str()->check(CLI::Range(-20, 19));
  std::string worker_policy = "batch";
  app.add_option("--worker-policy", worker_policy,
                 "Scheduling policy of the worker threads: batch (SCHED_BATCH: a worker woken by a producer does not "
                 "preempt it, and finds more frames per wake-up) or normal")
      ->capture_default_str()->check(CLI::IsMember({"batch", "normal"}));
  app.add_option("--metrics-port", opts.metrics_port, "Serve Prometheus metrics over HTTP on this TCP port (off if unset)")
      ->check(CLI::Range(0, 65535));
  app.add_option("--metrics-address", opts.metrics_address, "IPv4 address for --metrics-port")->capture_default_str();
  app.add_option("--log-level", log_level, "trace|debug|info|warn|error|critical|off")->capture_default_str();
  app.add_option("--log-file", log_file, "Also log to this file");
  app.add_option("--pidfile", opts.pidfile, "Write the pid here (held locked while running)");
  // The media backend (kind "vsnd"): mixer, sink, ducking, capture source.
  std::string media_sink = "null", media_capture = "sine:440", media_role = "media";
  std::string media_resampler = "sinc-fastest";
  std::uint32_t media_rate = 48000, media_period_ms = 10;
  float media_duck_db = 20.0F;
  app.add_option("--media-sink", media_sink, "Mixer output: wav:<path>, alsa:<device> or null")->capture_default_str();
  app.add_option("--media-rate", media_rate, "Mixer rate (Hz)")->capture_default_str()->check(CLI::Range(8000, 192000));
  app.add_option("--media-period-ms", media_period_ms, "Mixer clock period (ms)")->capture_default_str()
      ->check(CLI::Range(1, 100));
  app.add_option("--media-duck-db", media_duck_db, "Attenuation of media streams while a voice stream plays (dB)")
      ->capture_default_str()->check(CLI::Range(0.0, 96.0));
  app.add_option("--media-resampler", media_resampler, "libsamplerate converter: sinc-fastest|sinc-medium|linear")
      ->capture_default_str()->check(CLI::IsMember({"sinc-fastest", "sinc-medium", "linear"}));
  app.add_option("--media-capture", media_capture, "Capture source: sine:<hz> or file:<path>")->capture_default_str();
  app.add_option("--media-default-role", media_role, "Role of streams without hints: voice|media|alert")
      ->capture_default_str()->check(CLI::IsMember({"voice", "media", "alert"}));
  bool no_discovery = false;
  app.add_flag("--no-discovery", no_discovery, "Do not watch xenstore for devices (attach by hand only)");
  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    const int rc = app.exit(e);
    return rc == 0 ? 0 : 2;
  }
  opts.worker_batch = worker_policy == "batch";
  const auto level = parse_log_level(log_level);
  if (!level) {
    std::fprintf(stderr, "gearsd: --log-level '%s' is not one of trace|debug|info|warn|error|critical|off\n",
                 log_level.c_str());
    return 2;
  }
  try {
    setup_logging(*level, log_file);
  } catch (const std::exception& e) {
    std::fprintf(stderr, "gearsd: cannot open log file '%s': %s\n", log_file.c_str(), e.what());
    return 1;
  }
  std::unique_ptr<gears::media::Mixer> mixer;
  gears::media::MediaContext media;
  try {
    gears::media::MixerConfig mc;
    mc.rate = media_rate;
    mc.period_ms = media_period_ms;
    mc.duck.duck_db = media_duck_db;
    mc.src_quality = media_resampler == "linear" ? 4 : media_resampler == "sinc-medium" ? 1 : 2;  // SRC_* ids
    mixer = std::make_unique<gears::media::Mixer>(mc, gears::media::make_sink(media_sink, media_rate));
    media.capture = std::make_shared<const gears::media::CaptureSource>(media_capture);
    media.default_role = *gears::media::role_from_name(media_role);
  } catch (const std::exception& e) {
    std::fprintf(stderr, "gearsd: media: %s\n", e.what());
    return 2;
  }
  try {
    Daemon d(opts);
    // The semantic channel: created by `attach` (gearsctl create/attach) or found under backend/gears.
    auto& hint_registry = d.registry().hints();
    d.registry().register_factory("channel", [&hint_registry](const DeviceSpec& spec) {
      return gears::chan::make_channel_device(spec, &hint_registry);
    });
    // proctrack (docs/PROCTRACK.md): kind "proctrack" and the verbs ps, events.
    gears::proctrack::register_service(d);
    // Services have no backend directory that dies with their domain: detach them on @releaseDomain.
    if (!no_discovery)
      d.add_discovery(std::make_unique<gears::backend::DomainReaper>(std::set<std::string>{"proctrack"}, [&d] {
        std::vector<DeviceKey> keys;
        for (const auto& info : d.registry().list()) keys.push_back(info.spec.key);
        return keys;
      }));
    if (!no_discovery) d.add_discovery(gears::chan::make_channel_discovery());
    // Block (blkif for xen-blkfront): attached by gearsctl create/attach or found under backend/gears-vbd.
    d.registry().register_factory("vbd", [&hint_registry](const DeviceSpec& spec) {
      return gears::blk::make_blk_device(spec, &hint_registry);
    });
    if (!no_discovery) d.add_discovery(gears::blk::make_blk_discovery());
    // Media (vsnd): libxl writes backend/vsnd/<dom>/<devid> from `vsnd=`; one shared mixer thread.
    media.mixer = mixer.get();
    media.hints = &hint_registry;
    d.registry().register_factory("vsnd", [media](const DeviceSpec& spec) {
      return gears::media::make_vsnd_device(spec, media);
    });
    mixer->start();
    // Mixer controls on the control socket (gearsctl media): media, media-volume, media-sink.
    for (const char* verb : {"media", "media-volume", "media-sink"}) {
      d.add_verb(verb, [m = mixer.get()](const nlohmann::json& req, ControlServer::Reply reply) {
        reply(gears::media::media_request(*m, req));
      });
    }
    if (!no_discovery) d.add_discovery(gears::media::make_vsnd_discovery());
    // semnet: Gears vifs for xen-netfront (backend/gears-vif), with live QoS from domain hints.
    d.registry().register_factory("vif", [&hint_registry](const DeviceSpec& spec) {
      return gears::net::make_net_device(spec, &hint_registry);
    });
    if (!no_discovery) d.add_discovery(gears::net::make_net_discovery());
    d.run();
  } catch (const std::exception& e) {
    spdlog::critical("gearsd: {}", e.what());
    return 1;
  }
  return 0;
}
