// Both ends of the channel protocol in one process: frontend on the test thread, backend on its own
// thread, two rings in plain shared memory and eventfds in place of the event channel.
#include "common/channel/frontend_session.hpp"
#include "common/channel/session.hpp"
#include "common/ring/le.hpp"

#include <gtest/gtest.h>

#include <cstring>
#include <poll.h>
#include <sys/eventfd.h>
#include <sys/mman.h>
#include <unistd.h>

#include <atomic>
#include <thread>

namespace gears::channel {
namespace {

struct Kick {
  int fd;
  Status notify() {
    const std::uint64_t one = 1;
    if (::write(fd, &one, sizeof one) < 0 && errno != EAGAIN) return errno_error("eventfd");
    return {};
  }
};
static_assert(ring::Notifier<Kick>);

struct Wait {
  int fd;
  Result<bool> wait(int ms) {
    pollfd p{fd, POLLIN, 0};
    const int r = ::poll(&p, 1, ms);
    if (r < 0) return errno_error("poll");
    if (r == 0) return false;
    std::uint64_t n;
    if (::read(fd, &n, sizeof n) < 0 && errno != EAGAIN) return errno_error("read");
    return true;
  }
};

class Region {
 public:
  explicit Region(std::size_t bytes) : n_(bytes) {
    p_ = ::mmap(nullptr, n_, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
    if (p_ == MAP_FAILED) throw std::runtime_error("mmap");
  }
  ~Region() { ::munmap(p_, n_); }
  Region(const Region&) = delete;
  Region& operator=(const Region&) = delete;
  std::span<std::byte> span() { return {static_cast<std::byte*>(p_), n_}; }

 private:
  void* p_;
  std::size_t n_;
};

constexpr std::uint32_t kFrame = 16 * 1024;

class ChannelPair : public ::testing::Test {
 protected:
  ChannelPair()
      : up_(ring::stream_region_bytes(16)), down_(ring::stream_region_bytes(16)),
        be_fd_(::eventfd(0, EFD_NONBLOCK)), fe_fd_(::eventfd(0, EFD_NONBLOCK)) {
    ring::stream_ring_format(up_.span(), kFrame);
    ring::stream_ring_format(down_.span(), kFrame);
  }
  ~ChannelPair() override {
    stop_ = true;
    (void)kick_be_.notify();
    if (backend_.joinable()) backend_.join();
    ::close(be_fd_);
    ::close(fe_fd_);
  }

  void start_backend(BackendSession<Kick>::HintSink sink) {
    backend_ = std::thread([this, sink] {
      BackendSession<Kick> be(up_.span(), down_.span(), kick_fe_, kFrame, sink);
      Wait w{be_fd_};
      while (!stop_) {
        auto r = be.pump();
        if (!r) {
          be_error_ = r.error().what;
          be_detail_ = be.detail();
          return;
        }
        stats_ = be.stats();
        if (*r == PumpResult::Idle) (void)w.wait(100);
      }
    });
  }

