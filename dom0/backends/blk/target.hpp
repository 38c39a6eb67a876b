// Targets: the storage behind a Gears disk. Chosen by the disk's declaration (`target=`):
//   file:/path | /path        a raw file or block device, through io_uring (liburing)
//   nbd://host[:port][/name]  a remote NBD export, through libnbd (also nbd+unix://...)
// Options (device params): cache=writethrough (default; O_DSYNC: a write is durable when acknowledged),
// writeback (dom0 page cache; durability only at FLUSH, which is an fdatasync: flush semantics kept
// exactly), none (O_DIRECT). NBD: writes follow the server's cache; FLUSH maps to NBD_CMD_FLUSH.
// dcache=writethrough|writeback (+ dcache-file=/path): a Gears block cache in dom0 in front of any of them
// (CachedTarget, target_cache.cpp), held in a local cache file.
//
// Asynchronous, single-threaded: every call is made on the owning device's worker thread. The device
// polls fd() for poll_events() and calls on_ready(), which reports each completion once through
// `done(tag, result)` (result 0 = success, else a negative errno). Buffers stay valid and untouched by
// the caller until their completion is reported.
// Scatter-gather (vectored_io() targets only): a read/write may carry an iovec span instead of `buf` (zero-bounce
// I/O straight into the guest's persistently mapped pages). The target owns the iovec array until completion and may
// rewrite it (a short transfer advances through it); the pages behind it stay mapped until completion.
#pragma once

#include <sys/uio.h>

#include <cstddef>
#include <cstdint>
#include <functional>
#include <memory>
#include <span>
#include <string>

#include <nlohmann/json.hpp>

#include "common/util/result.hpp"

namespace gears::blk {

enum class IoKind : std::uint8_t { read, write, flush, discard };

struct TargetIo {
  IoKind kind = IoKind::read;
  std::uint64_t tag = 0;
  std::uint64_t offset = 0;      // bytes
  std::span<std::byte> buf{};    // read/write
  std::uint64_t length = 0;      // discard (bytes)
  std::span<iovec> iov{};        // read/write on a vectored_io() target: used instead of buf when non-empty
};

enum class CacheMode : std::uint8_t { writethrough, writeback, none };

struct TargetOptions {
  bool read_only = false;
  CacheMode cache = CacheMode::writethrough;
  std::uint32_t depth = 64;  // operations in flight at most
};

class Target {
 public:
  using Done = std::function<void(std::uint64_t tag, int result)>;
  virtual ~Target() = default;
  Target() = default;
  Target(const Target&) = delete;
  Target& operator=(const Target&) = delete;

  [[nodiscard]] virtual std::uint64_t size_bytes() const = 0;
  [[nodiscard]] virtual bool read_only() const = 0;
  [[nodiscard]] virtual bool can_discard() const = 0;
  [[nodiscard]] virtual std::string describe() const = 0;
  [[nodiscard]] virtual std::uint32_t depth() const = 0;

  [[nodiscard]] virtual int fd() const = 0;
  [[nodiscard]] virtual std::uint32_t poll_events() const = 0;  // EPOLLIN / EPOLLOUT, may change after calls

  // Queue one operation (EAGAIN when depth() operations are in flight).
  [[nodiscard]] virtual Status submit(const TargetIo& io) = 0;
  // Push queued operations to the kernel/server (once per batch).
  virtual void kick() = 0;
  // fd() is ready with `events`: make progress, report completions.
  virtual void on_ready(std::uint32_t events, const Done& done) = 0;
  [[nodiscard]] virtual std::size_t in_flight() const = 0;
  // Target-specific counters for the device's stats (null = none).
  [[nodiscard]] virtual nlohmann::json stats() const { return nullptr; }
  // True when operations complete inside submit() (a file in memory), reported at the next on_ready(). A caller
  // that calls on_ready(0, ...) right after submitting may skip kick(): kick() only signals fd() so that a poller
  // comes back, which costs two system calls (signal and clear) per batch.
  [[nodiscard]] virtual bool inline_io() const { return false; }
  // True when submit() takes TargetIo::iov (at most kMaxIovecs entries); others only ever see `buf`.
  [[nodiscard]] virtual bool vectored_io() const { return false; }
};

inline constexpr std::size_t kMaxIovecs = 1024;  // IOV_MAX

// The dom0-side block cache (device params dcache=, dcache-file=).
enum class DcacheMode : std::uint8_t { off, writethrough, writeback };
struct DcacheOptions {
  DcacheMode mode = DcacheMode::off;
  std::string file;  // the cache file; empty = default_dcache_file()
};

// Opens the target named by `spec`. Throws std::runtime_error with a clear message on bad input.
[[nodiscard]] std::unique_ptr<Target> open_target(const std::string& spec, const TargetOptions& opts);
[[nodiscard]] std::unique_ptr<Target> open_file_target(const std::string& path, const TargetOptions& opts);
[[nodiscard]] std::unique_ptr<Target> open_nbd_target(const std::string& uri, const TargetOptions& opts);

// Parses cache=...; throws std::invalid_argument naming the accepted values.
[[nodiscard]] CacheMode parse_cache_mode(const std::string& s);

// Parses dcache= and dcache-file=; throws std::invalid_argument naming the bad parameter.
[[nodiscard]] DcacheOptions parse_dcache(const std::string& mode, const std::string& file);
// /var/cache/gears/vbd-<domid>-<devid>.dcache
[[nodiscard]] std::string default_dcache_file(unsigned domid, unsigned devid);
// Puts a cache in front of `backing` (o.mode must not be off). The cache file is created (sparse, at the
// backing size, its directory too) and emptied: nothing in it is trusted from an earlier run. Throws
// std::runtime_error on a cache file that cannot be used (in use by another disk, the backing file itself, ...).
[[nodiscard]] std::unique_ptr<Target> open_cached_target(std::unique_ptr<Target> backing, const DcacheOptions& o);

}  // namespace gears::blk
