// CachedTarget: the dom0-side block cache (dcache=), a Target in front of any backing Target (NBD, file), with
// the cached data in a local file read and written through its own io_uring file target.
//
// Layout: the cache file has the backing size (sparse); disk byte x is cache-file byte x. Two bitmaps with one
// bit per 4 KiB block (the last block may be short): valid (the cache file holds the block's current content)
// and dirty (newer than the backing store; write-back only). Invariants:
//   dirty => valid;   valid && !dirty => cache block == backing block;   writethrough => nothing is dirty.
// Ranges: every op that touches blocks (read, write, discard, one write-back chunk) holds its block range
// [b0, b1) from start to finish, and starts only when no older unfinished op overlaps it (FIFO per range). The
// bitmaps of a range change only under its holder, so no sub-I/O races a bitmap change.
// FLUSH (write-back): a cursor sweeps the dirty bitmap from block 0. Every block dirty when the FLUSH arrived is
// ahead of it, so it is written back, or its dirty bit was cleared by another write-back whose backing write had
// completed. Then the backing target is flushed, then the FLUSH is acknowledged.
// The bitmaps start empty at every open: the cache file is never trusted across a restart (dirty blocks not yet
// flushed are lost in a crash, which is allowed: the guest was never told they were durable).
//
// Asynchronous and single-threaded like every Target: fd() is an epoll set holding the backing fd (its events
// kept in step with backing->poll_events()), the cache file's eventfd and a wake-up eventfd; on_ready() drives
// both. Completions are reported only from on_ready(), never from submit().
#include <fcntl.h>
#include <spdlog/spdlog.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <array>
#include <bit>
#include <cerrno>
#include <chrono>
#include <cstdlib>
#include <cstring>
#include <deque>
#include <filesystem>
#include <stdexcept>
#include <vector>

#include "dom0/backends/blk/target.hpp"
#include "dom0/gearsd/fd.hpp"

namespace gears::blk {
namespace {

using daemon::Fd;

constexpr std::uint64_t kBlock = 4096;
constexpr std::uint64_t kChunkBlocks = 256;  // one write-back op: at most 1 MiB
constexpr std::uint32_t kFlushWindow = 8;    // write-back ops in flight per FLUSH
constexpr std::uint32_t kCacheDepth = 256;   // the cache file's io_uring
constexpr auto kTeardown = std::chrono::seconds(20);
constexpr std::uint32_t kNone = ~std::uint32_t{0};

// Page-aligned heap memory (an O_DIRECT backing file needs it). Empty when the allocation failed.
class Buffer {
 public:
  Buffer() = default;
  explicit Buffer(std::size_t n)
      : p_(static_cast<std::byte*>(std::aligned_alloc(kBlock, (n + kBlock - 1) & ~(kBlock - 1)))) {}
  [[nodiscard]] bool ok() const { return p_ != nullptr; }
  [[nodiscard]] std::span<std::byte> span(std::size_t off, std::size_t n) const { return {p_.get() + off, n}; }

 private:
  struct Free {
    void operator()(std::byte* p) const { std::free(p); }  // NOLINT(cppcoreguidelines-no-malloc)
  };
  std::unique_ptr<std::byte, Free> p_;
};

class Bitmap {
 public:
  explicit Bitmap(std::uint64_t n) : w_((n + 63) / 64, 0), n_(n) {}
  [[nodiscard]] bool test(std::uint64_t b) const { return ((w_[b >> 6] >> (b & 63)) & 1U) != 0; }
  void set(std::uint64_t b) {
    if (test(b)) return;
    w_[b >> 6] |= std::uint64_t{1} << (b & 63);
    ++count_;
  }
  // true when the bit was set.
  bool clear(std::uint64_t b) {
    if (!test(b)) return false;
    w_[b >> 6] &= ~(std::uint64_t{1} << (b & 63));
    --count_;
    return true;
  }
  [[nodiscard]] std::uint64_t count() const { return count_; }
  // The first set bit at or after `from`, or size.
  [[nodiscard]] std::uint64_t next_set(std::uint64_t from) const {
    if (from >= n_) return n_;
    std::size_t i = from >> 6;
    std::uint64_t w = w_[i] & (~std::uint64_t{0} << (from & 63));
    for (;;) {
      if (w != 0) return std::min<std::uint64_t>(n_, (std::uint64_t{i} << 6) + static_cast<unsigned>(std::countr_zero(w)));
      if (++i == w_.size()) return n_;
      w = w_[i];
    }
  }

