// StreamRing: a single-producer single-consumer byte ring in shared memory, carrying a byte stream
// and/or framed messages. Two instances (one per direction) form the semantic channel.
//
// ---- Wire format (version 1) -------------------------------------------------------------------
// The shared region is 1 header page + N data pages (page = 4096 bytes, N a power of two, N >= 1,
// data size N*4096 <= 2^30). All fields are little-endian u32 at fixed offsets; no pointers, so
// the two ends may live in different address spaces or VMs.
//
//   off   field            written by   meaning
//   0     magic            creator      0x31525347 ("GSR1")
//   4     version          creator      1
//   8     data_pages       creator      N
//   12    max_frame        creator      largest frame payload either end will send/accept
//   64    prod             producer     free-running byte index: bytes ever written
//   68    writer_waiting   producer     1 = "I am blocked on space; kick me when you consume"
//   128   cons             consumer     free-running byte index: bytes ever consumed
//   132   reader_waiting   consumer     1 = "I am blocked on data; kick me when you produce"
//   4096  data[N*4096]                  byte i of the stream lives at data[i & (N*4096 - 1)]
//
// Producer- and consumer-written words sit on separate cache lines. Indices are u32 and wrap;
// (prod - cons) mod 2^32 is the fill level, always in [0, size]. Empty: prod == cons. Full:
// prod - cons == size (no slot is sacrificed; indices are not masked before subtraction).
//
// Frames: header {u32 len, u16 type, u16 flags} (8 bytes, little-endian) followed by len payload
// bytes; no padding, and a frame may wrap around the end of the data area. len <= max_frame and
// max_frame + 8 <= size, so any frame eventually fits.
//
// ---- Trust ---------------------------------------------------------------------------------------
// Each end trusts nothing the peer can write. Geometry (size, max_frame) is fixed at attach from
// local configuration and checked once against the header; it is never re-read. Each end keeps its
// own index privately and only publishes it; the peer's index is read once per operation and
// rejected (EPROTO, a fatal protocol error: close the channel) unless 0 <= prod - cons <= size.
// A frame header is copied out of the ring before it is decoded and checked; payloads are copied
// out before the caller sees them. A torn frame (header or payload not yet fully published) is
// simply "not yet": nothing is consumed.
//
// ---- Barriers ------------------------------------------------------------------------------------
//  P1 producer: data stores, then store-release prod     -> consumer never sees an index before
//                                                           the bytes it covers.
//  C1 consumer: load-acquire prod, then data loads       -> pairs with P1.
//  C2 consumer: data loads, then store-release cons      -> producer never overwrites bytes still
//                                                           being read.
//  P2 producer: load-acquire cons, then data stores      -> pairs with C2.
//  W  wake-up (Dekker): each side stores (index | own waiting flag), full fence, then loads
//     (peer's waiting flag | peer's index). With both fences, at least one side sees the other's
//     store, so a wake-up is never lost.
//
// ---- Corner cases and the wake-up that resolves each ---------------------------------------------
//  * Ring empty, reader going to sleep: reader sets reader_waiting, fence, re-reads prod
//    (prepare_wait()). New data since its last look -> it does not sleep. Otherwise the producer's
//    next flush() sees the flag after its own fence and kicks.
//  * Partial frame published, reader waiting: as above; prepare_wait() compares prod with the last
//    prod it saw, not with "a whole frame is available", so the producer kicks again when the rest
//    of the frame is flushed.
//  * Ring full, writer going to sleep: writer sets writer_waiting, fence, re-reads cons
//    (prepare_wait_for_space(need)). Enough space now -> it does not sleep. Otherwise the
//    consumer's next release() sees the flag after its fence and kicks.
//  * Steady stream: neither flag is set, so no kicks at all; each flush()/release() costs one
//    release store, one fence and one load of the peer's flag.
//  * Flags are cleared only by their owner, when it next finds work; until then the peer may kick
//    more than once (harmless: event channels and eventfds coalesce).
#pragma once

#include <algorithm>
#include <bit>
#include <cerrno>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <optional>
#include <span>
#include <stdexcept>
#include <string>
#include <utility>

