// The dom0-side block cache (CachedTarget, dcache=) through the Target interface, driven the way BlkDevice drives
// a target (poll fd() for poll_events(), on_ready()). Backing stores: a real file through io_uring, an in-memory
// target that completes in random order and keeps written data volatile until a FLUSH (so "acknowledged FLUSH =>
// on the backing store" is checked exactly), and an nbdkit memory export when nbdkit is installed.
#include <gtest/gtest.h>

#include <fcntl.h>
#include <libnbd.h>
#include <poll.h>
#include <signal.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstring>
#include <filesystem>
#include <functional>
#include <map>
#include <memory>
#include <random>
#include <thread>
#include <vector>

#include "dom0/backends/blk/target.hpp"

namespace gears {
namespace {

using blk::DcacheMode;
using blk::IoKind;
using blk::Target;
using blk::TargetIo;
using Bytes = std::vector<std::byte>;
constexpr std::uint64_t kB = 4096;

Bytes pattern(std::size_t n, std::uint64_t seed) {
  Bytes b(n);
  std::uint64_t x = seed * 0x9e3779b97f4a7c15ULL + 1;
  for (auto& v : b) {
    x ^= x << 13;
    x ^= x >> 7;
    x ^= x << 17;
    v = std::byte(static_cast<unsigned char>(x & 0xff));
  }
  return b;
}

Bytes slice(const Bytes& b, std::uint64_t off, std::uint64_t n) {
  return {b.begin() + static_cast<std::ptrdiff_t>(off), b.begin() + static_cast<std::ptrdiff_t>(off + n)};
}

struct TempDir {
  std::filesystem::path dir;
  TempDir() {
    char t[] = "/tmp/gears-dcache-XXXXXX";
    dir = ::mkdtemp(t);
  }
  ~TempDir() { std::filesystem::remove_all(dir); }
  [[nodiscard]] std::string file(const std::string& n) const { return (dir / n).string(); }
};

// A disk image we can also read and change behind the cache's back.
struct DiskFile {
  std::string path;
  DiskFile(std::string p, const Bytes& content) : path(std::move(p)) { write(0, content); }
  [[nodiscard]] Bytes read(std::uint64_t off, std::uint64_t n) const {
    Bytes b(n);
    const int fd = ::open(path.c_str(), O_RDONLY);
    EXPECT_EQ(::pread(fd, b.data(), n, static_cast<off_t>(off)), static_cast<ssize_t>(n));
    ::close(fd);
    return b;
  }
  [[nodiscard]] Bytes all() const { return read(0, std::filesystem::file_size(path)); }
  void write(std::uint64_t off, const Bytes& b) const {
    const int fd = ::open(path.c_str(), O_WRONLY | O_CREAT, 0600);
    EXPECT_EQ(::pwrite(fd, b.data(), b.size(), static_cast<off_t>(off)), static_cast<ssize_t>(b.size()));
    ::close(fd);
  }
};

std::unique_ptr<Target> file_backing(const std::string& path) {
  blk::TargetOptions o;
  o.cache = blk::CacheMode::writeback;  // page cache: fast; FLUSH = fdatasync
  return blk::open_file_target(path, o);
}

// In-memory backing target. Completes operations in random order, a random number per on_ready(). Writes land
// in `current` when they complete; a FLUSH makes durable what had completed before the FLUSH was submitted.
struct MemState {
  Bytes current, durable;
  std::uint64_t durable_seq = 0;
};
class MemTarget final : public Target {
 public:
  MemTarget(std::shared_ptr<MemState> s, std::uint32_t depth, std::uint64_t seed)
      : s_(std::move(s)), depth_(depth), rng_(seed), efd_(::eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC)) {}
  ~MemTarget() override { ::close(efd_); }
  std::uint64_t size_bytes() const override { return s_->current.size(); }
  bool read_only() const override { return false; }
  bool can_discard() const override { return true; }
  std::string describe() const override { return "mem"; }
  std::uint32_t depth() const override { return depth_; }
  int fd() const override { return efd_; }
  std::uint32_t poll_events() const override { return EPOLLIN; }
  std::size_t in_flight() const override { return pending_.size(); }
  Status submit(const TargetIo& io) override {
    if (pending_.size() >= depth_) return Error{EAGAIN, "mem: full"};
    Pending p{io, ++seq_, {}};
    if (io.kind == IoKind::flush) p.snapshot = s_->current;
    pending_.push_back(std::move(p));
    return {};
  }
  void kick() override { signal(); }
  void on_ready(std::uint32_t, const Done& done) override {
    std::uint64_t v = 0;
    (void)!::read(efd_, &v, sizeof v);
    if (pending_.empty()) return;
    std::size_t n = 1 + rng_() % pending_.size();
    while (n-- > 0 && !pending_.empty()) {
      const std::size_t i = rng_() % pending_.size();
      Pending p = std::move(pending_[i]);
      pending_.erase(pending_.begin() + static_cast<std::ptrdiff_t>(i));
      auto* cur = s_->current.data() + p.io.offset;
      switch (p.io.kind) {
        case IoKind::read: std::memcpy(p.io.buf.data(), cur, p.io.buf.size()); break;
        case IoKind::write: std::memcpy(cur, p.io.buf.data(), p.io.buf.size()); break;
        case IoKind::discard: std::memset(cur, 0, p.io.length); break;
        case IoKind::flush:
          if (p.seq > s_->durable_seq) {
            s_->durable = std::move(p.snapshot);
            s_->durable_seq = p.seq;
          }
          break;
      }
      done(p.io.tag, 0);
    }
    if (!pending_.empty()) signal();
  }