 private:
  std::vector<std::uint64_t> w_;
  std::uint64_t n_ = 0, count_ = 0;
};

enum class Which : std::uint8_t { backing = 0, cache = 1 };
enum class Kind : std::uint8_t { read, write, discard, flush, writeback };

struct Run {
  std::uint64_t b0 = 0, b1 = 0;  // blocks [b0, b1)
  bool cached = false;           // read: from the cache file (else from the backing target)
};

// One operation: a guest request (outer) or an internal write-back chunk (child of a FLUSH).
struct Op {
  Kind kind = Kind::read;
  std::uint32_t gen = 0;
  bool live = false;
  bool outer = false, reported = false, teardown = false;
  bool ranged = false, running = false;
  std::uint8_t phase = 0;
  std::uint32_t pending = 0;  // sub-I/Os issued and not completed
  int err_backing = 0, err_cache = 0;
  TargetIo io{};
  std::uint64_t b0 = 0, b1 = 0;
  std::uint32_t parent = kNone, children = 0;
  std::uint64_t cursor = 0;  // FLUSH: next block to look at
  Buffer staging;
  std::vector<Run> runs;
  std::array<std::uint64_t, 2> edge{};  // write-back write: partial blocks filled from the backing store
  std::uint32_t edges = 0;
};

class CachedTarget final : public Target {
 public:
  CachedTarget(std::unique_ptr<Target> backing, const DcacheOptions& o)
      : backing_(std::move(backing)),
        mode_(o.mode),
        path_(o.file),
        size_(backing_->size_bytes()),
        nblocks_((size_ + kBlock - 1) / kBlock),
        valid_(nblocks_),
        dirty_(nblocks_),
        zeros_(kBlock) {
    if (mode_ == DcacheMode::off) throw std::invalid_argument("dcache: mode is off");
    if (!zeros_.ok()) throw std::bad_alloc();
    std::memset(zeros_.span(0, kBlock).data(), 0, kBlock);
    open_cache_file();
    ep_ = Fd(::epoll_create1(EPOLL_CLOEXEC));
    wake_ = Fd(::eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC));
    if (!ep_ || !wake_) throw std::runtime_error(std::string("dcache: epoll/eventfd: ") + std::strerror(errno));
    backing_events_ = backing_->poll_events();
    watch(EPOLL_CTL_ADD, backing_->fd(), backing_events_, 0);
    watch(EPOLL_CTL_ADD, cache_->fd(), cache_->poll_events(), 1);
    watch(EPOLL_CTL_ADD, wake_.get(), EPOLLIN, 2);
    spdlog::info("dcache {}: {} in front of {} ({} blocks of {} bytes)", path_, mode_name(), backing_->describe(),
                 nblocks_, kBlock);
  }

  ~CachedTarget() override {
    const auto deadline = std::chrono::steady_clock::now() + kTeardown;
    drive([this] { return outer_ == 0 && live_ == 0; }, deadline);
    std::uint64_t written = 0;
    if (mode_ == DcacheMode::writeback && dirty_.count() > 0 && !backing_->read_only()) {
      const std::uint64_t before = dirty_.count(), wb_before = st_.writeback_blocks;
      const std::uint32_t id = new_op(Kind::flush);
      ops_[id]->teardown = true;
      begin(id);
      run();
      (void)kick_inner();
      drive([this] { return teardown_done_; }, deadline);
      written = st_.writeback_blocks - wb_before;
      if (teardown_done_ && teardown_result_ == 0 && dirty_.count() == 0)
        spdlog::info("dcache {}: closing: wrote back {} dirty blocks and flushed {}", path_, before,
                     backing_->describe());
      else
        spdlog::error("dcache {}: closing: wrote back {} of {} dirty blocks ({}); {} blocks ({} KiB) written by the "
                      "guest are lost",
                      path_, written, before,
                      !teardown_done_ ? "timed out" : std::strerror(-teardown_result_), dirty_.count(),
                      dirty_.count() * kBlock / 1024);
    }
    // The inner targets wait for what the kernel/server still owns; our buffers (ops_) outlive them.
    const bool clean = dirty_.count() == 0;
    backing_.reset();
    cache_.reset();
    if (clean) (void)::ftruncate(lock_.get(), 0);  // give the space back; contents are never reused
  }

  std::uint64_t size_bytes() const override { return size_; }
  bool read_only() const override { return backing_->read_only(); }
  bool can_discard() const override { return backing_->can_discard(); }
  std::string describe() const override { return backing_->describe() + " (dcache=" + mode_name() + ")"; }
  std::uint32_t depth() const override { return backing_->depth(); }
  int fd() const override { return ep_.get(); }
  std::uint32_t poll_events() const override { return EPOLLIN; }
  std::size_t in_flight() const override { return outer_; }