#include "common/ring/le.hpp"
#include "common/ring/notifier.hpp"
#include "common/ring/shared_mem.hpp"
#include "common/util/noncopyable.hpp"
#include "common/util/result.hpp"

namespace gears::ring {

inline constexpr std::size_t kStreamPageSize = 4096;
inline constexpr std::uint32_t kStreamMagic = 0x31525347U;  // "GSR1" little-endian
inline constexpr std::uint32_t kStreamVersion = 1;
inline constexpr std::size_t kFrameHeaderSize = 8;
inline constexpr std::size_t kStreamMaxDataBytes = std::size_t{1} << 30U;

// The header page, exactly as laid out in shared memory.
struct StreamRingHeader {
  std::uint32_t magic;
  std::uint32_t version;
  std::uint32_t data_pages;
  std::uint32_t max_frame;
  std::uint8_t pad0[48];
  std::uint32_t prod;
  std::uint32_t writer_waiting;
  std::uint8_t pad1[56];
  std::uint32_t cons;
  std::uint32_t reader_waiting;
  std::uint8_t pad2[kStreamPageSize - 136];
};
static_assert(sizeof(StreamRingHeader) == kStreamPageSize);
static_assert(offsetof(StreamRingHeader, prod) == 64);
static_assert(offsetof(StreamRingHeader, writer_waiting) == 68);
static_assert(offsetof(StreamRingHeader, cons) == 128);
static_assert(offsetof(StreamRingHeader, reader_waiting) == 132);
static_assert(std::endian::native == std::endian::little,
              "shared index words are accessed natively; wire format is little-endian");

struct FrameHeader {
  std::uint32_t len = 0;  // payload bytes
  std::uint16_t type = 0;
  std::uint16_t flags = 0;
  friend bool operator==(const FrameHeader&, const FrameHeader&) = default;
};

// Bytes needed for a region with `data_pages` data pages.
[[nodiscard]] constexpr std::size_t stream_region_bytes(std::size_t data_pages) {
  return (data_pages + 1) * kStreamPageSize;
}

namespace detail {

struct StreamGeometry {
  StreamRingHeader* hdr;
  std::byte* data;
  std::uint32_t size;  // data bytes, power of two
  std::uint32_t max_frame;
};

// Setup-time checks (throw): region shape and local max_frame.
inline StreamGeometry stream_geometry(std::span<std::byte> mem, std::uint32_t max_frame) {
  if (mem.size() < 2 * kStreamPageSize || mem.size() % kStreamPageSize != 0)
    throw std::invalid_argument("stream ring: region must be (1 + N) whole pages, N >= 1");
  const std::size_t data_bytes = mem.size() - kStreamPageSize;
  if (!std::has_single_bit(data_bytes) || data_bytes > kStreamMaxDataBytes)
    throw std::invalid_argument("stream ring: data pages must be a power of two, <= 1 GiB");
  if (std::size_t{max_frame} + kFrameHeaderSize > data_bytes || max_frame == 0)
    throw std::invalid_argument("stream ring: max_frame must be in [1, size - 8]");
  if (reinterpret_cast<std::uintptr_t>(mem.data()) % alignof(StreamRingHeader) != 0)
    throw std::invalid_argument("stream ring: region misaligned");
  return {reinterpret_cast<StreamRingHeader*>(mem.data()), mem.data() + kStreamPageSize,
          static_cast<std::uint32_t>(data_bytes), max_frame};
}

// Attach-time check that the creator's header agrees with our local configuration.
inline void check_header(const StreamGeometry& g) {
  StreamRingHeader h{};
  shm::copy_out(&h, g.hdr, offsetof(StreamRingHeader, pad0));
  if (h.magic != kStreamMagic) throw std::runtime_error("stream ring: bad magic");
  if (h.version != kStreamVersion)
    throw std::runtime_error("stream ring: unsupported version " + std::to_string(h.version));
  if (std::size_t{h.data_pages} * kStreamPageSize != g.size)
    throw std::runtime_error("stream ring: header data_pages disagrees with mapped size");
  if (h.max_frame != g.max_frame)
    throw std::runtime_error("stream ring: header max_frame disagrees with local configuration");
}

inline void copy_in(std::byte* data, std::uint32_t size, std::uint32_t idx,
                    std::span<const std::byte> src) {
  if (src.empty()) return;  // memcpy from a null span is UB even for 0 bytes
  const std::uint32_t off = idx & (size - 1);
  const std::size_t first = std::min<std::size_t>(src.size(), size - off);
  std::memcpy(data + off, src.data(), first);
  if (first < src.size()) std::memcpy(data, src.data() + first, src.size() - first);
}

inline void copy_out(std::span<std::byte> dst, const std::byte* data, std::uint32_t size,
                     std::uint32_t idx) {
  if (dst.empty()) return;
  const std::uint32_t off = idx & (size - 1);
  const std::size_t first = std::min<std::size_t>(dst.size(), size - off);
  std::memcpy(dst.data(), data + off, first);
  if (first < dst.size()) std::memcpy(dst.data() + first, data, dst.size() - first);
  shm::compiler_barrier();
}

inline constexpr Error kBadIndex{EPROTO, "stream ring: peer index out of range"};
inline constexpr Error kBadFrameLen{EPROTO, "stream ring: frame length exceeds max_frame"};

}  // namespace detail

// Initialise a fresh region (the creator does this once, before granting it to the peer).
inline void stream_ring_format(std::span<std::byte> mem, std::uint32_t max_frame) {
  const auto g = detail::stream_geometry(mem, max_frame);
  std::memset(mem.data(), 0, kStreamPageSize);
  g.hdr->magic = kStreamMagic;
  g.hdr->version = kStreamVersion;
  g.hdr->data_pages = static_cast<std::uint32_t>(g.size / kStreamPageSize);
  g.hdr->max_frame = max_frame;
  shm::full_fence();
}

// The writing end. Owned by one thread. N: a Notifier (or reference to one) that kicks the reader.
template <class N>
  requires Notifier<std::remove_reference_t<N>>
class StreamProducer : NonCopyable {
 public:
  // Attaches to a formatted region (throws on geometry/header mismatch). Does not own `mem`.
  StreamProducer(std::span<std::byte> mem, N notifier, std::uint32_t max_frame)
      : g_(detail::stream_geometry(mem, max_frame)), notifier_(std::forward<N>(notifier)) {
    detail::check_header(g_);
    prod_ = published_ = shm::load_relaxed(g_.hdr->prod);
  }
  [[nodiscard]] std::uint32_t capacity() const { return g_.size; }
  [[nodiscard]] std::uint32_t max_frame() const { return g_.max_frame; }
  // Bytes staged but not yet published by flush().
  [[nodiscard]] std::uint32_t staged() const { return prod_ - published_; }

