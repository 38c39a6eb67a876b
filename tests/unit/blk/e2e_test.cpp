// The vbd backend end to end over the fake hypervisor: BlkDevice (dom0) on a gearsd Reactor thread, the userspace
// blkfront (gears::blkfront::Frontend) as a guest. Covers negotiation keys, direct and indirect reads/writes
// against a file target, flush, discard, persistent grants, malformed requests answered with errors, and a
// broken ring closing one guest's device while another guest's disk keeps working; zero-bounce I/O with persistent
// grants (byte-exact with partial segments, on the io_uring and the inline path) and the bounce path where it must stay.
#include <gtest/gtest.h>

#include <fcntl.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <cstring>
#include <filesystem>
#include <functional>
#include <future>
#include <map>
#include <memory>
#include <mutex>
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
  explicit TempDisk(std::uint64_t bytes, const std::string& dir = "/tmp") {
    std::string tmpl = dir + "/gears-blk-XXXXXX";
    const int fd = ::mkstemp(tmpl.data());
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
  void add(unsigned dom, unsigned devid, json params, daemon::HintRegistry* hints = nullptr) {
    daemon::DeviceSpec spec;
    spec.key = {"vbd", dom, devid};
    spec.params = std::move(params);
    const Status st = start(dom, blk::make_blk_device(spec, hints));  // the factory runs on gearsd's main thread
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

hints::HintSet domain_class(std::uint8_t cls) {
  hints::HintSet h;
  h.qos = hints::Qos{cls, 0};
  return h;
}

// A disk without its own class takes the domain's (gears_hints), live; withdrawn, it is silver again. A disk with
// class= keeps its own.
TEST_F(BlkE2E, DiskWithoutAClassFollowsTheDomainsHints) {
  TempDisk disk(16 << 20);
  daemon::HintRegistry reg;
  ASSERT_TRUE(reg.publish(5, daemon::HintSource::config, "config", domain_class(hints::kGold)));
  dom0_->add(5, 51728, {{"target", disk.path}}, &reg);
  auto st = dom0_->stats(5);
  EXPECT_EQ(st["default_class"], hints::kGold);
  EXPECT_EQ(st["class_source"], "hints");

  {
    fake::AsDomain as(5);
    blkfront::Frontend f({.devid = 51728});
    auto r = f.rw(BLKIF_OP_READ, 0, 0, 1);
    ASSERT_TRUE(r);
    EXPECT_EQ(*r, BLKIF_RSP_OKAY);
    st = dom0_->stats(5);
    EXPECT_EQ(st["classes"]["gold"]["reqs"], 1U);

    reg.replace(5, daemon::HintSource::config, "config", {domain_class(hints::kBronze)});  // live, no reconnect
    // (the listener posted to the device's loop before this stats() call did)
    st = dom0_->stats(5);
    EXPECT_EQ(st["default_class"], hints::kBronze);
    EXPECT_EQ(st["class_changes"], 1U);
    r = f.rw(BLKIF_OP_READ, 8, 0, 1);
    ASSERT_TRUE(r);
    st = dom0_->stats(5);
    EXPECT_EQ(st["classes"]["bronze"]["reqs"], 1U);
    EXPECT_EQ(st["classes"]["gold"]["reqs"], 1U);
    EXPECT_EQ(st["connects"], 1U);
  }  // the frontend closes

  reg.replace(5, daemon::HintSource::config, "config", {});
  st = dom0_->stats(5);
  EXPECT_EQ(st["default_class"], hints::kSilver);
  EXPECT_EQ(st["class_source"], "default");
  EXPECT_EQ(st["class_changes"], 2U);
  dom0_.reset();  // the devices go before the registry they subscribed to
}

TEST_F(BlkE2E, DisksOwnClassWinsOverTheDomains) {
  TempDisk disk(16 << 20);
  daemon::HintRegistry reg;
  ASSERT_TRUE(reg.publish(6, daemon::HintSource::config, "config", domain_class(hints::kGold)));
  dom0_->add(6, 51728, {{"target", disk.path}, {"class", "bronze"}}, &reg);
  auto st = dom0_->stats(6);
  EXPECT_EQ(st["default_class"], hints::kBronze);
  EXPECT_EQ(st["class_source"], "disk");
  reg.replace(6, daemon::HintSource::config, "config", {domain_class(hints::kSilver)});
  EXPECT_EQ(dom0_->stats(6)["default_class"], hints::kBronze);
  dom0_.reset();
}

// Whoever the oracle says is on the guest's vCPU when the ring is read (proctrack in gearsd).
class OnCpu final : public daemon::ProcessOracle {
 public:
  std::optional<daemon::GuestProcess> submitter(std::uint32_t, std::uint32_t, std::int64_t) const override {
    std::lock_guard g(m);
    return now;
  }
  void set(std::optional<daemon::GuestProcess> p) {
    std::lock_guard g(m);
    now = std::move(p);
  }
  mutable std::mutex m;
  std::optional<daemon::GuestProcess> now;
};

// Antfarm's case: the disk schedules by the guest process that issued the I/O, named by proctrack, with no help
// from the guest. procs= rules by name win over extents; a process-scoped hint set for a pid wins over them, live.
TEST_F(BlkE2E, SubmittingProcessChoosesTheClass) {
  TempDisk disk(16 << 20);
  daemon::HintRegistry reg;
  auto oracle = std::make_shared<OnCpu>();
  reg.set_process_oracle(oracle);
  dom0_->add(7, 51728, {{"target", disk.path}, {"procs", "busybox-hi:gold;busybox-lo:bronze"},
                        {"regions", "0-1023:silver:low"}}, &reg);
  {
    fake::AsDomain as(7);
    blkfront::Frontend f({.devid = 51728});
    auto read = [&](std::uint64_t sector) {
      auto r = f.rw(BLKIF_OP_READ, sector, 0, 1);
      ASSERT_TRUE(r);
      EXPECT_EQ(*r, BLKIF_RSP_OKAY);
    };
    read(0);  // nobody known: the extent's class
    oracle->set(daemon::GuestProcess{40, "busybox-hi", 0x1000});
    read(8);
    read(2048);
    oracle->set(daemon::GuestProcess{41, "busybox-lo", 0x2000});
    read(16);
    oracle->set(daemon::GuestProcess{42, "sh", 0x3000});
    read(24);  // no rule: the extent's class again
    auto st = dom0_->stats(7);
    EXPECT_EQ(st["classes"]["gold"]["reqs"], 2U) << st["classes"].dump();
    EXPECT_EQ(st["classes"]["bronze"]["reqs"], 1U);
    EXPECT_EQ(st["classes"]["silver"]["reqs"], 2U);
    EXPECT_EQ(st["processes"]["low"]["reqs"], 4U) << "the extent's label still counts what lies in it";
    EXPECT_EQ(st["process_classes"]["comm=busybox-hi"]["reqs"], 2U);
    EXPECT_EQ(st["process_classes"]["comm=busybox-hi"]["bytes"], 8192U);
    EXPECT_EQ(st["process_classes"]["comm=busybox-lo"]["reqs"], 1U);

    // gears-front (or gearsctl attach --hints) says pid 41 is gold: it applies live, over the name's rule.
    hints::HintSet h;
    h.scope.kind = hints::ScopeKind::process;
    h.process = hints::ProcessIdentity{41, "busybox-lo", ""};
    h.qos = hints::Qos{hints::kGold, 0};
    ASSERT_TRUE(reg.publish(7, daemon::HintSource::channel, "channel/0", h));
    oracle->set(daemon::GuestProcess{41, "busybox-lo", 0x2000});
    (void)dom0_->stats(7);  // the registry's listener posted to the device's loop before this
    read(32);
    st = dom0_->stats(7);
    EXPECT_EQ(st["classes"]["gold"]["reqs"], 3U) << st["process_classes"].dump();
    EXPECT_EQ(st["classes"]["bronze"]["reqs"], 1U);
    EXPECT_EQ(st["process_classes"]["pid=41"]["source"], "hints");
    EXPECT_EQ(st["process_classes"]["pid=41"]["reqs"], 1U);
    EXPECT_EQ(st["connects"], 1U);
  }
  dom0_.reset();  // the devices go before the registry they subscribed to
}

TEST_F(BlkE2E, BadProcessRulesNameTheKey) {
  TempDisk disk(16 << 20);
  for (const char* bad : {"dd", "dd:platinum", "a-name-longer-than-15:gold", "dd:gold;dd:bronze"}) {
    try {
      (void)blk::parse_config({{"target", disk.path}, {"procs", bad}}, 51728);
      ADD_FAILURE() << bad << " was accepted";
    } catch (const std::invalid_argument& e) {
      EXPECT_NE(std::string(e.what()).find("procs"), std::string::npos) << e.what();
    }
  }
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
  blkfront::Frontend f({.devid = 51728, .ring_page_order = 2});
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
  dom0_->add(5, 1, {{"target", disk.path}});  // grants=persistent is the default
  fake::AsDomain as(5);
  blkfront::Frontend f({.devid = 1, .persistent = true});
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
  blkfront::Frontend f({.devid = 1});
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
    good.emplace(blkfront::Options{.devid = 1});
  }
  {
    fake::AsDomain as(5);
    blkfront::Frontend bad({.devid = 1});
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
  blkfront::Frontend f({.devid = 1});
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
  blkfront::Frontend f({.devid = 51728});  // connected; it never answers Closing
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
  blkfront::Frontend f({.devid = 1});
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

// ---- zero-bounce I/O (grants=persistent on a file target) ----

using Bytes = std::vector<std::byte>;
struct Seg {
  std::size_t page;  // frontend data page
  std::uint8_t first, last;  // sectors in it
};

// One direct READ/WRITE over `segs`; its response status.
std::int16_t raw_rw(blkfront::Frontend& f, std::uint8_t op, std::uint64_t sector, const std::vector<Seg>& segs) {
  blkif_request r{};
  r.operation = op;
  r.id = 7000 + sector;
  r.sector_number = sector;
  r.nr_segments = static_cast<std::uint8_t>(segs.size());
  for (std::size_t i = 0; i < segs.size(); ++i) r.seg[i] = {f.data_ref(segs[i].page), segs[i].first, segs[i].last};
  EXPECT_TRUE(f.submit(r));
  auto rsp = f.wait_response(5000);
  EXPECT_TRUE(rsp);
  return rsp ? rsp->status : std::int16_t{-99};
}

// The guest bytes `segs` cover, in request order.
Bytes gather(const blkfront::Frontend& f, const std::vector<Seg>& segs) {
  Bytes out;
  for (const auto& s : segs) {
    const auto b = f.data().subspan(s.page * 4096 + s.first * 512U, (s.last - s.first + 1U) * 512U);
    out.insert(out.end(), b.begin(), b.end());
  }
  return out;
}

class BlkZeroBounce : public BlkE2E, public ::testing::WithParamInterface<const char*> {};

// Straight between the file and the mapped guest pages, on the io_uring path (/var/tmp) and the inline one (tmpfs):
// byte-exact with non-zero first_sect and partial last_sect, and a read touches nothing outside its segments.
TEST_P(BlkZeroBounce, PersistentGrantsGoStraightToTheFileByteExact) {
  TempDisk disk(16 << 20, GetParam());
  dom0_->add(5, 1, {{"target", disk.path}, {"grants", "persistent"}});
  fake::AsDomain as(5);
  blkfront::Frontend f({.devid = 1, .persistent = true});
  fill(f.data(), 3);
  const std::vector<Seg> w{{0, 3, 7}, {1, 0, 7}, {2, 2, 2}, {5, 0, 5}, {4, 1, 7}};  // 27 sectors
  const Bytes wrote = gather(f, w);
  ASSERT_EQ(wrote.size(), 27U * 512U);
  ASSERT_EQ(raw_rw(f, BLKIF_OP_WRITE, 101, w), BLKIF_RSP_OKAY);
  EXPECT_EQ(disk.read(101 * 512, wrote.size()), wrote);
  EXPECT_EQ(disk.read(100 * 512, 512), Bytes(512));  // nothing around it
  EXPECT_EQ(disk.read(128 * 512, 512), Bytes(512));

  // Read back scattered differently into pages full of a sentinel: only the segments' sectors change.
  std::memset(f.data().data(), 0xee, 16 * 4096);
  const std::vector<Seg> r{{8, 1, 7}, {9, 0, 3}, {10, 4, 7}, {11, 0, 7}, {12, 6, 7}, {13, 2, 3}};  // 27 sectors
  ASSERT_EQ(raw_rw(f, BLKIF_OP_READ, 101, r), BLKIF_RSP_OKAY);
  EXPECT_EQ(gather(f, r), wrote);
  for (std::size_t page = 0; page < 16; ++page)
    for (unsigned sect = 0; sect < 8; ++sect) {
      const bool inside = std::any_of(r.begin(), r.end(), [&](const Seg& s) {
        return s.page == page && sect >= s.first && sect <= s.last;
      });
      if (inside) continue;
      const auto b = f.data().subspan(page * 4096 + sect * 512, 512);
      EXPECT_TRUE(std::all_of(b.begin(), b.end(), [](std::byte x) { return x == std::byte{0xee}; }))
          << "page " << page << " sector " << sect << " written outside the request";
    }

  // Indirect, 40 whole pages.
  fill(f.data().subspan(0, 40 * 4096), 4);
  const Bytes big(f.data().begin(), f.data().begin() + 40 * 4096);
  auto wi = f.rw(BLKIF_OP_WRITE, 8192, 0, 40);
  ASSERT_TRUE(wi && *wi == BLKIF_RSP_OKAY);
  EXPECT_EQ(disk.read(8192 * 512, big.size()), big);
  std::memset(f.data().data(), 0, 64 * 4096);
  auto ri = f.rw(BLKIF_OP_READ, 8192, 2, 40);
  ASSERT_TRUE(ri && *ri == BLKIF_RSP_OKAY);
  EXPECT_EQ(std::memcmp(big.data(), f.data().data() + 2 * 4096, big.size()), 0);

  const json st = dom0_->stats(5);
  EXPECT_EQ(st["grants"], "persistent");
  EXPECT_EQ(st["target_io"], std::string(GetParam()) == "/dev/shm" ? "inline" : "async");
  EXPECT_EQ(st["profile"]["zero_copy"], 4U);
  EXPECT_EQ(st["profile"]["bounced"], 0U);
  EXPECT_EQ(st["grant_copies"], 0U);
  EXPECT_EQ(st["profile"]["copy_calls"], 0U) << "the indirect pages come from the persistent-grant cache too";
  EXPECT_EQ(st["io_errors"], 0U);
  EXPECT_EQ(st["bytes_read"], 27U * 512U + 40U * 4096U);
}

INSTANTIATE_TEST_SUITE_P(Filesystems, BlkZeroBounce, ::testing::Values("/dev/shm", "/var/tmp"));

// Everywhere zero-bounce does not apply, the bounce buffer carries the data (and it is still right).
TEST_F(BlkE2E, BounceWhereZeroBounceDoesNotApply) {
  TempDisk disk(16 << 20);
  char dir[] = "/tmp/gears-zb-XXXXXX";
  ASSERT_NE(::mkdtemp(dir), nullptr);
  struct Case {
    const char* what;
    json params;
    bool fe_persistent;
  };
  const std::vector<Case> cases{
      {"grants=copy", {{"target", disk.path}, {"grants", "copy"}}, true},
      {"frontend without feature-persistent", {{"target", disk.path}, {"grants", "persistent"}}, false},
      {"dcache", {{"target", disk.path}, {"grants", "persistent"}, {"dcache", "writethrough"},
                  {"dcache-file", std::string(dir) + "/c.dcache"}}, true},
  };
  unsigned seed = 10;
  for (const auto& c : cases) {
    SCOPED_TRACE(c.what);
    dom0_->add(5, 1, c.params);
    {
      fake::AsDomain as(5);
      blkfront::Frontend f({.devid = 1, .persistent = c.fe_persistent});
      fill(f.data(), ++seed);
      const std::vector<Seg> w{{0, 2, 7}, {1, 0, 4}};
      const Bytes wrote = gather(f, w);
      ASSERT_EQ(raw_rw(f, BLKIF_OP_WRITE, 33, w), BLKIF_RSP_OKAY);
      EXPECT_EQ(disk.read(33 * 512, wrote.size()), wrote);
      std::memset(f.data().data(), 0, 4 * 4096);
      const std::vector<Seg> r{{2, 5, 7}, {3, 0, 7}};
      ASSERT_EQ(raw_rw(f, BLKIF_OP_READ, 33, r), BLKIF_RSP_OKAY);
      EXPECT_EQ(gather(f, r), wrote);
      const json st = dom0_->stats(5);
      EXPECT_EQ(st["profile"]["zero_copy"], 0U);
      EXPECT_EQ(st["profile"]["bounced"], 2U);
    }
    dom0_->remove(5);
  }
  std::filesystem::remove_all(dir);
}

// An NBD target takes no iovecs: persistent grants, bounce buffer.
TEST_F(BlkE2E, BounceOnAnNbdTarget) {
  ASSERT_TRUE(::access("/usr/bin/nbdkit", X_OK) == 0 || ::access("/usr/sbin/nbdkit", X_OK) == 0)
      << "nbdkit is not installed (lab/install-deps installs it)";
  char dir[] = "/tmp/gears-zbn-XXXXXX";
  ASSERT_NE(::mkdtemp(dir), nullptr);
  const std::string sock = std::string(dir) + "/nbd.sock";
  const pid_t pid = ::fork();
  ASSERT_GE(pid, 0);
  if (pid == 0) {
    ::execlp("nbdkit", "nbdkit", "--exit-with-parent", "-f", "-U", sock.c_str(), "memory", "size=4M",
             static_cast<char*>(nullptr));
    ::_exit(127);
  }
  struct Reap {
    pid_t pid;
    std::string dir;
    ~Reap() {
      ::kill(pid, SIGTERM);
      ::waitpid(pid, nullptr, 0);
      std::filesystem::remove_all(dir);
    }
  } reap{pid, dir};
  for (int i = 0; i < 200 && !std::filesystem::exists(sock); ++i) std::this_thread::sleep_for(std::chrono::milliseconds(50));
  ASSERT_TRUE(std::filesystem::exists(sock)) << "nbdkit did not start";
  dom0_->add(5, 1, {{"target", "nbd+unix:///?socket=" + sock}, {"grants", "persistent"}});
  {
    fake::AsDomain as(5);
    blkfront::Frontend f({.devid = 1, .persistent = true});
    fill(f.data(), 5);
    const std::vector<Seg> w{{0, 1, 6}, {1, 0, 7}};
    const Bytes wrote = gather(f, w);
    ASSERT_EQ(raw_rw(f, BLKIF_OP_WRITE, 9, w), BLKIF_RSP_OKAY);
    std::memset(f.data().data(), 0, 4 * 4096);
    const std::vector<Seg> r{{2, 2, 7}, {3, 0, 7}};
    ASSERT_EQ(raw_rw(f, BLKIF_OP_READ, 9, r), BLKIF_RSP_OKAY);
    EXPECT_EQ(gather(f, r), wrote);
    const json st = dom0_->stats(5);
    EXPECT_EQ(st["grants"], "persistent");
    EXPECT_EQ(st["profile"]["zero_copy"], 0U);
    EXPECT_EQ(st["profile"]["bounced"], 2U);
    EXPECT_GE(st["persistent_hits"].get<std::uint64_t>(), 4U);
  }
  dom0_->remove(5);
}

// The frontend moves to Closing with zero-bounce reads outstanding: the backend answers every request it took
// (from the mapped pages, all OK) before it unmaps anything; every grant is unmapped afterwards (TearDown).
// Whether any is still at the target at that moment depends on timing: GrantPins is the deterministic check.
TEST_F(BlkE2E, FrontendClosingWithZeroBounceReadsOutstanding) {
  TempDisk disk(16 << 20);
  dom0_->add(5, 1, {{"target", disk.path}, {"grants", "persistent"}});
  {
    fake::AsDomain as(5);
    blkfront::Frontend f({.devid = 1, .ring_page_order = 2, .persistent = true});
    for (std::uint64_t i = 0; i < 48; ++i) {
      blkif_request r{};
      r.operation = BLKIF_OP_READ;
      r.id = i;
      r.sector_number = i * 88;
      r.nr_segments = 11;
      for (unsigned k = 0; k < 11; ++k) r.seg[k] = {f.data_ref((i * 11 + k) % 64), 0, 7};
      ASSERT_TRUE(f.submit(r));
    }
    auto first = f.wait_response(5000);  // the backend has started on them
    ASSERT_TRUE(first);
    EXPECT_EQ(first->status, BLKIF_RSP_OKAY);
    fake::store_write("/local/domain/5/device/vbd/1/state", std::to_string(XenbusStateClosing));
    std::size_t answered = 1;
    while (auto rsp = f.wait_response(1000)) {
      EXPECT_EQ(rsp->status, BLKIF_RSP_OKAY) << "id " << rsp->id;
      ++answered;
    }
    const json st = dom0_->stats(5);
    EXPECT_EQ(st["io_errors"], 0U);
    EXPECT_EQ(st["grant_failures"], 0U);
    EXPECT_EQ(st["profile"]["zero_copy"], answered);
    EXPECT_EQ(st["profile"]["bounced"], 0U);
  }
  dom0_->remove(5);
}

// The lifetime rule behind zero-bounce I/O: a retired cache stays mapped while I/O into it is in flight.
TEST(BlkGrantPins, RetiredCacheStaysMappedUntilTheLastPinGoes) {
  fake::reset();
  {
    xen::GrantSharer sharer = [] { fake::AsDomain d(5); return xen::GrantSharer(); }();
    xen::GrantShare share(sharer, 0, 3);
    xen::GrantTable gt;
    auto cache_of = [&](std::size_t pages) {
      auto c = std::make_unique<xen::PersistentGrantCache>(gt, 8);
      for (std::size_t i = 0; i < pages; ++i) EXPECT_TRUE(c->get(5, share.refs()[i]).ok());
      return c;
    };
    blk::GrantPins pins;
    pins.retire(cache_of(2));  // nothing in flight: unmapped at once
    EXPECT_EQ(fake::counters().mapped_pages, 0U);
    EXPECT_EQ(pins.retired(), 0U);

    auto c = cache_of(3);
    auto page = c->get(5, share.refs()[1]);
    ASSERT_TRUE(page.ok());
    pins.pin();
    pins.pin();
    pins.retire(std::move(c));  // disconnect with two I/Os in flight
    EXPECT_EQ(pins.retired(), 1U);
    EXPECT_EQ(fake::counters().mapped_pages, 3U);
    std::memset(page->data(), 0x5a, 4096);  // the kernel may still write into it: still mapped
    EXPECT_EQ(share.data()[4096], std::byte{0x5a});
    pins.unpin();
    EXPECT_EQ(fake::counters().mapped_pages, 3U);
    pins.unpin();  // the last one: unmapped
    EXPECT_EQ(fake::counters().mapped_pages, 0U);
    EXPECT_EQ(pins.retired(), 0U);

    pins.pin();
    pins.retire(cache_of(1));
    EXPECT_EQ(fake::counters().mapped_pages, 1U);
    pins.reset();  // the target is gone (it waited for the kernel)
    EXPECT_EQ(fake::counters().mapped_pages, 0U);
  }
  EXPECT_EQ(fake::counters().gnttab_handles, 0U);
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
