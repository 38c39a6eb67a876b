#include "common/xen/grant.hpp"
#include "tests/fake/fake.hpp"

#include <gtest/gtest.h>

#include <cstring>

namespace gears::xen {
namespace {

class GrantTest : public ::testing::Test {
 protected:
  void SetUp() override { fake::reset(); }
  void TearDown() override {
    auto c = fake::counters();
    EXPECT_EQ(c.gnttab_handles, 0U);
    EXPECT_EQ(c.gntshr_handles, 0U);
    EXPECT_EQ(c.grants, 0U);
    EXPECT_EQ(c.mapped_pages, 0U);
  }
};

TEST_F(GrantTest, SharedPagesAreTheSameMemoryInBothDomains) {
  fake::AsDomain as5(5);
  GrantSharer sharer;
  GrantShare share(sharer, 0, 3);
  ASSERT_EQ(share.refs().size(), 3U);
  std::memcpy(share.data() + kPageSize, "hello", 6);
  {
    fake::AsDomain as0(0);
    GrantTable gt;
    auto m = gt.map(5, share.refs(), true);
    ASSERT_TRUE(m.ok()) << m.error().what;
    EXPECT_EQ(m.value().pages(), 3U);
    EXPECT_STREQ(reinterpret_cast<const char*>(m.value().data() + kPageSize), "hello");
    std::memcpy(m.value().data(), "back", 5);
    EXPECT_STREQ(reinterpret_cast<const char*>(share.data()), "back");
    EXPECT_EQ(fake::counters().mapped_pages, 3U);
  }
  EXPECT_EQ(fake::counters().mapped_pages, 0U);
}

TEST_F(GrantTest, BadRefsAndWrongDomainAndReadOnlyFail) {
  GrantSharer sharer5 = [] { fake::AsDomain d(5); return GrantSharer(); }();
  GrantShare ro(sharer5, 0, 1, /*writable=*/false);
  GrantShare to7(sharer5, 7, 1);
  GrantTable gt;  // dom0
  EXPECT_EQ(gt.map(5, 9999, false).error().code, EINVAL);
  EXPECT_EQ(gt.map(5, to7.refs()[0], false).error().code, EINVAL) << "granted to dom7, not us";
  EXPECT_EQ(gt.map(5, ro.refs()[0], true).error().code, EINVAL) << "read-only grant mapped writable";
  auto m = gt.map(5, ro.refs()[0], false);
  EXPECT_TRUE(m.ok());
  EXPECT_EQ(gt.map(6, ro.refs()[0], false).error().code, EINVAL) << "wrong granting domain";
}

TEST_F(GrantTest, UnshareWhileMappedIsDeferred) {
  GrantSharer sharer = [] { fake::AsDomain d(5); return GrantSharer(); }();
  GrantTable gt;
  auto share = std::make_unique<GrantShare>(sharer, 0, 1);
  const grant_ref_t ref = share->refs()[0];
  auto m = gt.map(5, ref, true);
  ASSERT_TRUE(m.ok());
  share.reset();  // unshare while dom0 still maps it
  auto info = fake::grant_info(5, ref);
  ASSERT_TRUE(info.has_value());
  EXPECT_TRUE(info->ended);
  EXPECT_EQ(gt.map(5, ref, true).error().code, EINVAL) << "no new maps of an ended grant";
  m.value().data()[0] = std::byte{1};  // still valid memory
  m.value().reset();
  EXPECT_FALSE(fake::grant_info(5, ref).has_value());
}

TEST_F(GrantTest, PersistentCacheMapsOncePerRef) {
  GrantSharer sharer = [] { fake::AsDomain d(5); return GrantSharer(); }();
  GrantShare share(sharer, 0, 3);
  GrantTable gt;
  PersistentGrantCache cache(gt, 2);
  auto a = cache.get(5, share.refs()[0]);
  ASSERT_TRUE(a.ok());
  auto a2 = cache.get(5, share.refs()[0]);
  ASSERT_TRUE(a2.ok());
  EXPECT_EQ(a.value().data(), a2.value().data());
  EXPECT_TRUE(cache.get(5, share.refs()[1]).ok());
  EXPECT_EQ(cache.get(5, share.refs()[2]).error().code, ENOSPC);
  EXPECT_EQ(fake::counters().mapped_pages, 2U);
  cache.erase(5, share.refs()[0]);
  EXPECT_FALSE(cache.contains(5, share.refs()[0]));
  EXPECT_EQ(fake::counters().mapped_pages, 1U);
  EXPECT_EQ(cache.get(5, 4242).error().code, EINVAL);
  cache.clear();
  EXPECT_EQ(fake::counters().mapped_pages, 0U);
}

TEST_F(GrantTest, GrantCopyBatchPerSegmentStatus) {
  GrantSharer sharer = [] { fake::AsDomain d(5); return GrantSharer(); }();
  GrantShare rw(sharer, 0, 1);
  GrantShare ro(sharer, 0, 1, false);
  std::memcpy(rw.data() + 100, "payload", 7);
  GrantTable gt;
  std::array<std::byte, 7> in{};
  std::array<std::byte, 3> out{std::byte{'x'}, std::byte{'y'}, std::byte{'z'}};
  GrantCopyBatch batch(gt);
  ASSERT_TRUE(batch.copy_from_grant(5, rw.refs()[0], 100, in).ok());
  ASSERT_TRUE(batch.copy_to_grant(out, 5, rw.refs()[0], 0).ok());
  ASSERT_TRUE(batch.copy_to_grant(out, 5, ro.refs()[0], 0).ok());   // read-only
  ASSERT_TRUE(batch.copy_from_grant(5, 777, 0, in).ok());            // bad ref
  EXPECT_FALSE(batch.copy_from_grant(5, rw.refs()[0], 4095, in).ok()) << "crosses the page";
  ASSERT_TRUE(batch.execute().ok());
  EXPECT_TRUE(batch.segment(0).ok());
  EXPECT_TRUE(batch.segment(1).ok());
  EXPECT_EQ(batch.segment(2).error().code, EPERM);
  EXPECT_EQ(batch.gntst(3), GNTST_bad_gntref);
  EXPECT_FALSE(batch.all_ok());
  EXPECT_EQ(std::memcmp(in.data(), "payload", 7), 0);
  EXPECT_EQ(std::memcmp(rw.data(), "xyz", 3), 0);
  EXPECT_EQ(std::memcmp(ro.data(), "\0\0\0", 3), 0);
}

// Ref to ref: a guest's page into a page dom0 granted to itself (tx-split=grant), and the rules of both sides.
TEST_F(GrantTest, GrantToGrantCopyIncludingASelfGrant) {
  GrantSharer guest = [] { fake::AsDomain d(5); return GrantSharer(); }();
  GrantShare src(guest, 0, 1, false);
  std::memcpy(src.data() + 300, "guest bytes", 11);
  GrantSharer self;  // dom0's own gntalloc handle
  GrantShare pool(self, 0, 2);
  GrantShare other(self, 7, 1);  // granted to someone else: not ours to copy into
  GrantTable gt;
  GrantCopyBatch batch(gt);
  ASSERT_TRUE(batch.copy_grant_to_grant(5, src.refs()[0], 300, 0, pool.refs()[1], 300, 11).ok());
  ASSERT_TRUE(batch.copy_grant_to_grant(5, src.refs()[0], 300, 0, pool.refs()[0], 4000, 11).ok());
  ASSERT_TRUE(batch.copy_grant_to_grant(5, src.refs()[0], 300, 0, other.refs()[0], 0, 11).ok());
  ASSERT_TRUE(batch.copy_grant_to_grant(5, src.refs()[0], 300, 5, src.refs()[0], 0, 11).ok());  // read-only dest
  EXPECT_FALSE(batch.copy_grant_to_grant(5, src.refs()[0], 4090, 0, pool.refs()[0], 0, 11).ok()) << "crosses";
  EXPECT_FALSE(batch.copy_grant_to_grant(5, src.refs()[0], 0, 0, pool.refs()[0], 4090, 11).ok()) << "crosses";
  ASSERT_TRUE(batch.execute().ok());
  EXPECT_TRUE(batch.segment(0).ok());
  EXPECT_TRUE(batch.segment(1).ok());
  EXPECT_EQ(batch.segment(2).error().code, EPERM);
  EXPECT_EQ(batch.segment(3).error().code, EPERM);
  EXPECT_EQ(std::memcmp(pool.data() + 4096 + 300, "guest bytes", 11), 0);
  EXPECT_EQ(std::memcmp(pool.data() + 4000, "guest bytes", 11), 0);
}

TEST_F(GrantTest, MovesTransferOwnership) {
  GrantSharer sharer = [] { fake::AsDomain d(5); return GrantSharer(); }();
  GrantShare a(sharer, 0, 2);
  GrantShare b(std::move(a));
  EXPECT_FALSE(a.valid());  // NOLINT(bugprone-use-after-move)
  EXPECT_EQ(b.pages(), 2U);
  GrantTable t1;
  auto m = t1.map(5, b.refs(), false);
  ASSERT_TRUE(m.ok());
  GrantMapping held = std::move(m).value();
  GrantMapping other;
  other = std::move(held);
  EXPECT_EQ(fake::counters().mapped_pages, 2U);
  EXPECT_EQ(fake::counters().grants, 2U);
}

}  // namespace
}  // namespace gears::xen