  // Free bytes, from one fresh read of cons. EPROTO if the consumer's index is impossible.
  [[nodiscard]] Result<std::uint32_t> space() {
    const std::uint32_t cons = shm::load_acquire(g_.hdr->cons);  // P2
    const std::uint32_t used = prod_ - cons;
    if (used > g_.size) return detail::kBadIndex;
    const std::uint32_t free = g_.size - used;
    cached_free_ = free;
    return free;
  }

  // Copy as much of `bytes` as fits, publish, kick the reader if it waits. Returns bytes taken.
  [[nodiscard]] Result<std::size_t> write(std::span<const std::byte> bytes) {
    auto sp = space();
    if (!sp) return sp.error();
    const std::size_t n = std::min<std::size_t>(bytes.size(), *sp);
    detail::copy_in(g_.data, g_.size, prod_, bytes.first(n));
    prod_ += static_cast<std::uint32_t>(n);
    cached_free_ -= static_cast<std::uint32_t>(n);
    if (n > 0) clear_waiting();
    if (auto st = flush(); !st) return st.error();
    return n;
  }

  // Stage one frame without publishing it. true = staged; false = not enough space now (nothing
  // written). EMSGSIZE if the payload exceeds max_frame (caller bug); EPROTO on a bad peer index.
  [[nodiscard]] Result<bool> stage_frame(std::uint16_t type, std::uint16_t flags,
                                         std::span<const std::byte> payload) {
    if (payload.size() > g_.max_frame) return Error{EMSGSIZE, "stream ring: frame too long"};
    const std::uint32_t need = static_cast<std::uint32_t>(kFrameHeaderSize + payload.size());
    if (need > cached_free_) {  // refresh the view of cons only when the cached one is short
      auto sp = space();
      if (!sp) return sp.error();
      if (need > *sp) return false;
    }
    std::byte h[kFrameHeaderSize];
    le::store32(h, static_cast<std::uint32_t>(payload.size()));
    le::store16(h + 4, type);
    le::store16(h + 6, flags);
    detail::copy_in(g_.data, g_.size, prod_, h);
    detail::copy_in(g_.data, g_.size, prod_ + static_cast<std::uint32_t>(kFrameHeaderSize),
                    payload);
    prod_ += need;
    cached_free_ -= need;
    clear_waiting();
    return true;
  }