  Status submit(const TargetIo& io) override {
    const bool xfer = io.kind == IoKind::read || io.kind == IoKind::write;
    const std::uint64_t len = xfer ? io.buf.size() : io.length;
    if (io.kind != IoKind::flush && (len == 0 || io.offset > size_ || len > size_ - io.offset))
      return Error{EINVAL, "dcache: range outside the disk"};
    if ((io.kind == IoKind::write || io.kind == IoKind::discard) && read_only())
      return Error{EROFS, "dcache: read-only"};
    Kind k = Kind::flush;
    switch (io.kind) {
      case IoKind::read: k = Kind::read; break;
      case IoKind::write: k = Kind::write; break;
      case IoKind::discard: k = Kind::discard; break;
      case IoKind::flush: k = Kind::flush; break;
    }
    const std::uint32_t id = new_op(k);
    Op& op = *ops_[id];
    op.outer = true;
    op.io = io;
    if (k != Kind::flush) {
      op.ranged = true;
      op.b0 = io.offset / kBlock;
      op.b1 = (io.offset + len + kBlock - 1) / kBlock;
    }
    ++outer_;
    begin(id);
    run();
    if (!completed_.empty()) wake();
    return {};
  }

  void kick() override {
    if (kick_inner() || !completed_.empty()) wake();  // a backing target may complete without fd activity
    sync_backing_events();
  }

  void on_ready(std::uint32_t, const Done& done) override {
    std::array<epoll_event, 4> evs{};
    const int n = ::epoll_wait(ep_.get(), evs.data(), static_cast<int>(evs.size()), 0);
    std::uint32_t eb = 0, ec = 0;
    for (int i = 0; i < n; ++i) {
      const auto& e = evs[static_cast<std::size_t>(i)];
      if (e.data.u32 == 0) eb |= e.events;
      else if (e.data.u32 == 1) ec |= e.events;
      else {
        std::uint64_t v = 0;
        (void)!::read(wake_.get(), &v, sizeof v);
      }
    }
    // Until the inner targets have nothing more to report (some complete without fd activity).
    for (;;) {
      std::size_t got = 0;
      backing_->on_ready(eb, [&](std::uint64_t tag, int res) {
        ++got;
        sub_done(Which::backing, tag, res);
      });
      cache_->on_ready(ec, [&](std::uint64_t tag, int res) {
        ++got;
        sub_done(Which::cache, tag, res);
      });
      eb = ec = 0;
      run();
      (void)kick_inner();
      if (got == 0) break;
    }
    sync_backing_events();
    // done() may submit again (e.g. the write half of FLUSH_DISKCACHE with data): collected anew each round.
    while (!completed_.empty()) {
      std::vector<std::pair<std::uint64_t, int>> batch;
      batch.swap(completed_);
      for (auto [tag, res] : batch) {
        --outer_;
        done(tag, res);
      }
    }
  }

  nlohmann::json stats() const override {
    return {{"mode", mode_name()},
            {"file", path_},
            {"block_size", kBlock},
            {"blocks", nblocks_},
            {"valid_blocks", valid_.count()},
            {"dirty_blocks", dirty_.count()},
            {"hits", st_.hits},
            {"misses", st_.misses},
            {"bytes_from_cache", st_.bytes_from_cache},
            {"bytes_from_backing", st_.bytes_from_backing},
            {"filled_blocks", st_.filled_blocks},
            {"writeback_blocks", st_.writeback_blocks},
            {"writeback_bytes", st_.writeback_bytes},
            {"flushes", st_.flushes},
            {"discarded_dirty_blocks", st_.discarded_dirty},
            {"cache_errors", st_.cache_errors}};
  }

 private:
  struct Counters {
    std::uint64_t hits = 0, misses = 0, bytes_from_cache = 0, bytes_from_backing = 0, filled_blocks = 0;
    std::uint64_t writeback_blocks = 0, writeback_bytes = 0, flushes = 0, discarded_dirty = 0, cache_errors = 0;
  };

  [[nodiscard]] std::string mode_name() const { return mode_ == DcacheMode::writeback ? "writeback" : "writethrough"; }
  [[nodiscard]] std::uint64_t boff(std::uint64_t b) const { return b * kBlock; }
  [[nodiscard]] std::uint64_t bend(std::uint64_t b) const { return std::min(size_, (b + 1) * kBlock); }
  [[nodiscard]] std::uint64_t bytes(std::uint64_t b0, std::uint64_t b1) const { return bend(b1 - 1) - boff(b0); }
  [[nodiscard]] Target& target(Which w) const { return w == Which::backing ? *backing_ : *cache_; }
  [[nodiscard]] static std::uint64_t tag_of(std::uint32_t id, const Op& op) {
    return (std::uint64_t{op.gen} << 32) | id;
  }