 private:
  struct Pending {
    TargetIo io;
    std::uint64_t seq;
    Bytes snapshot;
  };
  void signal() const {
    const std::uint64_t one = 1;
    (void)!::write(efd_, &one, sizeof one);
  }
  std::shared_ptr<MemState> s_;
  std::uint32_t depth_;
  std::mt19937_64 rng_;
  int efd_;
  std::uint64_t seq_ = 0;
  std::vector<Pending> pending_;
};

// Drives a target like BlkDevice: submit + kick, then poll fd() for poll_events() and call on_ready().
class Driver {
 public:
  explicit Driver(std::unique_ptr<Target> t) : t_(std::move(t)) {}
  Target& target() { return *t_; }
  void reset() { t_.reset(); }
  [[nodiscard]] nlohmann::json stats() const { return t_->stats(); }

  std::uint64_t submit(IoKind k, std::uint64_t off, std::span<std::byte> buf, std::uint64_t len = 0) {
    TargetIo io;
    io.kind = k;
    io.tag = next_++;
    io.offset = off;
    io.buf = buf;
    io.length = len;
    const Status st = t_->submit(io);
    EXPECT_TRUE(st.ok()) << st.error().what;
    t_->kick();
    return io.tag;
  }
  // Hang guard only (no timing assertion): a lost completion fails the test instead of blocking it.
  int wait(std::uint64_t tag) {
    const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(30);
    while (results_.find(tag) == results_.end()) {
      if (std::chrono::steady_clock::now() > deadline) {
        ADD_FAILURE() << "operation " << tag << " never completed";
        return -ETIMEDOUT;
      }
      pollfd p{t_->fd(), static_cast<short>(t_->poll_events()), 0};
      (void)::poll(&p, 1, 50);
      t_->on_ready(static_cast<std::uint32_t>(static_cast<unsigned short>(p.revents)),
                   [this](std::uint64_t t, int r) {
                     EXPECT_EQ(results_.count(t), 0U) << "completed twice";
                     results_[t] = r;
                   });
    }
    const int r = results_[tag];
    results_.erase(tag);
    return r;
  }
  int read(std::uint64_t off, Bytes& out) { return wait(submit(IoKind::read, off, out)); }
  Bytes read(std::uint64_t off, std::uint64_t n) {
    Bytes b(n);
    EXPECT_EQ(read(off, b), 0);
    return b;
  }
  int write(std::uint64_t off, Bytes b) { return wait(submit(IoKind::write, off, b)); }
  int flush() { return wait(submit(IoKind::flush, 0, {})); }
  int discard(std::uint64_t off, std::uint64_t n) { return wait(submit(IoKind::discard, off, {}, n)); }
  [[nodiscard]] std::uint64_t stat(const char* k) const { return stats()[k].get<std::uint64_t>(); }

