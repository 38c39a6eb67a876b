// sndif (xen/io/sndif.h, protocol version 2) binding for the media backend: pure functions, no Xen calls.
//
// Every request reaches us as a PRIVATE copy (BackRing::copy_request); validate() turns it into a Command or
// an errno for the response. Nothing here reads shared memory twice: the page directory and the volume/mute
// blocks are copied out by the caller and parsed from the copy.
//
// Hostile-input rules (the frontend is untrusted):
//  * unknown operation, or a data operation on a stream that is not open      -> -EINVAL / -EBADFD response
//  * OPEN: rate outside the stream's [min,max], format not offered, channels outside [min,max], buffer_sz 0,
//    over the stream's buffer limit or not a whole number of frames, period_sz > buffer_sz   -> -EINVAL
//  * READ/WRITE: wrong direction, offset >= buffer_sz, offset+length > buffer_sz (checked without overflow),
//    length 0 or not whole frames                                                         -> -EINVAL
//  * SET/GET_VOLUME: length != channels*4 or out of the buffer; MUTE/UNMUTE: length < channels or out of it
//  * TRIGGER: unknown type or stream not open; HW_PARAM_QUERY: min > max or an empty intersection -> -EINVAL
//  * page directory: more directory pages than buffer_sz needs, or a chain that does not end    -> -EINVAL
// Reserved bytes are NOT checked: Linux's snd-xen-front reuses ring slots without clearing them.
// Ring-level violations (producer index out of range) are not request errors: the device closes the ring.
#pragma once

#include <cstddef>
#include <cstdint>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "common/util/result.hpp"

// clang-format off
#include <xen/xen.h>
#include <xen/grant_table.h>
#include <xen/io/sndif.h>
// clang-format on