  void open_cache_file() {
    namespace fs = std::filesystem;
    const fs::path p(path_);
    std::error_code ec;
    fs::create_directories(p.parent_path(), ec);
    if (ec) throw std::runtime_error("dcache-file " + path_ + ": cannot create its directory: " + ec.message());
    lock_ = Fd(::open(path_.c_str(), O_RDWR | O_CREAT | O_CLOEXEC | O_NOFOLLOW, 0600));
    if (!lock_) throw std::runtime_error("dcache-file " + path_ + ": cannot open: " + std::strerror(errno));
    struct stat st {};
    if (::fstat(lock_.get(), &st) != 0 || !S_ISREG(st.st_mode))
      throw std::runtime_error("dcache-file " + path_ + ": not a regular file");
    const std::string desc = backing_->describe();
    if (desc.rfind("file:", 0) == 0) {
      struct stat bs {};
      if (::stat(desc.substr(5).c_str(), &bs) == 0 && bs.st_dev == st.st_dev && bs.st_ino == st.st_ino)
        throw std::runtime_error("dcache-file " + path_ + ": is the disk's own target");
    }
    // One disk per cache file: the lock lives as long as this target.
    if (::flock(lock_.get(), LOCK_EX | LOCK_NB) != 0)
      throw std::runtime_error("dcache-file " + path_ + ": in use by another disk");
    // Empty and sparse at the disk's size: nothing from an earlier run is trusted.
    if (::ftruncate(lock_.get(), 0) != 0 || ::ftruncate(lock_.get(), static_cast<off_t>(size_)) != 0)
      throw std::runtime_error("dcache-file " + path_ + ": cannot size it: " + std::strerror(errno));
    TargetOptions co;
    co.cache = CacheMode::writeback;  // the page cache: the cache file's durability does not matter
    co.depth = kCacheDepth;
    cache_ = open_file_target(path_, co);
  }

  void watch(int op, int fd, std::uint32_t events, std::uint32_t which) {
    epoll_event e{};
    e.events = events;
    e.data.u32 = which;
    if (::epoll_ctl(ep_.get(), op, fd, &e) != 0)
      throw std::runtime_error(std::string("dcache: epoll_ctl: ") + std::strerror(errno));
  }

  void sync_backing_events() {
    const std::uint32_t ev = backing_->poll_events();
    if (ev == backing_events_) return;
    epoll_event e{};
    e.events = ev;
    e.data.u32 = 0;
    if (::epoll_ctl(ep_.get(), EPOLL_CTL_MOD, backing_->fd(), &e) == 0) backing_events_ = ev;
  }

  void wake() {
    const std::uint64_t one = 1;
    (void)!::write(wake_.get(), &one, sizeof one);
  }

  // Blocks the caller (teardown only) until pred() or the deadline.
  template <class Pred>
  void drive(Pred pred, std::chrono::steady_clock::time_point deadline) {
    const Done ignore = [](std::uint64_t, int) {};
    while (!pred()) {
      const auto now = std::chrono::steady_clock::now();
      if (now >= deadline) return;
      const auto left = std::chrono::duration_cast<std::chrono::milliseconds>(deadline - now).count();
      epoll_event e{};
      (void)::epoll_wait(ep_.get(), &e, 1, static_cast<int>(std::min<long>(left, 100)));
      on_ready(EPOLLIN, ignore);
    }
  }

  // --- operations -------------------------------------------------------------------------------------------

  std::uint32_t new_op(Kind k) {
    std::uint32_t id = 0;
    if (!free_.empty()) {
      id = free_.back();
      free_.pop_back();
    } else {
      id = static_cast<std::uint32_t>(ops_.size());
      ops_.push_back(std::make_unique<Op>());
    }
    Op& op = *ops_[id];
    const std::uint32_t gen = op.gen;
    op = Op{};
    op.gen = gen;
    op.kind = k;
    op.live = true;
    ++live_;
    return id;
  }

  // Ranged ops wait for older overlapping ones; others start at once.
  void begin(std::uint32_t id) {
    Op& op = *ops_[id];
    if (op.ranged) {
      active_.push_back(id);
      if (blocked(active_.size() - 1)) return;
    }
    op.running = true;
    runnable_.emplace_back(id, op.gen);
  }

