// The domU end of the semantic channel protocol: blocking calls for the gears-front agent and for
// benchmarks. N kicks dom0; W blocks until dom0 kicks us: `Result<bool> wait(int timeout_ms)` returns
// true when kicked (and re-arms the event source), false on timeout.
#pragma once

#include <algorithm>
#include <optional>
#include <cstdint>
#include <span>
#include <vector>

#include "common/channel/bulk.hpp"
#include "common/channel/protocol.hpp"
#include "common/channel/session.hpp"
#include "common/ring/stream_ring.hpp"

namespace gears::channel {

struct BulkResult {
  std::uint64_t bytes = 0;
  double seconds = 0;
  std::uint64_t local_checksum = 0;   // what we sent / what we received
  std::uint64_t remote_checksum = 0;  // what dom0 says it received / sent
  std::uint64_t expected_checksum = 0;  // stream(seed) computed here; 0 when not verifying
  [[nodiscard]] bool match() const {
    return local_checksum == remote_checksum && local_checksum == expected_checksum;
  }
};

struct MsgResult {
  std::uint64_t count = 0;
  double seconds = 0;
  bool match = false;  // dom0's count and checksum equal ours
};

template <class N, class W>
class FrontendSession {
 public:
  FrontendSession(std::span<std::byte> up, std::span<std::byte> down, N& notifier, W& waiter,
                  std::uint32_t max_frame, int timeout_ms = 30000)
      : out_(up, notifier, max_frame), in_(down, notifier, max_frame), waiter_(waiter), scratch_(max_frame),
        timeout_ms_(timeout_ms) {}

  [[nodiscard]] Result<Hello> hello(std::uint32_t features = 0) {
    std::byte b[kHelloSize];
    encode(Hello{kVersion, features}, std::span<std::byte, kHelloSize>(b));
    if (auto s = send(FrameType::Hello, b); !s) return s.error();
    auto f = expect(FrameType::Hello);
    if (!f) return f.error();
    return decode_hello(*f);
  }

  [[nodiscard]] Result<HintsAck> publish_hints(std::span<const std::byte> tlv) {
    if (auto s = send(FrameType::Hints, tlv); !s) return s.error();
    auto f = expect(FrameType::HintsAck);
    if (!f) return f.error();
    return decode_hints_ack(*f);
  }

  [[nodiscard]] Result<BulkResult> bulk_up(std::uint64_t bytes, std::uint64_t seed, bool verify) {
    BulkResult res;
    res.bytes = bytes;
    const std::uint64_t t0 = now_ns();
    if (auto s = send_bulk_begin(Direction::Up, bytes, seed, verify); !s) return s.error();
    PatternSource src(seed);
    Checksum sum;
    std::uint64_t left = bytes;
    while (left > 0) {
      auto chunk = src.next(std::min<std::uint64_t>(left, out_.max_frame()));
      auto r = out_.stage_frame(static_cast<std::uint16_t>(FrameType::Data), 0, chunk);
      if (!r) return r.error();
      if (!*r) {
        src.rewind(chunk.size());
        if (auto s = wait_space(ring::kFrameHeaderSize + chunk.size()); !s) return s.error();
        continue;
      }
      if (verify) sum.update(chunk);
      left -= chunk.size();
    }
    BulkEnd mine{bytes, verify ? sum.digest() : 0};
    std::byte b[kBulkEndSize];
    encode(mine, std::span<std::byte, kBulkEndSize>(b));
    if (auto s = send(FrameType::BulkEnd, b); !s) return s.error();
    auto f = expect(FrameType::BulkEnd);
    if (!f) return f.error();
    auto theirs = decode_bulk_end(*f);
    if (!theirs) return theirs.error();
    res.seconds = static_cast<double>(now_ns() - t0) / 1e9;
    res.local_checksum = mine.checksum;
    res.remote_checksum = theirs->checksum;
    res.expected_checksum = mine.checksum;  // we hashed exactly stream(seed) as we sent it
    if (theirs->bytes != bytes) return Error{EPROTO, "channel: dom0 counted a different byte total"};
    return res;
  }

