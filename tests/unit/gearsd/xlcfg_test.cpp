#include <gtest/gtest.h>

#include <filesystem>
#include <variant>

#include "dom0/gearsctl/xlcfg.hpp"
#include "tests/unit/gearsd/test_util.hpp"

using namespace gears::ctl;

namespace {

const std::string kConfigs = std::string(GEARS_SOURCE_DIR) + "/xl-configs";

ConfigError expect_error(const ConfigResult& r) {
  if (const auto* e = std::get_if<ConfigError>(&r)) return *e;
  ADD_FAILURE() << "config was accepted";
  return {};
}

const std::string kBase = "name = \"t\"\ntype = \"pv\"\nkernel = \"/boot/vmlinuz\"\n";
const std::string kPvh = "name = \"t\"\ntype = \"pvh\"\nkernel = \"/boot/vmlinuz\"\n";

}  // namespace

TEST(XlConfig, EveryExampleConfigValidates) {
  int seen = 0;
  for (const auto& e : std::filesystem::directory_iterator(kConfigs)) {
    if (e.path().extension() != ".cfg") continue;
    ++seen;
    const auto r = load_gears_config(e.path().string());
    ASSERT_TRUE(std::holds_alternative<GearsPlan>(r)) << std::get<ConfigError>(r).format();
    const auto& plan = std::get<GearsPlan>(r);
    EXPECT_FALSE(plan.name.empty());
    EXPECT_TRUE(plan.wants_gearsd()) << e.path();
    const auto j = plan.to_json();
    EXPECT_EQ(j["file"], e.path().string());
    EXPECT_EQ(j["attach"]["verb"], "attach");
  }
  EXPECT_GE(seen, 2);
}

TEST(XlConfig, PvExamplePlan) {
  const auto r = load_gears_config(kConfigs + "/gears-pv.cfg");
  ASSERT_TRUE(std::holds_alternative<GearsPlan>(r));
  const auto& p = std::get<GearsPlan>(r);
  EXPECT_EQ(p.name, "gears-pv");
  EXPECT_EQ(p.type, "pv");
  ASSERT_EQ(p.devices.size(), 1U);
  EXPECT_EQ(p.devices[0].kind, "channel");
  EXPECT_EQ(p.hints, "class=gold,rate=10M,latency=500us");
  EXPECT_EQ(p.hints_parsed["latency_us"], 500);
  const auto req = p.attach_request(12);
  EXPECT_EQ(req["dom"], 12);
  EXPECT_EQ(req["hints"], p.hints);
  EXPECT_EQ(req["devices"][0]["kind"], "channel");
}

TEST(XlConfig, PvhExampleKeepsTheLabCpuidLine) {
  const auto r = load_gears_config(kConfigs + "/gears-pvh.cfg");
  ASSERT_TRUE(std::holds_alternative<GearsPlan>(r));
  EXPECT_EQ(std::get<GearsPlan>(r).type, "pvh");
  const auto keys = scan_config_keys(std::string("cpuid = \"host,rdtscp=0\"\n"));
  ASSERT_EQ(keys.size(), 1U);
}

TEST(XlConfig, BrokenUnknownKeyNamesFileLineKeyAndSuggestion) {
  const std::string f = kConfigs + "/broken/unknown-key.cfg";
  const auto e = expect_error(load_gears_config(f));
  EXPECT_EQ(e.file, f);
  EXPECT_EQ(e.line, 6);
  EXPECT_EQ(e.key, "gears_chanel");
  EXPECT_NE(e.message.find("did you mean 'gears_channel'"), std::string::npos) << e.message;
  EXPECT_EQ(e.format().rfind(f + ":6: gears_chanel: unknown Gears key", 0), 0U) << e.format();
}

TEST(XlConfig, BrokenHintsNamesFileLineKey) {
  const std::string f = kConfigs + "/broken/bad-hints.cfg";
  const auto e = expect_error(load_gears_config(f));
  EXPECT_EQ(e.line, 6);
  EXPECT_EQ(e.key, "gears_hints");
  EXPECT_NE(e.message.find("platinum"), std::string::npos);
}

TEST(XlConfig, BrokenSyntaxUsesLibxlutilLine) {
  const std::string f = kConfigs + "/broken/syntax.cfg";
  const auto e = expect_error(load_gears_config(f));
  EXPECT_EQ(e.file, f);
  EXPECT_EQ(e.line, 5);
  EXPECT_EQ(e.key, "gears_hints");
  EXPECT_NE(e.message.find("syntax error"), std::string::npos) << e.message;
}

