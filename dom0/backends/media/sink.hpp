// The media far side: per-stream SPSC queues, the dom0 mixer thread, and sinks.
//
// How streams from devices on different workers meet (no locks on the data path):
//   device worker (one per vsnd device)            mixer thread (one per gearsd)
//   WRITE -> MixStream::push() ---- SPSC byte queue ----> pull + convert + resample + gain -> mix -> Sink
//            MixStream::consumed() <--- atomic counter --- (bytes taken, for CUR_POS)
// Each MixStream has exactly one producer (its device's worker) and one consumer (the mixer). The mixer's
// stream list changes only through add()/remove(), which take a mutex the mixer thread checks with one
// atomic flag per tick (control path). Volumes, mutes and roles are atomics written by any thread.
// The mixer clock (CLOCK_MONOTONIC, absolute sleeps of one period) paces every stream in real time: a sink
// never blocks the clock, and the WAV sink therefore gets exactly rate * elapsed frames while streams run.
#pragma once

#include <atomic>
#include <condition_variable>
#include <cstddef>
#include <cstdint>
#include <map>
#include <memory>
#include <mutex>
#include <span>
#include <string>
#include <thread>
#include <vector>

#include <nlohmann/json.hpp>

#include "common/util/noncopyable.hpp"
#include "common/util/result.hpp"
#include "dom0/backends/media/sched.hpp"

namespace gears::media {

// ---- sinks ------------------------------------------------------------------------------------------------------
// Receives the mix: interleaved float stereo at the mixer rate. Called on the mixer thread only.
class Sink : NonCopyable {
 public:
  virtual ~Sink() = default;
  [[nodiscard]] virtual Status write(std::span<const float> interleaved, std::size_t frames) = 0;
  [[nodiscard]] virtual std::string describe() const = 0;
};

// A WAV file (16-bit PCM) through libsndfile; the header is rewritten on every write, so the file is valid
// even if gearsd is killed. Owns the SNDFILE handle.
class WavSink final : public Sink {
 public:
  WavSink(const std::string& path, std::uint32_t rate, std::uint32_t channels);  // throws std::runtime_error
  ~WavSink() override;
  [[nodiscard]] Status write(std::span<const float> interleaved, std::size_t frames) override;
  [[nodiscard]] std::string describe() const override { return "wav:" + path_; }

 private:
  std::string path_;
  void* sf_ = nullptr;  // SNDFILE*
  std::uint32_t channels_;
};

// Discards the mix (benchmarks, or no sink configured).
class NullSink final : public Sink {
 public:
  [[nodiscard]] Status write(std::span<const float>, std::size_t) override { return {}; }
  [[nodiscard]] std::string describe() const override { return "null"; }
};

// An ALSA PCM playback device (e.g. "default", "hw:Loopback,0,0"), S16_LE interleaved at the mixer rate. Opened
// non-blocking: the mixer clock paces the mix, so a device that is full (or slower than its nominal rate) loses
// the frames it cannot take (counted in dropped()) instead of stalling the mixer; an underrun is recovered with
// snd_pcm_recover. Owns the snd_pcm_t handle.
class AlsaSink final : public Sink {
 public:
  AlsaSink(const std::string& device, std::uint32_t rate, std::uint32_t channels);  // throws std::runtime_error
  ~AlsaSink() override;
  [[nodiscard]] Status write(std::span<const float> interleaved, std::size_t frames) override;
  [[nodiscard]] std::string describe() const override { return "alsa:" + device_; }
  [[nodiscard]] std::uint64_t written() const { return written_; }
  [[nodiscard]] std::uint64_t dropped() const { return dropped_; }
  [[nodiscard]] std::uint64_t recoveries() const { return recoveries_; }

