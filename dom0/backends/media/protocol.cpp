#include "dom0/backends/media/protocol.hpp"

#include <algorithm>
#include <array>
#include <charconv>
#include <cmath>
#include <cstring>
#include <stdexcept>

#include "common/ring/shared_mem.hpp"

namespace gears::media {
namespace {

constexpr std::size_t kMaxListItems = 32;

constexpr std::array<std::string_view, 25> kFormatNames = {
    XENSND_PCM_FORMAT_S8_STR,       XENSND_PCM_FORMAT_U8_STR,       XENSND_PCM_FORMAT_S16_LE_STR,
    XENSND_PCM_FORMAT_S16_BE_STR,   XENSND_PCM_FORMAT_U16_LE_STR,   XENSND_PCM_FORMAT_U16_BE_STR,
    XENSND_PCM_FORMAT_S24_LE_STR,   XENSND_PCM_FORMAT_S24_BE_STR,   XENSND_PCM_FORMAT_U24_LE_STR,
    XENSND_PCM_FORMAT_U24_BE_STR,   XENSND_PCM_FORMAT_S32_LE_STR,   XENSND_PCM_FORMAT_S32_BE_STR,
    XENSND_PCM_FORMAT_U32_LE_STR,   XENSND_PCM_FORMAT_U32_BE_STR,   XENSND_PCM_FORMAT_F32_LE_STR,
    XENSND_PCM_FORMAT_F32_BE_STR,   XENSND_PCM_FORMAT_F64_LE_STR,   XENSND_PCM_FORMAT_F64_BE_STR,
    XENSND_PCM_FORMAT_IEC958_SUBFRAME_LE_STR, XENSND_PCM_FORMAT_IEC958_SUBFRAME_BE_STR,
    XENSND_PCM_FORMAT_MU_LAW_STR,   XENSND_PCM_FORMAT_A_LAW_STR,    XENSND_PCM_FORMAT_IMA_ADPCM_STR,
    XENSND_PCM_FORMAT_MPEG_STR,     XENSND_PCM_FORMAT_GSM_STR};

// Splits a bounded separator list; false if it has too many items or an empty one.
template <class F>
bool for_each_item(std::string_view list, F&& fn) {
  std::size_t n = 0;
  while (!list.empty()) {
    const auto comma = list.find(',');
    const std::string_view item = list.substr(0, comma);
    if (item.empty() || ++n > kMaxListItems || !fn(item)) return false;
    if (comma == std::string_view::npos) break;
    list.remove_prefix(comma + 1);
    if (list.empty()) return false;  // trailing separator
  }
  return n > 0;
}

constexpr Error kInval{EINVAL, "invalid request"};

bool intersect(std::uint32_t& lo, std::uint32_t& hi, std::uint32_t cap_lo, std::uint32_t cap_hi) {
  lo = std::max(lo, cap_lo);
  hi = std::min(hi, cap_hi);
  return lo <= hi;
}

}  // namespace

std::uint32_t sample_bytes(std::uint8_t fmt) {
  switch (fmt) {
    case XENSND_PCM_FORMAT_U8:
    case XENSND_PCM_FORMAT_S8:
      return 1;
    case XENSND_PCM_FORMAT_S16_LE:
    case XENSND_PCM_FORMAT_S16_BE:
      return 2;
    case XENSND_PCM_FORMAT_S32_LE:
    case XENSND_PCM_FORMAT_F32_LE:
      return 4;
    default:
      return 0;
  }
}

std::optional<std::uint8_t> format_from_name(std::string_view name) {
  for (std::size_t i = 0; i < kFormatNames.size(); ++i)
    if (kFormatNames[i] == name) return static_cast<std::uint8_t>(i);
  return std::nullopt;
}

Status apply_rates(std::string_view list, StreamCaps& caps) {
  std::uint32_t lo = UINT32_MAX, hi = 0;
  const bool ok = for_each_item(list, [&](std::string_view item) {
    if (item.size() > XENSND_SAMPLE_RATE_MAX_LEN) return false;
    std::uint32_t v = 0;
    auto [end, ec] = std::from_chars(item.data(), item.data() + item.size(), v);
    if (ec != std::errc{} || end != item.data() + item.size() || v == 0) return false;
    lo = std::min(lo, v);
    hi = std::max(hi, v);
    return true;
  });
  if (!ok) return Error{EPROTO, "vsnd: sample-rates malformed"};
  if (!intersect(caps.rate_min, caps.rate_max, lo, hi)) return Error{EPROTO, "vsnd: no supported sample rate"};
  return {};
}

Status apply_formats(std::string_view list, StreamCaps& caps) {
  std::uint64_t mask = 0;
  const bool ok = for_each_item(list, [&](std::string_view item) {
    auto f = format_from_name(item);
    if (!f) return false;
    mask |= 1ULL << *f;
    return true;
  });
  if (!ok) return Error{EPROTO, "vsnd: sample-formats malformed"};
  caps.formats &= mask;
  if (caps.formats == 0) return Error{EPROTO, "vsnd: no supported sample format"};
  return {};
}

Result<xensnd_query_hw_param> answer_hw_query(const xensnd_query_hw_param& q, const StreamCaps& caps) {
  xensnd_query_hw_param a = q;
  if (q.rates.min > q.rates.max || q.channels.min > q.channels.max || q.buffer.min > q.buffer.max ||
      q.period.min > q.period.max)
    return Error{EINVAL, "hw query: inverted range"};
  a.formats = q.formats & caps.formats;
  if (a.formats == 0) return Error{EINVAL, "hw query: no common format"};
  if (!intersect(a.rates.min, a.rates.max, caps.rate_min, caps.rate_max)) return Error{EINVAL, "hw query: rate"};
  if (!intersect(a.channels.min, a.channels.max, caps.ch_min, caps.ch_max))
    return Error{EINVAL, "hw query: channels"};
  // The smallest frame the remaining choices allow bounds the buffer in frames.
  std::uint32_t min_sample = 8;
  for (std::uint8_t f = 0; f < 64; ++f)
    if ((a.formats >> f) & 1U) min_sample = std::min(min_sample, sample_bytes(f));
  const std::uint32_t max_frames = caps.buffer_max / (min_sample * a.channels.min);
  if (!intersect(a.buffer.min, a.buffer.max, 1, max_frames)) return Error{EINVAL, "hw query: buffer"};
  if (!intersect(a.period.min, a.period.max, 1, a.buffer.max)) return Error{EINVAL, "hw query: period"};
  return a;
}

Result<Command> validate(const xensnd_req& req, const StreamView& s) {
  Command c;
  c.id = req.id;
  c.op = req.operation;
  const OpenParams* o = s.open;
  switch (req.operation) {
    case XENSND_OP_OPEN: {
      const auto& r = req.op.open;
      OpenParams p{r.pcm_rate, r.pcm_format, r.pcm_channels, r.buffer_sz, r.gref_directory, r.period_sz};
      const StreamCaps& caps = *s.caps;
      if (p.rate < caps.rate_min || p.rate > caps.rate_max) return Error{EINVAL, "open: rate not offered"};
      if (p.format >= 64 || ((caps.formats >> p.format) & 1U) == 0) return Error{EINVAL, "open: format not offered"};
      if (p.channels < caps.ch_min || p.channels > caps.ch_max) return Error{EINVAL, "open: channels out of range"};
      if (p.buffer_sz == 0 || p.buffer_sz > caps.buffer_max) return Error{EINVAL, "open: buffer size out of range"};
      if (p.buffer_sz % p.frame_bytes() != 0) return Error{EINVAL, "open: buffer not whole frames"};
      if (p.period_sz > p.buffer_sz) return Error{EINVAL, "open: period larger than the buffer"};
      c.open = p;
      return c;
    }
    case XENSND_OP_CLOSE:
      return c;  // closing a closed stream is harmless
    case XENSND_OP_READ:
    case XENSND_OP_WRITE: {
      if (!o) return Error{EBADFD, "read/write: stream not open"};
      const bool write = req.operation == XENSND_OP_WRITE;
      if (write != (s.dir == Direction::playback)) return Error{EINVAL, "read/write: wrong direction for stream"};
      c.offset = req.op.rw.offset;
      c.length = req.op.rw.length;
      if (c.offset >= o->buffer_sz || c.length > o->buffer_sz - c.offset)
        return Error{EINVAL, "read/write: outside the buffer"};
      if (c.length == 0 || c.length % o->frame_bytes() != 0) return Error{EINVAL, "read/write: not whole frames"};
      return c;
    }
    case XENSND_OP_SET_VOLUME:
    case XENSND_OP_GET_VOLUME:
    case XENSND_OP_MUTE:
    case XENSND_OP_UNMUTE: {
      if (!o) return Error{EBADFD, "volume/mute: stream not open"};
      c.offset = req.op.rw.offset;
      c.length = req.op.rw.length;
      if (c.offset >= o->buffer_sz || c.length > o->buffer_sz - c.offset)
        return Error{EINVAL, "volume/mute: outside the buffer"};
      const bool vol = req.operation == XENSND_OP_SET_VOLUME || req.operation == XENSND_OP_GET_VOLUME;
      if (vol ? c.length != 4U * o->channels : c.length < o->channels)
        return Error{EINVAL, "volume/mute: length does not match the channels"};
      return c;
    }
    case XENSND_OP_TRIGGER:
      if (!o) return Error{EBADFD, "trigger: stream not open"};
      c.trigger = req.op.trigger.type;
      if (c.trigger > XENSND_OP_TRIGGER_RESUME) return Error{EINVAL, "trigger: unknown type"};
      return c;
    case XENSND_OP_HW_PARAM_QUERY: {
      auto a = answer_hw_query(req.op.hw_param, *s.caps);
      if (!a) return a.error();
      c.hw = *a;
      return c;
    }
    default:
      return Error{EINVAL, "unknown operation"};
  }
}

xensnd_resp make_response(std::uint16_t id, std::uint8_t op, int code) {
  xensnd_resp r{};
  r.id = id;
  r.operation = op;
  r.status = -code;
  return r;
}

Result<grant_ref_t> parse_dir_page(std::span<const std::byte> page, std::uint32_t total,
                                   std::vector<grant_ref_t>& refs) {
  if (page.size() < kPage) return Error{EINVAL, "page directory: short page"};
  grant_ref_t next = 0;
  std::memcpy(&next, page.data(), sizeof next);
  const std::uint32_t have = static_cast<std::uint32_t>(refs.size());
  if (have >= total) return Error{EINVAL, "page directory: nothing left to read"};
  const std::uint32_t n = std::min(total - have, kRefsPerDirPage);
  for (std::uint32_t i = 0; i < n; ++i) {
    grant_ref_t r = 0;
    std::memcpy(&r, page.data() + sizeof(grant_ref_t) * (1 + i), sizeof r);
    refs.push_back(r);
  }
  const bool done = refs.size() == total;
  if (done && next != 0) return Error{EINVAL, "page directory: chain longer than the buffer"};
  if (!done && next == 0) return Error{EINVAL, "page directory: chain ends early"};
  return done ? 0 : next;
}

float millidb_to_gain(std::int32_t mdb) {
  const double db = std::clamp(static_cast<double>(mdb) / 1000.0, -120.0, 12.0);
  return static_cast<float>(std::pow(10.0, db / 20.0));
}

EventPage::EventPage(void* page, std::size_t bytes) : page_(static_cast<std::byte*>(page)) {
  if (page == nullptr || bytes < XENSND_EVENT_PAGE_SIZE) throw std::invalid_argument("vsnd: event page too small");
}

bool EventPage::put_cur_pos(std::uint64_t position) {
  auto* hdr = reinterpret_cast<xensnd_event_page*>(page_);
  const std::uint32_t cons = ring::shm::load_acquire(hdr->in_cons);  // once; hostile
  const std::uint32_t used = in_prod_ - cons;
  if (used >= XENSND_IN_RING_LEN) {  // full, or in_cons is garbage: drop, the next position supersedes it
    ++dropped_;
    return false;
  }
  xensnd_evt ev{};
  ev.id = next_id_++;
  ev.type = XENSND_EVT_CUR_POS;
  ev.op.cur_pos.position = position;
  std::memcpy(page_ + XENSND_IN_RING_OFFS + sizeof(xensnd_evt) * (in_prod_ % XENSND_IN_RING_LEN), &ev, sizeof ev);
  ++in_prod_;
  ring::shm::store_release(hdr->in_prod, in_prod_);
  return true;
}

std::string_view op_name(std::uint8_t op) {
  switch (op) {
    case XENSND_OP_OPEN: return "open";
    case XENSND_OP_CLOSE: return "close";
    case XENSND_OP_READ: return "read";
    case XENSND_OP_WRITE: return "write";
    case XENSND_OP_SET_VOLUME: return "set_volume";
    case XENSND_OP_GET_VOLUME: return "get_volume";
    case XENSND_OP_MUTE: return "mute";
    case XENSND_OP_UNMUTE: return "unmute";
    case XENSND_OP_TRIGGER: return "trigger";
    case XENSND_OP_HW_PARAM_QUERY: return "hw_param_query";
    default: return "unknown";
  }
}

}  // namespace gears::media
