// File / block-device target over io_uring. One io_uring per device, completions signalled on an
// eventfd registered with the ring (the device polls it). Short transfers are resubmitted for the rest.
// A file in memory (tmpfs, ramfs) never waits for a device, but its filesystem cannot do non-blocking I/O
// (no FMODE_NOWAIT on Linux 6.1), so io_uring hands every operation to an io-wq kernel thread: two context
// switches per request for a copy. Such a file is served inline: submit() does the copy on the worker thread
// and queues the completion; on_ready() reports it (kick() signals the eventfd so a poller comes back).
// Both paths take scatter-gather reads/writes (vectored_io(): readv/writev, preadv/pwritev): zero-bounce I/O
// straight into the guest's pages. A short transfer trims the caller's iovec array in place and goes on.
#include <fcntl.h>
#include <linux/falloc.h>
#include <linux/fs.h>
#include <liburing.h>
#include <sys/eventfd.h>
#include <sys/ioctl.h>
#include <linux/magic.h>
#include <sys/stat.h>
#include <sys/vfs.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <stdexcept>
#include <vector>

#include "dom0/backends/blk/target.hpp"

namespace gears::blk {
namespace {

// Bytes a read/write moves: the iovecs' total, or buf.
std::size_t xfer_bytes(const TargetIo& io) {
  if (io.iov.empty()) return io.buf.size();
  std::size_t n = 0;
  for (const auto& v : io.iov) n += v.iov_len;
  return n;
}

// Consumes n bytes from the front of iov[at..]: whole entries are skipped (at moves on), a partial one is trimmed.
void advance(std::span<iovec> iov, std::size_t& at, std::size_t n) {
  while (n > 0 && at < iov.size()) {
    if (n >= iov[at].iov_len) {
      n -= iov[at].iov_len;
      ++at;
      continue;
    }
    iov[at].iov_base = static_cast<std::byte*>(iov[at].iov_base) + n;
    iov[at].iov_len -= n;
    n = 0;
  }
}

// The iovecs still to do, at most kMaxIovecs (a longer list goes on as a short transfer).
std::pair<iovec*, unsigned> rest(std::span<iovec> iov, std::size_t at) {
  return {iov.data() + at, static_cast<unsigned>(std::min(iov.size() - at, kMaxIovecs))};
}

class FileTarget final : public Target {
 public:
  FileTarget(const std::string& path, const TargetOptions& o) : path_(path), opts_(o) {
    int flags = O_CLOEXEC | (o.read_only ? O_RDONLY : O_RDWR);
    if (o.cache == CacheMode::writethrough && !o.read_only) flags |= O_DSYNC;
    if (o.cache == CacheMode::none) flags |= O_DIRECT;
    fd_ = ::open(path.c_str(), flags);
    if (fd_ < 0) throw std::runtime_error("target " + path + ": cannot open: " + std::strerror(errno));
    struct stat st {};
    if (::fstat(fd_, &st) != 0) fail("fstat");
    if (S_ISREG(st.st_mode)) {
      size_ = static_cast<std::uint64_t>(st.st_size);
      discard_ = !o.read_only;
    } else if (S_ISBLK(st.st_mode)) {
      if (::ioctl(fd_, BLKGETSIZE64, &size_) != 0) fail("BLKGETSIZE64");
      discard_ = !o.read_only;
    } else {
      ::close(fd_);
      throw std::runtime_error("target " + path + ": neither a regular file nor a block device");
    }
    if (size_ < 4096) {
      ::close(fd_);
      throw std::runtime_error("target " + path + ": smaller than 4 KiB");
    }
    struct statfs fs {};
    inline_ = o.cache != CacheMode::none && S_ISREG(st.st_mode) && ::fstatfs(fd_, &fs) == 0 &&
              (fs.f_type == TMPFS_MAGIC || fs.f_type == RAMFS_MAGIC);
    depth_ = std::max<std::uint32_t>(1, std::min<std::uint32_t>(o.depth, 1024));
    if (const int rc = ::io_uring_queue_init(depth_ * 2, &ring_, 0); rc < 0) {
      ::close(fd_);
      throw std::runtime_error(std::string("io_uring_queue_init: ") + std::strerror(-rc));
    }
    efd_ = ::eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
    if (efd_ < 0 || ::io_uring_register_eventfd(&ring_, efd_) != 0) {
      ::io_uring_queue_exit(&ring_);
      if (efd_ >= 0) ::close(efd_);
      ::close(fd_);
      throw std::runtime_error("io_uring eventfd registration failed");
    }
    ops_.resize(depth_);
    ready_.reserve(depth_);
    reporting_.reserve(depth_);
    for (std::uint32_t i = 0; i < depth_; ++i) free_.push_back(depth_ - 1 - i);
  }
  ~FileTarget() override {
    // Wait for what the kernel still owns (its buffers belong to the device, which dies after us).
    while (inflight_ > 0) {
      io_uring_cqe* cqe = nullptr;
      if (::io_uring_wait_cqe(&ring_, &cqe) != 0) break;
      ::io_uring_cqe_seen(&ring_, cqe);
      --inflight_;
    }
    ::io_uring_queue_exit(&ring_);
    ::close(efd_);
    ::close(fd_);
  }

