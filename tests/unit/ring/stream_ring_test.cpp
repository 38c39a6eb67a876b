#include "common/ring/stream_ring.hpp"

#include <gtest/gtest.h>

#include <array>
#include <atomic>
#include <cstdio>
#include <cstring>
#include <thread>
#include <vector>

#include "common/ring/le.hpp"
#include "tests/unit/ring/shm_region.hpp"

namespace gears::ring {
namespace {

using test::DualMapping;

constexpr std::uint32_t kMaxFrame = 1024;

std::vector<std::byte> pattern(std::size_t n, std::uint32_t seed) {
  std::vector<std::byte> v(n);
  for (std::size_t i = 0; i < n; ++i) v[i] = static_cast<std::byte>((seed * 131U + i * 7U) & 0xFFU);
  return v;
}

StreamRingHeader& header(std::span<std::byte> mem) {
  return *reinterpret_cast<StreamRingHeader*>(mem.data());
}

struct Fixture {
  explicit Fixture(std::size_t data_pages = 1, std::uint32_t max_frame = kMaxFrame)
      : mem(stream_region_bytes(data_pages)) {
    stream_ring_format(mem.a(), max_frame);
  }
  DualMapping mem;
  EventfdNotifier to_reader;  // producer kicks this
  EventfdNotifier to_writer;  // consumer kicks this
};

TEST(StreamRing, FormatWritesWireHeader) {
  DualMapping m(stream_region_bytes(4));
  stream_ring_format(m.a(), 512);
  const auto b = m.b();
  EXPECT_EQ(le::load32(b.data()), kStreamMagic);
  EXPECT_EQ(le::load32(b.data() + 4), 1U);
  EXPECT_EQ(le::load32(b.data() + 8), 4U);
  EXPECT_EQ(le::load32(b.data() + 12), 512U);
  EXPECT_EQ(le::load32(b.data() + 64), 0U);
  EXPECT_EQ(le::load32(b.data() + 128), 0U);
}

TEST(StreamRing, RejectsBadGeometryAtSetup) {
  DualMapping m(stream_region_bytes(3));  // 3 data pages: not a power of two
  EXPECT_THROW(stream_ring_format(m.a(), 64), std::invalid_argument);
  DualMapping one(kStreamPageSize);  // header only
  EXPECT_THROW(stream_ring_format(one.a(), 64), std::invalid_argument);
  DualMapping ok(stream_region_bytes(1));
  EXPECT_THROW(stream_ring_format(ok.a(), kStreamPageSize - 7), std::invalid_argument);
  EXPECT_NO_THROW(stream_ring_format(ok.a(), kStreamPageSize - 8));
}

TEST(StreamRing, AttachChecksHeaderAgainstLocalConfig) {
  Fixture f;
  EXPECT_THROW(StreamConsumer(f.mem.b(), PollNotifier{}, kMaxFrame / 2), std::runtime_error);
  header(f.mem.a()).magic = 0xdeadbeef;
  EXPECT_THROW(StreamConsumer(f.mem.b(), PollNotifier{}, kMaxFrame), std::runtime_error);
  header(f.mem.a()).magic = kStreamMagic;
  header(f.mem.a()).data_pages = 2;
  EXPECT_THROW(StreamProducer(f.mem.a(), PollNotifier{}, kMaxFrame), std::runtime_error);
}

TEST(StreamRing, BytesRoundTripAcrossWrapWithOddChunks) {
  Fixture f;
  StreamProducer p(f.mem.a(), PollNotifier{}, kMaxFrame);
  StreamConsumer c(f.mem.b(), PollNotifier{}, kMaxFrame);
  const auto src = pattern(200'003, 1);
  std::vector<std::byte> dst;
  std::size_t off = 0;
  std::array<std::byte, 997> buf{};
  std::size_t chunk = 1;
  while (dst.size() < src.size()) {
    const std::size_t n = std::min(chunk, src.size() - off);
    auto w = p.write(std::span(src).subspan(off, n));
    ASSERT_TRUE(w.ok());
    off += *w;
    auto r = c.read(std::span(buf).first(std::min<std::size_t>(buf.size(), chunk * 3 / 4 + 1)));
    ASSERT_TRUE(r.ok());
    dst.insert(dst.end(), buf.begin(), buf.begin() + static_cast<std::ptrdiff_t>(*r));
    chunk = chunk * 5 % 1531 + 1;
  }
  EXPECT_EQ(dst, src);
}

TEST(StreamRing, FullAndEmptyCorners) {
  Fixture f;
  StreamProducer p(f.mem.a(), PollNotifier{}, kMaxFrame);
  StreamConsumer c(f.mem.b(), PollNotifier{}, kMaxFrame);
  EXPECT_EQ(*c.available(), 0U);
  const auto src = pattern(p.capacity() + 100, 2);
  auto w = p.write(src);
  ASSERT_TRUE(w.ok());
  EXPECT_EQ(*w, p.capacity());  // completely full: no slot sacrificed
  EXPECT_EQ(*p.space(), 0U);
  EXPECT_EQ(*p.write(src), 0U);
  EXPECT_EQ(*c.available(), c.capacity());
  std::vector<std::byte> out(c.capacity());
  EXPECT_EQ(*c.peek(out), c.capacity());
  EXPECT_EQ(*c.read(out), c.capacity());
  EXPECT_TRUE(std::equal(out.begin(), out.end(), src.begin()));
  EXPECT_EQ(*c.available(), 0U);
  EXPECT_EQ(*p.space(), p.capacity());
}

TEST(StreamRing, PeekThenPartialConsume) {
  Fixture f;
  StreamProducer p(f.mem.a(), PollNotifier{}, kMaxFrame);
  StreamConsumer c(f.mem.b(), PollNotifier{}, kMaxFrame);
  const auto src = pattern(100, 3);
  ASSERT_EQ(*p.write(src), 100U);
  std::array<std::byte, 40> a{};
  EXPECT_EQ(*c.peek(a), 40U);
  EXPECT_TRUE(c.consume(30).ok());
  EXPECT_EQ(*c.peek(a), 40U);
  EXPECT_TRUE(std::equal(a.begin(), a.end(), src.begin() + 30));
  EXPECT_EQ(c.consume(71).error().code, EINVAL);  // only 70 left
  EXPECT_TRUE(c.consume(70).ok());
}

TEST(StreamRing, FramesWrapAndKeepBoundaries) {
  Fixture f(1, 1000);
  StreamProducer p(f.mem.a(), PollNotifier{}, 1000);
  StreamConsumer c(f.mem.b(), PollNotifier{}, 1000);
  std::vector<std::byte> buf(1000);
  for (std::uint32_t i = 0; i < 5000; ++i) {
    const auto payload = pattern(i * 37 % 1001, i);
    auto w = p.write_frame(static_cast<std::uint16_t>(i), static_cast<std::uint16_t>(~i), payload);
    ASSERT_TRUE(w.ok());
    ASSERT_TRUE(*w);
    auto r = c.read_frame(buf);
    ASSERT_TRUE(r.ok());
    ASSERT_TRUE(r->has_value());
    EXPECT_EQ((*r)->len, payload.size());
    EXPECT_EQ((*r)->type, static_cast<std::uint16_t>(i));
    EXPECT_EQ((*r)->flags, static_cast<std::uint16_t>(~i));
    ASSERT_TRUE(std::equal(payload.begin(), payload.end(), buf.begin()));
  }
  EXPECT_FALSE(c.read_frame(buf)->has_value());
}

TEST(StreamRing, StageFrameReportsNoSpaceWithoutWriting) {
  Fixture f(1, 1000);
  StreamProducer p(f.mem.a(), PollNotifier{}, 1000);
  StreamConsumer c(f.mem.b(), PollNotifier{}, 1000);
  const auto payload = pattern(1000, 9);
  int staged = 0;
  for (;;) {
    auto r = p.stage_frame(1, 0, payload);
    ASSERT_TRUE(r.ok());
    if (!*r) break;
    ++staged;
  }
  EXPECT_EQ(staged, 4);  // 4 * 1008 <= 4096 < 5 * 1008
  std::vector<std::byte> buf(1000);
  EXPECT_FALSE(c.read_frame(buf)->has_value());  // not flushed yet
  ASSERT_TRUE(p.flush().ok());
  int got = 0;
  auto n = c.read_frames(buf, 100, [&](const FrameHeader& h, std::span<const std::byte> pl) {
    EXPECT_EQ(h.len, 1000U);
    EXPECT_TRUE(std::equal(pl.begin(), pl.end(), payload.begin()));
    ++got;
  });
  ASSERT_TRUE(n.ok());
  EXPECT_EQ(*n, 4U);
  EXPECT_EQ(got, 4);
  EXPECT_EQ(p.stage_frame(1, 0, pattern(1001, 0)).error().code, EMSGSIZE);
}

TEST(StreamRing, TornFrameIsNotConsumedUntilComplete) {
  Fixture f;
  StreamProducer p(f.mem.a(), PollNotifier{}, kMaxFrame);
  StreamConsumer c(f.mem.b(), PollNotifier{}, kMaxFrame);
  std::array<std::byte, kFrameHeaderSize + 50> raw{};
  le::store32(raw.data(), 50);
  le::store16(raw.data() + 4, 7);
  const auto pl = pattern(50, 4);
  std::copy(pl.begin(), pl.end(), raw.begin() + kFrameHeaderSize);
  std::vector<std::byte> buf(kMaxFrame);
  ASSERT_EQ(*p.write(std::span(raw).first(5)), 5U);  // half a header
  EXPECT_FALSE(c.read_frame(buf)->has_value());
  ASSERT_EQ(*p.write(std::span(raw).subspan(5, 20)), 20U);  // header + part of payload
  EXPECT_FALSE(c.read_frame(buf)->has_value());
  EXPECT_EQ(*c.available(), 25U);  // nothing consumed
  ASSERT_EQ(*p.write(std::span(raw).subspan(25)), raw.size() - 25);
  auto r = c.read_frame(buf);
  ASSERT_TRUE(r.ok() && r->has_value());
  EXPECT_EQ((*r)->type, 7);
  EXPECT_TRUE(std::equal(pl.begin(), pl.end(), buf.begin()));
}

TEST(StreamRing, SmallPayloadBufferIsCallerErrorNotConsumed) {
  Fixture f;
  StreamProducer p(f.mem.a(), PollNotifier{}, kMaxFrame);
  StreamConsumer c(f.mem.b(), PollNotifier{}, kMaxFrame);
  ASSERT_TRUE(*p.write_frame(1, 0, pattern(64, 1)));
  std::vector<std::byte> small(63);
  EXPECT_EQ(c.read_frame(small).error().code, EMSGSIZE);
  std::vector<std::byte> big(64);
  EXPECT_TRUE(c.read_frame(big)->has_value());
}

// ---- hostile peers ----

TEST(StreamRingHostile, ProducerIndexTooFarAheadIsProtocolError) {
  Fixture f;
  StreamConsumer c(f.mem.b(), PollNotifier{}, kMaxFrame);
  header(f.mem.a()).prod = c.capacity() + 1;
  EXPECT_EQ(c.available().error().code, EPROTO);
  std::array<std::byte, 8> b{};
  EXPECT_EQ(c.read(b).error().code, EPROTO);
  EXPECT_EQ(c.read_frame(b).error().code, EPROTO);
  EXPECT_EQ(c.prepare_wait().error().code, EPROTO);
  header(f.mem.a()).prod = c.capacity();  // exactly full is legal
  EXPECT_EQ(*c.available(), c.capacity());
}

TEST(StreamRingHostile, ProducerIndexMovingBackwardsIsProtocolError) {
  Fixture f;
  StreamProducer p(f.mem.a(), PollNotifier{}, kMaxFrame);
  StreamConsumer c(f.mem.b(), PollNotifier{}, kMaxFrame);
  ASSERT_EQ(*p.write(pattern(100, 1)), 100U);
  std::array<std::byte, 100> b{};
  ASSERT_EQ(*c.read(b), 100U);
  header(f.mem.a()).prod = 99;  // behind cons: prod - cons wraps to ~4G
  EXPECT_EQ(c.available().error().code, EPROTO);
}

TEST(StreamRingHostile, ConsumerIndexImpossibleIsProtocolErrorForProducer) {
  Fixture f;
  StreamProducer p(f.mem.a(), PollNotifier{}, kMaxFrame);
  ASSERT_EQ(*p.write(pattern(10, 1)), 10U);
  header(f.mem.b()).cons = 11;  // consumed more than was produced
  EXPECT_EQ(p.space().error().code, EPROTO);
  EXPECT_EQ(p.write(pattern(1, 1)).error().code, EPROTO);
  // stage_frame re-reads cons only when its cached free space runs short; a fresh producer has none.
  StreamProducer p2(f.mem.a(), PollNotifier{}, kMaxFrame);
  EXPECT_EQ(p2.write_frame(1, 0, pattern(1, 1)).error().code, EPROTO);
}

TEST(StreamRingHostile, OversizedFrameLengthIsProtocolError) {
  Fixture f;
  StreamProducer p(f.mem.a(), PollNotifier{}, kMaxFrame);
  StreamConsumer c(f.mem.b(), PollNotifier{}, kMaxFrame);
  std::array<std::byte, 16> raw{};
  le::store32(raw.data(), kMaxFrame + 1);
  ASSERT_EQ(*p.write(raw), raw.size());
  std::vector<std::byte> buf(kMaxFrame);
  EXPECT_EQ(c.read_frame(buf).error().code, EPROTO);
  le::store32(raw.data(), 0xFFFFFFFFU);  // would overflow 8 + len in 32 bits
  StreamConsumer c2(f.mem.b(), PollNotifier{}, kMaxFrame);
  header(f.mem.a()).prod = 0;
  header(f.mem.a()).cons = 0;
  StreamProducer p2(f.mem.a(), PollNotifier{}, kMaxFrame);
  ASSERT_EQ(*p2.write(raw), raw.size());
  EXPECT_EQ(c2.read_frame(buf).error().code, EPROTO);
}

TEST(StreamRingHostile, HeaderTamperingAfterAttachIsIgnored) {
  Fixture f;
  StreamProducer p(f.mem.a(), PollNotifier{}, kMaxFrame);
  StreamConsumer c(f.mem.b(), PollNotifier{}, kMaxFrame);
  header(f.mem.a()).data_pages = 1U << 20;  // geometry was fixed at attach
  header(f.mem.a()).max_frame = 0xFFFFFFFF;
  ASSERT_TRUE(*p.write_frame(3, 0, pattern(kMaxFrame, 1)));
  std::vector<std::byte> buf(kMaxFrame);
  EXPECT_TRUE(c.read_frame(buf)->has_value());
}

// ---- event suppression ----

TEST(StreamRingWakeup, SteadyStreamWithoutWaitersSendsNoKicks) {
  Fixture f;
  StreamProducer<EventfdNotifier&> p(f.mem.a(), f.to_reader, kMaxFrame);
  StreamConsumer<EventfdNotifier&> c(f.mem.b(), f.to_writer, kMaxFrame);
  std::vector<std::byte> buf(kMaxFrame);
  for (int i = 0; i < 1000; ++i) {
    ASSERT_TRUE(*p.write_frame(1, 0, pattern(100, 1)));
    ASSERT_TRUE(c.read_frame(buf)->has_value());
  }
  EXPECT_EQ(p.kicks() + c.kicks(), 0U);
  EXPECT_EQ(*f.to_reader.drain(), 0U);
}

TEST(StreamRingWakeup, ReaderWaitingGetsExactlyTheKickItNeeds) {
  Fixture f;
  StreamProducer<EventfdNotifier&> p(f.mem.a(), f.to_reader, kMaxFrame);
  StreamConsumer<EventfdNotifier&> c(f.mem.b(), f.to_writer, kMaxFrame);
  auto w = c.prepare_wait();
  ASSERT_TRUE(w.ok());
  EXPECT_TRUE(*w);  // empty: may sleep
  EXPECT_EQ(header(f.mem.a()).reader_waiting, 1U);
  ASSERT_TRUE(*p.write_frame(1, 0, pattern(10, 1)));
  EXPECT_EQ(*f.to_reader.drain(), 1U);
  std::vector<std::byte> buf(kMaxFrame);
  ASSERT_TRUE(c.read_frame(buf)->has_value());
  EXPECT_EQ(header(f.mem.a()).reader_waiting, 0U);  // cleared on finding work
  ASSERT_TRUE(*p.write_frame(1, 0, pattern(10, 1)));
  EXPECT_EQ(*f.to_reader.drain(), 0U);
}

TEST(StreamRingWakeup, RecheckAfterSettingFlagCatchesRacingData) {
  Fixture f;
  StreamProducer p(f.mem.a(), PollNotifier{}, kMaxFrame);
  StreamConsumer c(f.mem.b(), PollNotifier{}, kMaxFrame);
  ASSERT_TRUE(*p.write_frame(1, 0, pattern(10, 1)));  // arrives before the reader looked
  auto w = c.prepare_wait();
  ASSERT_TRUE(w.ok());
  EXPECT_FALSE(*w);
  EXPECT_EQ(header(f.mem.a()).reader_waiting, 0U);
}

TEST(StreamRingWakeup, PartialFrameThenRestKicksWaitingReader) {
  Fixture f;
  StreamProducer<EventfdNotifier&> p(f.mem.a(), f.to_reader, kMaxFrame);
  StreamConsumer c(f.mem.b(), PollNotifier{}, kMaxFrame);
  std::array<std::byte, kFrameHeaderSize + 4> raw{};
  le::store32(raw.data(), 4);
  ASSERT_EQ(*p.write(std::span(raw).first(6)), 6U);
  std::vector<std::byte> buf(kMaxFrame);
  EXPECT_FALSE(c.read_frame(buf)->has_value());
  EXPECT_TRUE(*c.prepare_wait());  // nothing new since the torn frame was seen
  ASSERT_EQ(*p.write(std::span(raw).subspan(6)), 6U);
  EXPECT_EQ(*f.to_reader.drain(), 1U);
  EXPECT_TRUE(c.read_frame(buf)->has_value());
}

TEST(StreamRingWakeup, WriterWaitingForSpaceIsKickedByConsumer) {
  Fixture f;
  StreamProducer p(f.mem.a(), PollNotifier{}, kMaxFrame);
  StreamConsumer<EventfdNotifier&> c(f.mem.b(), f.to_writer, kMaxFrame);
  ASSERT_EQ(*p.write(pattern(p.capacity() - 10, 1)), p.capacity() - 10);
  auto w = p.prepare_wait_for_space(100);
  ASSERT_TRUE(w.ok());
  EXPECT_TRUE(*w);
  EXPECT_EQ(header(f.mem.a()).writer_waiting, 1U);
  std::vector<std::byte> buf(200);
  ASSERT_EQ(*c.read(buf), 200U);
  EXPECT_EQ(*f.to_writer.drain(), 1U);
  EXPECT_FALSE(*p.prepare_wait_for_space(100));  // enough space now
  EXPECT_EQ(header(f.mem.a()).writer_waiting, 0U);
  EXPECT_EQ(p.prepare_wait_for_space(p.capacity() + 1).error().code, EMSGSIZE);
}

// ---- two threads, two mappings, millions of frames ----

struct Msg {
  static std::size_t len(std::uint64_t seq) { return 8 + (seq * 2654435761U) % 120; }
  static void fill(std::span<std::byte> out, std::uint64_t seq) {
    le::store64(out.data(), seq);
    for (std::size_t i = 8; i < out.size(); ++i)
      out[i] = static_cast<std::byte>((seq + i) & 0xFFU);
  }
  static bool check(std::span<const std::byte> in, std::uint64_t seq) {
    if (in.size() != len(seq) || le::load64(in.data()) != seq) return false;
    for (std::size_t i = 8; i < in.size(); ++i)
      if (in[i] != static_cast<std::byte>((seq + i) & 0xFFU)) return false;
    return true;
  }
};

TEST(StreamRingThreads, TwoMillionFramesInOrderWithSleepingEnds) {
  constexpr std::uint64_t kMsgs = 2'000'000;
  Fixture f(2, 256);
  std::atomic<bool> prod_failed{false};
  std::uint64_t writer_sleeps = 0;
  std::thread producer([&] {
    StreamProducer<EventfdNotifier&> p(f.mem.a(), f.to_reader, 256);
    std::array<std::byte, 256> buf{};
    for (std::uint64_t seq = 0; seq < kMsgs && !prod_failed;) {
      const auto n = Msg::len(seq);
      Msg::fill(std::span(buf).first(n), seq);
      auto r = p.stage_frame(static_cast<std::uint16_t>(seq & 0xFFFFU), 0, std::span(buf).first(n));
      if (!r) { prod_failed = true; break; }
      if (*r) {
        ++seq;
        if (seq % 16 == 0 && !p.flush().ok()) prod_failed = true;  // batch of 16 per publish
        continue;
      }
      auto w = p.prepare_wait_for_space(kFrameHeaderSize + n);
      if (!w) { prod_failed = true; break; }
      if (*w) {
        ++writer_sleeps;
        if (!f.to_writer.wait(-1).ok() || !f.to_writer.drain().ok()) prod_failed = true;
      }
    }
    if (!p.flush().ok()) prod_failed = true;
  });

  StreamConsumer<EventfdNotifier&> c(f.mem.b(), f.to_writer, 256);
  std::array<std::byte, 256> scratch{};
  std::uint64_t next = 0;
  std::uint64_t bad = 0;
  std::uint64_t reader_sleeps = 0;
  while (next < kMsgs) {
    auto n = c.read_frames(scratch, 64, [&](const FrameHeader& h, std::span<const std::byte> pl) {
      if (h.type != static_cast<std::uint16_t>(next & 0xFFFFU) || !Msg::check(pl, next)) ++bad;
      ++next;
    });
    ASSERT_TRUE(n.ok()) << n.error().what;
    if (*n > 0) continue;
    auto w = c.prepare_wait();
    ASSERT_TRUE(w.ok());
    if (*w) {
      ++reader_sleeps;
      // Unbounded wait: a lost wake-up hangs here and fails by ctest timeout (no timing check).
      auto k = f.to_reader.wait(-1);
      ASSERT_TRUE(k.ok() && *k);
      ASSERT_TRUE(f.to_reader.drain().ok());
    }
  }
  producer.join();
  EXPECT_FALSE(prod_failed);
  EXPECT_EQ(bad, 0U);
  EXPECT_EQ(next, kMsgs);
  EXPECT_FALSE(c.read_frame(scratch)->has_value());
  std::printf("frames=%llu reader_sleeps=%llu writer_sleeps=%llu\n",
              static_cast<unsigned long long>(kMsgs), static_cast<unsigned long long>(reader_sleeps),
              static_cast<unsigned long long>(writer_sleeps));
}

TEST(StreamRingThreads, RingPairEchoesRequestsBothDirections) {
  // Two rings = one channel: A carries requests front->back, B carries replies back->front.
  constexpr int kRounds = 20'000;
  Fixture a;
  Fixture b;
  EventfdNotifier kick_back;   // front -> back
  EventfdNotifier kick_front;  // back -> front
  std::atomic<bool> failed{false};
  std::thread back([&] {
    StreamConsumer<EventfdNotifier&> in(a.mem.b(), kick_front, kMaxFrame);
    StreamProducer<EventfdNotifier&> out(b.mem.b(), kick_front, kMaxFrame);
    std::vector<std::byte> buf(kMaxFrame);
    for (int done = 0; done < kRounds && !failed;) {
      auto r = in.read_frame(buf);
      if (!r) { failed = true; break; }
      if (r->has_value()) {
        auto w = out.write_frame(static_cast<std::uint16_t>((*r)->type + 1), 0,
                                 std::span(buf).first((*r)->len));
        if (!w || !*w) failed = true;
        ++done;
        continue;
      }
      auto pw = in.prepare_wait();
      if (!pw) { failed = true; break; }
      if (*pw && (!kick_back.wait(-1).ok() || !kick_back.drain().ok())) failed = true;
    }
  });
  StreamProducer<EventfdNotifier&> out(a.mem.a(), kick_back, kMaxFrame);
  StreamConsumer<EventfdNotifier&> in(b.mem.a(), kick_back, kMaxFrame);
  std::vector<std::byte> buf(kMaxFrame);
  for (int i = 0; i < kRounds; ++i) {
    const auto req = pattern(static_cast<std::size_t>(i % 300), static_cast<std::uint32_t>(i));
    ASSERT_TRUE(*out.write_frame(static_cast<std::uint16_t>(i), 0, req));
    for (;;) {
      auto r = in.read_frame(buf);
      ASSERT_TRUE(r.ok());
      if (r->has_value()) {
        ASSERT_EQ((*r)->type, static_cast<std::uint16_t>(i + 1));
        ASSERT_TRUE(std::equal(req.begin(), req.end(), buf.begin()));
        break;
      }
      auto pw = in.prepare_wait();
      ASSERT_TRUE(pw.ok());
      if (*pw) {
        auto k = kick_front.wait(-1);
        ASSERT_TRUE(k.ok() && *k);
        ASSERT_TRUE(kick_front.drain().ok());
      }
    }
  }
  back.join();
  EXPECT_FALSE(failed);
}

}  // namespace
}  // namespace gears::ring
