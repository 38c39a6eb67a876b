#include <gtest/gtest.h>
#include <sys/stat.h>

#include <fstream>
#include <sstream>
#include <thread>

#include "dom0/gearsctl/client.hpp"
#include "dom0/gearsctl/create.hpp"
#include "dom0/gearsd/daemon.hpp"
#include "tests/unit/gearsd/test_util.hpp"

using namespace gears;
using nlohmann::json;

namespace {

const std::string kConfigs = std::string(GEARS_SOURCE_DIR) + "/xl-configs";

// A stand-in for xl that logs its arguments and answers `domid` with 42.
std::string fake_xl(const test::TempDir& d, int create_rc = 0, int unpause_rc = 0) {
  const std::string log = d.file("xl.log");
  const std::string path = d.write("xl", "#!/bin/sh\necho \"$*\" >> " + log +
                                             "\ncase \"$1\" in\n"
                                             "  create) exit " + std::to_string(create_rc) + ";;\n"
                                             "  domid) echo 42;;\n"
                                             "  unpause) exit " + std::to_string(unpause_rc) + ";;\n"
                                             "esac\nexit 0\n");
  ::chmod(path.c_str(), 0755);
  return path;
}

std::string read_all(const std::string& path) {
  std::ifstream in(path);
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

class FakeChannel final : public daemon::Device {
 public:
  using Device::Device;
  Status start(daemon::Reactor&) override { return {}; }
  void stop() override {}
  json stats() const override { return json::object(); }
  void metrics(daemon::MetricSet&) const override {}
  json hints() const override { return json::object(); }
};

struct Gearsd {
  test::TempDir dir;
  std::unique_ptr<daemon::Daemon> d;
  std::thread runner;
  explicit Gearsd(bool with_channel) {
    daemon::DaemonOptions o;
    o.socket_path = dir.file("gearsd.sock");
    o.handle_signals = false;
    o.workers = 1;
    d = std::make_unique<daemon::Daemon>(o);
    if (with_channel)
      d->registry().register_factory("channel", [](const daemon::DeviceSpec& s) { return std::make_unique<FakeChannel>(s); });
    runner = std::thread([this] { d->run(); });
  }
  ~Gearsd() {
    d->request_stop();
    runner.join();
  }
  [[nodiscard]] std::string socket() const { return d->options().socket_path; }
};

}  // namespace

TEST(Create, DryRunPrintsThePlanAndTouchesNothing) {
  test::TempDir d;
  const std::string xl = fake_xl(d);
  std::ostringstream out, err;
  ctl::CreateOptions o{kConfigs + "/gears-pv.cfg", d.file("no.sock"), xl, true, false};
  EXPECT_EQ(ctl::run_create(o, out, err), 0) << err.str();
  const json plan = json::parse(out.str());
  EXPECT_EQ(plan["name"], "gears-pv");
  EXPECT_EQ(plan["attach"]["devices"][0]["kind"], "channel");
  EXPECT_EQ(plan["hints"]["parsed"]["qos"]["class"], "gold");
  EXPECT_EQ(plan["steps"][0], xl + " create -p " + kConfigs + "/gears-pv.cfg");
  EXPECT_FALSE(std::filesystem::exists(d.file("xl.log")));
}

TEST(Create, BadConfigExits2WithFileLineKeyAndRunsNothing) {
  test::TempDir d;
  const std::string xl = fake_xl(d);
  std::ostringstream out, err;
  const std::string cfg = kConfigs + "/broken/unknown-key.cfg";
  ctl::CreateOptions o{cfg, d.file("no.sock"), xl, false, false};
  EXPECT_EQ(ctl::run_create(o, out, err), 2);
  EXPECT_NE(err.str().find(cfg + ":6: gears_chanel:"), std::string::npos) << err.str();
  EXPECT_FALSE(std::filesystem::exists(d.file("xl.log")));

  std::ostringstream jout, jerr;
  o.json = true;
  EXPECT_EQ(ctl::run_create(o, jout, jerr), 2);
  const json j = json::parse(jout.str());
  EXPECT_EQ(j["line"], 6);
  EXPECT_EQ(j["key"], "gears_chanel");
}

TEST(Create, AbsentDaemonFailsBeforeXlRuns) {
  test::TempDir d;
  const std::string xl = fake_xl(d);
  std::ostringstream out, err;
  ctl::CreateOptions o{kConfigs + "/gears-pv.cfg", d.file("no.sock"), xl, false, false};
  EXPECT_EQ(ctl::run_create(o, out, err), 1);
  EXPECT_NE(err.str().find("cannot reach gearsd"), std::string::npos) << err.str();
  EXPECT_FALSE(std::filesystem::exists(d.file("xl.log")));
}

TEST(Create, HappyPathCreatesPausedAttachesAndUnpauses) {
  Gearsd g(true);
  test::TempDir d;
  const std::string xl = fake_xl(d);
  std::ostringstream out, err;
  const std::string cfg = kConfigs + "/gears-pv.cfg";
  ctl::CreateOptions o{cfg, g.socket(), xl, false, true};
  ASSERT_EQ(ctl::run_create(o, out, err), 0) << err.str();
  EXPECT_EQ(read_all(d.file("xl.log")), "create -p " + cfg + "\ndomid gears-pv\nunpause 42\n");
  const json r = json::parse(out.str());
  EXPECT_EQ(r["dom"], 42);
  EXPECT_EQ(r["attached"][0], "channel/0");

  ctl::ControlClient c(g.socket());
  const json h = c.request({{"verb", "hints"}, {"dom", 42}});
  EXPECT_EQ(h["static"]["text"], "class=gold,rate=10M,latency=500us") << h.dump();
}

TEST(Create, AttachFailureDestroysTheDomain) {
  Gearsd g(false);  // no channel factory
  test::TempDir d;
  const std::string xl = fake_xl(d);
  std::ostringstream out, err;
  ctl::CreateOptions o{kConfigs + "/gears-pv.cfg", g.socket(), xl, false, false};
  EXPECT_EQ(ctl::run_create(o, out, err), 1);
  EXPECT_NE(err.str().find("no factory for kind 'channel'"), std::string::npos) << err.str();
  EXPECT_NE(err.str().find("destroyed domain gears-pv (42)"), std::string::npos) << err.str();
  const std::string log = read_all(d.file("xl.log"));
  EXPECT_NE(log.find("destroy 42\n"), std::string::npos) << log;
  EXPECT_EQ(log.find("unpause"), std::string::npos) << log;
}

TEST(Create, UnpauseFailureDetachesAndDestroys) {
  Gearsd g(true);
  test::TempDir d;
  const std::string xl = fake_xl(d, 0, 3);
  std::ostringstream out, err;
  ctl::CreateOptions o{kConfigs + "/gears-pvh.cfg", g.socket(), xl, false, false};
  EXPECT_EQ(ctl::run_create(o, out, err), 1);
  EXPECT_NE(err.str().find("unpause 42` failed (exit 3)"), std::string::npos) << err.str();
  EXPECT_NE(read_all(d.file("xl.log")).find("destroy 42"), std::string::npos);
  ctl::ControlClient c(g.socket());
  EXPECT_TRUE(c.request({{"verb", "list"}})["devices"].empty());
}

TEST(Create, XlCreateFailureIsReported) {
  Gearsd g(true);
  test::TempDir d;
  const std::string xl = fake_xl(d, 1);
  std::ostringstream out, err;
  ctl::CreateOptions o{kConfigs + "/gears-pv.cfg", g.socket(), xl, false, false};
  EXPECT_EQ(ctl::run_create(o, out, err), 1);
  EXPECT_NE(err.str().find("create -p"), std::string::npos);
  EXPECT_EQ(read_all(d.file("xl.log")).find("domid"), std::string::npos);
}
