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

}  // namespace
}  // namespace gears::blk
