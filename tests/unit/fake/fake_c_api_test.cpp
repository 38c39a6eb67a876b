// The fake hypervisor's semantics, exercised directly through the libxen C API.
#include "common/xen/libxen.hpp"
#include "tests/fake/fake.hpp"

#include <gtest/gtest.h>

#include <poll.h>
#include <sys/mman.h>

#include <cstdlib>
#include <cstring>
#include <string>

namespace gears {
namespace {

bool readable(int fd) {
  pollfd p{fd, POLLIN, 0};
  return ::poll(&p, 1, 0) == 1 && (p.revents & POLLIN) != 0;
}

std::string xs_get(xs_handle* h, xs_transaction_t t, const char* path) {
  unsigned len = 0;
  void* v = xs_read(h, t, path, &len);
  if (v == nullptr) return "<errno " + std::to_string(errno) + ">";
  std::string s(static_cast<char*>(v), len);
  std::free(v);
  return s;
}

class FakeTest : public ::testing::Test {
 protected:
  void SetUp() override { fake::reset(); }
};

TEST_F(FakeTest, XsRelativePathsAreUnderTheDomainHome) {
  xs_handle* h = nullptr;
  {
    fake::AsDomain d(3);
    h = xs_open(0);
  }
  // dom3 may not create under dom0-owned /local/domain/3 until the toolstack gives it the node.
  EXPECT_FALSE(xs_write(h, XBT_NULL, "data/x", "1", 1));
  EXPECT_EQ(errno, EACCES);
  fake::store_write("/local/domain/3", "");
  xs_handle* d0 = xs_open(0);
  xs_permissions own{3, XS_PERM_NONE};
  ASSERT_TRUE(xs_set_permissions(d0, XBT_NULL, "/local/domain/3", &own, 1));
  ASSERT_TRUE(xs_write(h, XBT_NULL, "data/x", "1", 1));
  EXPECT_EQ(fake::store_read("/local/domain/3/data/x"), "1");
  EXPECT_EQ(xs_get(d0, XBT_NULL, "/local/domain/3/data/x"), "1") << "dom0 bypasses permissions";
  xs_close(d0);
  xs_close(h);
}

TEST_F(FakeTest, XsAclGrantsReadOnly) {
  xs_handle* d0 = xs_open(0);
  ASSERT_TRUE(xs_write(d0, XBT_NULL, "/backend/vbd/5/0/state", "2", 1));
  xs_permissions p[2] = {{0, XS_PERM_NONE}, {5, XS_PERM_READ}};
  ASSERT_TRUE(xs_set_permissions(d0, XBT_NULL, "/backend/vbd/5/0/state", p, 2));
  unsigned n = 0;
  xs_permissions* got = xs_get_permissions(d0, XBT_NULL, "/backend/vbd/5/0/state", &n);
  ASSERT_NE(got, nullptr);
  ASSERT_EQ(n, 2U);
  EXPECT_EQ(got[1].id, 5U);
  EXPECT_EQ(got[1].perms, unsigned{XS_PERM_READ});
  std::free(got);
  fake::AsDomain d(5);
  xs_handle* g = xs_open(0);
  EXPECT_EQ(xs_get(g, XBT_NULL, "/backend/vbd/5/0/state"), "2");
  EXPECT_FALSE(xs_write(g, XBT_NULL, "/backend/vbd/5/0/state", "3", 1));
  EXPECT_EQ(errno, EACCES);
  EXPECT_FALSE(xs_rm(g, XBT_NULL, "/backend/vbd/5/0/state"));
  xs_close(g);
  xs_close(d0);
}

TEST_F(FakeTest, XsWatchOnRmFiresForWatchesBelow) {
  xs_handle* h = xs_open(0);
  fake::store_write("/a/b/c", "1");
  ASSERT_TRUE(xs_watch(h, "/a/b/c", "deep"));
  char** ev = xs_check_watch(h);  // registration event
  ASSERT_NE(ev, nullptr);
  std::free(ev);
  ASSERT_TRUE(xs_rm(h, XBT_NULL, "/a"));
  ASSERT_TRUE(readable(xs_fileno(h)));
  unsigned num = 0;
  ev = xs_read_watch(h, &num);
  ASSERT_NE(ev, nullptr);
  EXPECT_EQ(num, 2U);
  EXPECT_STREQ(ev[XS_WATCH_PATH], "/a/b/c");
  EXPECT_STREQ(ev[XS_WATCH_TOKEN], "deep");
  std::free(ev);
  EXPECT_EQ(xs_check_watch(h), nullptr);
  EXPECT_EQ(errno, EAGAIN);
  EXPECT_FALSE(xs_unwatch(h, "/not/watched", "x"));
  ASSERT_TRUE(xs_unwatch(h, "/a/b/c", "deep"));
  xs_close(h);
}

TEST_F(FakeTest, XsDirectoryAndSpecialWatch) {
  xs_handle* h = xs_open(0);
  fake::store_write("/d/x", "");
  fake::store_write("/d/y/z", "");
  unsigned n = 0;
  char** names = xs_directory(h, XBT_NULL, "/d", &n);
  ASSERT_NE(names, nullptr);
  ASSERT_EQ(n, 2U);
  EXPECT_STREQ(names[0], "x");
  EXPECT_STREQ(names[1], "y");
  std::free(names);
  EXPECT_EQ(xs_directory(h, XBT_NULL, "/nope", &n), nullptr);
  EXPECT_EQ(errno, ENOENT);
  ASSERT_TRUE(xs_watch(h, "@releaseDomain", "rel"));
  std::free(xs_check_watch(h));
  fake::fire_special("@releaseDomain");
  char** ev = xs_check_watch(h);
  ASSERT_NE(ev, nullptr);
  EXPECT_STREQ(ev[0], "@releaseDomain");
  std::free(ev);
  xs_close(h);
}

TEST_F(FakeTest, XsTransactionConflictOnChildCreationAndMissingNode) {
  xs_handle* h = xs_open(0);
  fake::store_write("/t", "");
  xs_transaction_t t = xs_transaction_start(h);
  unsigned n = 0;
  std::free(xs_directory(h, t, "/t", &n));
  EXPECT_EQ(xs_read(h, t, "/t/later", &n), nullptr);  // reads of missing nodes count too
  fake::store_write("/t/later", "1");                  // concurrent change
  ASSERT_TRUE(xs_write(h, t, "/t/mine", "1", 1));
  EXPECT_FALSE(xs_transaction_end(h, t, false));
  EXPECT_EQ(errno, EAGAIN);
  EXPECT_FALSE(fake::store_exists("/t/mine"));
  // An unrelated concurrent change does not conflict.
  t = xs_transaction_start(h);
  EXPECT_EQ(xs_get(h, t, "/t/later"), "1");
  fake::store_write("/elsewhere", "1");
  ASSERT_TRUE(xs_write(h, t, "/t/later", "2", 1));
  EXPECT_TRUE(xs_transaction_end(h, t, false));
  EXPECT_EQ(fake::store_read("/t/later"), "2");
  EXPECT_EQ(fake::counters().xs_transactions, 0U);
  xs_close(h);
}

TEST_F(FakeTest, GrantRefsStartAfterReservedAndAreReused) {
  xengntshr_handle* s = nullptr;
  {
    fake::AsDomain d(2);
    s = xengntshr_open(nullptr, 0);
  }
  uint32_t refs[2] = {};
  void* a = xengntshr_share_pages(s, 0, 2, refs, 1);
  ASSERT_NE(a, nullptr);
  EXPECT_EQ(refs[0], uint32_t{GNTTAB_NR_RESERVED_ENTRIES});
  EXPECT_EQ(refs[1], refs[0] + 1);
  EXPECT_EQ(xengntshr_unshare(s, a, 1), -1) << "count must match the share";
  ASSERT_EQ(xengntshr_unshare(s, a, 2), 0);
  uint32_t again = 0;
  void* b = xengntshr_share_pages(s, 0, 1, &again, 1);
  EXPECT_EQ(again, refs[0]);
  EXPECT_EQ(xengntshr_unshare(s, b, 1), 0);
  xengntshr_close(s);
  EXPECT_EQ(fake::counters().grants, 0U);
}

TEST_F(FakeTest, GnttabReadOnlyMappingIsReallyReadOnlyMemory) {
  xengntshr_handle* s = nullptr;
  {
    fake::AsDomain d(2);
    s = xengntshr_open(nullptr, 0);
  }
  uint32_t ref = 0;
  auto* page = static_cast<char*>(xengntshr_share_pages(s, 0, 1, &ref, 0));
  ASSERT_NE(page, nullptr);
  std::strcpy(page, "ro");
  xengnttab_handle* g = xengnttab_open(nullptr, 0);
  EXPECT_EQ(xengnttab_map_grant_ref(g, 2, ref, PROT_READ | PROT_WRITE), nullptr);
  EXPECT_EQ(errno, EINVAL);
  auto* m = static_cast<char*>(xengnttab_map_grant_ref(g, 2, ref, PROT_READ));
  ASSERT_NE(m, nullptr);
  EXPECT_STREQ(m, "ro");
  EXPECT_EQ(fake::grant_info(2, ref)->map_count, 1U);
  EXPECT_EQ(xengnttab_unmap(g, m + 1, 1), -1);
  // Closing the handles releases everything they hold.
  xengnttab_close(g);
  xengntshr_close(s);
  EXPECT_EQ(fake::counters().grants, 0U);
  EXPECT_EQ(fake::counters().mapped_pages, 0U);
}

TEST_F(FakeTest, EvtchnUnboundPortIsReservedForItsRemote) {
  xenevtchn_handle* a = nullptr;
  {
    fake::AsDomain d(4);
    a = xenevtchn_open(nullptr, 0);
  }
  const int port = xenevtchn_bind_unbound_port(a, 0);
  ASSERT_GT(port, 0);
  xenevtchn_handle* b = xenevtchn_open(nullptr, 0);  // dom0
  const int local = xenevtchn_bind_interdomain(b, 4, static_cast<evtchn_port_t>(port));
  ASSERT_GT(local, 0);
  EXPECT_EQ(xenevtchn_bind_interdomain(b, 4, static_cast<evtchn_port_t>(port)), -1) << "already bound";
  EXPECT_EQ(xenevtchn_notify(b, 999), -1);
  EXPECT_EQ(errno, ENOTCONN);
  EXPECT_EQ(xenevtchn_pending(a), -1);
  EXPECT_EQ(errno, EAGAIN);
  ASSERT_EQ(xenevtchn_notify(b, static_cast<evtchn_port_t>(local)), 0);
  EXPECT_TRUE(readable(xenevtchn_fd(a)));
  EXPECT_EQ(xenevtchn_pending(a), port);
  ASSERT_EQ(xenevtchn_unbind(b, static_cast<evtchn_port_t>(local)), 0);
  EXPECT_EQ(xenevtchn_notify(a, static_cast<evtchn_port_t>(port)), 0);
  EXPECT_EQ(fake::dropped_notifies(), 1U);
  // The surviving end is unbound again, reserved for dom0: it can be re-bound.
  EXPECT_GT(xenevtchn_bind_interdomain(b, 4, static_cast<evtchn_port_t>(port)), 0);
  xenevtchn_close(a);
  xenevtchn_close(b);
  EXPECT_EQ(fake::counters().ports, 0U);
}

TEST_F(FakeTest, ForeignMapReportsPerPageErrors) {
  fake::set_guest_memory(8, 2);
  xenforeignmemory_handle* f = xenforeignmemory_open(nullptr, 0);
  xen_pfn_t gfns[3] = {0, 7, 1};
  int err[3] = {1, 1, 1};
  void* p = xenforeignmemory_map(f, 8, PROT_READ, 3, gfns, err);
  ASSERT_NE(p, nullptr);
  EXPECT_EQ(err[0], 0);
  EXPECT_EQ(err[1], -EINVAL);
  EXPECT_EQ(err[2], 0);
  EXPECT_EQ(xenforeignmemory_unmap(f, p, 3), 0);
  EXPECT_EQ(xenforeignmemory_map(f, 8, PROT_READ, 3, gfns, nullptr), nullptr);
  xenforeignmemory_close(f);
  EXPECT_EQ(fake::counters().foreign_pages, 0U);
}

}  // namespace
}  // namespace gears
