// The mixer, mostly without its clock thread: mix_once() ticks driven by the test, a capturing sink. Conversion,
// gains, mute, ducking, flush, resampling, the WAV sink, and role resolution from hint records.
#include <gtest/gtest.h>

#include <sndfile.h>
#include <unistd.h>

#include <cmath>
#include <cstring>
#include <chrono>
#include <numbers>
#include <thread>
#include <vector>

#include "dom0/backends/media/protocol.hpp"
#include "dom0/backends/media/sched.hpp"
#include "dom0/backends/media/sink.hpp"

namespace gears::media {
namespace {

class CaptureSink final : public Sink {
 public:
  explicit CaptureSink(std::vector<float>* out) : out_(out) {}
  Status write(std::span<const float> d, std::size_t frames) override {
    out_->insert(out_->end(), d.begin(), d.begin() + static_cast<std::ptrdiff_t>(frames * 2));
    return {};
  }
  std::string describe() const override { return "capture"; }

 private:
  std::vector<float>* out_;
};

std::vector<std::byte> s16_const(std::size_t frames, std::int16_t v, std::uint32_t ch = 2) {
  std::vector<std::byte> b(frames * ch * 2);
  for (std::size_t i = 0; i < frames * ch; ++i) std::memcpy(b.data() + 2 * i, &v, 2);
  return b;
}

constexpr std::int64_t kMs = 1'000'000;

TEST(MediaMixer, MixesTwoStreamsAndCountsConsumed) {
  std::vector<float> out;
  Mixer m(MixerConfig{}, std::make_unique<CaptureSink>(&out));
  auto a = std::make_shared<MixStream>(1, "a", 1, PcmFormat{48000, XENSND_PCM_FORMAT_S16_LE, 2}, 65536);
  auto b = std::make_shared<MixStream>(2, "b", 2, PcmFormat{48000, XENSND_PCM_FORMAT_S16_LE, 1}, 65536);
  ASSERT_TRUE(a->push(s16_const(480, 8192), 0));
  ASSERT_TRUE(b->push(s16_const(480, 4096, 1), 0));
  m.add(a);
  m.add(b);
  EXPECT_EQ(m.mix_once(480, 10 * kMs), 0U);  // nothing triggered: the sink gets no time
  a->set_running(true);
  b->set_running(true);
  ASSERT_EQ(m.mix_once(480, 20 * kMs), 480U);
  ASSERT_EQ(out.size(), 960U);
  EXPECT_NEAR(out[0], 0.25F + 0.125F, 1e-4);  // stereo + upmixed mono
  EXPECT_NEAR(out[959], 0.375F, 1e-4);
  EXPECT_EQ(a->consumed(), 480U * 4);
  EXPECT_EQ(b->consumed(), 480U * 2);
  EXPECT_FALSE(a->latency_samples().empty());
}

// The clock thread: parked while no stream exists (no ticks at all), running once one is added.
TEST(MediaMixer, ClockThreadParksWithoutStreams) {
  std::vector<float> out;
  Mixer m(MixerConfig{}, std::make_unique<CaptureSink>(&out));
  m.start();
  std::this_thread::sleep_for(std::chrono::milliseconds(200));  // 20 periods of 10 ms
  EXPECT_EQ(m.stats()["ticks"].get<std::uint64_t>(), 0U);
  auto a = std::make_shared<MixStream>(1, "a", 1, PcmFormat{48000, XENSND_PCM_FORMAT_S16_LE, 2}, 65536);
  ASSERT_TRUE(a->push(s16_const(4800, 8192), 0));
  a->set_running(true);
  m.add(a);
  for (int i = 0; i < 500 && m.frames_out() == 0; ++i) std::this_thread::sleep_for(std::chrono::milliseconds(10));
  m.stop();
  EXPECT_GT(m.stats()["ticks"].get<std::uint64_t>(), 0U);
  EXPECT_GT(m.frames_out(), 0U);
  EXPECT_EQ(out.size(), m.frames_out() * 2);
}

TEST(MediaMixer, GainsAndMutes) {
  std::vector<float> out;
  Mixer m(MixerConfig{}, std::make_unique<CaptureSink>(&out));
  auto a = std::make_shared<MixStream>(1, "vsnd/0/0/0", 1, PcmFormat{48000, XENSND_PCM_FORMAT_S16_LE, 2}, 65536);
  m.add(a);
  a->set_running(true);
  a->guest_gain[0] = millidb_to_gain(-6021);  // ~0.5
  ASSERT_TRUE(a->push(s16_const(480, 16384), 0));
  m.mix_once(480, kMs);
  EXPECT_NEAR(out[0], 0.25F, 1e-3);
  EXPECT_NEAR(out[1], 0.5F, 1e-3);
  EXPECT_EQ(m.set_stream(1, "0/0", 0.5F, false), 1);
  m.set_domain(1, 0.5F, false);
  ASSERT_TRUE(a->push(s16_const(480, 16384), 0));
  m.mix_once(480, 2 * kMs);
  EXPECT_NEAR(out[961], 0.125F, 1e-3);
  m.set_domain(1, 1.0F, true);
  ASSERT_TRUE(a->push(s16_const(480, 16384), 0));
  m.mix_once(480, 3 * kMs);
  EXPECT_EQ(out[1921], 0.0F);
}

TEST(MediaMixer, VoiceDucksMediaThenReleases) {
  std::vector<float> out;
  MixerConfig cfg;
  cfg.duck.duck_db = 20.0F;
  Mixer m(cfg, std::make_unique<CaptureSink>(&out));
  auto media = std::make_shared<MixStream>(1, "m", 1, PcmFormat{48000, XENSND_PCM_FORMAT_S16_LE, 2}, 1 << 20);
  auto voice = std::make_shared<MixStream>(2, "v", 2, PcmFormat{48000, XENSND_PCM_FORMAT_S16_LE, 2}, 1 << 20);
  voice->role = Role::voice;
  auto alert = std::make_shared<MixStream>(3, "a", 3, PcmFormat{48000, XENSND_PCM_FORMAT_S16_LE, 2}, 1 << 20);
  alert->role = Role::alert;
  for (auto* s : {&media, &voice, &alert}) {
    m.add(*s);
    (*s)->set_running(true);
  }
  std::int64_t t = 0;
  for (int i = 0; i < 20; ++i) {  // 200 ms of voice
    ASSERT_TRUE(media->push(s16_const(480, 1000), t));
    ASSERT_TRUE(voice->push(s16_const(480, 1000), t));
    m.mix_once(480, t += 10 * kMs);
  }
  EXPECT_NEAR(media->ducked_db(), -20.0F, 0.01F);
  EXPECT_NEAR(alert->ducked_db(), 0.0F, 0.01F);
  EXPECT_NEAR(voice->ducked_db(), 0.0F, 0.01F);
  for (int i = 0; i < 60; ++i) {  // voice gone: hold 200 ms, release 300 ms
    ASSERT_TRUE(media->push(s16_const(480, 1000), t));
    m.mix_once(480, t += 10 * kMs);
  }
  EXPECT_NEAR(media->ducked_db(), 0.0F, 0.01F);
}

TEST(MediaMixer, FlushDiscardsAndCountsAsConsumed) {
  std::vector<float> out;
  Mixer m(MixerConfig{}, std::make_unique<CaptureSink>(&out));
  auto a = std::make_shared<MixStream>(1, "a", 1, PcmFormat{48000, XENSND_PCM_FORMAT_S16_LE, 2}, 65536);
  m.add(a);
  ASSERT_TRUE(a->push(s16_const(1000, 100), 0));
  a->request_flush();
  m.mix_once(480, kMs);
  EXPECT_EQ(a->consumed(), 4000U);
  EXPECT_FALSE(a->push(std::vector<std::byte>(70000), 0));  // more than the queue holds: refused whole
}

TEST(MediaMixer, ResamplesToTheMixerRate) {
  std::vector<float> out;
  Mixer m(MixerConfig{}, std::make_unique<CaptureSink>(&out));
  auto a = std::make_shared<MixStream>(1, "a", 1, PcmFormat{44100, XENSND_PCM_FORMAT_S16_LE, 1}, 1 << 20);
  m.add(a);
  a->set_running(true);
  // 1 s of a 1 kHz tone at 44.1 kHz; 100 ticks of 480 frames at 48 kHz consume about all of it.
  std::vector<std::byte> pcm(44100 * 2);
  for (std::size_t i = 0; i < 44100; ++i) {
    const auto v = static_cast<std::int16_t>(16000.0 * std::sin(2.0 * std::numbers::pi * 1000.0 * static_cast<double>(i) / 44100.0));
    std::memcpy(pcm.data() + 2 * i, &v, 2);
  }
  ASSERT_TRUE(a->push(pcm, 0));
  for (int i = 0; i < 100; ++i) m.mix_once(480, (i + 1) * 10 * kMs);
  EXPECT_GT(a->consumed(), 44100U * 2 * 95 / 100);
  // Zero crossings of the left channel in the middle 0.5 s: ~1000 per second.
  std::size_t zc = 0;
  for (std::size_t i = 24000; i < 48000; ++i)
    if ((out[2 * i] >= 0.0F) != (out[2 * (i - 1)] >= 0.0F)) ++zc;
  EXPECT_NEAR(static_cast<double>(zc), 1000.0, 20.0);
}

TEST(MediaSink, WavFileHoldsWhatWasWritten) {
  char path[] = "/tmp/gears-media-test-XXXXXX.wav";
  const int fd = ::mkstemps(path, 4);
  ASSERT_GE(fd, 0);
  ::close(fd);
  {
    WavSink s(path, 48000, 2);
    std::vector<float> buf(960, 0.5F);
    for (int i = 0; i < 10; ++i) ASSERT_TRUE(s.write(buf, 480).ok());
  }
  SF_INFO info{};
  SNDFILE* f = sf_open(path, SFM_READ, &info);
  ASSERT_NE(f, nullptr);
  EXPECT_EQ(info.frames, 4800);
  EXPECT_EQ(info.samplerate, 48000);
  sf_close(f);
  ::unlink(path);
  EXPECT_THROW(make_sink("mp3:/x", 48000), std::invalid_argument);
  EXPECT_THROW(make_sink("wav:/nonexistent-dir/x.wav", 48000), std::runtime_error);
}

// alsa-lib's "null" PCM (no sound card needed): the sink opens, converts and writes every frame of a chunk that
// fits its 200 ms buffer; a missing device fails at setup with the device's name.
TEST(MediaSink, AlsaNullDeviceTakesTheMix) {
  AlsaSink s("null", 48000, 2);
  std::vector<float> buf(960, 0.5F);
  for (int i = 0; i < 10; ++i) ASSERT_TRUE(s.write(buf, 480).ok());
  EXPECT_EQ(s.written(), 4800U);
  EXPECT_EQ(s.dropped(), 0U);
  EXPECT_FALSE(s.write(std::span<const float>(buf).first(10), 480).ok());  // short buffer: rejected, not read
  EXPECT_EQ(make_sink("alsa:null", 48000)->describe(), "alsa:null");
  EXPECT_THROW(make_sink("alsa:gears-no-such-pcm", 48000), std::runtime_error);
}

TEST(MediaSched, RoleFromStreamDomainOrDefault) {
  EXPECT_EQ(stream_key("42"), 42U);
  EXPECT_NE(stream_key("voice-a"), stream_key("voice-b"));
  std::vector<daemon::HintRecord> recs(2);
  recs[0].seq = 1;
  recs[0].set.scope.kind = hints::ScopeKind::stream;
  recs[0].set.stream_key = 42;
  recs[0].set.role = hints::StreamRole::media;
  recs[1] = recs[0];
  recs[1].seq = 2;
  recs[1].set.role = hints::StreamRole::voice;
  hints::HintSet none;
  EXPECT_EQ(resolve_role(recs, none, 42, Role::media), Role::voice);  // newest stream record wins
  hints::HintSet dom;
  dom.role = hints::StreamRole::alert;
  EXPECT_EQ(resolve_role(recs, dom, 7, Role::media), Role::alert);  // no stream record: domain/device
  EXPECT_EQ(resolve_role({}, none, 7, Role::media), Role::media);
  EXPECT_EQ(role_from_name("voice"), Role::voice);
  EXPECT_FALSE(role_from_name("loud"));
}

}  // namespace
}  // namespace gears::media
