#include <gtest/gtest.h>
#include <arpa/inet.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/socket.h>

#include <atomic>
#include <cstring>
#include <thread>

#include "dom0/gearsctl/client.hpp"
#include "dom0/gearsd/daemon.hpp"
#include "tests/unit/gearsd/test_util.hpp"

using namespace gears::daemon;
using nlohmann::json;

namespace {

// Records whether every call arrived on one thread that is not the main loop's.
class ProbeDevice final : public Device {
 public:
  ProbeDevice(DeviceSpec s, std::atomic<int>* off_thread) : Device(std::move(s)), off_thread_(off_thread) {}
  gears::Status start(Reactor& loop) override {
    check(loop);
    ops_ = 7;
    return {};
  }
  void stop() override { check_same(); }
  json stats() const override {
    check_same();
    return {{"ops", ops_}, {"bytes", 4096}, {"errors", 0}};
  }
  void metrics(MetricSet& out) const override {
    check_same();
    out.add("gears_probe_ops_total", MetricType::counter, "Probe ops.", static_cast<double>(ops_));
  }
  json hints() const override { return {{"class", "gold"}, {"source", "probe"}}; }
  // op "echo" answers with the request; anything else falls back to the default (no operations).
  void control(const json& req, ControlDone done) override {
    check_same();
    if (req.value("op", "") == "echo") return done({{"ok", true}, {"echo", req.value("text", "")}, {"ops", ops_}});
    Device::control(req, std::move(done));
  }

 private:
  void check(Reactor& loop) {
    owner_ = std::this_thread::get_id();
    if (!loop.in_loop_thread()) ++*off_thread_;
  }
  void check_same() const {
    if (std::this_thread::get_id() != owner_) ++*off_thread_;
  }
  std::atomic<int>* off_thread_;
  std::thread::id owner_;
  int ops_ = 0;
};

class FailingDevice final : public Device {
 public:
  using Device::Device;
  gears::Status start(Reactor&) override { return gears::Error{ENODEV, "no such ring"}; }
  void stop() override { ADD_FAILURE() << "stop() after a failed start()"; }
  json stats() const override { return json::object(); }
  void metrics(MetricSet&) const override {}
  json hints() const override { return json::object(); }
};

struct DaemonFixture {
  gears::test::TempDir dir;
  std::atomic<int> off_thread{0};
  std::unique_ptr<Daemon> daemon;
  std::thread runner;

  DaemonFixture() {
    DaemonOptions o;
    o.socket_path = dir.file("gearsd.sock");
    o.pidfile = dir.file("gearsd.pid");
    o.workers = 2;
    o.metrics_port = 0;
    o.handle_signals = false;
    daemon = std::make_unique<Daemon>(o);
    daemon->registry().register_factory("probe", [this](const DeviceSpec& s) {
      return std::make_unique<ProbeDevice>(s, &off_thread);
    });
    daemon->registry().register_factory("broken", [](const DeviceSpec& s) { return std::make_unique<FailingDevice>(s); });
    daemon->registry().register_factory("throws", [](const DeviceSpec&) -> std::unique_ptr<Device> {
      throw std::runtime_error("backend file missing");
    });
    runner = std::thread([this] { daemon->run(); });
  }
  ~DaemonFixture() {
    daemon->request_stop();
    runner.join();
    daemon.reset();
  }
  json ask(const json& req) {
    gears::ctl::ControlClient c(daemon->options().socket_path);
    return c.request(req);
  }
};

std::string http_get(std::uint16_t port, const std::string& path) {
  Fd s(::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0));
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_port = htons(port);
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  if (::connect(s.get(), reinterpret_cast<sockaddr*>(&a), sizeof a) != 0) return "<connect failed>";
  const std::string req = "GET " + path + " HTTP/1.0\r\nHost: x\r\n\r\n";
  if (::send(s.get(), req.data(), req.size(), MSG_NOSIGNAL) < 0) return "<send failed>";
  std::string out;
  char b[4096];
  for (;;) {
    pollfd p{s.get(), POLLIN, 0};
    if (::poll(&p, 1, 20000) <= 0) return out + "<timeout>";
    const auto n = ::recv(s.get(), b, sizeof b, 0);
    if (n <= 0) return out;
    out.append(b, static_cast<std::size_t>(n));
  }
}

}  // namespace

TEST(Daemon, VersionAndUnknownVerb) {
  DaemonFixture f;
  const json v = f.ask({{"verb", "version"}});
  EXPECT_EQ(v["ok"], true);
  EXPECT_EQ(v["protocol"], kProtocolVersion);
  const json u = f.ask({{"verb", "frobnicate"}});
  EXPECT_EQ(u["ok"], false);
  EXPECT_NE(u["error"].get<std::string>().find("unknown verb 'frobnicate'"), std::string::npos);
}

