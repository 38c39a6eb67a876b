// gearsd: the Gears dom0 daemon. Foreground process; see README.md in this directory.
#include <CLI/CLI.hpp>
#include <spdlog/spdlog.h>

#include <cstdio>
#include <exception>

#include "dom0/backends/net/device.hpp"
#include "dom0/backends/net/qos_feed.hpp"
#include "dom0/channel/channel_device.hpp"
#include "dom0/gearsd/daemon.hpp"
#include "dom0/gearsd/log.hpp"

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
  app.add_option("--metrics-port", opts.metrics_port, "Serve Prometheus metrics over HTTP on this TCP port (off if unset)")
      ->check(CLI::Range(0, 65535));
  app.add_option("--metrics-address", opts.metrics_address, "IPv4 address for --metrics-port")->capture_default_str();
  app.add_option("--log-level", log_level, "trace|debug|info|warn|error|critical|off")->capture_default_str();
  app.add_option("--log-file", log_file, "Also log to this file");
  app.add_option("--pidfile", opts.pidfile, "Write the pid here (held locked while running)");
  bool no_discovery = false;
  app.add_flag("--no-discovery", no_discovery, "Do not watch xenstore for devices (attach by hand only)");
  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    const int rc = app.exit(e);
    return rc == 0 ? 0 : 2;
  }
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
  try {
    Daemon d(opts);
    // The semantic channel: created by `attach` (gearsctl create/attach) or found under backend/gears.
    d.registry().register_factory("channel", gears::chan::make_channel_device);
    if (!no_discovery) d.add_discovery(gears::chan::make_channel_discovery());
    // semnet: Gears vifs for xen-netfront (backend/gears-vif), with live QoS from domain hints.
    d.registry().register_factory("vif", gears::net::make_net_device);
    if (!no_discovery) d.add_discovery(gears::net::make_net_discovery());
    gears::net::install_qos_feed_pump(d);
    d.run();
  } catch (const std::exception& e) {
    spdlog::critical("gearsd: {}", e.what());
    return 1;
  }
  return 0;
}