  // Publish everything staged (P1), then kick the reader if it said it is waiting (W).
  [[nodiscard]] Status flush() {
    if (prod_ == published_) return {};
    shm::store_release(g_.hdr->prod, prod_);
    published_ = prod_;
    shm::full_fence();
    if (shm::load_relaxed(g_.hdr->reader_waiting) != 0) {
      ++kicks_;
      return notifier_.notify();
    }
    return {};
  }

  // stage_frame + flush.
  [[nodiscard]] Result<bool> write_frame(std::uint16_t type, std::uint16_t flags,
                                         std::span<const std::byte> payload) {
    auto r = stage_frame(type, flags, payload);
    if (!r || !*r) return r;
    if (auto st = flush(); !st) return st.error();
    return true;
  }

  // Before sleeping for space: flush, set writer_waiting, fence, re-check (W). true = sleep now (the
  // consumer will kick once it frees space); false = `need` bytes are already free, do not sleep.
  [[nodiscard]] Result<bool> prepare_wait_for_space(std::size_t need) {
    if (need > g_.size) return Error{EMSGSIZE, "stream ring: wait for more than capacity"};
    if (auto st = flush(); !st) return st.error();
    shm::store_relaxed(g_.hdr->writer_waiting, 1);
    waiting_ = true;
    shm::full_fence();
    auto sp = space();
    if (!sp) return sp.error();
    if (*sp >= need) {
      shm::store_relaxed(g_.hdr->writer_waiting, 0);
      waiting_ = false;
      return false;
    }
    return true;
  }

  [[nodiscard]] std::uint64_t kicks() const { return kicks_; }
  [[nodiscard]] std::remove_reference_t<N>& notifier() { return notifier_; }

 private:
  // The writer_waiting flag is cleared only by the writer, once it makes progress again; clearing
  // it on any free space (less than the awaited amount) would lose the wake-up it waits for.
  void clear_waiting() {
    if (waiting_) {
      shm::store_relaxed(g_.hdr->writer_waiting, 0);
      waiting_ = false;
    }
  }

  detail::StreamGeometry g_;
  N notifier_;
  std::uint32_t prod_ = 0;       // private producer index (never re-read from shared memory)
  std::uint32_t published_ = 0;  // last value stored to hdr->prod
  std::uint32_t cached_free_ = 0;
  bool waiting_ = false;
  std::uint64_t kicks_ = 0;
};

// The reading end. Owned by one thread. N: a Notifier (or reference to one) that kicks the writer.
template <class N>
  requires Notifier<std::remove_reference_t<N>>
class StreamConsumer : NonCopyable {
 public:
  StreamConsumer(std::span<std::byte> mem, N notifier, std::uint32_t max_frame)
      : g_(detail::stream_geometry(mem, max_frame)), notifier_(std::forward<N>(notifier)) {
    detail::check_header(g_);
    cons_ = published_ = seen_prod_ = shm::load_relaxed(g_.hdr->cons);
  }
  [[nodiscard]] std::uint32_t capacity() const { return g_.size; }
  [[nodiscard]] std::uint32_t max_frame() const { return g_.max_frame; }