TEST(XlConfig, SemanticErrors) {
  gears::test::TempDir d;
  struct Case {
    std::string text;
    int line;
    const char* key;
    const char* needle;
  } cases[] = {
      {kBase + "gears_channel = 2\n", 4, "gears_channel", "0 or 1"},
      {kBase + "gears_channel = \"yes\"\n", 4, "gears_channel", "0 or 1"},
      {kBase + "gears_channel = [ 1 ]\n", 4, "gears_channel", "0 or 1"},
      {kBase + "gears_hints = [ ]\n", 4, "gears_hints", "the list is empty"},
      {kBase + "gears_hints = [ \"class=gold\", \"flow=tcp:99999,class=bronze\" ]\n", 4, "gears_hints", "item 1: flow:"},
      {kBase + "gears_hints = [ \"class=gold\", \"\" ]\n", 4, "gears_hints", "item 1:"},
      {kBase + "gears_hints = \"\"\n", 4, "gears_hints", "empty"},
      {kBase + "gears_hints = \"class=gold\"\n\ngears_hints = \"class=silver\"\n", 6, "gears_hints", "first on line 4"},
      {"type = \"pv\"\ngears_channel = 1\n", 0, "name", "needs a string `name`"},
      {kBase + "gears_disk = \"vdev=xvdb\"\n", 4, "gears_disk", "list of strings"},
      {kBase + "gears_disk = [ \"vdev=xvdb\" ]\n", 4, "gears_disk", "missing 'target='"},
      {kBase + "gears_disk = [ \"vdev=xvdb,target=/a.img,class=tin\" ]\n", 4, "gears_disk", "class: 'tin'"},
      {kBase + "gears_disk = [ \"vdev=xvdb,target=/a,target=/b\" ]\n", 4, "gears_disk", "given twice"},
      {kBase + "gears_vif = [ \"bridge\" ]\n", 4, "gears_vif", "not key=value"},
      {kBase + "gears = 1\ngears_zzzzzzzz = 1\n", 5, "gears_zzzzzzzz", "unknown Gears key; known"},
      {kBase + "gears_proctrack = 1\n", 4, "gears_proctrack", "needs type = \"pvh\" or \"hvm\" (this domain is \"pv\")"},
      {"name = \"t\"\ngears_proctrack = 1\n", 2, "gears_proctrack", "pv by default"},
      {kPvh + "gears_proctrack = 2\n", 4, "gears_proctrack", "must be 0, 1 or a string"},
      {kPvh + "gears_proctrack = [ \"os=linux\" ]\n", 4, "gears_proctrack", "must be 0, 1 or a string"},
      {kPvh + "gears_proctrack = \"kpti=on,pcid=1\"\n", 4, "gears_proctrack", "unknown parameter 'pcid' (known: os,"},
      {kPvh + "gears_proctrack = \"kpti=on,kpti=off\"\n", 4, "gears_proctrack", "'kpti' given twice"},
      {kPvh + "gears_proctrack = \"kpti\"\n", 4, "gears_proctrack", "not key=value"},
      {kPvh + "gears_proctrak = 1\n", 4, "gears_proctrak", "did you mean 'gears_proctrack'"},
  };
  int i = 0;
  for (const auto& c : cases) {
    const std::string f = d.write("c" + std::to_string(i++) + ".cfg", c.text);
    const auto e = expect_error(load_gears_config(f));
    EXPECT_EQ(e.file, f) << c.text;
    EXPECT_EQ(e.line, c.line) << c.text;
    EXPECT_EQ(e.key, c.key) << c.text;
    EXPECT_NE(e.message.find(c.needle), std::string::npos) << c.text << " -> " << e.format();
  }
}

TEST(XlConfig, HintListGivesOneSetPerItem) {
  const auto r = load_gears_config(kConfigs + "/gears-net-flows.cfg");
  ASSERT_TRUE(std::holds_alternative<GearsPlan>(r)) << std::get<ConfigError>(r).format();
  const auto& p = std::get<GearsPlan>(r);
  EXPECT_TRUE(p.hints.empty());
  ASSERT_EQ(p.hint_sets.size(), 3U);
  EXPECT_EQ(p.hint_sets[1], "flow=tcp:5201,class=bronze");
  EXPECT_EQ(p.hint_sets_parsed[2]["scope"], "flow");
  EXPECT_EQ(p.hint_sets_parsed[2]["flow_keys"].size(), 2U);
  const auto req = p.attach_request(7);
  ASSERT_TRUE(req["hints"].is_array());
  EXPECT_EQ(req["hints"].size(), 3U);
  EXPECT_EQ(req["devices"][0]["kind"], "vif");
  EXPECT_EQ(p.to_json()["hints"][2]["parsed"]["rate_bps"], 1000000);
}