  [[nodiscard]] Result<BulkResult> bulk_down(std::uint64_t bytes, std::uint64_t seed, bool verify) {
    BulkResult res;
    res.bytes = bytes;
    const std::uint64_t t0 = now_ns();
    if (auto s = send_bulk_begin(Direction::Down, bytes, seed, verify); !s) return s.error();
    Checksum sum;
    std::uint64_t got = 0;
    std::optional<Result<BulkEnd>> theirs;
    std::optional<Error> bad;
    if (auto s = out_.flush(); !s) return s.error();
    // Data is checksummed where it lies in the ring (dom0 is the only writer; nothing is parsed from it).
    while (!theirs && !bad) {
      auto r = in_.visit_frames(
          scratch_, 64, [](const ring::FrameHeader& h) { return h.type == static_cast<std::uint16_t>(FrameType::Data); },
          [&](const ring::FrameHeader& h, std::span<const std::byte> a, std::span<const std::byte> b) {
            if (bad || theirs) {
              bad = Error{EPROTO, "channel: frame after BulkEnd"};
            } else if (h.type == static_cast<std::uint16_t>(FrameType::BulkEnd)) {
              theirs = decode_bulk_end(a);
            } else if (h.type != static_cast<std::uint16_t>(FrameType::Data)) {
              bad = Error{EPROTO, "channel: expected Data from dom0"};
            } else if (got + h.len > bytes) {
              bad = Error{EPROTO, "channel: dom0 sent more than asked"};
            } else {
              if (verify) {
                sum.update(a);
                if (!b.empty()) sum.update(b);
              }
              got += h.len;
            }
          });
      if (!r) return r.error();
      if (*r > 0) continue;
      auto w = in_.prepare_wait();
      if (!w) return w.error();
      if (!*w) continue;
      auto k = waiter_.wait(timeout_ms_);
      if (!k) return k.error();
      if (!*k) return Error{ETIMEDOUT, "channel: no answer from dom0"};
    }
    if (bad) return *bad;
    if (!*theirs) return theirs->error();
    if (got != bytes) return Error{EPROTO, "channel: BulkEnd before all data"};
    res.seconds = static_cast<double>(now_ns() - t0) / 1e9;
    res.local_checksum = verify ? sum.digest() : 0;
    res.remote_checksum = (*theirs)->checksum;
    res.expected_checksum = verify ? expected_checksum(seed, bytes) : 0;
    return res;
  }

  // `count` messages of `size` bytes each, one-way, then a MsgEnd round trip.
  [[nodiscard]] Result<MsgResult> msgs(std::uint64_t count, std::size_t size) {
    std::vector<std::byte> m(size);
    Checksum sum;
    const std::uint64_t t0 = now_ns();
    for (std::uint64_t i = 0; i < count; ++i) {
      for (std::size_t k = 0; k < size; ++k) m[k] = static_cast<std::byte>((i + k) & 0xFFU);
      for (;;) {
        auto r = out_.stage_frame(static_cast<std::uint16_t>(FrameType::Msg), 0, m);
        if (!r) return r.error();
        if (*r) break;
        if (auto s = wait_space(ring::kFrameHeaderSize + size); !s) return s.error();
      }
      sum.update(m);
      if ((i & 63U) == 63U) {
        if (auto s = out_.flush(); !s) return s.error();
      }
    }
    std::byte b[kMsgEndSize];
    encode(MsgEnd{count, sum.digest()}, std::span<std::byte, kMsgEndSize>(b));
    if (auto s = send(FrameType::MsgEnd, b); !s) return s.error();
    auto f = expect(FrameType::MsgEnd);
    if (!f) return f.error();
    auto theirs = decode_msg_end(*f);
    if (!theirs) return theirs.error();
    MsgResult res;
    res.count = count;
    res.seconds = static_cast<double>(now_ns() - t0) / 1e9;
    res.match = theirs->count == count && theirs->checksum == sum.digest();
    return res;
  }

  // One Ping/Pong round trip; returns its duration in nanoseconds.
  [[nodiscard]] Result<std::uint64_t> ping(std::uint64_t seq) {
    const std::uint64_t t0 = now_ns();
    std::byte b[kPingSize];
    encode(Ping{seq, t0}, std::span<std::byte, kPingSize>(b));
    if (auto s = send(FrameType::Ping, b); !s) return s.error();
    auto f = expect(FrameType::Pong);
    if (!f) return f.error();
    auto p = decode_ping(*f);
    if (!p) return p.error();
    if (p->seq != seq) return Error{EPROTO, "channel: Pong for another Ping"};
    return now_ns() - t0;
  }

