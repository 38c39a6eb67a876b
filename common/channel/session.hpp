// Both ends of the semantic channel protocol (protocol.hpp) over a ring pair, independent of how the
// rings were set up (real grants in gearsd / gears-front, plain shared memory in unit tests).
//
// Threading: a session is owned by one thread. The backend session is event driven (pump() on each
// kick, never blocks); the frontend session offers blocking calls for the agent and benchmarks.
// Notification: one Notifier N kicks the peer for both rings (one event channel per channel).
#pragma once

#include <chrono>
#include <cstdint>
#include <functional>
#include <optional>
#include <span>
#include <string>
#include <vector>

#include "common/channel/bulk.hpp"
#include "common/channel/protocol.hpp"
#include "common/ring/stream_ring.hpp"

namespace gears::channel {

[[nodiscard]] inline std::uint64_t now_ns() {
  return static_cast<std::uint64_t>(
      std::chrono::duration_cast<std::chrono::nanoseconds>(std::chrono::steady_clock::now().time_since_epoch())
          .count());
}

struct BackendStats {
  std::uint64_t frames_in = 0;
  std::uint64_t frames_out = 0;
  std::uint64_t bytes_in = 0;   // Data payload received
  std::uint64_t bytes_out = 0;  // Data payload sent
  std::uint64_t hint_sets = 0;
  std::uint64_t msgs = 0;
  std::uint64_t pings = 0;
  std::uint64_t kicks_out = 0;
};

// What pump() tells its caller.
enum class PumpResult {
  Idle,   // both rings armed for a kick: sleep until the event channel fires
  Again,  // work remains (budget used up): run pump() again soon, after other fds had a turn
};

// The dom0 end. `on_hints` decodes and stores a TLV hint set, returning the record count or a
// protocol error (which closes the channel).
template <class N>
class BackendSession {
 public:
  using HintSink = std::function<Result<std::uint32_t>(std::span<const std::byte>)>;
  using BenchSink = std::function<void(const BenchResult&)>;

  BackendSession(std::span<std::byte> up, std::span<std::byte> down, N& notifier, std::uint32_t max_frame,
                 HintSink on_hints)
      : in_(up, notifier, max_frame), out_(down, notifier, max_frame), scratch_(max_frame),
        on_hints_(std::move(on_hints)) {}

  // Does all work that is possible now. An error is a protocol violation: close the channel and
  // log error().what with detail().
  [[nodiscard]] Result<PumpResult> pump() {
    for (int pass = 0; pass < 64; ++pass) {
      bool progress = false;
      // Bulk Data is checksummed where it lies; everything else is copied out before it is parsed.
      auto r = in_.visit_frames(
          scratch_, 256,
          [](const ring::FrameHeader& h) { return h.type == static_cast<std::uint16_t>(FrameType::Data); },
          [this](const ring::FrameHeader& h, std::span<const std::byte> a, std::span<const std::byte> b) {
            if (violation_) return;
            if (h.type == static_cast<std::uint16_t>(FrameType::Data)) {
              ++stats_.frames_in;
              return handle_data(a, b);
            }
            handle(h, a);
          });
      if (!r) return fail(r.error(), "reading the up ring");
      if (violation_) return *violation_;
      progress |= *r > 0;
      auto s = send_pending();
      if (!s) return s.error();
      progress |= *s;
      if (progress) continue;
      // Arm both directions, then re-check (no lost wake-up; see stream_ring.hpp).
      auto w = in_.prepare_wait();
      if (!w) return fail(w.error(), "arming the up ring");
      if (!*w) continue;
      if (blocked_need_ > 0) {
        auto ws = out_.prepare_wait_for_space(blocked_need_);
        if (!ws) return fail(ws.error(), "arming the down ring");
        if (!*ws) continue;
      }
      return PumpResult::Idle;
    }
    return PumpResult::Again;
  }

  // Agent mode (protocol.hpp): asks the frontend to run a measurement. EOPNOTSUPP: the frontend is not an
  // agent; EBUSY: a request is outstanding. The result arrives through `sink` during a later pump().
  // Queued only: the caller pumps to send it.
  [[nodiscard]] Status request_bench(const BenchRequest& req, BenchSink sink) {
    if (!(peer_features_ & kFeatureAgent)) return Error{EOPNOTSUPP, "channel: the frontend is not an agent"};
    if (bench_sink_) return Error{EBUSY, "channel: a bench request is outstanding"};
    std::byte b[kBenchRequestSize];
    encode(req, std::span<std::byte, kBenchRequestSize>(b));
    queue_control(FrameType::BenchRequest, b);
    if (violation_) return *violation_;
    bench_id_ = req.id;
    bench_sink_ = std::move(sink);
    return {};
  }
  [[nodiscard]] bool bench_outstanding() const { return static_cast<bool>(bench_sink_); }
  [[nodiscard]] std::uint32_t peer_features() const { return peer_features_; }

