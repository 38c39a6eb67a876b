// DomainReaper: services of a domain that is gone are detached on @releaseDomain; live domains' devices and
// other kinds are left alone.
#include "dom0/common/domain_reaper.hpp"

#include <gtest/gtest.h>

#include <vector>

#include "tests/fake/fake.hpp"
#include "tests/fake/loop_host.hpp"

namespace gears::backend {
namespace {

TEST(DomainReaper, ReportsServicesOfDeadDomainsOnly) {
  fake::reset();
  fake::store_write("/local/domain/5/name", "alive");
  fake::store_write("/local/domain/6/name", "doomed");
  const std::vector<daemon::DeviceKey> devices = {
      {"proctrack", 5, 0}, {"proctrack", 6, 0}, {"vbd", 6, 51712}};
  std::vector<daemon::DeviceEvent> got;
  {
    fake::LoopHost<> main;
    DomainReaper r({"proctrack"}, [&] { return devices; });
    main.on_loop([&] {
      r.start(main.loop(), [&](daemon::DeviceEvent e) { got.push_back(std::move(e)); });
      return 0;
    });
    fake::fire_special("@releaseDomain");  // nothing died yet
    EXPECT_FALSE(fake::eventually([&] { return main.on_loop([&] { return !got.empty(); }); }, 300));
    // Domain 6 dies: its directory goes, then xenstored fires @releaseDomain.
    xen::Store s;
    ASSERT_TRUE(s.rm("/local/domain/6").ok());
    fake::fire_special("@releaseDomain");
    ASSERT_TRUE(fake::eventually([&] { return main.on_loop([&] { return got.size() == 1; }); }));
    main.on_loop([&] {
      r.stop();
      return 0;
    });
  }
  ASSERT_EQ(got.size(), 1U);
  EXPECT_EQ(got[0].type, daemon::DeviceEvent::Type::disappeared);
  EXPECT_EQ(got[0].spec.key, (daemon::DeviceKey{"proctrack", 6, 0}));
}

}  // namespace
}  // namespace gears::backend
