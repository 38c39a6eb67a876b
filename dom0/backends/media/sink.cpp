#include "dom0/backends/media/sink.hpp"

#include <alsa/asoundlib.h>
#include <samplerate.h>
#include <sndfile.h>
#include <spdlog/spdlog.h>
#include <time.h>

#include <algorithm>
#include <bit>
#include <cerrno>
#include <cmath>
#include <cstring>
#include <stdexcept>
#include <system_error>

#include "dom0/backends/media/protocol.hpp"

namespace gears::media {
namespace {

snd_pcm_t* as_pcm(void* p) { return static_cast<snd_pcm_t*>(p); }
SNDFILE* as_sf(void* p) { return static_cast<SNDFILE*>(p); }
SRC_STATE* as_src(void* p) { return static_cast<SRC_STATE*>(p); }

std::int64_t mono_ns() {
  timespec ts{};
  ::clock_gettime(CLOCK_MONOTONIC, &ts);
  return ts.tv_sec * 1'000'000'000LL + ts.tv_nsec;
}

std::uint16_t bswap16(std::uint16_t v) { return static_cast<std::uint16_t>((v >> 8U) | (v << 8U)); }

template <class T>
T load_le(const std::byte* p) {
  T v;
  std::memcpy(&v, p, sizeof v);
  return v;
}

}  // namespace

// ---- sinks --------------------------------------------------------------------------------------------------------

WavSink::WavSink(const std::string& path, std::uint32_t rate, std::uint32_t channels) : path_(path), channels_(channels) {
  SF_INFO info{};
  info.samplerate = static_cast<int>(rate);
  info.channels = static_cast<int>(channels);
  info.format = SF_FORMAT_WAV | SF_FORMAT_PCM_16;
  SNDFILE* f = sf_open(path.c_str(), SFM_WRITE, &info);
  if (!f) throw std::runtime_error("cannot open WAV sink '" + path + "': " + sf_strerror(nullptr));
  sf_command(f, SFC_SET_UPDATE_HEADER_AUTO, nullptr, SF_TRUE);
  sf_command(f, SFC_SET_CLIPPING, nullptr, SF_TRUE);
  sf_ = f;
}

WavSink::~WavSink() {
  if (sf_) sf_close(as_sf(sf_));
}

Status WavSink::write(std::span<const float> interleaved, std::size_t frames) {
  if (interleaved.size() < frames * channels_) return Error{EINVAL, "wav sink: short buffer"};
  const sf_count_t n = sf_writef_float(as_sf(sf_), interleaved.data(), static_cast<sf_count_t>(frames));
  if (n != static_cast<sf_count_t>(frames)) return Error{EIO, "wav sink: short write"};
  return {};
}

AlsaSink::AlsaSink(const std::string& device, std::uint32_t rate, std::uint32_t channels)
    : device_(device), channels_(channels) {
  snd_pcm_t* pcm = nullptr;
  int rc = snd_pcm_open(&pcm, device.c_str(), SND_PCM_STREAM_PLAYBACK, SND_PCM_NONBLOCK);
  if (rc < 0) throw std::runtime_error("cannot open ALSA sink '" + device + "': " + snd_strerror(rc));
  // 200 ms of device buffer absorbs the mixer's late wake-ups; alsa-lib may resample (plug devices).
  rc = snd_pcm_set_params(pcm, SND_PCM_FORMAT_S16_LE, SND_PCM_ACCESS_RW_INTERLEAVED, channels, rate, 1, 200'000);
  if (rc < 0) {
    snd_pcm_close(pcm);
    throw std::runtime_error("ALSA sink '" + device + "': cannot set S16_LE/" + std::to_string(channels) + "ch/" +
                             std::to_string(rate) + " Hz: " + snd_strerror(rc));
  }
  pcm_ = pcm;
}

AlsaSink::~AlsaSink() {
  if (pcm_) snd_pcm_close(as_pcm(pcm_));
}

Status AlsaSink::write(std::span<const float> interleaved, std::size_t frames) {
  const std::size_t n = frames * channels_;
  if (interleaved.size() < n) return Error{EINVAL, "alsa sink: short buffer"};
  if (buf_.size() < n) buf_.resize(n);
  for (std::size_t i = 0; i < n; ++i)
    buf_[i] = static_cast<std::int16_t>(std::lrintf(std::clamp(interleaved[i], -1.0F, 1.0F) * 32767.0F));
  std::size_t done = 0;
  bool recovered = false;
  while (done < frames) {
    const snd_pcm_sframes_t w =
        snd_pcm_writei(as_pcm(pcm_), buf_.data() + done * channels_, frames - done);
    if (w >= 0) {
      done += static_cast<std::size_t>(w);
      continue;
    }
    if (w == -EAGAIN) break;  // device full: drop the rest, never block the mixer clock
    if (recovered || snd_pcm_recover(as_pcm(pcm_), static_cast<int>(w), 1) < 0) {
      dropped_ += frames - done;
      return Error{static_cast<int>(-w), std::string("alsa sink: ") + snd_strerror(static_cast<int>(w))};
    }
    recovered = true;  // one recovery (underrun / suspend) per call
    ++recoveries_;
  }
  written_ += done;
  dropped_ += frames - done;
  return {};
}

std::unique_ptr<Sink> make_sink(const std::string& spec, std::uint32_t rate) {
  if (spec == "null" || spec.empty()) return std::make_unique<NullSink>();
  if (spec.rfind("alsa:", 0) == 0 && spec.size() > 5) return std::make_unique<AlsaSink>(spec.substr(5), rate, 2);
  if (spec.rfind("wav:", 0) == 0 && spec.size() > 4) return std::make_unique<WavSink>(spec.substr(4), rate, 2);
  throw std::invalid_argument("media sink '" + spec + "' is not one of wav:<path>, alsa:<device>, null");
}

// ---- conversion ---------------------------------------------------------------------------------------------------

void to_float(std::uint8_t fmt, std::uint32_t channels, const std::byte* in, std::size_t frames, float* out) {
  const std::size_t n = frames * channels;
  switch (fmt) {
    case XENSND_PCM_FORMAT_U8:
      for (std::size_t i = 0; i < n; ++i) out[i] = (static_cast<float>(std::to_integer<std::uint8_t>(in[i])) - 128.0F) / 128.0F;
      break;
    case XENSND_PCM_FORMAT_S8:
      for (std::size_t i = 0; i < n; ++i)
        out[i] = static_cast<float>(static_cast<std::int8_t>(std::to_integer<std::uint8_t>(in[i]))) / 128.0F;
      break;
    case XENSND_PCM_FORMAT_S16_LE:
      for (std::size_t i = 0; i < n; ++i) out[i] = static_cast<float>(load_le<std::int16_t>(in + 2 * i)) / 32768.0F;
      break;
    case XENSND_PCM_FORMAT_S16_BE:
      for (std::size_t i = 0; i < n; ++i)
        out[i] = static_cast<float>(static_cast<std::int16_t>(bswap16(load_le<std::uint16_t>(in + 2 * i)))) /
                 32768.0F;
      break;
    case XENSND_PCM_FORMAT_S32_LE:
      for (std::size_t i = 0; i < n; ++i)
        out[i] = static_cast<float>(static_cast<double>(load_le<std::int32_t>(in + 4 * i)) / 2147483648.0);
      break;
    case XENSND_PCM_FORMAT_F32_LE:
      for (std::size_t i = 0; i < n; ++i) {
        const float v = load_le<float>(in + 4 * i);
        out[i] = std::isfinite(v) ? std::clamp(v, -1.0F, 1.0F) : 0.0F;  // the guest may send NaN/Inf
      }
      break;
    default:
      std::fill(out, out + n, 0.0F);
  }
}

void from_float(std::uint8_t fmt, std::uint32_t channels, const float* in, std::size_t frames, std::byte* out) {
  const std::size_t n = frames * channels;
  for (std::size_t i = 0; i < n; ++i) {
    const float v = std::clamp(in[i], -1.0F, 1.0F);
    switch (fmt) {
      case XENSND_PCM_FORMAT_U8:
        out[i] = static_cast<std::byte>(static_cast<std::uint8_t>(std::lround(v * 127.0F) + 128));
        break;
      case XENSND_PCM_FORMAT_S8:
        out[i] = static_cast<std::byte>(static_cast<std::int8_t>(std::lround(v * 127.0F)));
        break;
      case XENSND_PCM_FORMAT_S16_LE: {
        const auto s = static_cast<std::int16_t>(std::lround(v * 32767.0F));
        std::memcpy(out + 2 * i, &s, 2);
        break;
      }
      case XENSND_PCM_FORMAT_S16_BE: {
        const auto s = bswap16(static_cast<std::uint16_t>(static_cast<std::int16_t>(std::lround(v * 32767.0F))));
        std::memcpy(out + 2 * i, &s, 2);
        break;
      }
      case XENSND_PCM_FORMAT_S32_LE: {
        const auto s = static_cast<std::int32_t>(std::llround(static_cast<double>(v) * 2147483647.0));
        std::memcpy(out + 4 * i, &s, 4);
        break;
      }
      case XENSND_PCM_FORMAT_F32_LE:
        std::memcpy(out + 4 * i, &v, 4);
        break;
      default:
        break;
    }
  }
}

// ---- MixStream ----------------------------------------------------------------------------------------------------

MixStream::MixStream(std::uint32_t domid, std::string name, std::uint64_t key, PcmFormat fmt, std::size_t queue_bytes)
    : domid_(domid),
      name_(std::move(name)),
      key_(key),
      fmt_(fmt),
      buf_(std::bit_ceil(std::max<std::size_t>(queue_bytes, 4096))),
      mask_(buf_.size() - 1) {}

MixStream::~MixStream() {
  if (src_) src_delete(as_src(src_));
}

std::uint32_t MixStream::frame_bytes() const { return sample_bytes(fmt_.format) * fmt_.channels; }

std::size_t MixStream::free_bytes() const {
  return buf_.size() - (head_.load(std::memory_order_relaxed) - tail_.load(std::memory_order_acquire));
}

bool MixStream::push(std::span<const std::byte> data, std::int64_t now_ns) {
  if (data.size() > free_bytes()) return false;
  const std::uint64_t h = head_.load(std::memory_order_relaxed);
  const std::size_t off = static_cast<std::size_t>(h) & mask_;
  const std::size_t first = std::min(data.size(), buf_.size() - off);
  std::memcpy(buf_.data() + off, data.data(), first);
  std::memcpy(buf_.data(), data.data() + first, data.size() - first);
  // A latency stamp for this write, if the stamp ring has room (the mixer pops them).
  const std::uint64_t sh = stamp_head_.load(std::memory_order_relaxed);
  if (sh - stamp_tail_.load(std::memory_order_acquire) < kStamps) {
    stamps_[sh % kStamps] = Stamp{h, now_ns};
    stamp_head_.store(sh + 1, std::memory_order_release);
  }
  head_.store(h + data.size(), std::memory_order_release);
  return true;
}

std::vector<std::uint32_t> MixStream::latency_samples() const {
  const std::uint64_t n = lat_count_.load(std::memory_order_acquire);
  std::vector<std::uint32_t> out;
  const std::uint64_t k = std::min<std::uint64_t>(n, kLatency);
  out.reserve(static_cast<std::size_t>(k));
  for (std::uint64_t i = n - k; i < n; ++i) out.push_back(lat_[i % kLatency].load(std::memory_order_relaxed));
  return out;
}

// ---- Mixer --------------------------------------------------------------------------------------------------------

Mixer::Mixer(MixerConfig cfg, std::unique_ptr<Sink> sink) : cfg_(cfg), sink_(std::move(sink)) {
  if (!sink_) sink_ = std::make_unique<NullSink>();
  sink_name_ = sink_->describe();
  if (cfg_.rate < kMinRate || cfg_.rate > kMaxRate) throw std::invalid_argument("mixer rate out of range");
  if (cfg_.period_ms == 0 || cfg_.period_ms > 100) throw std::invalid_argument("mixer period must be 1..100 ms");
}

Mixer::~Mixer() { stop(); }

void Mixer::start() {
  if (thread_.joinable()) return;
  stop_ = false;
  thread_ = std::thread([this] { run(); });
}

void Mixer::stop() {
  {
    std::lock_guard lk(mu_);
    stop_ = true;
  }
  wake_.notify_all();
  if (thread_.joinable()) thread_.join();
}

void Mixer::add(std::shared_ptr<MixStream> s) {
  std::lock_guard lk(mu_);
  auto it = domains_.find(s->domid());
  if (it != domains_.end()) {
    s->dom_gain = it->second.first;
    s->dom_mute = it->second.second;
  }
  std::erase_if(all_, [](const std::weak_ptr<MixStream>& w) { return w.expired(); });
  all_.push_back(s);
  pending_add_.push_back(std::move(s));
  dirty_.store(true, std::memory_order_release);
  wake_.notify_one();
}

void Mixer::remove(const std::shared_ptr<MixStream>& s) {
  std::lock_guard lk(mu_);
  pending_remove_.push_back(s);
  dirty_.store(true, std::memory_order_release);
}

void Mixer::set_domain(std::uint32_t domid, float gain, bool mute) {
  std::lock_guard lk(mu_);
  domains_[domid] = {gain, mute};
  for (auto& w : all_)
    if (auto s = w.lock(); s && s->domid() == domid) {
      s->dom_gain = gain;
      s->dom_mute = mute;
    }
}

int Mixer::set_stream(std::uint32_t domid, const std::string& name, float gain, bool mute) {
  std::lock_guard lk(mu_);
  int n = 0;
  for (auto& w : all_)
    if (auto s = w.lock(); s && s->domid() == domid && (name.empty() || s->name().find(name) != std::string::npos)) {
      s->ctl_gain = gain;
      s->ctl_mute = mute;
      ++n;
    }
  return n;
}

void Mixer::set_sink(std::unique_ptr<Sink> sink) {
  std::lock_guard lk(mu_);
  sink_name_ = sink->describe();
  pending_sink_ = std::move(sink);
  dirty_.store(true, std::memory_order_release);
  wake_.notify_one();
}

nlohmann::json Mixer::streams_json() const {
  std::lock_guard lk(mu_);
  nlohmann::json out = nlohmann::json::array();
  for (const auto& w : all_) {
    auto s = w.lock();
    if (!s) continue;
    auto lat = s->latency_samples();
    std::sort(lat.begin(), lat.end());
    out.push_back({{"dom", s->domid()},
                   {"stream", s->name()},
                   {"key", s->key()},
                   {"role", role_name(s->role.load())},
                   {"rate", s->format().rate},
                   {"channels", s->format().channels},
                   {"running", s->running()},
                   {"gain", s->ctl_gain.load()},
                   {"mute", s->ctl_mute.load()},
                   {"dom_gain", s->dom_gain.load()},
                   {"dom_mute", s->dom_mute.load()},
                   {"guest_mute", s->guest_mute.load()},
                   {"ducked_db", s->ducked_db()},
                   {"underruns", s->underruns()},
                   {"consumed", s->consumed()},
                   {"latency_ms_median", lat.empty() ? -1.0 : lat[lat.size() / 2] / 1000.0}});
  }
  return out;
}

bool Mixer::park_if_idle() {
  if (!streams_.empty() || dirty_.load(std::memory_order_acquire)) return false;
  std::unique_lock lk(mu_);
  auto work = [this] { return dirty_.load(std::memory_order_relaxed) || stop_.load(std::memory_order_relaxed); };
  if (work()) return false;
  wake_.wait(lk, work);
  return true;
}

void Mixer::splice() {
  if (!dirty_.exchange(false, std::memory_order_acq_rel)) return;
  std::lock_guard lk(mu_);
  if (pending_sink_) sink_ = std::move(pending_sink_);
  for (auto& s : pending_add_) streams_.push_back(std::move(s));
  pending_add_.clear();
  for (auto& r : pending_remove_) std::erase(streams_, r);
  pending_remove_.clear();
  nstreams_ = streams_.size();
}

std::size_t Mixer::pull(MixStream& s, std::size_t frames, float* out) {
  const std::uint32_t fb = s.frame_bytes();
  const std::uint32_t ch = s.fmt_.channels;
  const std::uint64_t tail = s.tail_.load(std::memory_order_relaxed);
  const std::uint64_t head = s.head_.load(std::memory_order_acquire);
  const std::size_t avail_frames = (head - tail) / fb;
  const bool resample = s.fmt_.rate != cfg_.rate;
  const double ratio = static_cast<double>(cfg_.rate) / static_cast<double>(s.fmt_.rate);
  // Input frames to look at this tick (a few extra for the resampler's phase).
  const std::size_t want_in = resample ? static_cast<std::size_t>(static_cast<double>(frames) / ratio) + 4 : frames;
  const std::size_t take = std::min(avail_frames, want_in);
  if (take == 0) return 0;
  // Copy the bytes out of the queue (it may wrap), then convert.
  s.raw_.resize(take * fb);
  const std::size_t off = static_cast<std::size_t>(tail) & s.mask_;
  const std::size_t first = std::min(s.raw_.size(), s.buf_.size() - off);
  std::memcpy(s.raw_.data(), s.buf_.data() + off, first);
  std::memcpy(s.raw_.data() + first, s.buf_.data(), s.raw_.size() - first);
  s.in_f_.resize(take * ch);
  to_float(s.fmt_.format, ch, s.raw_.data(), take, s.in_f_.data());

  std::size_t used = take, produced = take;
  const float* src_out = s.in_f_.data();
  if (resample) {
    if (!s.src_) {
      int err = 0;
      s.src_ = src_new(cfg_.src_quality, static_cast<int>(ch), &err);
      if (!s.src_) return 0;
    }
    s.rs_f_.resize(frames * ch);
    SRC_DATA d{};
    d.data_in = s.in_f_.data();
    d.input_frames = static_cast<long>(take);
    d.data_out = s.rs_f_.data();
    d.output_frames = static_cast<long>(frames);
    d.src_ratio = ratio;
    if (src_process(as_src(s.src_), &d) != 0) return 0;
    used = static_cast<std::size_t>(d.input_frames_used);
    produced = static_cast<std::size_t>(d.output_frames_gen);
    src_out = s.rs_f_.data();
  }
  produced = std::min(produced, frames);
  for (std::size_t i = 0; i < produced; ++i) {
    const float l = src_out[i * ch];
    const float r = ch > 1 ? src_out[i * ch + 1] : l;
    out[2 * i] = l;
    out[2 * i + 1] = r;
  }
  s.tail_.store(tail + used * fb, std::memory_order_release);
  return produced;
}

std::size_t Mixer::mix_once(std::size_t frames, std::int64_t now_ns) {
  splice();
  ticks_.fetch_add(1, std::memory_order_relaxed);
  mix_.assign(frames * 2, 0.0F);
  tmp_.resize(frames * 2);
  bool any_running = false, voice_now = false;
  for (auto& sp : streams_) {
    MixStream& s = *sp;
    // TRIGGER STOP: drop what is queued; it counts as consumed (the position moves past it).
    const std::uint32_t fg = s.flush_gen_.load(std::memory_order_acquire);
    if (fg != s.seen_flush_) {
      s.seen_flush_ = fg;
      s.tail_.store(s.head_.load(std::memory_order_acquire), std::memory_order_release);
      s.stamp_tail_.store(s.stamp_head_.load(std::memory_order_acquire), std::memory_order_release);
      if (s.src_) src_reset(as_src(s.src_));
    }
    if (!s.running()) continue;
    any_running = true;
    std::fill(tmp_.begin(), tmp_.end(), 0.0F);
    const std::size_t got = pull(s, frames, tmp_.data());
    if (got < frames) s.underruns_.fetch_add(got == 0 ? 1 : 0, std::memory_order_relaxed);
    if (got > 0 && s.role.load(std::memory_order_relaxed) == Role::voice) voice_now = true;
    // Latency: every write whose first byte has now been consumed.
    const std::uint64_t tail = s.tail_.load(std::memory_order_relaxed);
    for (;;) {
      const std::uint64_t st = s.stamp_tail_.load(std::memory_order_relaxed);
      if (st == s.stamp_head_.load(std::memory_order_acquire)) break;
      const MixStream::Stamp& stamp = s.stamps_[st % MixStream::kStamps];
      if (stamp.at >= tail) break;
      const std::int64_t us = std::max<std::int64_t>(0, (now_ns - stamp.ns) / 1000);
      const std::uint64_t n = s.lat_count_.load(std::memory_order_relaxed);
      s.lat_[n % MixStream::kLatency].store(static_cast<std::uint32_t>(std::min<std::int64_t>(us, UINT32_MAX)),
                                            std::memory_order_relaxed);
      s.lat_count_.store(n + 1, std::memory_order_release);
      s.stamp_tail_.store(st + 1, std::memory_order_release);
    }
    if (got == 0) continue;
    const bool muted = s.guest_mute.load(std::memory_order_relaxed) || s.ctl_mute.load(std::memory_order_relaxed) ||
                       s.dom_mute.load(std::memory_order_relaxed);
    if (muted) continue;
    const float g = s.ctl_gain.load(std::memory_order_relaxed) * s.dom_gain.load(std::memory_order_relaxed) *
                    s.duck_gain_;
    const float gl = g * s.guest_gain[0].load(std::memory_order_relaxed);
    const float gr = g * (s.format().channels > 1 ? s.guest_gain[1].load(std::memory_order_relaxed)
                                                  : s.guest_gain[0].load(std::memory_order_relaxed));
    for (std::size_t i = 0; i < got; ++i) {
      mix_[2 * i] += tmp_[2 * i] * gl;
      mix_[2 * i + 1] += tmp_[2 * i + 1] * gr;
    }
  }
  // Ducking: voice counts as playing for hold_ms after its last audio; gains move once per tick.
  if (voice_now) voice_until_ns_ = now_ns + static_cast<std::int64_t>(cfg_.duck.hold_ms) * 1'000'000;
  const bool voice = now_ns < voice_until_ns_;
  voice_active_.store(voice, std::memory_order_relaxed);
  const auto tick_ms = static_cast<std::uint32_t>(frames * 1000 / cfg_.rate);
  for (auto& sp : streams_) {
    sp->duck_gain_ = duck_step(cfg_.duck, sp->role.load(std::memory_order_relaxed), voice, sp->duck_gain_, tick_ms);
    sp->duck_db_.store(20.0F * std::log10(std::max(sp->duck_gain_, 1e-6F)), std::memory_order_relaxed);
  }
  if (!any_running) return 0;
  for (float& v : mix_) v = std::clamp(v, -1.0F, 1.0F);
  if (auto st = sink_->write(mix_, frames); !st) {
    if (sink_errors_.fetch_add(1, std::memory_order_relaxed) == 0)
      spdlog::error("media: sink {}: {}", sink_->describe(), st.error().what);
    return 0;
  }
  frames_out_.fetch_add(frames, std::memory_order_relaxed);
  return frames;
}

void Mixer::run() {
  // Audio time follows the clock, not the number of wake-ups: each wake mixes every frame due since the last one
  // (a starved dom0 under TCG may wake late), in chunks of at most 4 periods. Beyond 2 s behind, the backlog is
  // dropped (counted in late_resyncs) rather than burst out.
  const std::int64_t period_ns = static_cast<std::int64_t>(cfg_.period_ms) * 1'000'000;
  const std::size_t chunk = std::size_t{cfg_.rate} * cfg_.period_ms * 4 / 1000;
  std::int64_t start = mono_ns();
  std::uint64_t done = 0;  // frames mixed since start
  std::int64_t next = start;
  while (!stop_.load(std::memory_order_acquire)) {
    // No stream: the clock parks (an idle gearsd does not wake 1000/period_ms times a second) until add() or
    // stop(); audio time restarts from the wake-up, with no backlog.
    if (park_if_idle()) {
      start = next = mono_ns();
      done = 0;
      continue;
    }
    next += period_ns;
    const std::int64_t before = mono_ns();
    if (next < before) next = before + period_ns / 2;  // we are late: do not sleep a full period more
    timespec ts{next / 1'000'000'000, next % 1'000'000'000};
    while (::clock_nanosleep(CLOCK_MONOTONIC, TIMER_ABSTIME, &ts, nullptr) == EINTR) {
    }
    const std::int64_t now = mono_ns();
    const auto due = static_cast<std::uint64_t>(now - start) * cfg_.rate / 1'000'000'000ULL;
    if (due - done > std::uint64_t{cfg_.rate} * 2) {
      late_ticks_.fetch_add(1, std::memory_order_relaxed);
      done = due - chunk;
    }
    while (done < due && !stop_.load(std::memory_order_relaxed)) {
      const std::size_t n = std::min<std::size_t>(chunk, due - done);
      mix_once(n, now);
      done += n;
    }
  }
}

nlohmann::json Mixer::stats() const {
  std::string sink;
  {
    std::lock_guard lk(mu_);
    sink = sink_name_;
  }
  return {{"sink", sink},
          {"rate", cfg_.rate},
          {"period_ms", cfg_.period_ms},
          {"duck_db", cfg_.duck.duck_db},
          {"frames_out", frames_out_.load()},
          {"seconds_out", static_cast<double>(frames_out_.load()) / cfg_.rate},
          {"ticks", ticks_.load()},
          {"late_resyncs", late_ticks_.load()},
          {"sink_errors", sink_errors_.load()},
          {"voice_active", voice_active_.load()},
          {"streams", nstreams_.load()}};
}

}  // namespace gears::media