namespace gears::media {

inline constexpr std::uint32_t kPage = 4096;
inline constexpr std::uint32_t kMaxBufferBytes = 4U << 20U;        // hard cap per stream (1024 pages)
inline constexpr std::uint32_t kRefsPerDirPage = (kPage - sizeof(grant_ref_t)) / sizeof(grant_ref_t);  // 1023
inline constexpr std::uint32_t kMinRate = 8000, kMaxRate = 192000;
inline constexpr std::uint8_t kMaxChannels = 2;  // the mixer is stereo; mono is upmixed

// Sample formats the mixer converts (bit i = XENSND_PCM_FORMAT_i).
inline constexpr std::uint64_t kSupportedFormats =
    (1ULL << XENSND_PCM_FORMAT_U8) | (1ULL << XENSND_PCM_FORMAT_S8) | (1ULL << XENSND_PCM_FORMAT_S16_LE) |
    (1ULL << XENSND_PCM_FORMAT_S16_BE) | (1ULL << XENSND_PCM_FORMAT_S32_LE) | (1ULL << XENSND_PCM_FORMAT_F32_LE);

// Bytes per sample of a supported format; 0 if unsupported.
[[nodiscard]] std::uint32_t sample_bytes(std::uint8_t fmt);
// sndif format name ("s16_le") -> XENSND_PCM_FORMAT_*, any of the 25 names; nullopt if unknown.
[[nodiscard]] std::optional<std::uint8_t> format_from_name(std::string_view name);

// What one stream accepts: the card/pcm/stream xenstore keys merged (lower levels narrow upper ones) and
// intersected with what the backend supports.
struct StreamCaps {
  std::uint64_t formats = kSupportedFormats;
  std::uint32_t rate_min = kMinRate, rate_max = kMaxRate;
  std::uint8_t ch_min = 1, ch_max = kMaxChannels;
  std::uint32_t buffer_max = kMaxBufferBytes;  // bytes
};

// Parses the frontend's "sample-rates" ("8000,44100,48000") into [min,max]; EPROTO on garbage (bounded:
// at most 32 items of at most XENSND_SAMPLE_RATE_MAX_LEN digits).
[[nodiscard]] Status apply_rates(std::string_view list, StreamCaps& caps);
// "sample-formats" ("s16_le,s8"): keeps only the listed formats; EPROTO on unknown names or > 32 items.
[[nodiscard]] Status apply_formats(std::string_view list, StreamCaps& caps);

// An OPEN the stream accepted.
struct OpenParams {
  std::uint32_t rate = 0;
  std::uint8_t format = 0;
  std::uint8_t channels = 0;
  std::uint32_t buffer_sz = 0;
  grant_ref_t gref_directory = 0;
  std::uint32_t period_sz = 0;
  [[nodiscard]] std::uint32_t frame_bytes() const { return sample_bytes(format) * channels; }
  [[nodiscard]] std::uint32_t pages() const { return (buffer_sz + kPage - 1) / kPage; }
};

enum class Direction : std::uint8_t { playback, capture };

// What the device knows about a stream when a request arrives.
struct StreamView {
  Direction dir = Direction::playback;
  const StreamCaps* caps = nullptr;
  const OpenParams* open = nullptr;  // null while closed
};

// A validated request.
struct Command {
  std::uint16_t id = 0;
  std::uint8_t op = 0;
  OpenParams open;                     // XENSND_OP_OPEN
  std::uint32_t offset = 0, length = 0;  // READ/WRITE/volume/mute
  std::uint8_t trigger = 0;            // XENSND_OP_TRIGGER_*
  xensnd_query_hw_param hw{};          // HW_PARAM_QUERY: the answer
};

// Validates a private copy of a request. The error's code is the positive errno to answer with.
[[nodiscard]] Result<Command> validate(const xensnd_req& req, const StreamView& s);

// The HW_PARAM_QUERY answer: the request's ranges intersected with the stream's caps (buffer and period in
// frames). EINVAL if a range is inverted or the intersection is empty.
[[nodiscard]] Result<xensnd_query_hw_param> answer_hw_query(const xensnd_query_hw_param& q, const StreamCaps& caps);

// A response for `id`/`op` with status -code (0 = ok).
[[nodiscard]] xensnd_resp make_response(std::uint16_t id, std::uint8_t op, int code);

// One page-directory page (a private copy): appends its refs to `refs` until `total` refs are known.
// Returns the next directory page's ref, or 0 when the directory is complete. EINVAL if the page says
// there is a next page although `total` is reached, or ends early (next == 0 with refs still missing).
[[nodiscard]] Result<grant_ref_t> parse_dir_page(std::span<const std::byte> page, std::uint32_t total,
                                                 std::vector<grant_ref_t>& refs);

// Per-channel volume in 0.001 dB steps (sndif) -> linear gain, clamped to [-120 dB, +12 dB].
[[nodiscard]] float millidb_to_gain(std::int32_t mdb);

// The back->front event page (xensnd_event_page + ring of xensnd_evt), written only by us. The frontend
// owns in_cons; we keep in_prod privately and never read it back. Contract:
//   * an event is written into slot in_prod % LEN, then in_prod is published with release semantics;
//   * in_cons is read ONCE per put() and bounded: if in_prod - in_cons > LEN (garbage) or == LEN (full)
//     the event is dropped (positions are absolute, so the next one supersedes it) and put() says so;
//   * event ids run 0,1,2,... per connection (Linux checks them in sequence).
class EventPage {
 public:
  EventPage(void* page, std::size_t bytes);  // throws std::invalid_argument if bytes < one page
  // false: dropped (ring full or in_cons garbage). true: queued; the caller notifies the event channel.
  [[nodiscard]] bool put_cur_pos(std::uint64_t position);
  [[nodiscard]] std::uint32_t produced() const { return in_prod_; }
  [[nodiscard]] std::uint64_t dropped() const { return dropped_; }

 private:
  std::byte* page_;
  std::uint32_t in_prod_ = 0;
  std::uint16_t next_id_ = 0;
  std::uint64_t dropped_ = 0;
};

[[nodiscard]] std::string_view op_name(std::uint8_t op);

}  // namespace gears::media