TEST(Daemon, AttachListStatsHintsDetach) {
  DaemonFixture f;
  json r = f.ask({{"verb", "attach"}, {"dom", 5}, {"hints", "class=gold,rate=10M"},
                  {"devices", {{{"kind", "probe"}, {"devid", 0}}, {{"kind", "probe"}, {"devid", 1}}}}});
  ASSERT_EQ(r["ok"], true) << r.dump();
  EXPECT_EQ(r["attached"].size(), 2U);

  r = f.ask({{"verb", "list"}});
  ASSERT_EQ(r["devices"].size(), 2U);
  EXPECT_EQ(r["devices"][0]["dev"], "probe/0");
  EXPECT_EQ(r["devices"][0]["state"], "running");
  // Least-loaded placement spreads two devices over two workers.
  EXPECT_NE(r["devices"][0]["worker"], r["devices"][1]["worker"]);

  r = f.ask({{"verb", "stats"}});
  ASSERT_EQ(r["ok"], true);
  EXPECT_EQ(r["devices"][1]["stats"]["ops"], 7);
  EXPECT_EQ(r["workers"].size(), 2U);

  r = f.ask({{"verb", "hints"}, {"dom", 5}});
  ASSERT_EQ(r["ok"], true) << r.dump();
  EXPECT_EQ(r["static"]["text"], "class=gold,rate=10M");
  EXPECT_EQ(r["static"]["parsed"]["rate_bps"], 10000000);
  EXPECT_EQ(r["devices"]["probe/1"]["source"], "probe");
  ASSERT_EQ(r["registry"]["records"].size(), 1U) << r.dump();  // what backends read
  EXPECT_EQ(r["registry"]["records"][0]["origin"], "config");
  EXPECT_EQ(f.daemon->registry().hints().effective(5, gears::hints::DevType::vbd, 0).rate_bps, 10'000'000U);

  r = f.ask({{"verb", "detach"}, {"dom", 5}, {"kind", "probe"}, {"devid", 1}});
  EXPECT_EQ(r["ok"], true) << r.dump();
  EXPECT_EQ(f.ask({{"verb", "list"}})["devices"].size(), 1U);
  r = f.ask({{"verb", "detach"}, {"dom", 5}});
  EXPECT_EQ(r["ok"], true);
  EXPECT_TRUE(f.ask({{"verb", "list"}})["devices"].empty());
  EXPECT_EQ(f.ask({{"verb", "hints"}, {"dom", 5}})["ok"], false);  // forgotten with the domain
  EXPECT_EQ(f.off_thread.load(), 0);  // every device call ran on its own worker thread

  // Several hint sets in one attach (a domain class and flow classes): every one reaches the registry.
  r = f.ask({{"verb", "attach"}, {"dom", 6},
             {"hints", {"class=silver", "flow=tcp:5201,class=bronze", "flow=icmp,flow=tcp:22,class=gold,rate=1M"}}});
  ASSERT_EQ(r["ok"], true) << r.dump();
  r = f.ask({{"verb", "hints"}, {"dom", 6}});
  ASSERT_EQ(r["registry"]["records"].size(), 3U) << r.dump();
  EXPECT_EQ(r["registry"]["records"][1]["hints"]["scope"], "flow");
  EXPECT_EQ(r["registry"]["records"][2]["hints"]["rate_bps"], 1000000);
  EXPECT_EQ(r["static"]["text"], "flow=icmp,flow=tcp:22,class=gold,rate=1M") << "the latest set";
}

TEST(Daemon, ControlReachesTheDeviceOnItsWorker) {
  DaemonFixture f;
  json r = f.ask({{"verb", "attach"}, {"dom", 4}, {"kind", "probe"}, {"devid", 2}});
  ASSERT_EQ(r["ok"], true) << r.dump();
  r = f.ask({{"verb", "control"}, {"dom", 4}, {"kind", "probe"}, {"devid", 2}, {"op", "echo"}, {"text", "hi"}});
  ASSERT_EQ(r["ok"], true) << r.dump();
  EXPECT_EQ(r["echo"], "hi");
  EXPECT_EQ(r["ops"], 7);
  r = f.ask({{"verb", "control"}, {"dom", 4}, {"kind", "probe"}, {"devid", 2}, {"op", "frobnicate"}});
  EXPECT_EQ(r["ok"], false);
  EXPECT_NE(r["error"].get<std::string>().find("no control operations"), std::string::npos) << r.dump();
  r = f.ask({{"verb", "control"}, {"dom", 4}, {"kind", "probe"}, {"devid", 3}, {"op", "echo"}});
  EXPECT_EQ(r["ok"], false);
  EXPECT_NE(r["error"].get<std::string>().find("has no device probe/3"), std::string::npos) << r.dump();
  EXPECT_EQ(f.ask({{"verb", "control"}, {"dom", 4}, {"kind", "probe"}, {"devid", 2}})["ok"], false);  // no op
  EXPECT_EQ(f.ask({{"verb", "control"}, {"dom", 4}, {"kind", "Probe!"}, {"op", "echo"}})["ok"], false);
  EXPECT_EQ(f.off_thread.load(), 0);
}