  [[nodiscard]] bool blocked(std::size_t i) const {
    const Op& op = *ops_[active_[i]];
    for (std::size_t j = 0; j < i; ++j) {
      const Op& o = *ops_[active_[j]];
      if (o.b0 < op.b1 && op.b0 < o.b1) return true;
    }
    return false;
  }

  void start_waiters() {
    for (std::size_t i = 0; i < active_.size(); ++i) {
      Op& op = *ops_[active_[i]];
      if (op.running || blocked(i)) continue;
      op.running = true;
      runnable_.emplace_back(active_[i], op.gen);
    }
  }

  void report(Op& op, int res) {
    if (!op.outer || op.reported) return;
    op.reported = true;
    completed_.emplace_back(op.io.tag, res);
  }

  void finish(std::uint32_t id, int res) {
    Op& op = *ops_[id];
    report(op, res);
    if (op.teardown) {
      teardown_done_ = true;
      teardown_result_ = res;
    }
    if (op.parent != kNone) {
      Op& p = *ops_[op.parent];
      --p.children;
      if (res != 0 && p.err_backing == 0) p.err_backing = res;
      runnable_.emplace_back(op.parent, p.gen);
    }
    const bool ranged = op.ranged;
    if (ranged) active_.erase(std::find(active_.begin(), active_.end(), id));
    op.live = false;
    ++op.gen;
    op.staging = Buffer();
    op.runs.clear();
    --live_;
    free_.push_back(id);
    if (ranged) start_waiters();
  }

  // A sub-I/O on the backing target or the cache file. Never completes synchronously.
  void issue(Which w, std::uint32_t id, IoKind k, std::uint64_t off, std::span<std::byte> buf, std::uint64_t len = 0) {
    Op& op = *ops_[id];
    TargetIo io;
    io.kind = k;
    io.tag = tag_of(id, op);
    io.offset = off;
    io.buf = buf;
    io.length = len;
    ++op.pending;
    backlog_[static_cast<std::size_t>(w)].push_back(io);
    pump(w);
  }

  // Submits queued sub-I/Os while the inner target takes them.
  void pump(Which w) {
    auto& q = backlog_[static_cast<std::size_t>(w)];
    while (!q.empty()) {
      const Status st = target(w).submit(q.front());
      if (!st && st.error().code == EAGAIN) break;
      if (st) submitted_[static_cast<std::size_t>(w)] = true;
      else failed_.push_back({w, q.front().tag, -(st.error().code != 0 ? st.error().code : EIO)});
      q.pop_front();
    }
  }

  [[nodiscard]] bool kick_inner() {
    bool any = false;
    for (const Which w : {Which::backing, Which::cache}) {
      if (!submitted_[static_cast<std::size_t>(w)]) continue;
      submitted_[static_cast<std::size_t>(w)] = false;
      target(w).kick();
      any = true;
    }
    return any;
  }

  void sub_done(Which w, std::uint64_t tag, int res) {
    const auto id = static_cast<std::uint32_t>(tag & 0xffffffffU);
    if (id >= ops_.size()) return;
    Op& op = *ops_[id];
    if (!op.live || op.gen != (tag >> 32) || op.pending == 0) return;
    int& err = w == Which::backing ? op.err_backing : op.err_cache;
    if (res < 0 && err == 0) err = res;
    if (--op.pending == 0) runnable_.emplace_back(id, op.gen);
  }

  void run() {
    if (in_run_) return;
    in_run_ = true;
    for (;;) {
      if (!failed_.empty()) {
        auto f = std::move(failed_);
        failed_.clear();
        for (const auto& x : f) sub_done(x.w, x.tag, x.res);
        continue;
      }
      if (runnable_.empty()) {
        pump(Which::backing);  // completions made room
        pump(Which::cache);
        if (runnable_.empty() && failed_.empty()) break;
        continue;
      }
      const auto [id, gen] = runnable_.front();
      runnable_.pop_front();
      Op& op = *ops_[id];
      if (!op.live || op.gen != gen || !op.running || op.pending > 0) continue;
      switch (op.kind) {
        case Kind::read: advance_read(id, op); break;
        case Kind::write:
          if (mode_ == DcacheMode::writeback) advance_write_back(id, op);
          else advance_write_through(id, op);
          break;
        case Kind::discard: advance_discard(id, op); break;
        case Kind::flush: advance_flush(id, op); break;
        case Kind::writeback: advance_writeback(id, op); break;
      }
    }
    in_run_ = false;
  }

  [[nodiscard]] bool all_valid(std::uint64_t b0, std::uint64_t b1) const {
    for (std::uint64_t b = b0; b < b1; ++b)
      if (!valid_.test(b)) return false;
    return true;
  }

