// ring.host_msgs: 64-byte messages between two threads through StreamRing vs
// boost::lockfree::spsc_queue (same run), plus the xen/io/ring.h view's request/response rate.
// Both ends spin (PollNotifier): this measures the ring, not the wake-up path.
#include <benchmark/benchmark.h>

#include <array>
#include <atomic>
#include <boost/lockfree/spsc_queue.hpp>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <thread>
#include <vector>

#include "common/ring/stream_ring.hpp"
#include "common/ring/xen_ring.hpp"

#include <xen/io/netif.h>

namespace {

using gears::ring::PollNotifier;
using Msg = std::array<std::byte, 64>;
constexpr std::size_t kDataPages = 16;  // 64 KiB of ring, like a vchan default buffer
constexpr std::uint32_t kMaxFrame = 256;
// Each benchmark iteration moves this many messages, so thread start-up and the final drain are
// amortised and every iteration is a steady-state measurement.
constexpr std::uint64_t kPerIter = 1 << 18;

struct AlignedRegion {
  explicit AlignedRegion(std::size_t n) : size(n), p(static_cast<std::byte*>(std::aligned_alloc(4096, n))) {
    std::memset(p, 0, n);
  }
  ~AlignedRegion() { std::free(p); }
  AlignedRegion(const AlignedRegion&) = delete;
  AlignedRegion& operator=(const AlignedRegion&) = delete;
  std::span<std::byte> span() const { return {p, size}; }
  std::size_t size;
  std::byte* p;
};

// range(0): messages staged per flush (producer batch).
void BM_StreamRing64B(benchmark::State& state) {
  const auto batch = static_cast<std::uint64_t>(state.range(0));
  AlignedRegion mem(gears::ring::stream_region_bytes(kDataPages));
  gears::ring::stream_ring_format(mem.span(), kMaxFrame);
  gears::ring::StreamProducer p(mem.span(), PollNotifier{}, kMaxFrame);
  std::atomic<bool> done{false};
  std::atomic<std::uint64_t> received{0};
  std::thread consumer([&] {
    gears::ring::StreamConsumer c(mem.span(), PollNotifier{}, kMaxFrame);
    std::array<std::byte, kMaxFrame> scratch{};
    std::uint64_t n = 0;
    std::uint64_t sum = 0;
    for (;;) {
      auto r = c.read_frames(scratch, 256, [&](const gears::ring::FrameHeader&, std::span<const std::byte> pl) {
        sum += std::to_integer<unsigned>(pl[0]);
      });
      if (!r) std::abort();
      n += *r;
      if (*r == 0 && done.load(std::memory_order_acquire)) {
        auto last = c.read_frames(scratch, SIZE_MAX, [&](const gears::ring::FrameHeader&, std::span<const std::byte>) {});
        if (!last || *last == 0) break;
        n += *last;
      }
    }
    benchmark::DoNotOptimize(sum);
    received = n;
  });
  Msg m{};
  std::uint64_t sent = 0;
  for (auto _ : state) {
    for (std::uint64_t i = 0; i < kPerIter; ++i) {
      m[0] = static_cast<std::byte>(sent);
      for (;;) {
        auto r = p.stage_frame(1, 0, m);
        if (!r) std::abort();
        if (*r) break;
        if (!p.flush().ok()) std::abort();
      }
      if (++sent % batch == 0 && !p.flush().ok()) std::abort();
    }
    if (!p.flush().ok()) std::abort();
  }
  done.store(true, std::memory_order_release);
  consumer.join();
  if (received != sent) state.SkipWithError("lost messages");
  state.SetItemsProcessed(static_cast<std::int64_t>(sent));
  state.SetBytesProcessed(static_cast<std::int64_t>(sent * sizeof(Msg)));
  state.counters["kicks"] = static_cast<double>(p.kicks());
}
BENCHMARK(BM_StreamRing64B)->Arg(1)->Arg(16)->Arg(64)->UseRealTime();

void BM_BoostSpsc64B(benchmark::State& state) {
  // Same byte budget as the stream ring: 64 KiB / 64 B.
  auto q = std::make_unique<boost::lockfree::spsc_queue<Msg, boost::lockfree::capacity<1024>>>();
  std::atomic<bool> done{false};
  std::atomic<std::uint64_t> received{0};
  std::thread consumer([&] {
    std::uint64_t n = 0;
    std::uint64_t sum = 0;
    Msg m{};
    for (;;) {
      if (q->pop(m)) {
        sum += std::to_integer<unsigned>(m[0]);
        ++n;
      } else if (done.load(std::memory_order_acquire) && q->read_available() == 0) {
        break;
      }
    }
    benchmark::DoNotOptimize(sum);
    received = n;
  });
  Msg m{};
  std::uint64_t sent = 0;
  for (auto _ : state) {
    for (std::uint64_t i = 0; i < kPerIter; ++i) {
      m[0] = static_cast<std::byte>(sent);
      while (!q->push(m)) {
      }
      ++sent;
    }
  }
  done.store(true, std::memory_order_release);
  consumer.join();
  if (received != sent) state.SkipWithError("lost messages");
  state.SetItemsProcessed(static_cast<std::int64_t>(sent));
  state.SetBytesProcessed(static_cast<std::int64_t>(sent * sizeof(Msg)));
}
BENCHMARK(BM_BoostSpsc64B)->UseRealTime();

// netif tx ring (1 page, 256 slots): front pushes requests, a back thread answers each.
void BM_XenRingReqRsp(benchmark::State& state) {
  AlignedRegion mem(4096);
  gears::ring::FrontRing<netif_tx_sring> front(mem.p, mem.size);
  std::atomic<bool> done{false};
  std::thread backend([&] {
    gears::ring::BackRing<netif_tx_sring> back(mem.p, mem.size);
    for (;;) {
      auto c = back.consume(64, [&](const netif_tx_request& r) {
        if (!back.put_response(netif_tx_response{r.id, NETIF_RSP_OKAY}).ok()) std::abort();
      });
      if (!c) std::abort();
      (void)back.push_responses();
      if (*c == 0 && done.load(std::memory_order_acquire) && back.outstanding() == 0) {
        auto p = back.pending();
        if (p.ok() && *p == 0) break;
      }
    }
  });
  std::uint64_t sent = 0;
  std::uint64_t got = 0;
  for (auto _ : state) {
    for (std::uint64_t i = 0; i < kPerIter; ++i) {
      while (front.full()) {
        (void)front.push_requests();
        auto c = front.consume(256, [&](const netif_tx_response&) { ++got; });
        if (!c) std::abort();
      }
      if (!front.put_request(netif_tx_request{0, 0, 0, static_cast<std::uint16_t>(sent), 64}).ok()) std::abort();
      if (++sent % 32 == 0) (void)front.push_requests();
    }
  }
  (void)front.push_requests();
  while (got < sent) {
    auto c = front.consume(256, [&](const netif_tx_response&) { ++got; });
    if (!c) std::abort();
  }
  done.store(true, std::memory_order_release);
  backend.join();
  state.SetItemsProcessed(static_cast<std::int64_t>(sent));
}
BENCHMARK(BM_XenRingReqRsp)->UseRealTime();

}  // namespace

BENCHMARK_MAIN();
