// Attribution: per-process byte counts from the registry's process oracle, queried once per ring read.
#include "dom0/backends/blk/attribution.hpp"

#include <gtest/gtest.h>

#include <memory>
#include <vector>

namespace gears::blk {
namespace {

// Records every query; answers pid 100 + vcpu, or nothing for vCPU 7.
class FakeOracle final : public daemon::ProcessOracle {
 public:
  struct Query {
    std::uint32_t dom, vcpu;
    std::int64_t t;
  };
  std::optional<daemon::GuestProcess> submitter(std::uint32_t dom, std::uint32_t vcpu,
                                                std::int64_t t) const override {
    queries.push_back({dom, vcpu, t});
    if (vcpu == 7) return std::nullopt;
    return daemon::GuestProcess{static_cast<std::int32_t>(100 + vcpu), "p" + std::to_string(vcpu), 0x1000};
  }
  mutable std::vector<Query> queries;
};

TEST(BlkAttribution, WithoutAnOracleNothingIsAttributed) {
  daemon::HintRegistry reg;
  Attribution a(&reg);
  const auto p = a.look(5, 0, 1000);
  EXPECT_EQ(p, -1);
  a.account(p, false, 4096);
  EXPECT_EQ(a.unattributed(), 1U);
  EXPECT_TRUE(a.to_json().empty());
  Attribution none(nullptr);
  EXPECT_EQ(none.look(5, 0, 1000), -1);
}

TEST(BlkAttribution, CountsPerProcessWithPerQueueWindows) {
  daemon::HintRegistry reg;
  auto oracle = std::make_shared<FakeOracle>();
  reg.set_process_oracle(oracle);
  Attribution a(&reg);
  const auto p0 = a.look(5, 0, 1000);
  const auto p1 = a.look(5, 1, 1500);
  const auto again = a.look(5, 0, 2000);
  EXPECT_EQ(p0, again) << "one index per process";
  EXPECT_NE(p0, p1);
  a.account(p0, false, 4096);
  a.account(again, true, 8192);
  a.account(p1, false, 512);
  const auto j = a.to_json();
  ASSERT_TRUE(j.contains("100 p0"));
  EXPECT_EQ(j["100 p0"]["bytes_read"], 4096U);
  EXPECT_EQ(j["100 p0"]["bytes_written"], 8192U);
  EXPECT_EQ(j["100 p0"]["reqs"], 2U);
  EXPECT_EQ(j["101 p1"]["bytes"], 512U);
  EXPECT_EQ(a.attributed(), 3U);
  ASSERT_EQ(oracle->queries.size(), 3U);
  EXPECT_EQ(oracle->queries[0].t, 1000);
  EXPECT_EQ(oracle->queries[2].t, 2000);
  EXPECT_EQ(oracle->queries[2].dom, 5U);
  EXPECT_EQ(oracle->queries[1].vcpu, 1U) << "queue i is vCPU i";
  EXPECT_EQ(a.look(5, 7, 3000), -1) << "unknown at that time";
}

TEST(BlkAttribution, ProcessTableIsBounded) {
  daemon::HintRegistry reg;
  struct Many final : daemon::ProcessOracle {
    mutable std::int32_t next = 0;
    std::optional<daemon::GuestProcess> submitter(std::uint32_t, std::uint32_t, std::int64_t) const override {
      return daemon::GuestProcess{next++, "x", 0};
    }
  };
  reg.set_process_oracle(std::make_shared<Many>());
  Attribution a(&reg);
  std::int32_t last = -1;
  for (std::size_t i = 0; i < Attribution::kMaxProcesses + 50; ++i) last = a.look(5, 0, static_cast<std::int64_t>(i + 1));
  a.account(last, false, 1);
  const auto j = a.to_json();
  EXPECT_EQ(j.size(), Attribution::kMaxProcesses + 1);
  EXPECT_EQ(j["other"]["bytes"], 1U);
}

// Answers whatever process `now` holds (nullopt: not monitored).
class SwitchOracle final : public daemon::ProcessOracle {
 public:
  std::optional<daemon::GuestProcess> submitter(std::uint32_t, std::uint32_t, std::int64_t) const override { return now; }
  std::optional<daemon::GuestProcess> now;
};

daemon::HintRecord process_hint(std::uint32_t pid, const std::string& comm, std::uint8_t cls, bool as_pkey = false) {
  daemon::HintRecord r;
  r.set.scope.kind = hints::ScopeKind::process;
  if (as_pkey) r.set.process_key = hints::PidComm{pid, comm};
  else r.set.process = hints::ProcessIdentity{pid, comm, ""};
  r.set.qos = hints::Qos{cls, 0};
  return r;
}

TEST(BlkAttribution, CommRulesClassifyByTheProcessName) {
  daemon::HintRegistry reg;
  auto oracle = std::make_shared<SwitchOracle>();
  reg.set_process_oracle(oracle);
  Attribution a(&reg);
  EXPECT_FALSE(a.has_rules());
  a.set_comm_rules(parse_procs("busybox-hi:gold;busybox-lo:bronze"));
  EXPECT_TRUE(a.has_rules());
  EXPECT_FALSE(a.class_of(-1)) << "nobody looked up: no process class";
  oracle->now = daemon::GuestProcess{40, "busybox-hi", 0x1000};
  const auto hi = a.look(5, 0, 1);
  oracle->now = daemon::GuestProcess{41, "busybox-lo", 0x2000};
  const auto lo = a.look(5, 0, 2);
  oracle->now = daemon::GuestProcess{42, "sh", 0x3000};
  const auto sh = a.look(5, 0, 3);
  ASSERT_TRUE(a.class_of(hi));
  EXPECT_EQ(a.class_of(hi)->cls, 0U);
  EXPECT_EQ(a.class_of(lo)->cls, 2U);
  EXPECT_FALSE(a.class_of(sh)) << "no rule names sh";
  // A process that execs keeps its pid and takes the rule of its new name.
  oracle->now = daemon::GuestProcess{42, "busybox-hi", 0x3000};
  EXPECT_EQ(a.look(5, 0, 4), sh);
  EXPECT_EQ(a.class_of(sh)->cls, 0U);
  a.account_rule(a.class_of(hi)->key, 4096);
  a.account_rule(a.class_of(sh)->key, 512);
  a.account_rule(a.class_of(lo)->key, 8192);
  a.account_rule(-1, 1);  // no rule: ignored
  const auto j = a.rules_json();
  ASSERT_EQ(j.size(), 2U) << j.dump();
  EXPECT_EQ(j["comm=busybox-hi"]["class"], "gold");
  EXPECT_EQ(j["comm=busybox-hi"]["source"], "procs");
  EXPECT_EQ(j["comm=busybox-hi"]["reqs"], 2U);
  EXPECT_EQ(j["comm=busybox-hi"]["bytes"], 4608U);
  EXPECT_EQ(j["comm=busybox-lo"]["bytes"], 8192U);
}

TEST(BlkAttribution, ProcessHintsWinOverCommRulesNewestFirstAndNeedTheSameName) {
  daemon::HintRegistry reg;
  auto oracle = std::make_shared<SwitchOracle>();
  reg.set_process_oracle(oracle);
  Attribution a(&reg);
  a.set_comm_rules(parse_procs("dd:bronze"));
  oracle->now = daemon::GuestProcess{77, "dd", 0x1000};
  const auto dd = a.look(5, 0, 1);
  EXPECT_EQ(a.class_of(dd)->cls, 2U);

  // Oldest first, as HintRegistry::snapshot gives them: the newer set for pid 77 wins.
  EXPECT_TRUE(a.set_hint_rules({process_hint(77, "dd", 1), process_hint(77, "dd", 0)}));
  EXPECT_EQ(a.class_of(dd)->cls, 0U);
  EXPECT_FALSE(a.set_hint_rules({process_hint(77, "dd", 1), process_hint(77, "dd", 0)})) << "unchanged";
  // The same pid under another name (reused after the process exited): the hint does not follow it.
  EXPECT_TRUE(a.set_hint_rules({process_hint(77, "mpv", 0)}));
  EXPECT_EQ(a.class_of(dd)->cls, 2U) << "back to the comm rule";
  // pkey=<pid>/<comm> names a process as well; an opaque key, a set without a class or of another scope names none.
  daemon::HintRecord opaque = process_hint(77, "dd", 0);
  opaque.set.process.reset();
  opaque.set.process_key = std::uint64_t{77};
  daemon::HintRecord no_class = process_hint(77, "dd", 0);
  no_class.set.qos.reset();
  daemon::HintRecord domain = process_hint(77, "dd", 0);
  domain.set.scope.kind = hints::ScopeKind::domain;
  EXPECT_TRUE(a.set_hint_rules({opaque, no_class, domain}));
  EXPECT_EQ(a.class_of(dd)->cls, 2U);
  EXPECT_TRUE(a.set_hint_rules({process_hint(77, "dd", 1, true)}));
  EXPECT_EQ(a.class_of(dd)->cls, 1U);
  a.account_rule(a.class_of(dd)->key, 100);
  const auto j = a.rules_json();
  EXPECT_EQ(j["pid=77"]["source"], "hints");
  EXPECT_EQ(j["pid=77"]["class"], "silver");
  EXPECT_EQ(j["pid=77"]["active"], true);
  EXPECT_EQ(j["pid=77"]["bytes"], 100U);
  EXPECT_TRUE(a.set_hint_rules({}));
  EXPECT_EQ(a.rules_json()["pid=77"]["active"], false) << "withdrawn, its statistics stay";
  EXPECT_EQ(a.class_of(dd)->cls, 2U);
}

TEST(BlkAttribution, RuleStatisticsAreBounded) {
  daemon::HintRegistry reg;
  Attribution a(&reg);
  // Each round a new pid: keys accumulate up to the bound, then share "other".
  for (std::uint32_t round = 0; round < Attribution::kMaxRuleKeys + 20; ++round)
    (void)a.set_hint_rules({process_hint(1000 + round, "w", 0)});
  const auto j = a.rules_json();
  EXPECT_EQ(j.size(), Attribution::kMaxRuleKeys + 1);
  EXPECT_TRUE(j.contains("other"));
}

}  // namespace
}  // namespace gears::blk
