// Device node creation (as libxl does it) and the strict readers for peer-written keys, over the fake store.
#include "common/xenbus/nodes.hpp"

#include <gtest/gtest.h>

#include <cstdlib>

#include "tests/fake/fake.hpp"

namespace gears::xenbus {
namespace {

DeviceNodes vbd(domid_t dom, unsigned devid) {
  DeviceNodes n;
  n.be_type = "gears-vbd";
  n.fe_type = "vbd";
  n.fe_dom = dom;
  n.devid = devid;
  n.be_keys = {{"params", "/srv/disk.img"}, {"mode", "w"}};
  n.fe_keys = {{"virtual-device", "51712"}};
  return n;
}

class NodesTest : public ::testing::Test {
 protected:
  void SetUp() override { fake::reset(); }
};

TEST_F(NodesTest, PathsFollowTheXenbusLayout) {
  const auto n = vbd(5, 51712);
  EXPECT_EQ(n.be_path(), "/local/domain/0/backend/gears-vbd/5/51712");
  EXPECT_EQ(n.fe_path(), "/local/domain/5/device/vbd/51712");
}

TEST_F(NodesTest, CreateWritesCrossLinksKeysAndPermissions) {
  xen::Store s;
  const auto n = vbd(5, 51712);
  create_device_nodes(s, n);
  EXPECT_EQ(fake::store_read(n.fe_path() + "/backend"), n.be_path());
  EXPECT_EQ(fake::store_read(n.fe_path() + "/backend-id"), "0");
  EXPECT_EQ(fake::store_read(n.fe_path() + "/virtual-device"), "51712");
  EXPECT_EQ(fake::store_read(n.fe_path() + "/state"), "1");
  EXPECT_EQ(fake::store_read(n.be_path() + "/frontend"), n.fe_path());
  EXPECT_EQ(fake::store_read(n.be_path() + "/frontend-id"), "5");
  EXPECT_EQ(fake::store_read(n.be_path() + "/params"), "/srv/disk.img");
  EXPECT_EQ(fake::store_read(n.be_path() + "/online"), "1");
  auto fp = s.get_perms(n.fe_path());
  ASSERT_TRUE(fp);
  EXPECT_EQ(fp->owner, 5);
  ASSERT_EQ(fp->acl.size(), 1U);
  EXPECT_EQ(fp->acl[0].first, 0);
  auto bp = s.get_perms(n.be_path());
  ASSERT_TRUE(bp);
  EXPECT_EQ(bp->owner, 0);
  ASSERT_EQ(bp->acl.size(), 1U);
  EXPECT_EQ(bp->acl[0].first, 5);
  EXPECT_EQ(bp->acl[0].second, xen::Access::Read);

  // Idempotent: a second create leaves a state the backend already advanced alone.
  ASSERT_TRUE(s.write(n.be_path() + "/state", "2"));
  create_device_nodes(s, n);
  EXPECT_EQ(fake::store_read(n.be_path() + "/state"), "2");

  remove_device_nodes(s, n);
  EXPECT_FALSE(fake::store_read(n.be_path() + "/state"));
  EXPECT_FALSE(fake::store_read(n.fe_path() + "/state"));
}

TEST_F(NodesTest, ParseUintIsStrict) {
  EXPECT_EQ(parse_uint("0", 10).value(), 0U);
  EXPECT_EQ(parse_uint("10", 10).value(), 10U);
  EXPECT_EQ(parse_uint("18446744073709551615", UINT64_MAX).value(), UINT64_MAX);
  for (const char* bad : {"", "11", "-1", "+1", " 1", "1 ", "0x1", "1a", "18446744073709551616", "1.0"})
    EXPECT_FALSE(parse_uint(bad, 10)) << "'" << bad << "'";
}

TEST_F(NodesTest, ReadUintTellsMissingFromMalformed) {
  xen::Store s;
  ASSERT_TRUE(s.write("/t/ok", "4096"));
  ASSERT_TRUE(s.write("/t/bad", "4k"));
  EXPECT_EQ(read_uint(s, "/t/ok", 4096).value(), 4096U);
  EXPECT_EQ(read_uint(s, "/t/ok", 4095).error().code, EPROTO);
  EXPECT_EQ(read_uint(s, "/t/bad", 1U << 20U).error().code, EPROTO);
  EXPECT_EQ(read_uint(s, "/t/none", 1).error().code, ENOENT);
  EXPECT_EQ(read_uint_or(s, "/t/none", 1, 1).value(), 1U);
  EXPECT_EQ(read_uint_or(s, "/t/bad", 1, 1).error().code, EPROTO);
}

TEST_F(NodesTest, MultiQueueKeys) {
  xen::Store s;
  const std::string fe = "/local/domain/5/device/vif/0";
  EXPECT_EQ(read_num_queues(s, fe, 4).value(), 1U);  // absent: one queue
  EXPECT_EQ(queue_path(fe, 0, 1), fe);
  for (const char* ok : {"1", "4"}) {
    ASSERT_TRUE(s.write(fe + "/multi-queue-num-queues", ok));
    EXPECT_EQ(read_num_queues(s, fe, 4).value(), static_cast<unsigned>(std::atoi(ok)));
  }
  for (const char* bad : {"0", "5", "-1", "two", ""}) {
    ASSERT_TRUE(s.write(fe + "/multi-queue-num-queues", bad));
    EXPECT_EQ(read_num_queues(s, fe, 4).error().code, EPROTO) << bad;
  }
  EXPECT_EQ(queue_path(fe, 3, 4), fe + "/queue-3");
}

}  // namespace
}  // namespace gears::xenbus