  // Full hit: one cache read into the guest's buffer. Otherwise: valid blocks from the cache file, the others
  // from the backing target (whole blocks, into staging), the guest is answered, then the blocks read from the
  // backing target are written into the cache file and become valid (the range is held until then).
  void advance_read(std::uint32_t id, Op& op) {
    const std::uint64_t off = op.io.offset, len = op.io.buf.size(), base = boff(op.b0);
    switch (op.phase) {
      case 0:
        if (all_valid(op.b0, op.b1)) {
          ++st_.hits;
          st_.bytes_from_cache += len;
          op.phase = 3;
          issue(Which::cache, id, IoKind::read, off, op.io.buf);
          return;
        }
        ++st_.misses;
        op.staging = Buffer(bytes(op.b0, op.b1));
        if (!op.staging.ok()) return finish(id, -ENOMEM);
        for (std::uint64_t b = op.b0; b < op.b1; ++b) {
          const bool c = valid_.test(b);
          if (op.runs.empty() || op.runs.back().cached != c) op.runs.push_back({b, b + 1, c});
          else op.runs.back().b1 = b + 1;
        }
        for (const Run& r : op.runs) {
          const std::uint64_t n = bytes(r.b0, r.b1);
          (r.cached ? st_.bytes_from_cache : st_.bytes_from_backing) += n;
          issue(r.cached ? Which::cache : Which::backing, id, IoKind::read, boff(r.b0),
                op.staging.span(boff(r.b0) - base, n));
        }
        op.phase = 1;
        return;
      case 1: {
        if (const int e = op.err_backing != 0 ? op.err_backing : op.err_cache; e != 0) return finish(id, e);
        std::memcpy(op.io.buf.data(), op.staging.span(off - base, len).data(), len);
        report(op, 0);
        op.phase = 2;
        for (const Run& r : op.runs)
          if (!r.cached)
            issue(Which::cache, id, IoKind::write, boff(r.b0), op.staging.span(boff(r.b0) - base, bytes(r.b0, r.b1)));
        if (op.pending == 0) finish(id, 0);
        return;
      }
      case 2:
        if (op.err_cache != 0) {
          ++st_.cache_errors;
        } else {
          for (const Run& r : op.runs)
            if (!r.cached)
              for (std::uint64_t b = r.b0; b < r.b1; ++b) {
                valid_.set(b);  // was invalid, hence not dirty: backing data is current
                ++st_.filled_blocks;
              }
        }
        return finish(id, 0);
      default:
        if (op.err_cache != 0) ++st_.cache_errors;
        return finish(id, op.err_cache);
    }
  }

  // Both at once; acknowledged with the backing target's result. Blocks fully written become valid; any
  // failure invalidates the range (the cache must never disagree with the backing store on a clean block).
  void advance_write_through(std::uint32_t id, Op& op) {
    const std::uint64_t off = op.io.offset, end = off + op.io.buf.size();
    if (op.phase == 0) {
      op.phase = 1;
      issue(Which::backing, id, IoKind::write, off, op.io.buf);
      issue(Which::cache, id, IoKind::write, off, op.io.buf);
      return;
    }
    if (op.err_cache != 0) ++st_.cache_errors;
    for (std::uint64_t b = op.b0; b < op.b1; ++b) {
      if (op.err_backing != 0 || op.err_cache != 0) (void)valid_.clear(b);
      else if (boff(b) >= off && bend(b) <= end) valid_.set(b);
    }
    finish(id, op.err_backing);
  }