TEST(Daemon, AttachIsAllOrNothing) {
  DaemonFixture f;
  json r = f.ask({{"verb", "attach"}, {"dom", 7},
                  {"devices", {{{"kind", "probe"}}, {{"kind", "channel"}}}}});
  EXPECT_EQ(r["ok"], false);
  EXPECT_NE(r["error"].get<std::string>().find("dom=7 dev=channel/0: no factory for kind 'channel'"), std::string::npos)
      << r.dump();
  // The probe that did start is rolled back (its detach was posted before our next request is read).
  for (int i = 0; i < 1000 && !f.ask({{"verb", "list"}})["devices"].empty(); ++i) std::this_thread::yield();
  EXPECT_TRUE(f.ask({{"verb", "list"}})["devices"].empty());
}

TEST(Daemon, AttachFailuresAreReportedNotFatal) {
  DaemonFixture f;
  json r = f.ask({{"verb", "attach"}, {"dom", 3}, {"kind", "broken"}});
  EXPECT_EQ(r["ok"], false);
  EXPECT_NE(r["error"].get<std::string>().find("start failed: no such ring"), std::string::npos) << r.dump();
  r = f.ask({{"verb", "attach"}, {"dom", 3}, {"kind", "throws"}});
  EXPECT_NE(r["error"].get<std::string>().find("backend file missing"), std::string::npos) << r.dump();
  r = f.ask({{"verb", "attach"}, {"dom", 3}, {"kind", "probe"}});
  ASSERT_EQ(r["ok"], true);
  r = f.ask({{"verb", "attach"}, {"dom", 3}, {"kind", "probe"}});
  EXPECT_NE(r["error"].get<std::string>().find("already attached"), std::string::npos);
  // The broken device stays listed as failed until detached.
  r = f.ask({{"verb", "list"}});
  bool saw_failed = false;
  for (const auto& d : r["devices"]) saw_failed |= d["state"] == "failed" && d.contains("error");
  EXPECT_TRUE(saw_failed) << r.dump();
  EXPECT_EQ(f.ask({{"verb", "detach"}, {"dom", 3}, {"kind", "broken"}})["ok"], true);
}

TEST(Daemon, RejectsBadArguments) {
  DaemonFixture f;
  const std::pair<json, const char*> cases[] = {
      {{{"verb", "attach"}, {"kind", "probe"}}, "missing \"dom\""},
      {{{"verb", "attach"}, {"dom", "5"}, {"kind", "probe"}}, "\"dom\" must be an integer"},
      {{{"verb", "attach"}, {"dom", -1}, {"kind", "probe"}}, "\"dom\" must be an integer"},
      {{{"verb", "attach"}, {"dom", 70000}, {"kind", "probe"}}, "\"dom\" must be an integer"},
      {{{"verb", "attach"}, {"dom", 5}}, "needs \"kind\""},
      {{{"verb", "attach"}, {"dom", 5}, {"kind", "Pro be"}}, "invalid device kind"},
      {{{"verb", "attach"}, {"dom", 5}, {"kind", "probe"}, {"devid", 1.5}}, "\"devid\" must be an integer"},
      {{{"verb", "attach"}, {"dom", 5}, {"kind", "probe"}, {"params", 3}}, "\"params\" must be an object"},
      {{{"verb", "attach"}, {"dom", 5}, {"devices", "probe"}}, "\"devices\" must be an array"},
      {{{"verb", "attach"}, {"dom", 5}, {"devices", {{{"kind", "probe"}}, {{"kind", "probe"}}}}}, "listed twice"},
      {{{"verb", "attach"}, {"dom", 5}, {"kind", "probe"}, {"hints", "class=tin"}}, "hints: class: 'tin'"},
      {{{"verb", "attach"}, {"dom", 5}, {"hints", {"class=gold", "flow=tcp:0,class=bronze"}}}, "hints[1]: flow:"},
      {{{"verb", "attach"}, {"dom", 5}, {"hints", {"class=gold", 7}}}, "hints[1]: not a string"},
      {{{"verb", "attach"}, {"dom", 5}, {"hints", {"class=gold", ""}}}, "hints[1]:"},
      {{{"verb", "attach"}, {"dom", 5}, {"hints", 7}}, "must be a string or an array of strings"},
      {{{"verb", "attach"}, {"dom", 5}, {"hints", json(std::vector<std::string>(17, "class=gold"))}}, "at most 16 hint sets"},
      {{{"verb", "hints"}}, "missing \"dom\""},
      {{{"verb", "hints"}, {"dom", 9}}, "no Gears devices or hints"},
      {{{"verb", "detach"}, {"dom", 9}, {"kind", "probe"}}, "not attached"},
  };
  for (const auto& [req, needle] : cases) {
    const json r = f.ask(req);
    EXPECT_EQ(r["ok"], false) << req.dump();
    EXPECT_NE(r.value("error", std::string()).find(needle), std::string::npos) << req.dump() << " -> " << r.dump();
  }
  EXPECT_TRUE(f.ask({{"verb", "list"}})["devices"].empty());
}