  [[nodiscard]] const BackendStats& stats() const { return stats_; }
  [[nodiscard]] const std::string& detail() const { return detail_; }

 private:
  Error fail(Error e, std::string what) {
    detail_ = std::move(what);
    return e;
  }
  void violate(Error e, std::string what) {
    violation_ = e;
    detail_ = std::move(what);
  }

  void handle(const ring::FrameHeader& h, std::span<const std::byte> p) {
    ++stats_.frames_in;
    switch (static_cast<FrameType>(h.type)) {
      case FrameType::Hello: {
        auto m = decode_hello(p);
        if (!m) return violate(m.error(), "bad Hello");
        if (m->version != kVersion) return violate({EPROTO, "channel: unsupported version"}, "Hello version");
        peer_features_ = m->features;
        Hello reply;
        std::byte b[kHelloSize];
        encode(reply, std::span<std::byte, kHelloSize>(b));
        queue_control(FrameType::Hello, b);
        return;
      }
      case FrameType::Hints: {
        if (!charge_control()) return;
        auto n = on_hints_(p);
        if (!n) return violate(n.error(), "bad hint set");
        ++stats_.hint_sets;
        HintsAck ack{0, *n};
        std::byte b[kHintsAckSize];
        encode(ack, std::span<std::byte, kHintsAckSize>(b));
        queue_control(FrameType::HintsAck, b);
        return;
      }
      case FrameType::Ping: {  // bounded by kMaxQueuedControl: a peer must read its Pongs
        auto m = decode_ping(p);
        if (!m) return violate(m.error(), "bad Ping");
        ++stats_.pings;
        std::byte b[kPingSize];
        encode(*m, std::span<std::byte, kPingSize>(b));
        queue_control(FrameType::Pong, b);
        return;
      }
      case FrameType::Msg:
        ++stats_.msgs;
        ++msg_count_;
        msg_sum_.update(p);
        return;
      case FrameType::MsgEnd: {
        auto m = decode_msg_end(p);
        if (!m) return violate(m.error(), "bad MsgEnd");
        MsgEnd reply{msg_count_, msg_sum_.digest()};
        msg_count_ = 0;
        msg_sum_.reset();
        std::byte b[kMsgEndSize];
        encode(reply, std::span<std::byte, kMsgEndSize>(b));
        queue_control(FrameType::MsgEnd, b);
        return;
      }
      case FrameType::BulkBegin: {
        auto m = decode_bulk_begin(p);
        if (!m) return violate(m.error(), "bad BulkBegin");
        if (up_left_ || down_left_) return violate({EPROTO, "channel: BulkBegin during a transfer"}, "bulk");
        if (m->dir == Direction::Up) {
          up_left_ = m->bytes;
          up_total_ = m->bytes;
          up_verify_ = m->verify;
          up_sum_.reset();
          if (m->bytes == 0) finish_up();
        } else {
          down_left_ = m->bytes;
          down_total_ = m->bytes;
          down_verify_ = m->verify;
          down_src_.emplace(m->seed);
          down_sum_.reset();
        }
        return;
      }
      case FrameType::Data:
        return handle_data(p, {});
      case FrameType::BulkEnd: {
        auto m = decode_bulk_end(p);
        if (!m) return violate(m.error(), "bad BulkEnd");
        return;  // the sender's own checksum; the guest compares with ours
      }
      case FrameType::BenchResult: {
        auto m = decode_bench_result(p);
        if (!m) return violate(m.error(), "bad BenchResult");
        if (!bench_sink_ || m->id != bench_id_)
          return violate({EPROTO, "channel: BenchResult nobody asked for"}, "bench id " + std::to_string(m->id));
        auto sink = std::move(bench_sink_);
        bench_sink_ = nullptr;
        sink(*m);
        return;
      }
      case FrameType::HintsAck:
      case FrameType::Pong:
      case FrameType::BenchRequest:
        return violate({EPROTO, "channel: frame type not valid from the frontend"}, std::string(frame_name(h.type)));
    }
    violate({EPROTO, "channel: unknown frame type"}, "type " + std::to_string(h.type));
  }

  // Payload bytes may still be in shared memory: only counted and hashed, never parsed.
  void handle_data(std::span<const std::byte> a, std::span<const std::byte> b) {
    const std::size_t len = a.size() + b.size();
    if (!up_left_) return violate({EPROTO, "channel: Data outside a transfer"}, "bulk");
    if (len > *up_left_) return violate({EPROTO, "channel: Data beyond the announced size"}, "bulk");
    if (up_verify_) {
      up_sum_.update(a);
      if (!b.empty()) up_sum_.update(b);
    }
    *up_left_ -= len;
    stats_.bytes_in += len;
    if (*up_left_ == 0) finish_up();
  }