  // Agent mode: waits up to idle_ms for dom0's next BenchRequest, runs it and answers with a BenchResult.
  // Returns false when nothing came. A failed measurement is reported to dom0 (status = errno) and also
  // returned, since the channel may no longer be usable.
  [[nodiscard]] Result<bool> serve_one(int idle_ms) {
    auto h = next_frame(idle_ms);
    if (!h) return h.error();
    if (!*h) return false;
    if ((*h)->type != static_cast<std::uint16_t>(FrameType::BenchRequest))
      return Error{EPROTO, "channel: unexpected frame from dom0 while idle"};
    auto req = decode_bench_request(std::span<const std::byte>(scratch_.data(), (*h)->len));
    if (!req) return req.error();
    BenchResult res;
    res.id = req->id;
    res.amount = req->amount;
    std::optional<Error> failed;
    const std::uint64_t t0 = now_ns();
    switch (req->kind) {
      case BenchKind::BulkUp:
      case BenchKind::BulkDown: {
        auto r = req->kind == BenchKind::BulkUp ? bulk_up(req->amount, req->id, req->verify)
                                                : bulk_down(req->amount, req->id, req->verify);
        if (!r) failed = r.error();
        else res.match = !req->verify || r->match();
        break;
      }
      case BenchKind::Msgs: {
        auto r = msgs(req->amount, req->size);
        if (!r) failed = r.error();
        else res.match = r->match;
        break;
      }
      case BenchKind::Rtt: {
        std::vector<std::uint64_t> rtts;
        rtts.reserve(std::min<std::uint64_t>(req->amount, 1U << 20U));
        for (std::uint64_t i = 1; i <= req->amount && !failed; ++i) {
          auto r = ping(i);
          if (!r) failed = r.error();
          else if (rtts.size() < rtts.capacity()) rtts.push_back(*r);
        }
        if (!rtts.empty()) {
          std::nth_element(rtts.begin(), rtts.begin() + static_cast<std::ptrdiff_t>(rtts.size() / 2), rtts.end());
          res.p50_ns = rtts[rtts.size() / 2];
        }
        res.match = !failed;
        break;
      }
    }
    res.elapsed_ns = now_ns() - t0;
    if (failed) res.status = static_cast<std::uint32_t>(failed->code);
    std::byte b[kBenchResultSize];
    encode(res, std::span<std::byte, kBenchResultSize>(b));
    if (auto s = send(FrameType::BenchResult, b); !s) return s.error();
    if (auto s = out_.flush(); !s) return s.error();
    if (failed) return *failed;
    return true;
  }

  // Raw frame, for tests that speak nonsense on purpose.
  [[nodiscard]] Status send_raw(std::uint16_t type, std::span<const std::byte> payload) {
    return send(static_cast<FrameType>(type), payload);
  }

 private:
  Status send_bulk_begin(Direction d, std::uint64_t bytes, std::uint64_t seed, bool verify) {
    BulkBegin m{d, verify, bytes, seed};
    std::byte b[kBulkBeginSize];
    encode(m, std::span<std::byte, kBulkBeginSize>(b));
    return send(FrameType::BulkBegin, b);
  }

  Status send(FrameType t, std::span<const std::byte> payload) {
    for (;;) {
      auto r = out_.write_frame(static_cast<std::uint16_t>(t), 0, payload);
      if (!r) return r.error();
      if (*r) return {};
      if (auto s = wait_space(ring::kFrameHeaderSize + payload.size()); !s) return s;
    }
  }

  Status wait_space(std::size_t need) {
    for (;;) {
      auto w = out_.prepare_wait_for_space(need);
      if (!w) return w.error();
      if (!*w) return {};
      auto k = waiter_.wait(timeout_ms_);
      if (!k) return k.error();
      if (!*k) return Error{ETIMEDOUT, "channel: dom0 stopped reading"};
    }
  }

  // Next frame into scratch_.
  Result<ring::FrameHeader> next_frame() {
    auto h = next_frame(timeout_ms_);
    if (!h) return h.error();
    if (!*h) return Error{ETIMEDOUT, "channel: no answer from dom0"};
    return **h;
  }
  // Same, but nothing within timeout_ms is not an error.
  Result<std::optional<ring::FrameHeader>> next_frame(int timeout_ms) {
    if (auto s = out_.flush(); !s) return s.error();
    for (;;) {
      auto r = in_.read_frame(scratch_);
      if (!r) return r.error();
      if (r->has_value()) return std::optional<ring::FrameHeader>(**r);
      auto w = in_.prepare_wait();
      if (!w) return w.error();
      if (!*w) continue;
      auto k = waiter_.wait(timeout_ms);
      if (!k) return k.error();
      if (!*k) return std::optional<ring::FrameHeader>();
    }
  }

  Result<std::span<const std::byte>> expect(FrameType t) {
    auto h = next_frame();
    if (!h) return h.error();
    if (h->type != static_cast<std::uint16_t>(t)) return Error{EPROTO, "channel: unexpected frame from dom0"};
    return std::span<const std::byte>(scratch_.data(), h->len);
  }

  ring::StreamProducer<N&> out_;
  ring::StreamConsumer<N&> in_;
  W& waiter_;
  std::vector<std::byte> scratch_;
  int timeout_ms_;
};

}  // namespace gears::channel