  Region up_, down_;
  int be_fd_, fe_fd_;
  Kick kick_be_{be_fd_};
  Kick kick_fe_{fe_fd_};
  Wait fe_wait_{fe_fd_};
  std::thread backend_;
  std::atomic<bool> stop_{false};
  std::string be_error_, be_detail_;
  BackendStats stats_;
};

TEST_F(ChannelPair, HelloHintsBulkMsgsPing) {
  std::vector<std::byte> seen;
  start_backend([&](std::span<const std::byte> tlv) -> Result<std::uint32_t> {
    seen.assign(tlv.begin(), tlv.end());
    return 3u;
  });
  FrontendSession<Kick, Wait> fe(up_.span(), down_.span(), kick_be_, fe_wait_, kFrame, 5000);
  auto h = fe.hello();
  ASSERT_TRUE(h.ok()) << h.error().what;
  EXPECT_EQ(h->version, kVersion);

  const std::byte tlv[] = {std::byte{1}, std::byte{0}, std::byte{1}, std::byte{0}, std::byte{7}};
  auto ack = fe.publish_hints(tlv);
  ASSERT_TRUE(ack.ok()) << ack.error().what;
  EXPECT_EQ(ack->records, 3u);

  // Several ring-fulls each way, with sizes that do not divide the frame or the ring.
  const std::uint64_t bytes = 3 * 1024 * 1024 + 12345;
  auto up = fe.bulk_up(bytes, 42, true);
  ASSERT_TRUE(up.ok()) << up.error().what;
  EXPECT_TRUE(up->match());
  EXPECT_NE(up->local_checksum, 0u);
  auto down = fe.bulk_down(bytes, 43, true);
  ASSERT_TRUE(down.ok()) << down.error().what;
  EXPECT_TRUE(down->match());
  EXPECT_NE(down->local_checksum, up->local_checksum);  // different seeds, different streams

  auto m = fe.msgs(20000, 64);
  ASSERT_TRUE(m.ok()) << m.error().what;
  EXPECT_TRUE(m->match);

  for (std::uint64_t i = 0; i < 10; ++i) {
    auto rtt = fe.ping(i);
    ASSERT_TRUE(rtt.ok()) << rtt.error().what;
    EXPECT_GT(*rtt, 0u);
  }
  EXPECT_EQ(seen.size(), sizeof tlv);
  EXPECT_TRUE(be_error_.empty()) << be_error_ << ": " << be_detail_;
}

TEST_F(ChannelPair, UnknownFrameTypeClosesBackend) {
  start_backend([](std::span<const std::byte>) -> Result<std::uint32_t> { return 0u; });
  FrontendSession<Kick, Wait> fe(up_.span(), down_.span(), kick_be_, fe_wait_, kFrame, 500);
  ASSERT_TRUE(fe.send_raw(999, {}).ok());
  backend_.join();
  EXPECT_EQ(be_error_, "channel: unknown frame type");
  EXPECT_EQ(be_detail_, "type 999");
}

TEST_F(ChannelPair, RejectedHintsCloseBackend) {
  start_backend([](std::span<const std::byte>) -> Result<std::uint32_t> {
    return Error{EPROTO, "hints: unknown kind"};
  });
  FrontendSession<Kick, Wait> fe(up_.span(), down_.span(), kick_be_, fe_wait_, kFrame, 500);
  const std::byte junk[] = {std::byte{0xff}, std::byte{0xff}, std::byte{0}, std::byte{0}};
  auto ack = fe.publish_hints(junk);
  EXPECT_FALSE(ack.ok());  // no answer: the backend closed
  backend_.join();
  EXPECT_EQ(be_error_, "hints: unknown kind");
}

TEST_F(ChannelPair, DataOutsideTransferClosesBackend) {
  start_backend([](std::span<const std::byte>) -> Result<std::uint32_t> { return 0u; });
  FrontendSession<Kick, Wait> fe(up_.span(), down_.span(), kick_be_, fe_wait_, kFrame, 500);
  const std::byte d[16] = {};
  ASSERT_TRUE(fe.send_raw(static_cast<std::uint16_t>(FrameType::Data), d).ok());
  backend_.join();
  EXPECT_EQ(be_error_, "channel: Data outside a transfer");
}

TEST_F(ChannelPair, ControlFloodClosesBackend) {
  start_backend([](std::span<const std::byte>) -> Result<std::uint32_t> { return 1u; });
  FrontendSession<Kick, Wait> fe(up_.span(), down_.span(), kick_be_, fe_wait_, kFrame, 500);
  for (std::uint32_t i = 0; i < 3 * kMaxControlFramesPerSec && be_error_.empty(); ++i) {
    if (!fe.send_raw(static_cast<std::uint16_t>(FrameType::Hints), {}).ok()) break;
  }
  backend_.join();
  EXPECT_EQ(be_error_, "channel: control-frame flood");
}

TEST_F(ChannelPair, ProducerIndexBeyondRingClosesBackend) {
  start_backend([](std::span<const std::byte>) -> Result<std::uint32_t> { return 0u; });
  auto* hdr = reinterpret_cast<ring::StreamRingHeader*>(up_.span().data());
  ring::shm::store_release(hdr->prod, 16 * 4096 + 1);  // one byte more than the ring holds
  (void)kick_be_.notify();
  backend_.join();
  EXPECT_EQ(be_error_, "stream ring: peer index out of range");
}

TEST_F(ChannelPair, OversizedFrameLengthClosesBackend) {
  start_backend([](std::span<const std::byte>) -> Result<std::uint32_t> { return 0u; });
  auto mem = up_.span();
  auto* hdr = reinterpret_cast<ring::StreamRingHeader*>(mem.data());
  std::byte* data = mem.data() + ring::kStreamPageSize;
  le::store32(data, kFrame + 1);
  le::store16(data + 4, static_cast<std::uint16_t>(FrameType::Hints));
  le::store16(data + 6, 0);
  ring::shm::store_release(hdr->prod, 8);
  (void)kick_be_.notify();
  backend_.join();
  EXPECT_EQ(be_error_, "stream ring: frame length exceeds max_frame");
}

TEST_F(ChannelPair, UnreadRepliesCloseBackend) {
  start_backend([](std::span<const std::byte>) -> Result<std::uint32_t> { return 0u; });
  FrontendSession<Kick, Wait> fe(up_.span(), down_.span(), kick_be_, fe_wait_, kFrame, 500);
  std::byte b[kPingSize] = {};
  // Pings whose Pongs are never read: the down ring fills, then the reply queue hits its bound.
  for (std::uint32_t i = 0; i < 20000 && be_error_.empty(); ++i) {
    if (!fe.send_raw(static_cast<std::uint16_t>(FrameType::Ping), b).ok()) break;
  }
  backend_.join();
  EXPECT_EQ(be_error_, "channel: frontend does not read its replies");
}

TEST(ChannelProtocol, StrictDecoders) {
  std::byte b[kBulkBeginSize];
  encode(BulkBegin{Direction::Down, false, 77, 5}, std::span<std::byte, kBulkBeginSize>(b));
  auto ok = decode_bulk_begin(b);
  ASSERT_TRUE(ok.ok());
  EXPECT_EQ(ok->dir, Direction::Down);
  EXPECT_FALSE(ok->verify);
  EXPECT_EQ(ok->bytes, 77u);
  b[0] = std::byte{2};
  EXPECT_FALSE(decode_bulk_begin(b).ok());
  b[0] = std::byte{0};
  b[3] = std::byte{1};
  EXPECT_FALSE(decode_bulk_begin(b).ok());
  EXPECT_FALSE(decode_bulk_begin(std::span<const std::byte>(b, 23)).ok());
  EXPECT_FALSE(decode_hello(std::span<const std::byte>(b, 9)).ok());
  EXPECT_EQ(frame_name(5), "Data");
  EXPECT_EQ(frame_name(1234), "unknown");
}

TEST(ChannelProtocol, BenchFramesRoundTripAndAreBounded) {
  std::byte b[kBenchRequestSize];
  BenchRequest rq;
  rq.id = 9;
  rq.kind = BenchKind::Msgs;
  rq.verify = false;
  rq.amount = 1000;
  rq.size = 64;
  encode(rq, std::span<std::byte, kBenchRequestSize>(b));
  auto got = decode_bench_request(b);
  ASSERT_TRUE(got.ok());
  EXPECT_EQ(got->id, 9U);
  EXPECT_EQ(got->kind, BenchKind::Msgs);
  EXPECT_FALSE(got->verify);
  EXPECT_EQ(got->amount, 1000U);
  EXPECT_EQ(got->size, 64U);
  auto bad = [&](auto mutate) {
    std::byte c[kBenchRequestSize];
    std::memcpy(c, b, sizeof c);
    mutate(c);
    return !decode_bench_request(c).ok();
  };
  EXPECT_TRUE(bad([](std::byte* c) { c[4] = std::byte{0}; }));   // kind 0
  EXPECT_TRUE(bad([](std::byte* c) { c[4] = std::byte{5}; }));   // kind 5
  EXPECT_TRUE(bad([](std::byte* c) { c[5] = std::byte{2}; }));   // verify 2
  EXPECT_TRUE(bad([](std::byte* c) { c[6] = std::byte{1}; }));   // reserved
  EXPECT_TRUE(bad([](std::byte* c) { c[23] = std::byte{1}; }));  // reserved
  EXPECT_TRUE(bad([](std::byte* c) { le::store64(c + 8, 0); }));  // no work
  EXPECT_TRUE(bad([](std::byte* c) { le::store64(c + 8, kMaxBenchCount + 1); }));
  EXPECT_TRUE(bad([](std::byte* c) { le::store32(c + 16, 0); }));  // msgs need a size
  EXPECT_TRUE(bad([](std::byte* c) { le::store32(c + 16, kMaxFrame + 1); }));
  EXPECT_TRUE(bad([](std::byte* c) { c[4] = std::byte{1}; }));  // bulk with a message size
  EXPECT_FALSE(decode_bench_request(std::span<const std::byte>(b, 23)).ok());

  std::byte r[kBenchResultSize];
  encode(BenchResult{9, 0, 1000, 5'000'000, 700, true}, std::span<std::byte, kBenchResultSize>(r));
  auto res = decode_bench_result(r);
  ASSERT_TRUE(res.ok());
  EXPECT_EQ(res->elapsed_ns, 5'000'000U);
  EXPECT_EQ(res->p50_ns, 700U);
  EXPECT_TRUE(res->match);
  r[32] = std::byte{2};
  EXPECT_FALSE(decode_bench_result(r).ok());
  r[32] = std::byte{1};
  r[39] = std::byte{1};
  EXPECT_FALSE(decode_bench_result(r).ok());
  EXPECT_EQ(frame_name(11), "BenchRequest");
  EXPECT_EQ(bench_kind_name(BenchKind::Rtt), "rtt");
}

TEST(ChannelBulk, PatternRewindAndChecksum) {
  PatternSource a(9), b(9);
  auto x = a.next(1000);
  std::vector<std::byte> first(x.begin(), x.end());
  a.rewind(1000);
  auto y = a.next(1000);
  EXPECT_TRUE(std::equal(first.begin(), first.end(), y.begin()));
  auto z = b.next(1000);
  EXPECT_TRUE(std::equal(first.begin(), first.end(), z.begin()));
  EXPECT_NE(expected_checksum(1, 4096), expected_checksum(2, 4096));
  EXPECT_EQ(expected_checksum(1, 4096), expected_checksum(1, 4096));
}

}  // namespace
}  // namespace gears::channel