  void finish_up() {
    BulkEnd end{up_total_, up_verify_ ? up_sum_.digest() : 0};
    up_left_.reset();
    std::byte b[kBulkEndSize];
    encode(end, std::span<std::byte, kBulkEndSize>(b));
    queue_control(FrameType::BulkEnd, b);
  }

  // A frontend may send at most kMaxControlFramesPerSec hint sets per second.
  bool charge_control() {
    const std::uint64_t now = now_ns();
    if (now - window_start_ > 1'000'000'000ULL) {
      window_start_ = now;
      window_count_ = 0;
    }
    if (++window_count_ > kMaxControlFramesPerSec) {
      violate({EPROTO, "channel: control-frame flood"},
              "more than " + std::to_string(kMaxControlFramesPerSec) + " control frames per second");
      return false;
    }
    return true;
  }

  void queue_control(FrameType t, std::span<const std::byte> payload) {
    if (control_.size() >= kMaxQueuedControl) {
      return violate({EPROTO, "channel: frontend does not read its replies"},
                     std::to_string(kMaxQueuedControl) + " replies queued");
    }
    control_.push_back({static_cast<std::uint16_t>(t), std::vector<std::byte>(payload.begin(), payload.end())});
  }

  // Sends queued control frames, then bulk-down data. true = something was sent.
  Result<bool> send_pending() {
    bool sent = false;
    blocked_need_ = 0;
    while (!control_.empty()) {
      auto& f = control_.front();
      auto r = out_.stage_frame(f.type, 0, f.payload);
      if (!r) return fail(r.error(), "writing the down ring");
      if (!*r) {
        blocked_need_ = ring::kFrameHeaderSize + f.payload.size();
        break;
      }
      ++stats_.frames_out;
      control_.erase(control_.begin());
      sent = true;
    }
    while (blocked_need_ == 0 && down_left_ && *down_left_ > 0) {
      const std::size_t want = std::min<std::uint64_t>(*down_left_, out_.max_frame());
      auto chunk = down_src_->next(want);
      auto r = out_.stage_frame(static_cast<std::uint16_t>(FrameType::Data), 0, chunk);
      if (!r) return fail(r.error(), "writing the down ring");
      if (!*r) {
        blocked_need_ = ring::kFrameHeaderSize + chunk.size();
        down_src_->rewind(chunk.size());
        break;
      }
      if (down_verify_) down_sum_.update(chunk);
      *down_left_ -= chunk.size();
      stats_.bytes_out += chunk.size();
      ++stats_.frames_out;
      sent = true;
      if (*down_left_ == 0) {
        BulkEnd end{down_total_, down_verify_ ? down_sum_.digest() : 0};
        down_left_.reset();
        std::byte b[kBulkEndSize];
        encode(end, std::span<std::byte, kBulkEndSize>(b));
        queue_control(FrameType::BulkEnd, b);
        return send_pending_tail(sent);
      }
    }
    if (auto st = out_.flush(); !st) return fail(st.error(), "flushing the down ring");
    return sent;
  }
  Result<bool> send_pending_tail(bool sent) {
    auto r = send_pending();
    if (!r) return r;
    return sent || *r;
  }

  static constexpr std::size_t kMaxQueuedControl = 4096;

  struct Pending {
    std::uint16_t type;
    std::vector<std::byte> payload;
  };

  ring::StreamConsumer<N&> in_;
  ring::StreamProducer<N&> out_;
  std::vector<std::byte> scratch_;
  HintSink on_hints_;
  std::uint32_t peer_features_ = 0;
  BenchSink bench_sink_;
  std::uint32_t bench_id_ = 0;
  std::optional<Error> violation_;
  std::string detail_;
  BackendStats stats_;
  std::vector<Pending> control_;
  std::size_t blocked_need_ = 0;
  std::uint64_t window_start_ = 0;
  std::uint32_t window_count_ = 0;
  // bulk up
  std::optional<std::uint64_t> up_left_;
  std::uint64_t up_total_ = 0;
  bool up_verify_ = true;
  Checksum up_sum_;
  // bulk down
  std::optional<std::uint64_t> down_left_;
  std::uint64_t down_total_ = 0;
  bool down_verify_ = true;
  std::optional<PatternSource> down_src_;
  Checksum down_sum_;
  // msgs
  std::uint64_t msg_count_ = 0;
  Checksum msg_sum_;
};

}  // namespace gears::channel
