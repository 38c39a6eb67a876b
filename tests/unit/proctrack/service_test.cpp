// proctrack's control verbs in gearsd (ps, events): bad arguments get clear errors, known domains answer.
#include "services/proctrack/service.hpp"
#include "dom0/gearsd/daemon.hpp"
#include "services/proctrack/directory.hpp"
#include "tests/unit/gearsd/test_util.hpp"

#include <gtest/gtest.h>

namespace gears::proctrack {
namespace {

using nlohmann::json;

struct Fixture {
  gears::test::TempDir dir;
  std::unique_ptr<daemon::Daemon> d;
  Fixture() {
    daemon::DaemonOptions o;
    o.socket_path = dir.file("gearsd.sock");
    o.workers = 1;
    o.handle_signals = false;
    d = std::make_unique<daemon::Daemon>(o);
    register_service(*d);
  }
  json ask(const json& req) {  // both verbs answer synchronously on the calling (main) thread
    json out;
    d->handle(req, [&](json r) { out = std::move(r); });
    return out;
  }
};

std::string error_of(const json& r) { return r.value("ok", true) ? std::string("ok") : r.value("error", std::string()); }

TEST(ProctrackVerbs, BadArgumentsAreClearErrors) {
  Fixture f;
  EXPECT_NE(error_of(f.ask({{"verb", "ps"}})).find("missing \"dom\""), std::string::npos);
  EXPECT_NE(error_of(f.ask({{"verb", "ps"}, {"dom", 0}})).find("\"dom\" must be in 1..32751"), std::string::npos);
  EXPECT_NE(error_of(f.ask({{"verb", "ps"}, {"dom", "7"}})).find("non-negative integer"), std::string::npos);
  EXPECT_NE(error_of(f.ask({{"verb", "ps"}, {"dom", -3}})).find("non-negative integer"), std::string::npos);
  EXPECT_NE(error_of(f.ask({{"verb", "events"}, {"dom", 7}, {"max", 0}})).find("\"max\""), std::string::npos);
  EXPECT_NE(error_of(f.ask({{"verb", "events"}, {"dom", 7}, {"since", 1.5}})).find("\"since\""), std::string::npos);
  EXPECT_NE(error_of(f.ask({{"verb", "events"}, {"dom", 7}, {"max", 100000}})).find("\"max\""), std::string::npos);
  EXPECT_NE(error_of(f.ask({{"verb", "ps"}, {"dom", 7001}})).find("never monitored dom 7001"), std::string::npos);
}

TEST(ProctrackVerbs, KnownDomainAnswers) {
  Fixture f;
  Directory::global().start(7002, 10);
  Directory::global().ran(7002, 0, 20, Identity{0x5000, 33, "sh"});
  Directory::global().set_table(7002, {ProcRow{33, 33, 1, "sh", 0x5000, 20, false, 0}}, json{{"cr3_events", 1}});
  const json ps = f.ask({{"verb", "ps"}, {"dom", 7002}});
  ASSERT_EQ(ps["ok"], true) << ps.dump();
  ASSERT_EQ(ps["processes"].size(), 1U);
  EXPECT_EQ(ps["processes"][0]["comm"], "sh");
  EXPECT_EQ(ps["processes"][0]["on_vcpus"], json::array({0}));
  EXPECT_EQ(ps["vcpus"]["0"]["pid"], 33);
  const json ev = f.ask({{"verb", "events"}, {"dom", 7002}, {"since", 0}});
  ASSERT_EQ(ev["ok"], true);
  EXPECT_EQ(ev["events"][0]["type"], "start");
  Directory::global().forget(7002);
}

}  // namespace
}  // namespace gears::proctrack
