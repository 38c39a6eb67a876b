#include "dom0/backends/media/device.hpp"
#include "dom0/common/watch_pump.hpp"

#include <sndfile.h>
#include <spdlog/spdlog.h>
#include <sys/epoll.h>
#include <time.h>

#include <algorithm>
#include <charconv>
#include <chrono>
#include <cmath>
#include <cstring>
#include <numbers>

#include "common/xenbus/nodes.hpp"
#include "dom0/common/discovery.hpp"

namespace gears::media {
namespace {

constexpr std::size_t kMaxPcms = 8, kMaxStreamsPerPcm = 8, kMaxStreams = 16;
constexpr std::size_t kBatch = 64;  // requests per serve() round before yielding to the loop
constexpr std::uint32_t kTickMs = 20;  // CUR_POS check period while a stream runs

std::int64_t mono_ns() {
  timespec ts{};
  ::clock_gettime(CLOCK_MONOTONIC, &ts);
  return ts.tv_sec * 1'000'000'000LL + ts.tv_nsec;
}

bool is_index(const std::string& s) {
  return !s.empty() && s.size() <= 3 && std::all_of(s.begin(), s.end(), [](char c) { return c >= '0' && c <= '9'; });
}

// Narrows `caps` by the keys present in `dir` (card, pcm or stream level).
Status apply_level(xen::Store& s, const std::string& dir, StreamCaps& caps) {
  if (auto v = s.read(dir + "/" XENSND_FIELD_SAMPLE_RATES); v && !v->empty())
    if (auto st = apply_rates(*v, caps); !st) return st;
  if (auto v = s.read(dir + "/" XENSND_FIELD_SAMPLE_FORMATS); v && !v->empty())
    if (auto st = apply_formats(*v, caps); !st) return st;
  auto cmin = xenbus::read_uint_or(s, dir + "/" XENSND_FIELD_CHANNELS_MIN, 255, caps.ch_min);
  auto cmax = xenbus::read_uint_or(s, dir + "/" XENSND_FIELD_CHANNELS_MAX, 255, caps.ch_max);
  auto buf = xenbus::read_uint_or(s, dir + "/" XENSND_FIELD_BUFFER_SIZE, UINT32_MAX, caps.buffer_max);
  if (!cmin || !cmax || !buf) return Error{EPROTO, "vsnd: channels/buffer-size key malformed"};
  caps.ch_min = static_cast<std::uint8_t>(std::max<std::uint64_t>(caps.ch_min, *cmin));
  caps.ch_max = static_cast<std::uint8_t>(std::min<std::uint64_t>(caps.ch_max, *cmax));
  if (caps.ch_min == 0 || caps.ch_min > caps.ch_max) return Error{EPROTO, "vsnd: no supported channel count"};
  // buffer-size is the guest's own limit; ours is kMaxBufferBytes. Round up to whole pages.
  caps.buffer_max = static_cast<std::uint32_t>(
      std::min<std::uint64_t>(caps.buffer_max, (*buf + kPage - 1) / kPage * kPage));
  if (caps.buffer_max == 0) return Error{EPROTO, "vsnd: buffer-size is 0"};
  return {};
}

}  // namespace

// ---- capture source -------------------------------------------------------------------------------------------

CaptureSource::CaptureSource(const std::string& spec) : spec_(spec) {
  if (spec.rfind("sine:", 0) == 0) {
    const std::string f = spec.substr(5);
    double hz = 0;
    auto [end, ec] = std::from_chars(f.data(), f.data() + f.size(), hz);
    if (ec != std::errc{} || end != f.data() + f.size() || !(hz > 0.0 && hz < 20000.0))
      throw std::invalid_argument("capture source '" + spec + "': frequency must be 0 < Hz < 20000");
    hz_ = hz;
    return;
  }
  if (spec.rfind("file:", 0) == 0 && spec.size() > 5) {
    SF_INFO info{};
    SNDFILE* f = sf_open(spec.c_str() + 5, SFM_READ, &info);
    if (!f) throw std::runtime_error("capture source '" + spec + "': " + sf_strerror(nullptr));
    const sf_count_t max_frames = static_cast<sf_count_t>(info.samplerate) * 60;  // bounded: 60 s
    const sf_count_t n = std::min<sf_count_t>(info.frames, max_frames);
    std::vector<float> all(static_cast<std::size_t>(n * info.channels));
    const sf_count_t got = sf_readf_float(f, all.data(), n);
    sf_close(f);
    if (got <= 0 || info.samplerate <= 0) throw std::runtime_error("capture source '" + spec + "': empty file");
    file_.resize(static_cast<std::size_t>(got));
    for (std::size_t i = 0; i < file_.size(); ++i) file_[i] = all[i * static_cast<std::size_t>(info.channels)];
    file_rate_ = static_cast<std::uint32_t>(info.samplerate);
    return;
  }
  throw std::invalid_argument("capture source '" + spec + "' is not one of sine:<hz>, file:<path>");
}

float CaptureSource::sample(std::uint64_t n, std::uint32_t rate) const {
  if (!file_.empty()) {
    const std::uint64_t i = n * file_rate_ / rate;
    return file_[i % file_.size()];
  }
  const double t = static_cast<double>(n % (std::uint64_t{rate} * 1000)) / rate;
  return static_cast<float>(0.5 * std::sin(2.0 * std::numbers::pi * hz_ * t));
}

// ---- per stream state (worker thread only) ----------------------------------------------------------------------

struct VsndDevice::Stream {
  std::string path;  // frontend stream directory
  std::string label;  // "0/0"
  Direction dir = Direction::playback;
  std::string unique_id;
  std::uint64_t key = 0;
  StreamCaps caps;
  xen::GrantMapping ring_map, evt_map;
  std::optional<SRing> ring;
  std::optional<EventPage> evt;
  xen::EventChannel req_ch, evt_ch;
  daemon::WatchId watch = 0;
  Role role = Role::media;
  // Open state.
  std::optional<OpenParams> open;
  xen::GrantMapping buffer;
  bool buffer_writable = false;
  std::shared_ptr<MixStream> mix;
  bool running = false;
  std::uint64_t reported = 0;  // last CUR_POS position
  std::int32_t volume_mdb[kMaxChannels] = {0, 0};
  // Capture clock: position = cap_base + bytes for the time since cap_start while running.
  std::uint64_t cap_base = 0, cap_pos = 0, cap_sample = 0;
  std::int64_t cap_start_ns = 0;
  std::uint64_t requests = 0, bad = 0, bytes = 0;
};

VsndDevice::VsndDevice(daemon::DeviceSpec spec, MediaContext ctx) : daemon::Device(std::move(spec)), ctx_(std::move(ctx)) {}

VsndDevice::~VsndDevice() = default;

Status VsndDevice::start(daemon::Reactor& loop) {
  loop_ = &loop;
  try {
    store_.emplace();
    gnt_.emplace();
    std::string be = spec().backend_path;
    if (be.empty()) be = "/local/domain/0/backend/vsnd/" + std::to_string(domid()) + "/" + std::to_string(key().devid);
    driver_.emplace(*store_, be, static_cast<xenbus::BackendHooks&>(*this));
  } catch (const std::exception& e) {
    spdlog::error("dom={} dev={}: cannot start: {}", domid(), name(), e.what());
    return Error{EIO, "vsnd: setup failed"};
  }
  auto w = loop.add_fd(store_->fd(), EPOLLIN, [this](std::uint32_t) { on_store(); });
  if (!w) return w.error();
  store_watch_ = *w;
  if (ctx_.hints) {
    // The listener runs on the publisher's thread: only post to our loop.
    const std::uint32_t me = domid();
    hint_sub_ = ctx_.hints->subscribe([this, me, alive = std::weak_ptr<const char>(alive_)](std::uint32_t dom) {
      if (dom != me || alive.expired()) return;
      loop_->post([this, alive] {
        if (!alive.expired()) refresh_roles();
      });
    });
  }
  if (auto s = driver_->start(); !s) return s;
  spdlog::info("dom={} dev={}: vsnd backend ready at {} (InitWait)", domid(), name(), driver_->be_path());
  return {};
}

void VsndDevice::stop() {
  if (ctx_.hints && hint_sub_) ctx_.hints->unsubscribe(hint_sub_);
  hint_sub_ = 0;
  if (loop_ && store_watch_) loop_->remove(store_watch_);
  store_watch_ = 0;
  disconnect();
  if (store_ && driver_ && !driver_->removed())
    (void)store_->write(driver_->be_path() + "/state", std::to_string(static_cast<int>(XenbusStateClosed)));
  driver_.reset();
}

Status VsndDevice::advertise(xen::StoreOps& t, const std::string& be_path) {
  // sndif's only backend key; Gears' own features ride along for frontends that look.
  if (auto s = t.write(be_path + "/" XENSND_FIELD_BE_VERSIONS, std::to_string(XENSND_PROTOCOL_VERSION)); !s) return s;
  return t.write(be_path + "/feature-gears-hints", "1");
}

Status VsndDevice::connect(xen::Store& s, const std::string& fe_path, domid_t fe_dom) {
  disconnect();
  StreamCaps card;
  if (auto st = apply_level(s, fe_path, card); !st) return st;
  auto pcms = s.directory(fe_path);
  if (!pcms) return Error{EPROTO, "vsnd: frontend directory unreadable"};
  std::vector<std::unique_ptr<Stream>> streams;
  std::size_t npcm = 0;
  for (const auto& p : *pcms) {
    if (!is_index(p)) continue;
    if (++npcm > kMaxPcms) return Error{EPROTO, "vsnd: too many PCM devices"};
    const std::string pdir = fe_path + "/" + p;
    StreamCaps pcaps = card;
    if (auto st = apply_level(s, pdir, pcaps); !st) return st;
    auto sids = s.directory(pdir);
    if (!sids) continue;
    std::size_t nst = 0;
    for (const auto& sid : *sids) {
      if (!is_index(sid)) continue;
      if (++nst > kMaxStreamsPerPcm || streams.size() >= kMaxStreams) return Error{EPROTO, "vsnd: too many streams"};
      auto st = std::make_unique<Stream>();
      st->path = pdir + "/" + sid;
      st->label = p + "/" + sid;
      st->caps = pcaps;
      if (auto a = apply_level(s, st->path, st->caps); !a) return a;
      auto type = s.read(st->path + "/" XENSND_FIELD_TYPE);
      if (!type || (*type != XENSND_STREAM_TYPE_PLAYBACK && *type != XENSND_STREAM_TYPE_CAPTURE))
        return Error{EPROTO, "vsnd: stream type missing or not p/c"};
      st->dir = *type == XENSND_STREAM_TYPE_PLAYBACK ? Direction::playback : Direction::capture;
      auto uid = s.read(st->path + "/" XENSND_FIELD_STREAM_UNIQUE_ID);
      st->unique_id = uid ? uid->substr(0, 64) : st->label;
      st->key = stream_key(st->unique_id);
      auto ring_ref = xenbus::read_uint(s, st->path + "/" XENSND_FIELD_RING_REF, UINT32_MAX);
      auto port = xenbus::read_uint(s, st->path + "/" XENSND_FIELD_EVT_CHNL, 1U << 17U);
      auto evt_ref = xenbus::read_uint(s, st->path + "/" XENSND_FIELD_EVT_RING_REF, UINT32_MAX);
      auto evt_port = xenbus::read_uint(s, st->path + "/" XENSND_FIELD_EVT_EVT_CHNL, 1U << 17U);
      if (!ring_ref || !port || !evt_ref || !evt_port)
        return Error{EPROTO, "vsnd: stream ring-ref/event-channel keys missing or malformed"};
      auto rm = gnt_->map(fe_dom, static_cast<grant_ref_t>(*ring_ref), true);
      auto em = rm ? gnt_->map(fe_dom, static_cast<grant_ref_t>(*evt_ref), true) : Result<xen::GrantMapping>(rm.error());
      if (!rm || !em) {
        spdlog::warn("dom={} dev={}: stream {}: cannot map ring {} / event page {}", domid(), name(), st->label,
                     *ring_ref, *evt_ref);
        return Error{EPROTO, "vsnd: cannot map a stream's ring or event page"};
      }
      st->ring_map = std::move(*rm);
      st->evt_map = std::move(*em);
      try {
        st->ring.emplace(st->ring_map.data(), kPage);
        st->evt.emplace(st->evt_map.data(), kPage);
        st->req_ch = xen::EventChannel::bind_interdomain(fe_dom, static_cast<evtchn_port_t>(*port));
        st->evt_ch = xen::EventChannel::bind_interdomain(fe_dom, static_cast<evtchn_port_t>(*evt_port));
      } catch (const std::exception& e) {
        spdlog::warn("dom={} dev={}: stream {}: {}", domid(), name(), st->label, e.what());
        return Error{EPROTO, "vsnd: cannot bind a stream's event channels"};
      }
      streams.push_back(std::move(st));
    }
  }
  if (streams.empty()) return Error{EPROTO, "vsnd: frontend declares no streams"};
  streams_ = std::move(streams);
  for (auto& up : streams_) {
    Stream* st = up.get();
    auto w = loop_->add_fd(st->req_ch.fd(), EPOLLIN, [this, st](std::uint32_t) { on_request(*st); });
    if (!w) {
      disconnect();
      return w.error();
    }
    st->watch = *w;
  }
  refresh_roles();
  ++connects_;
  spdlog::info("dom={} dev={}: connected, {} stream(s)", domid(), name(), streams_.size());
  for (auto& up : streams_) {
    spdlog::info("dom={} dev={}: stream {} {} unique-id={} key={} role={} rates {}..{} channels {}..{}", domid(),
                 name(), up->label, up->dir == Direction::playback ? "playback" : "capture", up->unique_id, up->key,
                 role_name(up->role), up->caps.rate_min, up->caps.rate_max, up->caps.ch_min, up->caps.ch_max);
    if (auto s2 = serve(*up); !s2) {
      close(s2.error(), up->label);
      return {};
    }
  }
  return {};
}

void VsndDevice::disconnect() {
  for (auto& st : streams_) {
    if (loop_ && st->watch) loop_->remove(st->watch);
    st->watch = 0;
    do_close(*st);
  }
  streams_.clear();
  update_timer();
}

void VsndDevice::on_store() {
  if (!store_) return;
  if (backend::pump_watches(*store_, driver_ ? &*driver_ : nullptr, domid(), name(), "vsnd") ==
      backend::WatchPump::removed)
    disconnect();
}

void VsndDevice::on_request(Stream& st) {
  auto c = st.req_ch.consume();
  if (!c) return close(c.error(), st.label + ": event channel");
  if (auto s = serve(st); !s) close(s.error(), st.label);
}

Status VsndDevice::serve(Stream& st) {
  if (!st.ring) return {};
  for (;;) {
    std::size_t n = 0;
    for (;;) {
      std::vector<xensnd_req> batch(kBatch);
      auto got = st.ring->consume(batch);
      if (!got) return got.error();
      if (*got == 0) break;
      n += *got;
      for (std::size_t i = 0; i < *got; ++i) {
        const xensnd_resp rsp = handle(st, batch[i]);
        if (auto p = st.ring->put_response(rsp); !p) return p;
      }
      if (auto p = st.ring->push_responses(st.req_ch); !p) return p;
      if (!st.ring) return {};
      if (n > 4 * st.ring->size()) {  // a flood: finish later, let other devices run
        loop_->post([this, s = &st, alive = std::weak_ptr<const char>(alive_)] {
          if (alive.expired()) return;
          for (auto& up : streams_)
            if (up.get() == s) {
              if (auto r = serve(*s); !r) close(r.error(), s->label);
              return;
            }
        });
        return {};
      }
    }
    auto more = st.ring->final_check_for_requests();
    if (!more) return more.error();
    if (!*more) return {};
  }
}

xensnd_resp VsndDevice::handle(Stream& st, const xensnd_req& req) {
  ++requests_;
  ++st.requests;
  const StreamView view{st.dir, &st.caps, st.open ? &*st.open : nullptr};
  auto cmd = validate(req, view);
  if (!cmd) {
    ++bad_requests_;
    ++st.bad;
    last_bad_ = std::string(op_name(req.operation)) + ": " + std::string(cmd.error().what);
    spdlog::debug("dom={} dev={}: stream {}: {} rejected: {}", domid(), name(), st.label, op_name(req.operation),
                  cmd.error().what);
    return make_response(req.id, req.operation, cmd.error().code);
  }
  const Command& c = *cmd;
  int code = 0;
  switch (c.op) {
    case XENSND_OP_OPEN:
      code = do_open(st, c.open);
      break;
    case XENSND_OP_CLOSE:
      do_close(st);
      break;
    case XENSND_OP_WRITE: {
      const auto data = st.buffer.bytes().subspan(c.offset, c.length);
      if (!st.mix->push(data, mono_ns())) {
        code = ENOSPC;  // more queued than the buffer holds: the frontend ignored CUR_POS
        break;
      }
      bytes_ += c.length;
      st.bytes += c.length;
      break;
    }
    case XENSND_OP_READ: {
      if (!st.buffer_writable) {
        code = EACCES;
        break;
      }
      const OpenParams& o = *st.open;
      const std::size_t frames = c.length / o.frame_bytes();
      std::vector<float> f(frames * o.channels);
      for (std::size_t i = 0; i < frames; ++i) {
        const float v = ctx_.capture ? ctx_.capture->sample(st.cap_sample + i, o.rate) : 0.0F;
        for (std::size_t ch = 0; ch < o.channels; ++ch) f[i * o.channels + ch] = v;
      }
      st.cap_sample += frames;
      std::vector<std::byte> out(c.length);
      from_float(o.format, o.channels, f.data(), frames, out.data());
      std::memcpy(st.buffer.data() + c.offset, out.data(), out.size());
      bytes_ += c.length;
      st.bytes += c.length;
      break;
    }
    case XENSND_OP_SET_VOLUME: {
      std::int32_t v[kMaxChannels] = {0, 0};
      std::memcpy(v, st.buffer.data() + c.offset, 4U * st.open->channels);  // copy once, then use
      for (std::size_t ch = 0; ch < st.open->channels; ++ch) {
        st.volume_mdb[ch] = v[ch];
        if (st.mix) st.mix->guest_gain[ch] = millidb_to_gain(v[ch]);
      }
      break;
    }
    case XENSND_OP_GET_VOLUME:
      if (!st.buffer_writable) {
        code = EACCES;
        break;
      }
      std::memcpy(st.buffer.data() + c.offset, st.volume_mdb, 4U * st.open->channels);
      break;
    case XENSND_OP_MUTE:
    case XENSND_OP_UNMUTE: {
      std::uint8_t m[kMaxChannels] = {0, 0};
      std::memcpy(m, st.buffer.data() + c.offset, st.open->channels);
      const bool any = std::any_of(m, m + st.open->channels, [](std::uint8_t b) { return b != 0; });
      if (any && st.mix) st.mix->guest_mute = c.op == XENSND_OP_MUTE;
      break;
    }
    case XENSND_OP_TRIGGER: {
      const bool start = c.trigger == XENSND_OP_TRIGGER_START || c.trigger == XENSND_OP_TRIGGER_RESUME;
      if (start && !st.running) st.cap_start_ns = mono_ns();
      if (!start && st.running) st.cap_base = st.cap_pos;
      st.running = start;
      if (st.mix) {
        if (c.trigger == XENSND_OP_TRIGGER_STOP) st.mix->request_flush();
        st.mix->set_running(start);
      }
      update_timer();
      break;
    }
    default:
      break;  // HW_PARAM_QUERY: answered below
  }
  auto rsp = make_response(c.id, c.op, code);
  if (c.op == XENSND_OP_HW_PARAM_QUERY) rsp.resp.hw_param = c.hw;
  if (code != 0) {
    ++bad_requests_;
    ++st.bad;
  }
  return rsp;
}

int VsndDevice::do_open(Stream& st, const OpenParams& p) {
  do_close(st);  // an OPEN on an open stream re-opens it (ALSA may re-run hw_params)
  const domid_t dom = driver_->fe_dom();
  // Walk the page directory: copy each directory page out, then parse the copy.
  std::vector<grant_ref_t> refs;
  refs.reserve(p.pages());
  grant_ref_t next = p.gref_directory;
  while (next != 0 || refs.empty()) {
    auto dir = gnt_->map(dom, next, false);
    if (!dir) {
      last_bad_ = "open: page directory grant not mappable";
      return EINVAL;
    }
    std::vector<std::byte> copy(kPage);
    ring::shm::copy_out(copy.data(), dir->data(), kPage);
    auto r = parse_dir_page(copy, p.pages(), refs);
    if (!r) {
      last_bad_ = std::string("open: ") + std::string(r.error().what);
      return EINVAL;
    }
    next = *r;
    if (next == 0) break;
  }
  auto buf = gnt_->map(dom, refs, true);
  bool writable = true;
  if (!buf && st.dir == Direction::playback) {
    buf = gnt_->map(dom, refs, false);
    writable = false;
  }
  if (!buf) {
    last_bad_ = "open: buffer grants not mappable";
    return EINVAL;
  }
  st.buffer = std::move(*buf);
  st.buffer_writable = writable;
  st.open = p;
  st.reported = 0;
  st.cap_base = st.cap_pos = st.cap_sample = 0;
  st.running = false;
  st.volume_mdb[0] = st.volume_mdb[1] = 0;
  if (st.dir == Direction::playback) {
    st.mix = std::make_shared<MixStream>(domid(), name() + "/" + st.label, st.key,
                                         PcmFormat{p.rate, p.format, p.channels}, 2 * std::size_t{p.buffer_sz});
    st.mix->role = st.role;
    if (ctx_.mixer) ctx_.mixer->add(st.mix);
  }
  spdlog::info("dom={} dev={}: stream {} open: {} Hz, format {}, {} ch, buffer {} B, period {} B", domid(), name(),
               st.label, p.rate, p.format, p.channels, p.buffer_sz, p.period_sz);
  return 0;
}

void VsndDevice::do_close(Stream& st) {
  if (st.mix) {
    st.mix->set_running(false);
    if (ctx_.mixer) ctx_.mixer->remove(st.mix);
    st.mix.reset();
  }
  st.buffer.reset();
  st.open.reset();
  st.running = false;
  update_timer();
}

void VsndDevice::update_timer() {
  if (!loop_) return;
  const bool any = std::any_of(streams_.begin(), streams_.end(), [](const auto& s) { return s->running && s->open; });
  if (any && !timer_) {
    auto t = loop_->add_timer(std::chrono::milliseconds(kTickMs), std::chrono::milliseconds(kTickMs),
                              [this] { on_tick(); });
    if (t) timer_ = *t;
  } else if (!any && timer_) {
    loop_->remove(timer_);
    timer_ = 0;
  }
}

// CUR_POS: one event each time the position crosses a period boundary, and one when a playback stream has
// played everything it was given (so a draining frontend sees the end). Position = bytes since OPEN.
void VsndDevice::on_tick() {
  const std::int64_t now = mono_ns();
  for (auto& up : streams_) {
    Stream& st = *up;
    if (!st.open || !st.running || !st.evt) continue;
    const OpenParams& o = *st.open;
    std::uint64_t pos = 0;
    bool drained = false;
    if (st.dir == Direction::playback) {
      pos = st.mix ? st.mix->consumed() : 0;
      drained = st.mix && pos == st.mix->written();
    } else {
      const auto fb = std::uint64_t{o.frame_bytes()};
      const auto frames = static_cast<std::uint64_t>(now - st.cap_start_ns) * o.rate / 1'000'000'000ULL;
      st.cap_pos = st.cap_base + frames * fb;
      pos = st.cap_pos;
    }
    if (o.period_sz == 0 || pos == st.reported) continue;
    const bool crossed = pos / o.period_sz != st.reported / o.period_sz;
    if (!crossed && !drained) continue;
    if (st.evt->put_cur_pos(pos)) {
      st.reported = pos;
      ++events_sent_;
      (void)st.evt_ch.notify();
    }
  }
}

void VsndDevice::refresh_roles() {
  if (!ctx_.hints) return;
  const auto recs = ctx_.hints->snapshot(domid());
  const auto eff = ctx_.hints->effective(domid(), hints::DevType::vsnd, key().devid);
  for (auto& up : streams_) {
    const Role r = resolve_role(recs, eff, up->key, ctx_.default_role);
    if (r != up->role) spdlog::info("dom={} dev={}: stream {} role {}", domid(), name(), up->label, role_name(r));
    up->role = r;
    if (up->mix) up->mix->role = r;
  }
}

void VsndDevice::close(const Error& e, const std::string& detail) {
  ++violations_;
  last_error_ = std::string(e.what) + (detail.empty() ? "" : " (stream " + detail + ")");
  spdlog::error("dom={} dev={}: closed: {}", domid(), name(), last_error_);
  if (driver_) driver_->fault(e.what);
  disconnect();
}

nlohmann::json VsndDevice::stats() const {
  nlohmann::json streams = nlohmann::json::array();
  for (const auto& up : streams_) {
    const Stream& st = *up;
    nlohmann::json j = {{"stream", st.label},
                        {"type", st.dir == Direction::playback ? "p" : "c"},
                        {"unique_id", st.unique_id},
                        {"key", st.key},
                        {"role", role_name(st.role)},
                        {"open", st.open.has_value()},
                        {"running", st.running},
                        {"requests", st.requests},
                        {"bad_requests", st.bad},
                        {"bytes", st.bytes},
                        {"position", st.reported}};
    if (st.open) j["rate"] = st.open->rate, j["channels"] = st.open->channels, j["format"] = st.open->format;
    if (st.mix) {
      auto lat = st.mix->latency_samples();
      if (!lat.empty()) {
        std::sort(lat.begin(), lat.end());
        j["latency_ms"] = {{"median", lat[lat.size() / 2] / 1000.0},
                           {"p10", lat[lat.size() / 10] / 1000.0},
                           {"p90", lat[lat.size() * 9 / 10] / 1000.0},
                           {"samples", lat.size()}};
      }
      j["ducked_db"] = st.mix->ducked_db();
      j["underruns"] = st.mix->underruns();
    }
    streams.push_back(std::move(j));
  }
  return {{"state", driver_ ? std::string(xenbus::state_name(driver_->state())) : "down"},
          {"connected", !streams_.empty()},
          {"ops", requests_},
          {"bytes", bytes_},
          {"errors", bad_requests_ + violations_},
          {"bad_requests", bad_requests_},
          {"violations", violations_},
          {"events", events_sent_},
          {"connects", connects_},
          {"last_error", last_error_},
          {"last_bad_request", last_bad_},
          {"streams", std::move(streams)},
          {"mixer", ctx_.mixer ? ctx_.mixer->stats() : nlohmann::json()}};
}

void VsndDevice::metrics(daemon::MetricSet& out) const {
  out.add("gears_media_requests_total", daemon::MetricType::counter, "sndif requests served.",
          static_cast<double>(requests_));
  out.add("gears_media_bad_requests_total", daemon::MetricType::counter, "sndif requests answered with an error.",
          static_cast<double>(bad_requests_));
  out.add("gears_media_bytes_total", daemon::MetricType::counter, "PCM bytes moved.", static_cast<double>(bytes_));
  out.add("gears_media_events_total", daemon::MetricType::counter, "CUR_POS events sent.",
          static_cast<double>(events_sent_));
  out.add("gears_media_violations_total", daemon::MetricType::counter, "Devices closed for ring violations.",
          static_cast<double>(violations_));
}

nlohmann::json VsndDevice::hints() const {
  nlohmann::json j = nlohmann::json::array();
  for (const auto& up : streams_) j.push_back({{"stream", up->label}, {"key", up->key}, {"role", role_name(up->role)}});
  return j;
}

std::unique_ptr<daemon::Device> make_vsnd_device(const daemon::DeviceSpec& spec, MediaContext ctx) {
  return std::make_unique<VsndDevice>(spec, std::move(ctx));
}

std::unique_ptr<daemon::DiscoverySource> make_vsnd_discovery() {
  return std::make_unique<backend::XenbusDiscovery>("vsnd", "vsnd");
}

}  // namespace gears::media