TEST(Daemon, MetricsOverSocketAndHttp) {
  DaemonFixture f;
  ASSERT_EQ(f.ask({{"verb", "attach"}, {"dom", 4}, {"kind", "probe"}})["ok"], true);
  (void)f.ask({{"verb", "nope"}});
  const json r = f.ask({{"verb", "metrics"}});
  ASSERT_EQ(r["ok"], true);
  const std::string text = r["text"];
  EXPECT_NE(text.find("# TYPE gears_probe_ops_total counter\n"), std::string::npos) << text;
  EXPECT_NE(text.find("gears_probe_ops_total{dom=\"4\",dev=\"probe/0\",kind=\"probe\"} 7\n"), std::string::npos) << text;
  EXPECT_NE(text.find("gears_devices{kind=\"probe\",state=\"running\"} 1\n"), std::string::npos) << text;
  EXPECT_NE(text.find("gears_control_requests_total{verb=\"unknown\"} 1\n"), std::string::npos) << text;
  EXPECT_NE(text.find("gears_control_errors_total 1\n"), std::string::npos) << text;

  const std::string http = http_get(f.daemon->metrics_port(), "/metrics");
  EXPECT_EQ(http.rfind("HTTP/1.0 200 OK\r\n", 0), 0U) << http;
  EXPECT_NE(http.find("Content-Type: text/plain; version=0.0.4"), std::string::npos);
  EXPECT_NE(http.find("gears_probe_ops_total{dom=\"4\""), std::string::npos);
  EXPECT_EQ(http_get(f.daemon->metrics_port(), "/nope").rfind("HTTP/1.0 404", 0), 0U);
}

TEST(Daemon, PidfileIsWrittenLockedAndRemoved) {
  std::string pidfile;
  {
    DaemonFixture f;
    pidfile = f.daemon->options().pidfile;
    std::ifstream in(pidfile);
    long pid = 0;
    in >> pid;
    EXPECT_EQ(pid, static_cast<long>(::getpid()));
    EXPECT_THROW(PidFile second(pidfile), std::runtime_error);
  }
  EXPECT_FALSE(std::filesystem::exists(pidfile));
}

TEST(Daemon, StopDetachesDevicesAndRemovesSocket) {
  std::string sock;
  {
    DaemonFixture f;
    sock = f.daemon->options().socket_path;
    ASSERT_EQ(f.ask({{"verb", "attach"}, {"dom", 2}, {"kind", "probe"}})["ok"], true);
    ASSERT_EQ(f.ask({{"verb", "attach"}, {"dom", 2}, {"kind", "null"}})["ok"], true);
  }  // request_stop + join: stop() runs on each device's worker (ProbeDevice checks it)
  EXPECT_FALSE(std::filesystem::exists(sock));
}

namespace {

class RecordingSource final : public DiscoverySource {
 public:
  std::string_view name() const override { return "test"; }
  void start(Reactor& main, Sink sink) override {
    // Emits from another thread, as a xenstore watcher might.
    std::thread([&main, sink] {
      DeviceSpec s;
      s.key = DeviceKey{"probe", 11, 0};
      s.backend_path = "/local/domain/0/backend/probe/11/0";
      main.post([sink, s] { sink(DeviceEvent{DeviceEvent::Type::appeared, s}); });
    }).join();
  }
  void stop() override {}
};

}  // namespace

TEST(Daemon, DiscoverySourceEventsAttachDevices) {
  DaemonFixture f;
  f.daemon->loop().post([&] { f.daemon->add_discovery(std::make_unique<RecordingSource>()); });
  json r;
  for (int i = 0; i < 2000; ++i) {
    r = f.ask({{"verb", "list"}});
    if (!r["devices"].empty() && r["devices"][0]["state"] == "running") break;
    std::this_thread::yield();
  }
  ASSERT_EQ(r["devices"].size(), 1U) << r.dump();
  EXPECT_EQ(r["devices"][0]["backend"], "/local/domain/0/backend/probe/11/0");
}