  std::uint64_t size_bytes() const override { return size_; }
  bool read_only() const override { return opts_.read_only; }
  bool can_discard() const override { return discard_; }
  std::string describe() const override { return "file:" + path_; }
  bool inline_io() const override { return inline_; }
  bool vectored_io() const override { return true; }
  std::uint32_t depth() const override { return depth_; }
  int fd() const override { return efd_; }
  std::uint32_t poll_events() const override { return 0x001; /* EPOLLIN */ }
  std::size_t in_flight() const override { return inflight_ + ready_.size(); }

  Status submit(const TargetIo& io) override {
    if (inline_) {
      if (ready_.size() >= depth_) return Error{EAGAIN, "target: queue full"};
      ready_.push_back({io.tag, run_inline(io)});
      return {};
    }
    if (free_.empty()) return Error{EAGAIN, "target: queue full"};
    const std::uint32_t slot = free_.back();
    free_.pop_back();
    ops_[slot] = Pending{io, 0, xfer_bytes(io), 0};
    if (!prep(slot)) {
      free_.push_back(slot);
      return Error{EAGAIN, "target: no submission entry"};
    }
    ++inflight_;
    return {};
  }

  void kick() override {
    if (inline_) {
      if (!ready_.empty()) (void)!::eventfd_write(efd_, 1);
      return;
    }
    (void)::io_uring_submit(&ring_);
  }

  void on_ready(std::uint32_t events, const Done& done) override {
    // Inline: fd() is signalled only by kick(); a direct call (events 0) right after submitting has no signal to
    // clear. io_uring: completions may have signalled it meanwhile, so clear it either way.
    if (events != 0 || !inline_) {
      std::uint64_t v = 0;
      (void)!::read(efd_, &v, sizeof v);
    }
    while (!ready_.empty()) {  // done() may submit again (a flush after a write): report those too
      reporting_.swap(ready_);
      for (const auto& [tag, res] : reporting_) done(tag, res);
      reporting_.clear();
    }
    bool resubmitted = false;
    io_uring_cqe* cqe = nullptr;
    while (::io_uring_peek_cqe(&ring_, &cqe) == 0) {
      const auto slot = static_cast<std::uint32_t>(::io_uring_cqe_get_data64(cqe));
      const int res = cqe->res;
      ::io_uring_cqe_seen(&ring_, cqe);
      Pending& p = ops_[slot];
      const bool xfer = p.io.kind == IoKind::read || p.io.kind == IoKind::write;
      bool stuck = false;  // a short transfer whose rest could not be resubmitted: an error, never "done"
      if (xfer && res > 0 && p.done + static_cast<std::size_t>(res) < p.total) {
        p.done += static_cast<std::size_t>(res);  // short transfer: go on with the rest
        advance(p.io.iov, p.iov_at, static_cast<std::size_t>(res));
        if (prep(slot)) {
          resubmitted = true;
          continue;
        }
        stuck = true;
      }
      --inflight_;
      free_.push_back(slot);
      int result = res < 0 ? res : (stuck ? -EAGAIN : 0);
      if (xfer && res == 0 && p.done < p.total) result = p.io.kind == IoKind::read ? -EIO : -ENOSPC;
      done(p.io.tag, result);
    }
    if (resubmitted) kick();
  }