 private:
  std::string device_;
  void* pcm_ = nullptr;  // snd_pcm_t*
  std::uint32_t channels_;
  std::vector<std::int16_t> buf_;  // conversion buffer; grows to the largest mixer chunk, then stays
  std::uint64_t written_ = 0, dropped_ = 0, recoveries_ = 0;
};

// "wav:<path>", "alsa:<pcm device>" or "null". Throws std::invalid_argument / std::runtime_error with a clear message.
[[nodiscard]] std::unique_ptr<Sink> make_sink(const std::string& spec, std::uint32_t rate);

// ---- format conversion -------------------------------------------------------------------------------------------
// Converts `frames` frames of `fmt`/`channels` PCM to interleaved float in [-1, 1]. fmt must be supported.
void to_float(std::uint8_t fmt, std::uint32_t channels, const std::byte* in, std::size_t frames, float* out);
// The reverse (capture): float -> `fmt`, clipping.
void from_float(std::uint8_t fmt, std::uint32_t channels, const float* in, std::size_t frames, std::byte* out);

// ---- one stream ---------------------------------------------------------------------------------------------------
struct PcmFormat {
  std::uint32_t rate = 48000;
  std::uint8_t format = 2;  // XENSND_PCM_FORMAT_S16_LE
  std::uint8_t channels = 2;
};

class MixStream : NonCopyable {
 public:
  // queue_bytes is rounded up to a power of two.
  MixStream(std::uint32_t domid, std::string name, std::uint64_t key, PcmFormat fmt, std::size_t queue_bytes);
  ~MixStream();

  // Producer (the device's worker). Appends all of `data` or nothing (false: no room).
  [[nodiscard]] bool push(std::span<const std::byte> data, std::int64_t now_ns);
  [[nodiscard]] std::size_t free_bytes() const;
  // Bytes the mixer has taken (played or discarded): the stream position for CUR_POS. Any thread.
  [[nodiscard]] std::uint64_t consumed() const { return tail_.load(std::memory_order_acquire); }
  [[nodiscard]] std::uint64_t written() const { return head_.load(std::memory_order_acquire); }
  void set_running(bool on) { running_.store(on, std::memory_order_release); }
  [[nodiscard]] bool running() const { return running_.load(std::memory_order_acquire); }
  // Ask the mixer to discard what is queued (TRIGGER STOP); it counts as consumed.
  void request_flush() { flush_gen_.fetch_add(1, std::memory_order_acq_rel); }

  // Controls (any thread).
  std::atomic<float> guest_gain[2] = {1.0F, 1.0F};  // sndif SET_VOLUME, per channel (mono uses [0])
  std::atomic<bool> guest_mute{false};
  std::atomic<float> ctl_gain{1.0F};                  // gearsctl, per stream
  std::atomic<bool> ctl_mute{false};
  std::atomic<float> dom_gain{1.0F};                  // gearsctl, per domain (the mixer copies it in)
  std::atomic<bool> dom_mute{false};
  std::atomic<Role> role{Role::media};

  [[nodiscard]] std::uint32_t domid() const { return domid_; }
  [[nodiscard]] const std::string& name() const { return name_; }
  [[nodiscard]] std::uint64_t key() const { return key_; }
  [[nodiscard]] const PcmFormat& format() const { return fmt_; }
  [[nodiscard]] std::uint32_t frame_bytes() const;

  // Write -> sink latency samples (µs), newest last; filled by the mixer, read by anyone (approximate).
  [[nodiscard]] std::vector<std::uint32_t> latency_samples() const;
  [[nodiscard]] float ducked_db() const { return duck_db_.load(std::memory_order_relaxed); }
  [[nodiscard]] std::uint64_t underruns() const { return underruns_.load(std::memory_order_relaxed); }

 private:
  friend class Mixer;
  struct Stamp {
    std::uint64_t at = 0;  // stream byte offset of the write's first byte
    std::int64_t ns = 0;
  };
  static constexpr std::size_t kStamps = 64;     // SPSC ring of write stamps (producer drops when full)
  static constexpr std::size_t kLatency = 512;   // kept latency samples