  // Readable bytes, from one fresh read of prod (C1). EPROTO if prod is impossible.
  [[nodiscard]] Result<std::uint32_t> available() {
    const std::uint32_t prod = shm::load_acquire(g_.hdr->prod);
    const std::uint32_t avail = prod - cons_;
    if (avail > g_.size) return detail::kBadIndex;
    if (waiting_ && prod != seen_prod_) {
      shm::store_relaxed(g_.hdr->reader_waiting, 0);
      waiting_ = false;
    }
    seen_prod_ = prod;
    return avail;
  }

  // Copy up to out.size() readable bytes without consuming them.
  [[nodiscard]] Result<std::size_t> peek(std::span<std::byte> out) {
    auto av = available();
    if (!av) return av.error();
    const std::size_t n = std::min<std::size_t>(out.size(), *av);
    detail::copy_out(out.first(n), g_.data, g_.size, cons_);
    return n;
  }

  // Consume n bytes that the last available()/peek() reported, then release().
  [[nodiscard]] Status consume(std::size_t n) {
    if (n > seen_prod_ - cons_) return Error{EINVAL, "stream ring: consume beyond available"};
    cons_ += static_cast<std::uint32_t>(n);
    return release();
  }

  [[nodiscard]] Result<std::size_t> read(std::span<std::byte> out) {
    auto n = peek(out);
    if (!n) return n;
    if (auto st = consume(*n); !st) return st.error();
    return n;
  }

  // Read one complete frame into `payload` (which must hold max_frame bytes, or at least the
  // frame). nullopt = no complete frame yet (nothing consumed). EPROTO: bad index or frame
  // length (close the channel). EMSGSIZE: `payload` too small for this frame (not consumed).
  // Consumes without release(): call release() after a batch (read_frame_and_release for one).
  [[nodiscard]] Result<std::optional<FrameHeader>> read_frame_no_release(
      std::span<std::byte> payload) {
    std::uint32_t avail = seen_prod_ - cons_;
    if (avail < kFrameHeaderSize) {
      auto av = available();
      if (!av) return av.error();
      avail = *av;
      if (avail < kFrameHeaderSize) return std::optional<FrameHeader>{};
    }
    std::byte h[kFrameHeaderSize];
    detail::copy_out(h, g_.data, g_.size, cons_);  // copy first, then validate the copy
    const FrameHeader fh{le::load32(h), le::load16(h + 4), le::load16(h + 6)};
    if (fh.len > g_.max_frame) return detail::kBadFrameLen;
    const std::uint32_t need = static_cast<std::uint32_t>(kFrameHeaderSize) + fh.len;
    if (avail < need) {
      auto av = available();
      if (!av) return av.error();
      if (*av < need) return std::optional<FrameHeader>{};  // torn: rest not yet published
    }
    if (payload.size() < fh.len) return Error{EMSGSIZE, "stream ring: payload buffer too small"};
    detail::copy_out(payload.first(fh.len), g_.data, g_.size,
                     cons_ + static_cast<std::uint32_t>(kFrameHeaderSize));
    cons_ += need;
    return std::optional<FrameHeader>{fh};
  }

  [[nodiscard]] Result<std::optional<FrameHeader>> read_frame(std::span<std::byte> payload) {
    auto r = read_frame_no_release(payload);
    if (r && r->has_value()) {
      if (auto st = release(); !st) return st.error();
    }
    return r;
  }

  // Read up to max_frames complete frames; fn(const FrameHeader&, std::span<const std::byte>) sees
  // each payload copied into `scratch`. One release() for the whole batch. Returns frames read.
  template <class F>
  [[nodiscard]] Result<std::size_t> read_frames(std::span<std::byte> scratch, std::size_t max_frames,
                                                F&& fn) {
    std::size_t n = 0;
    while (n < max_frames) {
      auto r = read_frame_no_release(scratch);
      if (!r) {
        if (auto st = release(); !st) return st.error();
        return r.error();
      }
      if (!r->has_value()) break;
      fn(**r, std::span<const std::byte>(scratch.first((*r)->len)));
      ++n;
    }
    if (auto st = release(); !st) return st.error();
    return n;
  }