  // Into the cache file only; blocks become valid + dirty. A partially written block that is not valid is first
  // read from the backing target (read-modify-write), so every dirty block is whole.
  void advance_write_back(std::uint32_t id, Op& op) {
    const std::uint64_t off = op.io.offset, len = op.io.buf.size(), end = off + len;
    switch (op.phase) {
      case 0: {
        const std::uint64_t first = op.b0, last = op.b1 - 1;
        if ((off > boff(first) || end < bend(first)) && !valid_.test(first)) op.edge[op.edges++] = first;
        if (last != first && end < bend(last) && !valid_.test(last)) op.edge[op.edges++] = last;
        op.phase = 1;
        if (op.edges == 0) break;  // straight to phase 1
        op.staging = Buffer(2 * kBlock);
        if (!op.staging.ok()) return finish(id, -ENOMEM);
        for (std::uint32_t i = 0; i < op.edges; ++i) {
          const std::uint64_t b = op.edge[i];
          st_.bytes_from_backing += bend(b) - boff(b);
          issue(Which::backing, id, IoKind::read, boff(b), op.staging.span(i * kBlock, bend(b) - boff(b)));
        }
        return;
      }
      case 1: break;
      case 2: {
        if (op.err_cache != 0) {
          ++st_.cache_errors;
          for (std::uint64_t b = op.b0; b < op.b1; ++b)
            if (!dirty_.test(b)) (void)valid_.clear(b);
          return finish(id, op.err_cache);
        }
        for (std::uint64_t b = op.b0; b < op.b1; ++b) {
          valid_.set(b);
          dirty_.set(b);
        }
        return finish(id, 0);
      }
      default: return;
    }
    // Phase 1: the edges are read (if any).
    if (op.err_backing != 0) return finish(id, op.err_backing);
    std::uint64_t lo = off, hi = end;
    for (std::uint32_t i = 0; i < op.edges; ++i) {
      const std::uint64_t b = op.edge[i], s = std::max(off, boff(b)), e = std::min(end, bend(b));
      std::memcpy(op.staging.span(i * kBlock + (s - boff(b)), e - s).data(), op.io.buf.data() + (s - off), e - s);
      issue(Which::cache, id, IoKind::write, boff(b), op.staging.span(i * kBlock, bend(b) - boff(b)));
      if (b == op.b0) lo = std::min(end, bend(b));
      if (b == op.b1 - 1) hi = std::max(lo, boff(b));
    }
    if (lo < hi) issue(Which::cache, id, IoKind::write, lo, op.io.buf.subspan(lo - off, hi - lo));
    op.phase = 2;
  }

  // To the backing target (its result is the answer); whole blocks are dropped from the cache (dirty ones
  // too: the guest discarded them) and their space punched out of the cache file; a dirty partial block gets
  // zeros in the discarded part (it is written back later), a clean partial block is dropped.
  void advance_discard(std::uint32_t id, Op& op) {
    if (op.phase == 1) return finish(id, op.err_backing);
    const std::uint64_t off = op.io.offset, end = off + op.io.length;
    std::uint64_t f0 = kNone, f1 = 0;
    for (std::uint64_t b = op.b0; b < op.b1; ++b) {
      if (boff(b) >= off && bend(b) <= end) {
        if (dirty_.clear(b)) ++st_.discarded_dirty;
        (void)valid_.clear(b);
        f0 = std::min(f0, b);
        f1 = b + 1;
      } else if (dirty_.test(b)) {
        const std::uint64_t s = std::max(off, boff(b)), e = std::min(end, bend(b));
        issue(Which::cache, id, IoKind::write, s, zeros_.span(0, e - s));
      } else {
        (void)valid_.clear(b);
      }
    }
    if (f1 > 0 && cache_->can_discard()) issue(Which::cache, id, IoKind::discard, boff(f0), {}, bytes(f0, f1));
    op.phase = 1;
    if (backing_->can_discard()) issue(Which::backing, id, IoKind::discard, off, {}, op.io.length);
    else op.err_backing = -EOPNOTSUPP;
    if (op.pending == 0) finish(id, op.err_backing);
  }

  // Write-through: the backing target's FLUSH. Write-back: write back (kFlushWindow chunks at a time) every
  // block found dirty by the cursor, then the backing FLUSH; the first error fails the FLUSH (blocks stay dirty).
  void advance_flush(std::uint32_t id, Op& op) {
    if (op.phase == 0) {
      if (op.outer) ++st_.flushes;
      op.phase = mode_ == DcacheMode::writeback ? 1 : 2;
    }
    if (op.phase == 3) return finish(id, op.err_backing);
    if (op.err_backing != 0) op.cursor = nblocks_;  // a chunk failed: the FLUSH fails, start no more
    while (op.phase == 1 && op.children < kFlushWindow && op.cursor < nblocks_) {
      const std::uint64_t s = dirty_.next_set(op.cursor);
      if (s >= nblocks_) {
        op.cursor = nblocks_;
        break;
      }
      std::uint64_t e = s + 1;
      while (e < nblocks_ && e - s < kChunkBlocks && dirty_.test(e)) ++e;
      op.cursor = e;
      const std::uint32_t c = new_op(Kind::writeback);
      Op& child = *ops_[c];
      child.ranged = true;
      child.b0 = s;
      child.b1 = e;
      child.parent = id;
      ++op.children;
      begin(c);
    }
    if (op.phase == 1) {
      if (op.children > 0 || op.cursor < nblocks_) return;
      if (op.err_backing != 0) return finish(id, op.err_backing);
      op.phase = 2;
    }
    op.phase = 3;
    issue(Which::backing, id, IoKind::flush, 0, {});
  }