  const std::uint32_t domid_;
  const std::string name_;
  const std::uint64_t key_;
  const PcmFormat fmt_;
  std::vector<std::byte> buf_;
  const std::size_t mask_;
  alignas(64) std::atomic<std::uint64_t> head_{0};  // producer
  alignas(64) std::atomic<std::uint64_t> tail_{0};  // consumer
  std::atomic<bool> running_{false};
  std::atomic<std::uint32_t> flush_gen_{0};
  Stamp stamps_[kStamps];
  std::atomic<std::uint64_t> stamp_head_{0}, stamp_tail_{0};
  std::atomic<std::uint32_t> lat_[kLatency] = {};
  std::atomic<std::uint64_t> lat_count_{0};
  std::atomic<float> duck_db_{0.0F};
  std::atomic<std::uint64_t> underruns_{0};

  // Mixer-thread state.
  std::uint32_t seen_flush_ = 0;
  void* src_ = nullptr;  // SRC_STATE*, created by the mixer when rate != mixer rate
  float duck_gain_ = 1.0F;
  std::vector<float> in_f_, rs_f_;
  std::vector<std::byte> raw_;
};

// ---- the mixer ----------------------------------------------------------------------------------------------------
struct MixerConfig {
  std::uint32_t rate = 48000;       // output rate (stereo float)
  std::uint32_t period_ms = 10;     // clock tick
  DuckPolicy duck;                  // see sched.hpp
  int src_quality = 2;              // libsamplerate converter (SRC_SINC_FASTEST = 2, SRC_LINEAR = 4)
};

class Mixer : NonCopyable {
 public:
  Mixer(MixerConfig cfg, std::unique_ptr<Sink> sink);
  ~Mixer();  // stops the thread

  void start();  // the clock thread; throws std::system_error
  void stop();

  // Control path, any thread.
  void add(std::shared_ptr<MixStream> s);
  void remove(const std::shared_ptr<MixStream>& s);
  void set_domain(std::uint32_t domid, float gain, bool mute);
  // Per-stream volume/mute for the streams of `domid` whose name contains `name` (all if empty); returns how
  // many matched.
  int set_stream(std::uint32_t domid, const std::string& name, float gain, bool mute);
  // Replaces the sink from the next tick on (the old one is closed on the mixer thread).
  void set_sink(std::unique_ptr<Sink> sink);
  // Every live stream: dom, name, key, role, gains, mutes, ducking, latency (control path).
  [[nodiscard]] nlohmann::json streams_json() const;

  // One tick of `frames` output frames, on the calling thread (the clock thread, or a unit test without it).
  // Returns the frames handed to the sink (0 when no stream runs: the sink only receives time while some
  // stream is triggered).
  std::size_t mix_once(std::size_t frames, std::int64_t now_ns);

  [[nodiscard]] const MixerConfig& config() const { return cfg_; }
  [[nodiscard]] nlohmann::json stats() const;
  [[nodiscard]] std::uint64_t frames_out() const { return frames_out_.load(std::memory_order_relaxed); }

 private:
  void run();
  void splice();
  bool park_if_idle();  // mixer thread: true after waiting while no stream existed
  std::size_t pull(MixStream& s, std::size_t frames, float* out);  // stereo float, gain not applied

  MixerConfig cfg_;
  std::unique_ptr<Sink> sink_;
  std::thread thread_;
  std::atomic<bool> stop_{false};

  mutable std::mutex mu_;  // control path: pending adds/removes, domain gains
  std::condition_variable wake_;  // add()/stop() -> a parked clock thread
  std::vector<std::shared_ptr<MixStream>> pending_add_, pending_remove_;
  std::map<std::uint32_t, std::pair<float, bool>> domains_;
  std::vector<std::weak_ptr<MixStream>> all_;  // every stream added, for the controls
  std::unique_ptr<Sink> pending_sink_;
  std::string sink_name_;  // guarded by mu_
  std::atomic<bool> dirty_{false};

  // Mixer-thread state.
  std::vector<std::shared_ptr<MixStream>> streams_;
  std::vector<float> mix_, tmp_;
  std::int64_t voice_until_ns_ = 0;
  std::atomic<std::uint64_t> frames_out_{0}, ticks_{0}, late_ticks_{0}, sink_errors_{0};
  std::atomic<bool> voice_active_{false};
  std::atomic<std::size_t> nstreams_{0};
};

}  // namespace gears::media
