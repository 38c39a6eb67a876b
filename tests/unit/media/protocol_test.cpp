// The sndif binding: valid requests pass, and every malformed one gets its errno (the hostile-input table in
// dom0/backends/media/protocol.hpp). Pure: no Xen.
#include <gtest/gtest.h>

#include <cstring>
#include <vector>

#include "dom0/backends/media/protocol.hpp"

namespace gears::media {
namespace {

constexpr std::uint32_t kBuf = 8 * kPage;  // 8 pages, s16 stereo = 8192 frames

xensnd_req open_req(std::uint32_t rate = 48000, std::uint8_t fmt = XENSND_PCM_FORMAT_S16_LE, std::uint8_t ch = 2,
                    std::uint32_t buf = kBuf, std::uint32_t period = kBuf / 4) {
  xensnd_req r{};
  r.id = 7;
  r.operation = XENSND_OP_OPEN;
  r.op.open.pcm_rate = rate;
  r.op.open.pcm_format = fmt;
  r.op.open.pcm_channels = ch;
  r.op.open.buffer_sz = buf;
  r.op.open.gref_directory = 9;
  r.op.open.period_sz = period;
  return r;
}

xensnd_req rw_req(std::uint8_t op, std::uint32_t off, std::uint32_t len) {
  xensnd_req r{};
  r.id = 8;
  r.operation = op;
  r.op.rw.offset = off;
  r.op.rw.length = len;
  return r;
}

struct Fixture : ::testing::Test {
  StreamCaps caps;
  OpenParams opened{48000, XENSND_PCM_FORMAT_S16_LE, 2, kBuf, 9, kBuf / 4};
  StreamView closed_pb{Direction::playback, &caps, nullptr};
  StreamView open_pb{Direction::playback, &caps, &opened};
  StreamView open_cap{Direction::capture, &caps, &opened};