  // One chunk of a FLUSH: the blocks of [b0, b1) still dirty, cache file -> backing target, then clean.
  void advance_writeback(std::uint32_t id, Op& op) {
    const std::uint64_t base = boff(op.b0);
    switch (op.phase) {
      case 0:
        for (std::uint64_t b = op.b0; b < op.b1; ++b) {
          if (!dirty_.test(b)) continue;
          if (op.runs.empty() || op.runs.back().b1 != b) op.runs.push_back({b, b + 1, true});
          else op.runs.back().b1 = b + 1;
        }
        if (op.runs.empty()) return finish(id, 0);
        op.staging = Buffer(bytes(op.b0, op.b1));
        if (!op.staging.ok()) return finish(id, -ENOMEM);
        for (const Run& r : op.runs)
          issue(Which::cache, id, IoKind::read, boff(r.b0), op.staging.span(boff(r.b0) - base, bytes(r.b0, r.b1)));
        op.phase = 1;
        return;
      case 1:
        if (op.err_cache != 0) {
          ++st_.cache_errors;
          return finish(id, op.err_cache);
        }
        for (const Run& r : op.runs)
          issue(Which::backing, id, IoKind::write, boff(r.b0), op.staging.span(boff(r.b0) - base, bytes(r.b0, r.b1)));
        op.phase = 2;
        return;
      default:
        if (op.err_backing != 0) return finish(id, op.err_backing);
        for (const Run& r : op.runs) {
          for (std::uint64_t b = r.b0; b < r.b1; ++b) (void)dirty_.clear(b);
          st_.writeback_blocks += r.b1 - r.b0;
          st_.writeback_bytes += bytes(r.b0, r.b1);
        }
        return finish(id, 0);
    }
  }

  struct Failed {
    Which w;
    std::uint64_t tag;
    int res;
  };

  std::unique_ptr<Target> backing_;
  DcacheMode mode_;
  std::string path_;
  std::uint64_t size_ = 0, nblocks_ = 0;
  Bitmap valid_, dirty_;
  Buffer zeros_;
  Fd lock_;  // the cache file, flock'ed for this disk
  std::unique_ptr<Target> cache_;
  Fd ep_, wake_;
  std::uint32_t backing_events_ = 0;

  std::vector<std::unique_ptr<Op>> ops_;  // stable addresses: sub-I/Os point into their staging
  std::vector<std::uint32_t> free_;
  std::vector<std::uint32_t> active_;  // ranged ops, oldest first
  std::deque<std::pair<std::uint32_t, std::uint32_t>> runnable_;  // (op, gen)
  std::array<std::deque<TargetIo>, 2> backlog_;                   // sub-I/Os the inner target refused (EAGAIN)
  std::array<bool, 2> submitted_{};
  std::vector<Failed> failed_;
  std::vector<std::pair<std::uint64_t, int>> completed_;  // outer completions to report
  std::size_t outer_ = 0, live_ = 0;
  bool in_run_ = false, teardown_done_ = false;
  int teardown_result_ = 0;
  Counters st_;
};

}  // namespace

DcacheOptions parse_dcache(const std::string& mode, const std::string& file) {
  DcacheOptions o;
  if (mode.empty() || mode == "off") o.mode = DcacheMode::off;
  else if (mode == "writethrough") o.mode = DcacheMode::writethrough;
  else if (mode == "writeback") o.mode = DcacheMode::writeback;
  else throw std::invalid_argument("dcache='" + mode + "' is not one of off, writethrough, writeback");
  if (!file.empty()) {
    if (o.mode == DcacheMode::off)
      throw std::invalid_argument("dcache-file='" + file + "': needs dcache=writethrough or dcache=writeback");
    if (file[0] != '/' || file.back() == '/' || file.find("/../") != std::string::npos)
      throw std::invalid_argument("dcache-file='" + file + "': expected an absolute file path");
  }
  o.file = file;
  return o;
}

std::string default_dcache_file(unsigned domid, unsigned devid) {
  return "/var/cache/gears/vbd-" + std::to_string(domid) + "-" + std::to_string(devid) + ".dcache";
}

std::unique_ptr<Target> open_cached_target(std::unique_ptr<Target> backing, const DcacheOptions& o) {
  if (!backing) throw std::invalid_argument("dcache: no backing target");
  if (o.file.empty()) throw std::invalid_argument("dcache: no cache file");
  return std::make_unique<CachedTarget>(std::move(backing), o);
}

}  // namespace gears::blk