 private:
  struct Pending {
    TargetIo io;
    std::size_t done = 0;    // bytes transferred so far
    std::size_t total = 0;   // bytes to transfer (read/write)
    std::size_t iov_at = 0;  // first iovec not yet done (io.iov trimmed in place)
  };
  [[noreturn]] void fail(const char* what) {
    const int e = errno;
    ::close(fd_);
    throw std::runtime_error("target " + path_ + ": " + what + ": " + std::strerror(e));
  }
  // One operation, synchronously: 0 or a negative errno, like a completion.
  int run_inline(const TargetIo& io) {
    std::size_t done = 0;
    switch (io.kind) {
      case IoKind::read:
      case IoKind::write: {
        const std::size_t total = xfer_bytes(io);
        std::size_t at = 0;
        while (done < total) {
          const auto off = static_cast<off_t>(io.offset + done);
          ssize_t n = 0;
          if (!io.iov.empty()) {
            const auto [v, cnt] = rest(io.iov, at);
            n = io.kind == IoKind::read ? ::preadv(fd_, v, static_cast<int>(cnt), off)
                                        : ::pwritev(fd_, v, static_cast<int>(cnt), off);
          } else {
            n = io.kind == IoKind::read ? ::pread(fd_, io.buf.data() + done, total - done, off)
                                        : ::pwrite(fd_, io.buf.data() + done, total - done, off);
          }
          if (n < 0 && errno == EINTR) continue;
          if (n < 0) return -errno;
          if (n == 0) return io.kind == IoKind::read ? -EIO : -ENOSPC;
          done += static_cast<std::size_t>(n);
          if (!io.iov.empty()) advance(io.iov, at, static_cast<std::size_t>(n));
        }
        return 0;
      }
      case IoKind::flush:
        return ::fdatasync(fd_) == 0 ? 0 : -errno;
      case IoKind::discard:
        return ::fallocate(fd_, FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE, static_cast<off_t>(io.offset),
                           static_cast<off_t>(io.length)) == 0
                   ? 0
                   : -errno;
    }
    return -EINVAL;
  }

  bool prep(std::uint32_t slot) {
    io_uring_sqe* sqe = ::io_uring_get_sqe(&ring_);
    if (sqe == nullptr) return false;
    const Pending& p = ops_[slot];
    if (!p.io.iov.empty() && (p.io.kind == IoKind::read || p.io.kind == IoKind::write)) {
      const auto [v, cnt] = rest(p.io.iov, p.iov_at);
      if (p.io.kind == IoKind::read) ::io_uring_prep_readv(sqe, fd_, v, cnt, p.io.offset + p.done);
      else ::io_uring_prep_writev(sqe, fd_, v, cnt, p.io.offset + p.done);
      ::io_uring_sqe_set_data64(sqe, slot);
      return true;
    }
    switch (p.io.kind) {
      case IoKind::read:
        ::io_uring_prep_read(sqe, fd_, p.io.buf.data() + p.done, static_cast<unsigned>(p.io.buf.size() - p.done),
                             p.io.offset + p.done);
        break;
      case IoKind::write:
        ::io_uring_prep_write(sqe, fd_, p.io.buf.data() + p.done, static_cast<unsigned>(p.io.buf.size() - p.done),
                              p.io.offset + p.done);
        break;
      case IoKind::flush:
        ::io_uring_prep_fsync(sqe, fd_, IORING_FSYNC_DATASYNC);
        break;
      case IoKind::discard:
        ::io_uring_prep_fallocate(sqe, fd_, FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE,
                                  static_cast<off_t>(p.io.offset), static_cast<off_t>(p.io.length));
        break;
    }
    ::io_uring_sqe_set_data64(sqe, slot);
    return true;
  }

  std::string path_;
  TargetOptions opts_;
  int fd_ = -1, efd_ = -1;
  std::uint64_t size_ = 0;
  bool discard_ = false;
  std::uint32_t depth_ = 64;
  io_uring ring_{};
  std::vector<Pending> ops_;
  std::vector<std::uint32_t> free_;
  std::size_t inflight_ = 0;
  bool inline_ = false;
  std::vector<std::pair<std::uint64_t, int>> ready_, reporting_;  // inline completions: (tag, result)
};

}  // namespace

std::unique_ptr<Target> open_file_target(const std::string& path, const TargetOptions& opts) {
  return std::make_unique<FileTarget>(path, opts);
}

CacheMode parse_cache_mode(const std::string& s) {
  if (s.empty() || s == "writethrough") return CacheMode::writethrough;
  if (s == "writeback") return CacheMode::writeback;
  if (s == "none") return CacheMode::none;
  throw std::invalid_argument("cache='" + s + "' is not one of writethrough, writeback, none");
}

std::unique_ptr<Target> open_target(const std::string& spec, const TargetOptions& opts) {
  if (spec.rfind("file:", 0) == 0) return open_file_target(spec.substr(5), opts);
  if (spec.rfind("nbd://", 0) == 0 || spec.rfind("nbd+unix://", 0) == 0 || spec.rfind("nbds://", 0) == 0)
    return open_nbd_target(spec, opts);
  if (!spec.empty() && spec[0] == '/') return open_file_target(spec, opts);
  throw std::invalid_argument("target '" + spec + "': expected file:/path, /path or nbd://host[:port]/export");
}

}  // namespace gears::blk