TEST(XlConfig, DeviceListsBecomePlannedDevices) {
  gears::test::TempDir d;
  const std::string f = d.write("ok.cfg", kBase +
                                              "gears_disk = [ \"vdev=xvdb,target=/srv/a.img,class=gold,latency=2ms\",\n"
                                              "               \"vdev=xvdc,target=/srv/b.img,mode=r,dcache=writeback\" ]\n"
                                              "gears_vif = [ \"mac=00:16:3e:00:00:01,bridge=br0,rate=100M\",\n"
                                              "              \"host=xdp:eth1,xdp-mode=skb,class=gold,coalesce=off\" ]\n"
                                              "gears_channel = 0\n");
  const auto r = load_gears_config(f);
  ASSERT_TRUE(std::holds_alternative<GearsPlan>(r)) << std::get<ConfigError>(r).format();
  const auto& p = std::get<GearsPlan>(r);
  ASSERT_EQ(p.devices.size(), 4U);
  EXPECT_EQ(p.devices[0].kind, "vbd");
  EXPECT_EQ(p.devices[0].params["hints"], "class=gold,latency=2ms");
  EXPECT_EQ(p.devices[1].devid, 1U);
  EXPECT_EQ(p.devices[1].params["mode"], "r");
  EXPECT_EQ(p.devices[2].kind, "vif");
  EXPECT_EQ(p.devices[2].params["bridge"], "br0");
  EXPECT_EQ(p.devices[2].line, 6);
  EXPECT_EQ(p.devices[1].params["dcache"], "writeback");
  EXPECT_EQ(p.devices[3].params["host"], "xdp:eth1");
  EXPECT_EQ(p.devices[3].params["xdp-mode"], "skb");
  EXPECT_EQ(p.devices[3].params["coalesce"], "off") << "a vif key, not a hint";
  EXPECT_EQ(p.devices[3].params["hints"], "class=gold");
}

// proctrack is planned before the devices, so it watches the guest from its first instruction (gearsctl create
// attaches everything while the domain is still paused).
TEST(XlConfig, ProctrackIsPlannedFirstWithItsParameters) {
  gears::test::TempDir d;
  auto plan = [&](const std::string& name, const std::string& text) {
    const auto r = load_gears_config(d.write(name, text));
    EXPECT_TRUE(std::holds_alternative<GearsPlan>(r)) << std::get<ConfigError>(r).format();
    return std::holds_alternative<GearsPlan>(r) ? std::get<GearsPlan>(r) : GearsPlan{};
  };
  auto p = plan("a.cfg", kPvh + "gears_disk = [ \"vdev=xvdb,target=/srv/a.img,procs=postgres:gold;backup:bronze\" ]\n"
                                "gears_proctrack = \"kpti=auto,rescan_ms=500\"\n");
  ASSERT_EQ(p.devices.size(), 2U);
  EXPECT_EQ(p.devices[0].kind, "proctrack");
  EXPECT_EQ(p.devices[0].devid, 0U);
  EXPECT_EQ(p.devices[0].params["kpti"], "auto");
  EXPECT_EQ(p.devices[0].params["rescan_ms"], "500");
  EXPECT_EQ(p.devices[0].line, 5);
  EXPECT_EQ(p.devices[1].params["procs"], "postgres:gold;backup:bronze") << "a disk key, not a hint";
  EXPECT_FALSE(p.devices[1].params.contains("hints"));
  EXPECT_EQ(p.attach_request(9)["devices"][0]["kind"], "proctrack");
  p = plan("b.cfg", kPvh + "gears_proctrack = 1\n");
  ASSERT_EQ(p.devices.size(), 1U);
  EXPECT_TRUE(p.devices[0].params.empty());
  EXPECT_TRUE(plan("c.cfg", kPvh + "gears_proctrack = 0\n").devices.empty());
  EXPECT_EQ(plan("d.cfg", "name = \"t\"\nbuilder = \"hvm\"\ngears_proctrack = 1\n").devices.size(), 1U);
}

TEST(XlConfig, NoGearsKeysMeansNothingForGearsd) {
  gears::test::TempDir d;
  const auto r = load_gears_config(d.write("plain.cfg", kBase + "memory = 256\n"));
  ASSERT_TRUE(std::holds_alternative<GearsPlan>(r));
  EXPECT_FALSE(std::get<GearsPlan>(r).wants_gearsd());
  EXPECT_TRUE(std::get<GearsPlan>(r).to_json()["attach"].is_null());
}

TEST(XlConfig, UnreadableFile) {
  const auto e = expect_error(load_gears_config("/nonexistent/x.cfg"));
  EXPECT_EQ(e.file, "/nonexistent/x.cfg");
  EXPECT_EQ(e.line, 0);
  EXPECT_NE(e.message.find("cannot read"), std::string::npos);
}

TEST(XlConfigScan, FindsStatementKeysOnly) {
  const std::string text =
      "# gears_fake = 1 in a comment\n"
      "name = \"a # not a comment; gears_no = 2\"\n"
      "disk = [ 'x',\n"
      "  'gears_in_list=1' ]; memory = 5\n"
      "extra += \"y\"\n"
      "\n"
      "  gears_channel=1\n"
      "notakey\n";
  const auto keys = scan_config_keys(text);
  ASSERT_EQ(keys.size(), 5U);
  EXPECT_EQ(keys[0].key, "name");
  EXPECT_EQ(keys[0].line, 2);
  EXPECT_EQ(keys[1].key, "disk");
  EXPECT_EQ(keys[2].key, "memory");
  EXPECT_EQ(keys[2].line, 4);
  EXPECT_EQ(keys[3].key, "extra");
  EXPECT_EQ(keys[4].key, "gears_channel");
  EXPECT_EQ(keys[4].line, 7);
}