  int code(const xensnd_req& r, const StreamView& v) {
    auto c = validate(r, v);
    return c ? 0 : c.error().code;
  }
};

using SndifValid = Fixture;
using SndifMalformed = Fixture;

TEST_F(SndifValid, OpenWriteTriggerVolumeClose) {
  auto c = validate(open_req(), closed_pb);
  ASSERT_TRUE(c);
  EXPECT_EQ(c->open.rate, 48000U);
  EXPECT_EQ(c->open.frame_bytes(), 4U);
  EXPECT_EQ(c->open.pages(), 8U);
  EXPECT_EQ(code(rw_req(XENSND_OP_WRITE, 0, kBuf), open_pb), 0);
  EXPECT_EQ(code(rw_req(XENSND_OP_WRITE, kBuf - 4, 4), open_pb), 0);
  EXPECT_EQ(code(rw_req(XENSND_OP_READ, 4096, 4096), open_cap), 0);
  EXPECT_EQ(code(rw_req(XENSND_OP_SET_VOLUME, 0, 8), open_pb), 0);
  EXPECT_EQ(code(rw_req(XENSND_OP_MUTE, 16, 2), open_pb), 0);
  xensnd_req t{};
  t.operation = XENSND_OP_TRIGGER;
  t.op.trigger.type = XENSND_OP_TRIGGER_RESUME;
  EXPECT_EQ(code(t, open_pb), 0);
  xensnd_req cl{};
  cl.operation = XENSND_OP_CLOSE;
  EXPECT_EQ(code(cl, closed_pb), 0);
}

TEST_F(SndifValid, HwQueryIsNarrowedToCaps) {
  xensnd_req q{};
  q.operation = XENSND_OP_HW_PARAM_QUERY;
  q.op.hw_param.formats = ~0ULL;
  q.op.hw_param.rates = {1, 1000000};
  q.op.hw_param.channels = {1, 8};
  q.op.hw_param.buffer = {1, UINT32_MAX};
  q.op.hw_param.period = {1, UINT32_MAX};
  auto c = validate(q, closed_pb);
  ASSERT_TRUE(c);
  EXPECT_EQ(c->hw.formats, kSupportedFormats);
  EXPECT_EQ(c->hw.rates.min, kMinRate);
  EXPECT_EQ(c->hw.rates.max, kMaxRate);
  EXPECT_EQ(c->hw.channels.max, 2U);
  EXPECT_EQ(c->hw.buffer.max, kMaxBufferBytes);  // 1-byte samples, mono
  EXPECT_LE(c->hw.period.max, c->hw.buffer.max);
}

TEST_F(SndifValid, XenstoreListsNarrowCaps) {
  ASSERT_TRUE(apply_rates("44100,8000,48000", caps).ok());
  EXPECT_EQ(caps.rate_min, 8000U);
  EXPECT_EQ(caps.rate_max, 48000U);
  ASSERT_TRUE(apply_formats("s16_le,mu_law", caps).ok());
  EXPECT_EQ(caps.formats, 1ULL << XENSND_PCM_FORMAT_S16_LE);
  EXPECT_EQ(code(open_req(96000), closed_pb), EINVAL);
  EXPECT_EQ(code(open_req(48000, XENSND_PCM_FORMAT_U8), closed_pb), EINVAL);
}

// ---- malformed requests: one case each ------------------------------------------------------------------------

TEST_F(SndifMalformed, UnknownOperation) { EXPECT_EQ(code(rw_req(200, 0, 4), open_pb), EINVAL); }
TEST_F(SndifMalformed, WriteBeforeOpen) { EXPECT_EQ(code(rw_req(XENSND_OP_WRITE, 0, 4), closed_pb), EBADFD); }
TEST_F(SndifMalformed, WriteOffsetPastBuffer) { EXPECT_EQ(code(rw_req(XENSND_OP_WRITE, kBuf, 4), open_pb), EINVAL); }
TEST_F(SndifMalformed, WriteLengthPastBuffer) {
  EXPECT_EQ(code(rw_req(XENSND_OP_WRITE, kBuf - 4, 8), open_pb), EINVAL);
}
TEST_F(SndifMalformed, WriteOffsetPlusLengthWraps) {
  EXPECT_EQ(code(rw_req(XENSND_OP_WRITE, 4, UINT32_MAX - 1), open_pb), EINVAL);
}
TEST_F(SndifMalformed, WriteZeroLength) { EXPECT_EQ(code(rw_req(XENSND_OP_WRITE, 0, 0), open_pb), EINVAL); }
TEST_F(SndifMalformed, WritePartialFrame) { EXPECT_EQ(code(rw_req(XENSND_OP_WRITE, 0, 6), open_pb), EINVAL); }
TEST_F(SndifMalformed, WriteOnCaptureStream) { EXPECT_EQ(code(rw_req(XENSND_OP_WRITE, 0, 4), open_cap), EINVAL); }
TEST_F(SndifMalformed, ReadOnPlaybackStream) { EXPECT_EQ(code(rw_req(XENSND_OP_READ, 0, 4), open_pb), EINVAL); }
TEST_F(SndifMalformed, OpenRateOutOfRange) {
  EXPECT_EQ(code(open_req(0), closed_pb), EINVAL);
  EXPECT_EQ(code(open_req(kMaxRate + 1), closed_pb), EINVAL);
}
TEST_F(SndifMalformed, OpenUnsupportedFormat) {
  EXPECT_EQ(code(open_req(48000, XENSND_PCM_FORMAT_GSM), closed_pb), EINVAL);
  EXPECT_EQ(code(open_req(48000, 255), closed_pb), EINVAL);
}
TEST_F(SndifMalformed, OpenBadChannels) {
  EXPECT_EQ(code(open_req(48000, XENSND_PCM_FORMAT_S16_LE, 0), closed_pb), EINVAL);
  EXPECT_EQ(code(open_req(48000, XENSND_PCM_FORMAT_S16_LE, 9), closed_pb), EINVAL);
}
TEST_F(SndifMalformed, OpenBufferZeroOrHuge) {
  EXPECT_EQ(code(open_req(48000, XENSND_PCM_FORMAT_S16_LE, 2, 0), closed_pb), EINVAL);
  EXPECT_EQ(code(open_req(48000, XENSND_PCM_FORMAT_S16_LE, 2, kMaxBufferBytes + 4, 0), closed_pb), EINVAL);
}
TEST_F(SndifMalformed, OpenBufferNotWholeFrames) {
  EXPECT_EQ(code(open_req(48000, XENSND_PCM_FORMAT_S16_LE, 2, 4098, 0), closed_pb), EINVAL);
}
TEST_F(SndifMalformed, OpenPeriodLargerThanBuffer) {
  EXPECT_EQ(code(open_req(48000, XENSND_PCM_FORMAT_S16_LE, 2, kBuf, kBuf + 4), closed_pb), EINVAL);
}
TEST_F(SndifMalformed, OpenOverGuestBufferLimit) {
  caps.buffer_max = 2 * kPage;
  EXPECT_EQ(code(open_req(48000, XENSND_PCM_FORMAT_S16_LE, 2, 3 * kPage, 0), closed_pb), EINVAL);
}
TEST_F(SndifMalformed, TriggerUnknownType) {
  xensnd_req t{};
  t.operation = XENSND_OP_TRIGGER;
  t.op.trigger.type = 4;
  EXPECT_EQ(code(t, open_pb), EINVAL);
}
TEST_F(SndifMalformed, TriggerBeforeOpen) {
  xensnd_req t{};
  t.operation = XENSND_OP_TRIGGER;
  EXPECT_EQ(code(t, closed_pb), EBADFD);
}
TEST_F(SndifMalformed, VolumeWrongLength) {
  EXPECT_EQ(code(rw_req(XENSND_OP_SET_VOLUME, 0, 4), open_pb), EINVAL);   // 2 channels need 8 bytes
  EXPECT_EQ(code(rw_req(XENSND_OP_GET_VOLUME, 0, 12), open_pb), EINVAL);
}
TEST_F(SndifMalformed, VolumeOutsideBuffer) {
  EXPECT_EQ(code(rw_req(XENSND_OP_SET_VOLUME, kBuf - 4, 8), open_pb), EINVAL);
}
TEST_F(SndifMalformed, MuteShortOrBeforeOpen) {
  EXPECT_EQ(code(rw_req(XENSND_OP_MUTE, 0, 1), open_pb), EINVAL);
  EXPECT_EQ(code(rw_req(XENSND_OP_UNMUTE, 0, 2), closed_pb), EBADFD);
}
TEST_F(SndifMalformed, HwQueryInvertedRange) {
  xensnd_req q{};
  q.operation = XENSND_OP_HW_PARAM_QUERY;
  q.op.hw_param.formats = ~0ULL;
  q.op.hw_param.rates = {48000, 8000};
  q.op.hw_param.channels = {1, 2};
  q.op.hw_param.buffer = {1, 100000};
  q.op.hw_param.period = {1, 100000};
  EXPECT_EQ(code(q, closed_pb), EINVAL);
}
TEST_F(SndifMalformed, HwQueryNoCommonFormatOrRate) {
  xensnd_req q{};
  q.operation = XENSND_OP_HW_PARAM_QUERY;
  q.op.hw_param.formats = 1ULL << XENSND_PCM_FORMAT_MPEG;
  q.op.hw_param.rates = {8000, 48000};
  q.op.hw_param.channels = {1, 2};
  q.op.hw_param.buffer = {1, 100000};
  q.op.hw_param.period = {1, 100000};
  EXPECT_EQ(code(q, closed_pb), EINVAL);
  q.op.hw_param.formats = ~0ULL;
  q.op.hw_param.rates = {200000, 300000};
  EXPECT_EQ(code(q, closed_pb), EINVAL);
}

// Page directory: copies parsed from private memory.
std::vector<std::byte> dir_page(grant_ref_t next, std::vector<grant_ref_t> refs) {
  std::vector<std::byte> p(kPage);
  std::memcpy(p.data(), &next, 4);
  for (std::size_t i = 0; i < refs.size(); ++i) std::memcpy(p.data() + 4 * (i + 1), &refs[i], 4);
  return p;
}

TEST(SndifPageDir, OneAndTwoPages) {
  std::vector<grant_ref_t> refs;
  auto r = parse_dir_page(dir_page(0, {11, 12, 13}), 3, refs);
  ASSERT_TRUE(r);
  EXPECT_EQ(*r, 0U);
  EXPECT_EQ(refs, (std::vector<grant_ref_t>{11, 12, 13}));
  refs.clear();
  std::vector<grant_ref_t> many(kRefsPerDirPage, 5);
  r = parse_dir_page(dir_page(77, many), kRefsPerDirPage + 2, refs);
  ASSERT_TRUE(r);
  EXPECT_EQ(*r, 77U);
  r = parse_dir_page(dir_page(0, {1, 2}), kRefsPerDirPage + 2, refs);
  ASSERT_TRUE(r);
  EXPECT_EQ(refs.size(), kRefsPerDirPage + 2);
}

TEST(SndifMalformedDir, ChainLongerThanBuffer) {
  std::vector<grant_ref_t> refs;
  EXPECT_FALSE(parse_dir_page(dir_page(42, {1, 2}), 2, refs));  // next page although all refs are known
}
TEST(SndifMalformedDir, ChainEndsEarly) {
  std::vector<grant_ref_t> refs;
  std::vector<grant_ref_t> many(kRefsPerDirPage, 5);
  EXPECT_FALSE(parse_dir_page(dir_page(0, many), kRefsPerDirPage + 1, refs));
}
TEST(SndifMalformedDir, ShortPage) {
  std::vector<grant_ref_t> refs;
  std::vector<std::byte> p(100);
  EXPECT_FALSE(parse_dir_page(p, 1, refs));
}

TEST(SndifMalformedCfg, XenstoreListsGarbage) {
  StreamCaps c;
  EXPECT_FALSE(apply_rates("44100,,48000", c).ok());
  EXPECT_FALSE(apply_rates("abc", c).ok());
  EXPECT_FALSE(apply_rates("44100,", c).ok());
  EXPECT_FALSE(apply_rates("999999999999", c).ok());
  EXPECT_FALSE(apply_formats("s16_le,bogus", c).ok());
  EXPECT_FALSE(apply_formats("gsm", c).ok());  // known name, but nothing the mixer converts
}

// The event page: ids run 0,1,2..., a hostile in_cons never makes us overwrite unread events or crash.
TEST(SndifEventPage, IdsAndPositions) {
  alignas(64) std::vector<std::byte> page(kPage);
  EventPage ev(page.data(), page.size());
  ASSERT_TRUE(ev.put_cur_pos(100));
  ASSERT_TRUE(ev.put_cur_pos(200));
  xensnd_event_page hdr{};
  std::memcpy(&hdr, page.data(), sizeof hdr);
  EXPECT_EQ(hdr.in_prod, 2U);
  xensnd_evt e{};
  std::memcpy(&e, page.data() + XENSND_IN_RING_OFFS + sizeof(xensnd_evt), sizeof e);
  EXPECT_EQ(e.id, 1U);
  EXPECT_EQ(e.type, XENSND_EVT_CUR_POS);
  EXPECT_EQ(e.op.cur_pos.position, 200U);
}

TEST(SndifMalformedEvt, FrontendNeverConsumesOrLies) {
  std::vector<std::byte> page(kPage);
  EventPage ev(page.data(), page.size());
  std::size_t ok = 0;
  for (int i = 0; i < 200; ++i) ok += ev.put_cur_pos(static_cast<std::uint64_t>(i)) ? 1U : 0U;
  EXPECT_EQ(ok, XENSND_IN_RING_LEN);  // full: the rest are dropped, not overwritten
  EXPECT_EQ(ev.dropped(), 200 - XENSND_IN_RING_LEN);
  // in_cons ahead of in_prod (garbage): dropped, nothing written.
  std::uint32_t bogus = 0xfffffff0U;
  std::memcpy(page.data(), &bogus, 4);
  EXPECT_FALSE(ev.put_cur_pos(1));
}

}  // namespace
}  // namespace gears::media
