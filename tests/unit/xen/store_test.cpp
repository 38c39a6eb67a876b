#include "common/xen/store.hpp"
#include "tests/fake/fake.hpp"

#include <gtest/gtest.h>

#include <poll.h>

namespace gears::xen {
namespace {

bool readable(int fd) {
  pollfd p{fd, POLLIN, 0};
  return ::poll(&p, 1, 0) == 1 && (p.revents & POLLIN) != 0;
}

class StoreTest : public ::testing::Test {
 protected:
  void SetUp() override { fake::reset(); }
  void TearDown() override {
    auto c = fake::counters();
    EXPECT_EQ(c.xs_handles, 0U);
    EXPECT_EQ(c.xs_watches, 0U);
    EXPECT_EQ(c.xs_transactions, 0U);
  }
};

TEST_F(StoreTest, WriteReadDirectoryRm) {
  Store s;
  ASSERT_TRUE(s.write("/a/b/c", "1").ok());
  ASSERT_TRUE(s.write("/a/b/d", "two").ok());
  EXPECT_EQ(s.read("/a/b/d").value(), "two");
  EXPECT_EQ(s.read_uint("/a/b/c").value(), 1U);
  EXPECT_EQ(s.read_uint("/a/b/d").error().code, EINVAL);
  auto dir = s.directory("/a/b");
  ASSERT_TRUE(dir.ok());
  EXPECT_EQ(dir.value(), (std::vector<std::string>{"c", "d"}));
  ASSERT_TRUE(s.rm("/a").ok());
  EXPECT_EQ(s.read("/a/b/c").error().code, ENOENT);
  EXPECT_FALSE(s.exists("/a"));
  EXPECT_TRUE(s.rm("/a").ok()) << "rm of a missing node under an existing parent succeeds";
  EXPECT_EQ(s.rm("/nope/x").error().code, ENOENT);
}

TEST_F(StoreTest, PermissionsDenyOtherDomainsAndInherit) {
  Store dom0;
  ASSERT_TRUE(dom0.write("/local/domain/5/device/vbd/51712/state", "1").ok());
  ASSERT_TRUE(dom0.set_perms("/local/domain/5/device", Perms{5, Access::None, {{0, Access::Read}}}).ok());
  {
    fake::AsDomain d7(7);
    Store other;
    EXPECT_EQ(other.read("/local/domain/5/device").error().code, EACCES);
    EXPECT_EQ(other.write("/local/domain/5/device/x", "1").error().code, EACCES);
  }
  {
    fake::AsDomain d5(5);
    Store guest;
    ASSERT_TRUE(guest.write("/local/domain/5/device/new", "v").ok());
    // dom0-owned, others=None node below: the guest can't read it ...
    EXPECT_EQ(guest.read("/local/domain/5/device/vbd/51712/state").error().code, EACCES);
    // ... but what it creates inherits the parent's perms with itself as owner.
    auto p = guest.get_perms("/local/domain/5/device/new");
    ASSERT_TRUE(p.ok());
    EXPECT_EQ(p.value().owner, 5);
    EXPECT_EQ(p.value().others, Access::None);
    EXPECT_EQ(p.value().acl, (std::vector<std::pair<domid_t, Access>>{{0, Access::Read}}));
    // Only the owner may change permissions.
    EXPECT_EQ(guest.set_perms("/local/domain/5/device/vbd/51712/state", Perms{5, Access::Read, {}}).error().code,
              EACCES);
  }
  EXPECT_EQ(fake::store_read("/local/domain/5/device/new"), "v");
}

TEST_F(StoreTest, WatchFiresOnRegistrationAndOnChangesBelow) {
  Store s;
  {
    Watch w = s.watch("/local/domain/3/device", "tok");
    EXPECT_TRUE(readable(s.fd()));
    auto ev = s.read_watch();
    ASSERT_TRUE(ev.ok());
    EXPECT_EQ(ev.value().path, "/local/domain/3/device");
    EXPECT_EQ(ev.value().token, "tok");
    EXPECT_EQ(s.read_watch().error().code, EAGAIN);
    EXPECT_FALSE(readable(s.fd()));

    fake::store_write("/local/domain/3/device/vif/0/state", "4");
    EXPECT_TRUE(readable(s.fd()));
    std::vector<std::string> paths;
    while (auto e = s.read_watch()) paths.push_back(e.value().path);
    EXPECT_NE(std::find(paths.begin(), paths.end(), "/local/domain/3/device/vif/0/state"), paths.end());
    fake::store_write("/local/domain/4/other", "x");
    EXPECT_FALSE(readable(s.fd())) << "changes outside the watched path do not fire";
    fake::store_write("/local/domain/3/device/vif/0/state", "5");
  }
  // Unwatching dropped the queued event (XS_UNWATCH_FILTER).
  EXPECT_EQ(s.read_watch().error().code, EAGAIN);
  EXPECT_EQ(fake::counters().xs_watches, 0U);
}

TEST_F(StoreTest, WatchSurvivesStoreMove) {
  Store a;
  Watch w = a.watch("/x", "t");
  Store b(std::move(a));
  Watch w2 = std::move(w);
  EXPECT_FALSE(w.active());  // NOLINT(bugprone-use-after-move)
  EXPECT_TRUE(w2.active());
  EXPECT_EQ(b.read_watch().value().token, "t");
  EXPECT_EQ(fake::counters().xs_watches, 1U);
}

TEST_F(StoreTest, TransactionIsolatesAndCommits) {
  Store s;
  {
    Transaction t = s.transaction();
    ASSERT_TRUE(t.write("/t/a", "1").ok());
    EXPECT_EQ(t.read("/t/a").value(), "1");
    EXPECT_FALSE(s.exists("/t/a")) << "invisible outside until commit";
    ASSERT_TRUE(t.commit().ok());
  }
  EXPECT_EQ(s.read("/t/a").value(), "1");
  {
    Transaction t = s.transaction();
    ASSERT_TRUE(t.write("/t/b", "2").ok());
  }  // aborted by the destructor
  EXPECT_FALSE(s.exists("/t/b"));
}

TEST_F(StoreTest, TransactionConflictIsEagain) {
  Store s;
  ASSERT_TRUE(s.write("/c/x", "0").ok());
  Transaction t = s.transaction();
  ASSERT_TRUE(t.read("/c/x").ok());
  ASSERT_TRUE(s.write("/c/x", "changed").ok());
  ASSERT_TRUE(t.write("/c/y", "1").ok());
  auto st = t.commit();
  ASSERT_FALSE(st.ok());
  EXPECT_EQ(st.error().code, EAGAIN);
  EXPECT_FALSE(s.exists("/c/y"));
}

TEST_F(StoreTest, TransactRetriesOnEagain) {
  Store s;
  fake::fail_next_commits(2);
  int runs = 0;
  auto st = s.transact([&](Transaction& t) -> Status {
    ++runs;
    return t.write("/r/n", std::to_string(runs));
  });
  ASSERT_TRUE(st.ok());
  EXPECT_EQ(runs, 3);
  EXPECT_EQ(s.read("/r/n").value(), "3");
  fake::fail_next_commits(100);
  EXPECT_EQ(s.transact([](Transaction& t) { return t.write("/r/n", "x"); }, 4).error().code, EAGAIN);
  fake::fail_next_commits(0);
  EXPECT_EQ(s.transact([](Transaction&) -> Status { return Error{EPROTO, "body"}; }).error().code, EPROTO);
}

TEST_F(StoreTest, InjectedWriteFailure) {
  Store s;
  fake::fail_next_writes(1, ENOSPC);
  EXPECT_EQ(s.write("/f", "1").error().code, ENOSPC);
  EXPECT_TRUE(s.write("/f", "1").ok());
}

TEST_F(StoreTest, MoveReleasesOnce) {
  Store a;
  Store b(std::move(a));
  Store c;
  c = std::move(b);
  EXPECT_EQ(fake::counters().xs_handles, 1U);
}

}  // namespace
}  // namespace gears::xen
