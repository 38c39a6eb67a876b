// The vbd backend end to end over the fake hypervisor: BlkDevice (dom0) on a gearsd Reactor thread, the userspace
// blkfront (gears::blkfront::Frontend) as a guest. Covers negotiation keys, direct and indirect reads/writes
// against a file target, flush, discard, persistent grants, malformed requests answered with errors, and a
// broken ring closing one guest's device while another guest's disk keeps working.
#include <gtest/gtest.h>

#include <fcntl.h>
#include <unistd.h>

#include <chrono>
#include <cstring>
#include <filesystem>
#include <functional>
#include <future>
#include <map>
#include <memory>
#include <thread>
#include <vector>

#include "common/ring/shared_mem.hpp"
#include "dom0/backends/blk/device.hpp"
#include "dom0/gearsd/reactor.hpp"
#include "domU-frontends/gears-blkfront/blkfront.hpp"
#include "tests/fake/fake.hpp"
#include "tests/fake/loop_host.hpp"

namespace gears {
namespace {

using nlohmann::json;

std::string be_dir(unsigned dom, unsigned devid) {
  return "/local/domain/0/backend/gears-vbd/" + std::to_string(dom) + "/" + std::to_string(devid);
}

// A sparse backing file that goes away with the test.
struct TempDisk {
  std::string path;
  explicit TempDisk(std::uint64_t bytes) {
    char tmpl[] = "/tmp/gears-blk-XXXXXX";
    const int fd = ::mkstemp(tmpl);
    EXPECT_GE(fd, 0);
    EXPECT_EQ(::ftruncate(fd, static_cast<off_t>(bytes)), 0);
    ::close(fd);
    path = tmpl;
  }
  ~TempDisk() { std::filesystem::remove(path); }
  std::vector<std::byte> read(std::uint64_t off, std::size_t n) const {
    std::vector<std::byte> b(n);
    const int fd = ::open(path.c_str(), O_RDONLY);
    EXPECT_EQ(::pread(fd, b.data(), n, static_cast<off_t>(off)), static_cast<ssize_t>(n));
    ::close(fd);
    return b;
  }
};

class Dom0 : public fake::LoopHost<> {
 public:
  void add(unsigned dom, unsigned devid, json params) {
    daemon::DeviceSpec spec;
    spec.key = {"vbd", dom, devid};
    spec.params = std::move(params);
    const Status st = start(dom, blk::make_blk_device(spec));  // the factory runs on gearsd's main thread
    ASSERT_TRUE(st.ok()) << st.error().what;
  }
  std::string prepare_detach(unsigned dom, bool force) {
    return on_loop([this, dom, force] { return device(dom).prepare_detach(force); });
  }
};

class BlkE2E : public ::testing::Test {
 protected:
  void SetUp() override { fake::reset(); }
  void TearDown() override {
    dom0_.reset();
    const auto c = fake::counters();
    EXPECT_EQ(c.mapped_pages, 0U);
    EXPECT_EQ(c.gnttab_handles, 0U);
    EXPECT_EQ(c.evtchn_handles, 0U);
  }
  std::unique_ptr<Dom0> dom0_ = std::make_unique<Dom0>();
};

void fill(std::span<std::byte> b, std::uint64_t seed) {
  for (std::size_t i = 0; i < b.size(); ++i) b[i] = std::byte(static_cast<unsigned char>((seed * 131 + i * 7) & 0xff));
}

TEST_F(BlkE2E, NegotiatesAndServesDirectAndIndirectIo) {
  TempDisk disk(64 << 20);
  dom0_->add(5, 51728, {{"target", "file:" + disk.path}});
  // Everything blkfront reads at connect time is written before Connected.
  const std::string be = be_dir(5, 51728);
  EXPECT_EQ(fake::store_read(be + "/sectors"), std::to_string((64 << 20) / 512));
  EXPECT_EQ(fake::store_read(be + "/feature-flush-cache"), "1");
  EXPECT_EQ(fake::store_read(be + "/feature-max-indirect-segments"), "256");
  EXPECT_EQ(fake::store_read(be + "/max-ring-page-order"), "4");
  EXPECT_EQ(fake::store_read(be + "/multi-queue-max-queues"), "4");
  EXPECT_EQ(fake::store_read(be + "/feature-discard"), "1");
  EXPECT_EQ(fake::store_read("/local/domain/5/device/vbd/51728/virtual-device"), "51728");

  fake::AsDomain as(5);
  blkfront::Options o;
  o.devid = 51728;
  o.ring_page_order = 2;
  blkfront::Frontend f(o);
  EXPECT_EQ(f.sectors(), (64U << 20) / 512);
  EXPECT_EQ(f.ring().size(), 128U);  // 4 pages of blkif entries

  fill(f.data().subspan(0, 8 * 4096), 1);
  auto w = f.rw(BLKIF_OP_WRITE, 2048, 0, 8);  // direct: 8 segments
  ASSERT_TRUE(w);
  EXPECT_EQ(*w, BLKIF_RSP_OKAY);
  const auto on_disk = disk.read(2048 * 512, 8 * 4096);
  EXPECT_EQ(std::memcmp(on_disk.data(), f.data().data(), on_disk.size()), 0);

  fill(f.data().subspan(0, 40 * 4096), 2);
  auto wi = f.rw(BLKIF_OP_WRITE, 8192, 0, 40);  // indirect: 40 segments
  ASSERT_TRUE(wi);
  EXPECT_EQ(*wi, BLKIF_RSP_OKAY);
  std::vector<std::byte> expect(f.data().begin(), f.data().begin() + 40 * 4096);
  std::memset(f.data().data(), 0, 40 * 4096);
  auto ri = f.rw(BLKIF_OP_READ, 8192, 0, 40);
  ASSERT_TRUE(ri);
  EXPECT_EQ(*ri, BLKIF_RSP_OKAY);
  EXPECT_EQ(std::memcmp(expect.data(), f.data().data(), expect.size()), 0);

  auto fl = f.flush();
  ASSERT_TRUE(fl);
  EXPECT_EQ(*fl, BLKIF_RSP_OKAY);

  blkif_request_discard d{};
  d.operation = BLKIF_OP_DISCARD;
  d.id = 99;
  d.sector_number = 2048;
  d.nr_sectors = 64;
  blkif_request r{};
  std::memcpy(&r, &d, sizeof d);
  ASSERT_TRUE(f.submit(r));
  auto rsp = f.wait_response(5000);
  ASSERT_TRUE(rsp);
  EXPECT_EQ(rsp->status, BLKIF_RSP_OKAY);
  EXPECT_EQ(rsp->operation, BLKIF_OP_DISCARD);
  const auto zeroed = disk.read(2048 * 512, 64 * 512);
  EXPECT_TRUE(std::all_of(zeroed.begin(), zeroed.end(), [](std::byte b) { return b == std::byte{0}; }));

  const json st = dom0_->stats(5);
  EXPECT_EQ(st["bytes_written"], 48U * 4096U);
  EXPECT_EQ(st["bytes_read"], 40U * 4096U);
  EXPECT_EQ(st["discards"], 1U);
  EXPECT_EQ(st["rejected"], 0U);
}

TEST_F(BlkE2E, PersistentGrantsWhenBothSidesAgree) {
  TempDisk disk(16 << 20);
  dom0_->add(5, 1, {{"target", disk.path}, {"grants", "persistent"}});
  fake::AsDomain as(5);
  blkfront::Options o;
  o.devid = 1;
  o.persistent = true;
  blkfront::Frontend f(o);
  for (int i = 0; i < 4; ++i) {
    fill(f.data().subspan(0, 4 * 4096), static_cast<std::uint64_t>(i));
    std::vector<std::byte> expect(f.data().begin(), f.data().begin() + 4 * 4096);
    auto w = f.rw(BLKIF_OP_WRITE, 64, 0, 4);
    ASSERT_TRUE(w && *w == BLKIF_RSP_OKAY);
    auto rd = f.rw(BLKIF_OP_READ, 64, 4, 4);
    ASSERT_TRUE(rd && *rd == BLKIF_RSP_OKAY);
    EXPECT_EQ(std::memcmp(expect.data(), f.data().data() + 4 * 4096, expect.size()), 0);
  }
  const json st = dom0_->stats(5);
  EXPECT_EQ(st["grants"], "persistent");
  EXPECT_GE(st["persistent_hits"].get<std::uint64_t>(), 32U);
  EXPECT_EQ(st["grant_copies"], 0U);
}

TEST_F(BlkE2E, MalformedRequestsGetErrorsAndTheDiskKeepsWorking) {
  TempDisk disk(16 << 20);
  dom0_->add(5, 1, {{"target", disk.path}});
  fake::AsDomain as(5);
  blkfront::Options o;
  o.devid = 1;
  blkfront::Frontend f(o);
  const std::uint64_t sectors = f.sectors();
  std::vector<blkif_request> bad;
  auto one = [&](std::uint8_t op) {
    blkif_request r{};
    r.operation = op;
    r.id = 1000 + bad.size();
    r.nr_segments = 1;
    r.seg[0] = {f.data_ref(0), 0, 7};
    return r;
  };
  bad.push_back(one(0x42));
  { auto r = one(BLKIF_OP_READ); r.nr_segments = 12; bad.push_back(r); }
  { auto r = one(BLKIF_OP_READ); r.sector_number = sectors; bad.push_back(r); }
  { auto r = one(BLKIF_OP_READ); r.seg[0].gref = 0x7fff0000; bad.push_back(r); }  // not granted: copy fails
  { auto r = one(BLKIF_OP_WRITE); r.seg[0].last_sect = 8; bad.push_back(r); }
  for (const auto& r : bad) {
    ASSERT_TRUE(f.submit(r));
    auto rsp = f.wait_response(5000);
    ASSERT_TRUE(rsp);
    EXPECT_EQ(rsp->id, r.id);
    EXPECT_NE(rsp->status, BLKIF_RSP_OKAY);
  }
  auto w = f.rw(BLKIF_OP_WRITE, 0, 0, 2);
  ASSERT_TRUE(w);
  EXPECT_EQ(*w, BLKIF_RSP_OKAY);
  const json st = dom0_->stats(5);
  EXPECT_EQ(st["rejected"], bad.size() - 1);  // the ungranted ref is found out by the copy after the read
  EXPECT_EQ(st["grant_failures"], 1U);
  EXPECT_EQ(fake::store_read(be_dir(5, 1) + "/state"), "4");
}

TEST_F(BlkE2E, BrokenRingClosesOnlyThatDevice) {
  TempDisk a(16 << 20), b(16 << 20);
  dom0_->add(5, 1, {{"target", a.path}});
  dom0_->add(6, 1, {{"target", b.path}});
  std::optional<blkfront::Frontend> good;
  {
    fake::AsDomain as(6);
    blkfront::Options o;
    o.devid = 1;
    good.emplace(o);
  }
  {
    fake::AsDomain as(5);
    blkfront::Options o;
    o.devid = 1;
    blkfront::Frontend bad(o);
    auto* s = reinterpret_cast<blkif_sring*>(bad.raw_ring().data());
    ring::shm::store_release(s->req_prod, bad.ring().size() + 1000);
    ASSERT_TRUE(bad.kick());
    EXPECT_TRUE(bad.wait_closed_by_backend(10000));
    EXPECT_NE(bad.backend_error().find("producer index"), std::string::npos) << bad.backend_error();
    EXPECT_EQ(dom0_->stats(5)["closes_for_violation"], 1U);
  }
  fake::AsDomain as(6);
  fill(good->data().subspan(0, 4096), 9);
  auto w = good->rw(BLKIF_OP_WRITE, 8, 0, 1);
  ASSERT_TRUE(w);
  EXPECT_EQ(*w, BLKIF_RSP_OKAY);
  EXPECT_EQ(dom0_->stats(6)["closes_for_violation"], 0U);
  good.reset();
}

TEST_F(BlkE2E, ReadOnlyDiskAndBadParams) {
  TempDisk disk(16 << 20);
  daemon::DeviceSpec spec;
  spec.key = {"vbd", 5, 1};
  spec.params = {{"target", "file:/nonexistent/disk.img"}};
  EXPECT_THROW((void)blk::make_blk_device(spec), std::exception);
  spec.params = {{"target", disk.path}, {"mode", "x"}};
  EXPECT_THROW((void)blk::make_blk_device(spec), std::invalid_argument);
  spec.params = {{"target", disk.path}, {"weights", "gold:zero"}};
  EXPECT_THROW((void)blk::make_blk_device(spec), std::invalid_argument);

  dom0_->add(5, 1, {{"target", disk.path}, {"mode", "r"}});
  EXPECT_EQ(fake::store_read(be_dir(5, 1) + "/info"), "4");
  EXPECT_EQ(fake::store_read(be_dir(5, 1) + "/feature-discard"), "0");
  fake::AsDomain as(5);
  blkfront::Options o;
  o.devid = 1;
  blkfront::Frontend f(o);
  auto w = f.rw(BLKIF_OP_WRITE, 0, 0, 1);
  ASSERT_TRUE(w);
  EXPECT_EQ(*w, BLKIF_RSP_ERROR);
  auto r = f.rw(BLKIF_OP_READ, 0, 0, 1);
  ASSERT_TRUE(r);
  EXPECT_EQ(*r, BLKIF_RSP_OKAY);
}

TEST_F(BlkE2E, DetachRemovesTheNodes) {
  TempDisk disk(16 << 20);
  dom0_->add(5, 1, {{"target", disk.path}});
  EXPECT_TRUE(fake::store_exists(be_dir(5, 1)));
  dom0_->remove(5);
  EXPECT_FALSE(fake::store_exists(be_dir(5, 1)));
  EXPECT_FALSE(fake::store_exists("/local/domain/5/device/vbd/1"));
}

// xl block-detach semantics: a frontend that stays Connected (its disk in use) makes the detach fail, and the
// disk keeps working; --force does not ask.
TEST_F(BlkE2E, DetachOfADiskInUseIsRefusedUnlessForced) {
  TempDisk disk(16 << 20);
  dom0_->add(5, 51728, {{"target", "file:" + disk.path}});
  fake::AsDomain as(5);
  blkfront::Options o;
  o.devid = 51728;
  blkfront::Frontend f(o);  // connected; it never answers Closing
  const std::string why = dom0_->prepare_detach(5, false);
  EXPECT_NE(why.find("in use"), std::string::npos) << why;
  EXPECT_NE(why.find("--force"), std::string::npos) << why;
  EXPECT_EQ(fake::store_read(be_dir(5, 51728) + "/state"), "4");
  EXPECT_EQ(fake::store_read(be_dir(5, 51728) + "/online"), "1");
  auto r = f.rw(BLKIF_OP_READ, 0, 0, 1);
  ASSERT_TRUE(r);
  EXPECT_EQ(*r, BLKIF_RSP_OKAY);
  EXPECT_EQ(dom0_->prepare_detach(5, true), "");
  dom0_->remove(5);
  EXPECT_FALSE(fake::store_exists(be_dir(5, 51728)));
}

// dcache=writeback end to end: the guest's write stays in the cache file until its FLUSH; stats show the cache.
TEST_F(BlkE2E, WriteBackCacheKeepsFlushSemantics) {
  TempDisk disk(16 << 20);
  char dir[] = "/tmp/gears-dcache-e2e-XXXXXX";
  ASSERT_NE(::mkdtemp(dir), nullptr);
  const std::string cache = std::string(dir) + "/vbd.dcache";
  dom0_->add(5, 1, {{"target", disk.path}, {"dcache", "writeback"}, {"dcache-file", cache}});
  fake::AsDomain as(5);
  blkfront::Options o;
  o.devid = 1;
  blkfront::Frontend f(o);
  fill(f.data().subspan(0, 4 * 4096), 21);
  const std::vector<std::byte> mine(f.data().begin(), f.data().begin() + 4 * 4096);
  auto w = f.rw(BLKIF_OP_WRITE, 64, 0, 4);
  ASSERT_TRUE(w && *w == BLKIF_RSP_OKAY);
  EXPECT_NE(disk.read(64 * 512, mine.size()), mine);  // acknowledged, in the cache, not yet durable
  json st = dom0_->stats(5);
  EXPECT_EQ(st["dcache"]["mode"], "writeback");
  EXPECT_EQ(st["dcache"]["dirty_blocks"], 4U);
  auto rd = f.rw(BLKIF_OP_READ, 64, 4, 4);
  ASSERT_TRUE(rd && *rd == BLKIF_RSP_OKAY);
  EXPECT_EQ(std::memcmp(mine.data(), f.data().data() + 4 * 4096, mine.size()), 0);
  auto fl = f.flush();
  ASSERT_TRUE(fl && *fl == BLKIF_RSP_OKAY);
  EXPECT_EQ(disk.read(64 * 512, mine.size()), mine);
  st = dom0_->stats(5);
  EXPECT_EQ(st["dcache"]["dirty_blocks"], 0U);
  EXPECT_EQ(st["dcache"]["hits"], 1U);
  EXPECT_EQ(st["dcache"]["writeback_blocks"], 4U);
  EXPECT_NE(fake::store_read(be_dir(5, 1) + "/gears-params").value_or("").find("\"dcache-file\""), std::string::npos);
  dom0_->remove(5);
  std::filesystem::remove_all(dir);
}

TEST_F(BlkE2E, BadCacheParamsAreRefused) {
  TempDisk disk(16 << 20);
  daemon::DeviceSpec spec;
  spec.key = {"vbd", 5, 1};
  spec.params = {{"target", disk.path}, {"dcache", "always"}};
  EXPECT_THROW((void)blk::make_blk_device(spec), std::invalid_argument);
  spec.params = {{"target", disk.path}, {"dcache-file", "/tmp/x.dcache"}};
  EXPECT_THROW((void)blk::make_blk_device(spec), std::invalid_argument);
  spec.params = {{"target", disk.path}, {"dcache", "writethrough"}, {"dcache-file", disk.path}};
  EXPECT_THROW((void)blk::make_blk_device(spec), std::runtime_error);
}

TEST(BlkVdev, Names) {
  EXPECT_EQ(blk::parse_vdev("xvda"), 51712U);
  EXPECT_EQ(blk::parse_vdev("xvdb"), 51728U);
  EXPECT_EQ(blk::parse_vdev("xvdp"), (202U << 8U) | (15U << 4U));
  EXPECT_EQ(blk::parse_vdev("xvdq"), (1U << 28U) | (16U << 8U));
  EXPECT_EQ(blk::parse_vdev("51760"), 51760U);
  EXPECT_THROW((void)blk::parse_vdev("sda"), std::invalid_argument);
  EXPECT_THROW((void)blk::parse_vdev("xvd1"), std::invalid_argument);
}

}  // namespace
}  // namespace gears