 private:
  std::unique_ptr<Target> t_;
  std::map<std::uint64_t, int> results_;
  std::uint64_t next_ = 1;
};

std::unique_ptr<Target> cached(std::unique_ptr<Target> backing, DcacheMode m, const std::string& file) {
  blk::DcacheOptions o;
  o.mode = m;
  o.file = file;
  return blk::open_cached_target(std::move(backing), o);
}

TEST(BlkCache, ReadMissThenHit) {
  TempDir d;
  const Bytes init = pattern(1 << 20, 1);
  DiskFile disk(d.file("disk"), init);
  Driver t(cached(file_backing(disk.path), DcacheMode::writethrough, d.file("cache")));
  EXPECT_EQ(t.read(128 << 10, 64 << 10), slice(init, 128 << 10, 64 << 10));
  EXPECT_EQ(t.stat("misses"), 1U);
  EXPECT_EQ(t.stat("hits"), 0U);
  EXPECT_EQ(t.stat("bytes_from_backing"), 64U << 10);

  // Changed behind the cache's back: a hit still returns what the cache holds, which proves where it came from.
  // (The fill goes on after a miss is answered; an overlapping request waits for it.)
  disk.write(128 << 10, pattern(64 << 10, 2));
  EXPECT_EQ(t.read(128 << 10, 64 << 10), slice(init, 128 << 10, 64 << 10));
  EXPECT_EQ(t.stat("hits"), 1U);
  EXPECT_EQ(t.stat("bytes_from_cache"), 64U << 10);
  EXPECT_EQ(t.stat("filled_blocks"), 16U);
  EXPECT_EQ(t.stat("valid_blocks"), 16U);

  // Half valid, half not: the valid block from the cache, the other from the backing store.
  Bytes expect = slice(init, 124 << 10, 8 << 10);
  EXPECT_EQ(t.read(124 << 10, 8 << 10), expect);
  EXPECT_EQ(t.stat("misses"), 2U);
  EXPECT_EQ(t.read(124 << 10, 8 << 10), expect);
  EXPECT_EQ(t.stat("hits"), 2U);
  EXPECT_EQ(t.stat("valid_blocks"), 17U);
  EXPECT_EQ(t.stat("dirty_blocks"), 0U);
}

TEST(BlkCache, WriteThroughIsOnTheBackingStoreWhenAcknowledged) {
  TempDir d;
  Bytes model = pattern(1 << 20, 3);
  DiskFile disk(d.file("disk"), model);
  Driver t(cached(file_backing(disk.path), DcacheMode::writethrough, d.file("cache")));
  const Bytes w = pattern(12 << 10, 4);
  ASSERT_EQ(t.write(4096, w), 0);
  EXPECT_EQ(disk.read(4096, w.size()), w);
  EXPECT_EQ(t.stat("dirty_blocks"), 0U);
  EXPECT_EQ(t.stat("valid_blocks"), 3U);
  EXPECT_EQ(t.read(4096, w.size()), w);
  EXPECT_EQ(t.stat("hits"), 1U);
  // Unaligned, inside a valid block and across an invalid one.
  std::copy(w.begin(), w.end(), model.begin() + 4096);
  const Bytes u = pattern(5000, 5);
  ASSERT_EQ(t.write(10000, u), 0);
  std::copy(u.begin(), u.end(), model.begin() + 10000);
  EXPECT_EQ(disk.read(0, 64 << 10), slice(model, 0, 64 << 10));
  EXPECT_EQ(t.read(3000, 20000), slice(model, 3000, 20000));
  EXPECT_EQ(t.stat("dirty_blocks"), 0U);
}

TEST(BlkCache, WriteBackReachesTheBackingStoreOnlyAtFlush) {
  TempDir d;
  const Bytes init = pattern(1 << 20, 6);
  DiskFile disk(d.file("disk"), init);
  Driver t(cached(file_backing(disk.path), DcacheMode::writeback, d.file("cache")));
  const Bytes w = pattern(8 << 10, 7);
  ASSERT_EQ(t.write(64 << 10, w), 0);
  EXPECT_EQ(disk.read(64 << 10, w.size()), slice(init, 64 << 10, w.size()));
  EXPECT_EQ(t.stat("dirty_blocks"), 2U);
  EXPECT_EQ(t.read(64 << 10, w.size()), w);
  EXPECT_EQ(t.stat("hits"), 1U);
  ASSERT_EQ(t.flush(), 0);
  EXPECT_EQ(disk.read(64 << 10, w.size()), w);
  EXPECT_EQ(t.stat("dirty_blocks"), 0U);
  EXPECT_EQ(t.stat("writeback_blocks"), 2U);
  EXPECT_EQ(t.stat("writeback_bytes"), 8U << 10);
  EXPECT_EQ(t.stat("flushes"), 1U);
  EXPECT_EQ(t.stat("valid_blocks"), 2U);
  ASSERT_EQ(t.flush(), 0);  // nothing dirty: still a backing FLUSH, still fine
  EXPECT_EQ(t.stat("writeback_blocks"), 2U);
}

TEST(BlkCache, DirtyBlockWinsOverTheBackingStore) {
  TempDir d;
  DiskFile disk(d.file("disk"), pattern(1 << 20, 8));
  Driver t(cached(file_backing(disk.path), DcacheMode::writeback, d.file("cache")));
  const Bytes mine = pattern(kB, 9);
  ASSERT_EQ(t.write(5 * kB, mine), 0);
  const Bytes other = pattern(3 * kB, 10);
  disk.write(4 * kB, other);  // the backing store differs (stale for block 5)
  Bytes expect = other;
  std::copy(mine.begin(), mine.end(), expect.begin() + kB);
  EXPECT_EQ(t.read(4 * kB, 3 * kB), expect);
  EXPECT_EQ(t.read(4 * kB, 3 * kB), expect);  // the fill did not overwrite the dirty block
  EXPECT_EQ(t.stat("dirty_blocks"), 1U);
  EXPECT_EQ(t.stat("hits"), 1U);
  ASSERT_EQ(t.flush(), 0);
  EXPECT_EQ(disk.read(4 * kB, 3 * kB), expect);
}

// Writes submitted while a FLUSH is writing back: the FLUSH still covers everything acknowledged before it, and
// a block written again during the write-back is either on the backing store or still dirty.
TEST(BlkCache, WriteDuringFlushIsNotLost) {
  TempDir d;
  auto mem = std::make_shared<MemState>();
  mem->current = pattern(4 << 20, 11);
  mem->durable = mem->current;
  Driver t(cached(std::make_unique<MemTarget>(mem, 4, 12), DcacheMode::writeback, d.file("cache")));
  Bytes model = mem->current;
  const Bytes a = pattern(3 << 20, 13);
  for (std::uint64_t off = 0; off < a.size(); off += 1 << 20) ASSERT_EQ(t.write(off, slice(a, off, 1 << 20)), 0);
  std::copy(a.begin(), a.end(), model.begin());
  EXPECT_EQ(t.stat("dirty_blocks"), 768U);

  const Bytes b = pattern(kB, 14), c = pattern(kB, 15), e = pattern(2 * kB, 16);
  Bytes bb = b, cc = c, ee = e;
  const auto f = t.submit(IoKind::flush, 0, {});
  const auto wb = t.submit(IoKind::write, 0, bb);
  const auto wc = t.submit(IoKind::write, 767 * kB, cc);
  const auto we = t.submit(IoKind::write, (3 << 20) + 100, ee);
  EXPECT_EQ(t.wait(f), 0);
  const Bytes durable = mem->durable;
  EXPECT_EQ(slice(durable, kB, 766 * kB), slice(model, kB, 766 * kB));
  EXPECT_EQ(t.wait(wb), 0);
  EXPECT_EQ(t.wait(wc), 0);
  EXPECT_EQ(t.wait(we), 0);
  const std::uint64_t dirty = t.stat("dirty_blocks");
  EXPECT_TRUE(slice(durable, 0, kB) == slice(a, 0, kB) || slice(durable, 0, kB) == b);
  EXPECT_TRUE(slice(mem->current, 0, kB) == b || dirty > 0) << "block 0 neither written back nor dirty";
  EXPECT_TRUE(slice(mem->current, 767 * kB, kB) == c || dirty > 0);

  std::copy(b.begin(), b.end(), model.begin());
  std::copy(c.begin(), c.end(), model.begin() + 767 * kB);
  std::copy(e.begin(), e.end(), model.begin() + (3 << 20) + 100);
  EXPECT_EQ(t.read(0, 4 << 20), model);
  ASSERT_EQ(t.flush(), 0);
  EXPECT_EQ(mem->durable, model);
  EXPECT_EQ(t.stat("dirty_blocks"), 0U);
}

TEST(BlkCache, DiscardDropsBlocksAndReachesTheBackingStore) {
  TempDir d;
  Bytes model = pattern(1 << 20, 17);
  DiskFile disk(d.file("disk"), model);
  {
    Driver t(cached(file_backing(disk.path), DcacheMode::writeback, d.file("cache")));
    const Bytes w = pattern(4 * kB, 18);
    ASSERT_EQ(t.write(2 * kB, w), 0);
    std::copy(w.begin(), w.end(), model.begin() + 2 * kB);
    EXPECT_EQ(t.stat("dirty_blocks"), 4U);
    // Block 2 partly (dirty), 3 and 4 whole (dirty: dropped), 5 partly (dirty).
    const std::uint64_t off = 2 * kB + 1024, len = 3 * kB + 1024;
    ASSERT_EQ(t.discard(off, len), 0);
    std::fill_n(model.begin() + static_cast<std::ptrdiff_t>(off), len, std::byte{0});
    EXPECT_EQ(t.stat("discarded_dirty_blocks"), 2U);
    EXPECT_EQ(t.stat("dirty_blocks"), 2U);
    EXPECT_EQ(t.read(0, 8 * kB), slice(model, 0, 8 * kB));
    ASSERT_EQ(t.flush(), 0);
    EXPECT_EQ(disk.all(), model);
  }
  {
    // Write-through: a clean cached block that is discarded is not served stale afterwards.
    Driver t(cached(file_backing(disk.path), DcacheMode::writethrough, d.file("cache")));
    EXPECT_EQ(t.read(10 * kB, 2 * kB), slice(model, 10 * kB, 2 * kB));
    EXPECT_EQ(t.read(10 * kB, 2 * kB), slice(model, 10 * kB, 2 * kB));  // a hit, after the fill
    EXPECT_EQ(t.stat("valid_blocks"), 2U);
    ASSERT_EQ(t.discard(10 * kB, kB), 0);
    std::fill_n(model.begin() + 10 * kB, kB, std::byte{0});
    EXPECT_EQ(t.stat("valid_blocks"), 1U);
    EXPECT_EQ(t.read(10 * kB, 2 * kB), slice(model, 10 * kB, 2 * kB));
    EXPECT_EQ(disk.all(), model);
  }
}

TEST(BlkCache, UnalignedReadsAndWrites) {
  for (const DcacheMode m : {DcacheMode::writethrough, DcacheMode::writeback}) {
    SCOPED_TRACE(m == DcacheMode::writeback ? "writeback" : "writethrough");
    TempDir d;
    const std::uint64_t size = (1 << 20) + 1536;  // the last block is short
    Bytes model = pattern(size, 19);
    DiskFile disk(d.file("disk"), model);
    Driver t(cached(file_backing(disk.path), m, d.file("cache")));
    auto put = [&](std::uint64_t off, std::uint64_t n, std::uint64_t seed) {
      const Bytes w = pattern(n, seed);
      ASSERT_EQ(t.write(off, w), 0);
      std::copy(w.begin(), w.end(), model.begin() + static_cast<std::ptrdiff_t>(off));
    };
    put(3 * kB + 100, 1000, 20);       // inside one invalid block: read-modify-write
    put(7 * kB - 17, 9000, 21);        // across four blocks, both ends partial
    EXPECT_EQ(t.read(3 * kB - 50, 20000), slice(model, 3 * kB - 50, 20000));
    put(8 * kB + 5, 10, 22);           // inside a block now valid
    put(size - 1200, 1000, 23);        // in the short last block
    EXPECT_EQ(t.read(size - 3000, 3000), slice(model, size - 3000, 3000));
    EXPECT_EQ(t.read(1, 40000), slice(model, 1, 40000));
    ASSERT_EQ(t.flush(), 0);
    EXPECT_EQ(disk.all(), model);
    EXPECT_EQ(t.stat("dirty_blocks"), 0U);
  }
}

// Random operations against an in-memory reference. Each batch holds operations on disjoint ranges submitted
// together (so any completion order is correct); every so often a FLUSH alone, after which the backing store's
// durable content must equal the reference.
void random_model(Driver& t, Bytes model, const std::function<Bytes()>& durable, bool writethrough_now,
                  const std::function<Bytes()>& backing_now, std::uint64_t seed, int rounds) {
  std::mt19937_64 rng(seed);
  const std::uint64_t size = model.size();
  std::uint64_t ops = 0, flushes = 0;
  for (int round = 0; round < rounds; ++round) {
    if (round % 12 == 11) {
      ASSERT_EQ(t.flush(), 0);
      ++flushes;
      ASSERT_EQ(durable(), model) << "round " << round;
      continue;
    }
    struct Item {
      IoKind k;
      std::uint64_t off, len;
      Bytes buf;
      std::uint64_t tag = 0;
    };
    std::vector<Item> batch;
    const std::size_t want = 1 + rng() % 6;
    for (int tries = 0; batch.size() < want && tries < 50; ++tries) {
      const auto pick = rng() % 100;
      const IoKind k = pick < 45 ? IoKind::write : pick < 88 ? IoKind::read : pick < 97 ? IoKind::discard : IoKind::flush;
      std::uint64_t len = (rng() % 3 == 0) ? (1 + rng() % 16) * kB : 1 + rng() % (48 << 10);
      len = std::min(len, size);
      std::uint64_t off = rng() % (size - len + 1);
      if (rng() % 2 == 0) off = std::min(off & ~(kB - 1), size - len);
      if (k == IoKind::flush) {
        batch.push_back({k, 0, 0, {}});
        continue;
      }
      const bool clash = std::any_of(batch.begin(), batch.end(), [&](const Item& o) {
        return o.k != IoKind::flush && o.off < off + len && off < o.off + o.len;
      });
      if (clash) continue;
      Item it{k, off, len, {}};
      if (k == IoKind::write) it.buf = pattern(len, rng());
      if (k == IoKind::read) it.buf.resize(len);
      batch.push_back(std::move(it));
    }
    for (auto& it : batch) it.tag = t.submit(it.k, it.off, it.buf, it.k == IoKind::discard ? it.len : 0);
    for (auto& it : batch) {
      ASSERT_EQ(t.wait(it.tag), 0);
      ++ops;
      if (it.k == IoKind::read) {
        ASSERT_EQ(it.buf, slice(model, it.off, it.len)) << "round " << round << " off " << it.off;
      }
    }
    for (auto& it : batch) {
      if (it.k == IoKind::write) std::copy(it.buf.begin(), it.buf.end(), model.begin() + static_cast<std::ptrdiff_t>(it.off));
      if (it.k == IoKind::discard) std::fill_n(model.begin() + static_cast<std::ptrdiff_t>(it.off), it.len, std::byte{0});
    }
    if (writethrough_now) {
      ASSERT_EQ(backing_now(), model) << "write-through: backing behind after round " << round;
    }
  }
  EXPECT_EQ(t.read(0, size), model);
  ASSERT_EQ(t.flush(), 0);
  EXPECT_EQ(durable(), model);
  EXPECT_EQ(t.stat("dirty_blocks"), 0U);
  EXPECT_GT(t.stat("hits"), 0U);
  EXPECT_GT(t.stat("misses"), 0U);
  EXPECT_GE(ops, static_cast<std::uint64_t>(rounds) * 2);
  EXPECT_GE(flushes, static_cast<std::uint64_t>(rounds / 12));
}

class BlkCacheModel : public ::testing::TestWithParam<std::tuple<DcacheMode, bool>> {};

TEST_P(BlkCacheModel, RandomOpsMatchAReference) {
  const auto [mode, mem_backing] = GetParam();
  const bool wt = mode == DcacheMode::writethrough;
  TempDir d;
  const std::uint64_t size = (512 << 10) + 1536;
  const Bytes init = pattern(size, 24);
  if (mem_backing) {
    auto mem = std::make_shared<MemState>();
    mem->current = mem->durable = init;
    Driver t(cached(std::make_unique<MemTarget>(mem, 3, 25), mode, d.file("cache")));
    random_model(t, init, [&] { return mem->durable; }, wt, [&] { return mem->current; }, 26, 180);
  } else {
    DiskFile disk(d.file("disk"), init);
    Driver t(cached(file_backing(disk.path), mode, d.file("cache")));
    random_model(t, init, [&] { return disk.all(); }, wt, [&] { return disk.all(); }, 27, 180);
  }
}

INSTANTIATE_TEST_SUITE_P(Modes, BlkCacheModel,
                         ::testing::Combine(::testing::Values(DcacheMode::writethrough, DcacheMode::writeback),
                                            ::testing::Bool()),
                         [](const auto& p) {
                           return std::string(std::get<0>(p.param) == DcacheMode::writeback ? "writeback"
                                                                                             : "writethrough") +
                                  (std::get<1>(p.param) ? "_mem" : "_file");
                         });

TEST(BlkCache, TeardownWritesBackDirtyBlocks) {
  TempDir d;
  auto mem = std::make_shared<MemState>();
  mem->current = mem->durable = pattern(1 << 20, 28);
  Bytes model = mem->current;
  {
    Driver t(cached(std::make_unique<MemTarget>(mem, 2, 29), DcacheMode::writeback, d.file("cache")));
    const Bytes w = pattern(300 << 10, 30);
    ASSERT_EQ(t.write(12345, w), 0);
    std::copy(w.begin(), w.end(), model.begin() + 12345);
    EXPECT_NE(mem->durable, model);
    // A write still in flight when the disk goes away is finished and written back too.
    Bytes late = pattern(kB, 31);
    (void)t.submit(IoKind::write, 200 * kB, late);
    std::copy(late.begin(), late.end(), model.begin() + 200 * kB);
    t.reset();
  }
  EXPECT_EQ(mem->durable, model);
  EXPECT_EQ(std::filesystem::file_size(d.file("cache")), 0U);  // space given back once clean
}

TEST(BlkCache, BadParametersAndCacheFiles) {
  EXPECT_THROW((void)blk::parse_dcache("sometimes", ""), std::invalid_argument);
  EXPECT_THROW((void)blk::parse_dcache("", "/var/cache/x"), std::invalid_argument);
  EXPECT_THROW((void)blk::parse_dcache("writeback", "relative/file"), std::invalid_argument);
  EXPECT_THROW((void)blk::parse_dcache("writeback", "/var/cache/"), std::invalid_argument);
  EXPECT_EQ(blk::parse_dcache("", "").mode, DcacheMode::off);
  EXPECT_EQ(blk::parse_dcache("writeback", "/a/b").mode, DcacheMode::writeback);
  EXPECT_EQ(blk::default_dcache_file(5, 51728), "/var/cache/gears/vbd-5-51728.dcache");

  TempDir d;
  DiskFile disk(d.file("disk"), pattern(64 << 10, 32));
  EXPECT_THROW((void)cached(file_backing(disk.path), DcacheMode::writeback, disk.path), std::runtime_error);
  EXPECT_EQ(disk.all(), pattern(64 << 10, 32));  // refused before touching it
  auto first = cached(file_backing(disk.path), DcacheMode::writeback, d.file("cache"));
  EXPECT_THROW((void)cached(file_backing(disk.path), DcacheMode::writeback, d.file("cache")), std::runtime_error);
  std::filesystem::create_directory(d.file("dir"));
  EXPECT_THROW((void)cached(file_backing(disk.path), DcacheMode::writeback, d.file("dir")), std::runtime_error);
  // Created with its directory, sparse at the disk's size.
  auto second = cached(file_backing(disk.path), DcacheMode::writethrough, d.file("sub/dir/cache"));
  EXPECT_EQ(std::filesystem::file_size(d.file("sub/dir/cache")), 64U << 10);
}

// A remote backing store: an nbdkit memory export on a unix socket (nbdkit comes with make deps).
TEST(BlkCache, NbdBackingWriteBack) {
  ASSERT_TRUE(::access("/usr/bin/nbdkit", X_OK) == 0 || ::access("/usr/sbin/nbdkit", X_OK) == 0)
      << "nbdkit is not installed (lab/install-deps installs it)";
  TempDir d;
  const std::string sock = d.file("nbd.sock");
  const pid_t pid = ::fork();
  ASSERT_GE(pid, 0);
  if (pid == 0) {
    ::execlp("nbdkit", "nbdkit", "--exit-with-parent", "-f", "-U", sock.c_str(), "memory", "size=768K",
             static_cast<char*>(nullptr));
    ::_exit(127);
  }
  struct Reap {
    pid_t pid;
    ~Reap() {
      ::kill(pid, SIGTERM);
      ::waitpid(pid, nullptr, 0);
    }
  } reap{pid};
  for (int i = 0; i < 200 && !std::filesystem::exists(sock); ++i) std::this_thread::sleep_for(std::chrono::milliseconds(50));
  ASSERT_TRUE(std::filesystem::exists(sock)) << "nbdkit did not start";
  const std::string uri = "nbd+unix:///?socket=" + sock;

  nbd_handle* peek = ::nbd_create();
  ASSERT_NE(peek, nullptr);
  ASSERT_NE(::nbd_connect_uri(peek, uri.c_str()), -1) << ::nbd_get_error();
  const std::uint64_t size = 768 << 10;
  auto on_server = [&] {
    Bytes b(size);
    EXPECT_EQ(::nbd_pread(peek, b.data(), b.size(), 0, 0), 0) << ::nbd_get_error();
    return b;
  };
  {
    Driver t(cached(blk::open_nbd_target(uri, {}), DcacheMode::writeback, d.file("cache")));
    EXPECT_EQ(t.target().size_bytes(), size);
    // The poll loop follows libnbd's direction through the cache's own epoll set.
    random_model(t, Bytes(size), on_server, false, on_server, 33, 120);
    const Bytes w = pattern(5 * kB, 34);
    ASSERT_EQ(t.write(kB + 7, w), 0);
    EXPECT_NE(slice(on_server(), kB + 7, w.size()), w);  // write-back: not on the server before a FLUSH
  }
  // Torn down with a dirty range: written back before the connection closed.
  Bytes after = on_server();
  EXPECT_EQ(slice(after, kB + 7, 5 * kB), pattern(5 * kB, 34));
  ::nbd_close(peek);
}

}  // namespace
}  // namespace gears