  // Like read_frames, but a frame for which in_place(header) is true is NOT copied: fn(header, a, b)
  // sees its payload where it lies in shared memory, as a then b (b is empty unless the payload wraps).
  // The peer can rewrite those bytes at any time, so in_place is only for opaque data that nothing
  // parses or trusts (e.g. bulk bytes to checksum); headers are always copied and validated first.
  // Copied frames arrive as (header, scratch payload, empty).
  template <class P, class F>
  [[nodiscard]] Result<std::size_t> visit_frames(std::span<std::byte> scratch, std::size_t max_frames, P&& in_place,
                                                 F&& fn) {
    std::size_t n = 0;
    Status err;
    while (n < max_frames) {
      std::uint32_t avail = seen_prod_ - cons_;
      if (avail < kFrameHeaderSize) {
        auto av = available();
        if (!av) { err = av.error(); break; }
        avail = *av;
        if (avail < kFrameHeaderSize) break;
      }
      std::byte h[kFrameHeaderSize];
      detail::copy_out(h, g_.data, g_.size, cons_);
      const FrameHeader fh{le::load32(h), le::load16(h + 4), le::load16(h + 6)};
      if (fh.len > g_.max_frame) { err = detail::kBadFrameLen; break; }
      const std::uint32_t need = static_cast<std::uint32_t>(kFrameHeaderSize) + fh.len;
      if (avail < need) {
        auto av = available();
        if (!av) { err = av.error(); break; }
        if (*av < need) break;  // torn: rest not yet published
      }
      const std::uint32_t at = cons_ + static_cast<std::uint32_t>(kFrameHeaderSize);
      if (in_place(fh)) {
        const std::uint32_t off = at & (g_.size - 1);
        const std::size_t first = std::min<std::size_t>(fh.len, g_.size - off);
        fn(fh, std::span<const std::byte>(g_.data + off, first),
           std::span<const std::byte>(g_.data, fh.len - first));
      } else {
        if (scratch.size() < fh.len) { err = Error{EMSGSIZE, "stream ring: payload buffer too small"}; break; }
        detail::copy_out(scratch.first(fh.len), g_.data, g_.size, at);
        fn(fh, std::span<const std::byte>(scratch.first(fh.len)), std::span<const std::byte>{});
      }
      cons_ += need;
      ++n;
    }
    if (auto st = release(); !st) return st.error();
    if (!err) return err.error();
    return n;
  }

  // Publish consumption (C2), then kick the writer if it said it is waiting (W).
  [[nodiscard]] Status release() {
    if (cons_ == published_) return {};
    shm::store_release(g_.hdr->cons, cons_);
    published_ = cons_;
    shm::full_fence();
    if (shm::load_relaxed(g_.hdr->writer_waiting) != 0) {
      ++kicks_;
      return notifier_.notify();
    }
    return {};
  }

  // Before sleeping for data: release, set reader_waiting, fence, re-check (W). true = sleep now
  // (the producer kicks on its next flush); false = prod moved since we last looked, do not sleep.
  [[nodiscard]] Result<bool> prepare_wait() {
    if (auto st = release(); !st) return st.error();
    const std::uint32_t before = seen_prod_;
    shm::store_relaxed(g_.hdr->reader_waiting, 1);
    waiting_ = true;
    shm::full_fence();
    const std::uint32_t prod = shm::load_acquire(g_.hdr->prod);
    if (prod - cons_ > g_.size) return detail::kBadIndex;
    if (prod != before) {
      shm::store_relaxed(g_.hdr->reader_waiting, 0);
      waiting_ = false;
      seen_prod_ = prod;
      return false;
    }
    return true;
  }

  [[nodiscard]] std::uint64_t kicks() const { return kicks_; }
  [[nodiscard]] std::remove_reference_t<N>& notifier() { return notifier_; }

 private:
  detail::StreamGeometry g_;
  N notifier_;
  std::uint32_t cons_ = 0;       // private consumer index
  std::uint32_t published_ = 0;  // last value stored to hdr->cons
  std::uint32_t seen_prod_ = 0;  // prod as of the last validated read
  bool waiting_ = false;
  std::uint64_t kicks_ = 0;
};

template <class N>
StreamProducer(std::span<std::byte>, N&&, std::uint32_t) -> StreamProducer<N>;
template <class N>
StreamConsumer(std::span<std::byte>, N&&, std::uint32_t) -> StreamConsumer<N>;

}  // namespace gears::ring
