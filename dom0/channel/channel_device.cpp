#include "dom0/channel/channel_device.hpp"
#include "dom0/common/watch_pump.hpp"

#include <spdlog/spdlog.h>
#include <sys/epoll.h>

#include <charconv>
#include <cstring>
#include <vector>

#include "common/channel/protocol.hpp"
#include "common/hints/hints.hpp"
#include "common/ring/stream_ring.hpp"
#include "common/xenbus/nodes.hpp"
#include "dom0/common/discovery.hpp"

namespace gears::chan {
namespace {

constexpr std::size_t kMaxHintSets = 64;  // newest kept per device

std::string be_dir(domid_t domu, unsigned devid) { return channel_nodes(domu, devid).be_path(); }

// Strict decimal read of a frontend-written key: digits only, bounded.
Result<std::uint32_t> read_u32(xen::Store& s, const std::string& path, std::uint32_t max) {
  auto v = s.read(path);
  if (!v) return Error{EPROTO, "channel: frontend key missing"};
  const std::string& t = *v;
  std::uint32_t out = 0;
  auto [end, ec] = std::from_chars(t.data(), t.data() + t.size(), out);
  if (t.empty() || t.size() > 10 || ec != std::errc{} || end != t.data() + t.size() || out > max)
    return Error{EPROTO, "channel: frontend key malformed or out of range"};
  return out;
}

void accumulate(channel::BackendStats& into, const channel::BackendStats& from) {
  into.frames_in += from.frames_in;
  into.frames_out += from.frames_out;
  into.bytes_in += from.bytes_in;
  into.bytes_out += from.bytes_out;
  into.hint_sets += from.hint_sets;
  into.msgs += from.msgs;
  into.pings += from.pings;
}

// Records in a TLV hint set that the decoder accepted ((u16 kind | u16 len | value)*, little-endian). The
// HintsAck reports this count, not the size of the decoder's JSON (which adds "text" and groups flow keys).
std::uint32_t count_records(std::span<const std::byte> tlv) {
  std::uint32_t n = 0;
  for (std::size_t off = 0; off + 4 <= tlv.size(); ++n)
    off += 4 + (std::to_integer<std::size_t>(tlv[off + 2]) | (std::to_integer<std::size_t>(tlv[off + 3]) << 8U));
  return n;
}

}  // namespace

ChannelDevice::ChannelDevice(daemon::DeviceSpec spec, HintDecoder decode, daemon::HintRegistry* registry)
    : daemon::Device(std::move(spec)), decode_(std::move(decode)), registry_(registry) {}

ChannelDevice::~ChannelDevice() = default;

Status ChannelDevice::start(daemon::Reactor& loop) {
  loop_ = &loop;
  try {
    store_.emplace();
    gnt_.emplace();
    const auto dom = static_cast<domid_t>(domid());
    create_channel_nodes(*store_, dom, key().devid);
    driver_.emplace(*store_, be_dir(dom, key().devid), static_cast<xenbus::BackendHooks&>(*this));
  } catch (const std::exception& e) {
    spdlog::error("dom={} dev={}: cannot start: {}", domid(), name(), e.what());
    return Error{EIO, "channel: setup failed"};
  }
  auto w = loop.add_fd(store_->fd(), EPOLLIN, [this](std::uint32_t) { on_store(); });
  if (!w) return w.error();
  store_watch_ = *w;
  if (auto s = driver_->start(); !s) return s;
  spdlog::info("dom={} dev={}: backend ready at {} (InitWait)", domid(), name(), driver_->be_path());
  return {};
}

void ChannelDevice::stop() {
  finish_bench({{"ok", false}, {"error", "the channel device was detached"}});
  if (registry_) registry_->clear(domid(), name());
  if (loop_ && store_watch_) loop_->remove(store_watch_);
  store_watch_ = 0;
  disconnect();
  if (store_ && driver_ && !driver_->removed()) {
    (void)store_->write(driver_->be_path() + "/state", std::to_string(static_cast<int>(XenbusStateClosed)));
  }
  driver_.reset();
  if (store_) remove_channel_nodes(*store_, static_cast<domid_t>(domid()), key().devid);
}

Status ChannelDevice::advertise(xen::StoreOps& t, const std::string& be_path) {
  if (auto s = t.write(be_path + "/feature-gears-hints", "1"); !s) return s;
  if (auto s = t.write(be_path + "/max-ring-page-order", std::to_string(channel::kMaxRingPageOrder)); !s) return s;
  return t.write(be_path + "/max-frame", std::to_string(channel::kMaxFrame));
}

Result<std::vector<grant_ref_t>> ChannelDevice::ring_refs(xen::Store& s, const std::string& fe_path,
                                                         std::string_view dir, std::size_t pages, domid_t fe_dom) {
  std::vector<grant_ref_t> refs(pages);
  const std::string base = fe_path + "/" + std::string(dir);
  if (s.read(base + "-ring-dir-ref")) {
    auto ref = read_u32(s, base + "-ring-dir-ref", UINT32_MAX);
    if (!ref) return Error{EPROTO, "channel: ring directory reference malformed"};
    auto page = gnt_->map(fe_dom, grant_ref_t{*ref}, false);
    if (!page) return Error{page.error().code, "channel: cannot map a ring directory page"};
    // One copy out of the guest's page; the map below validates every entry (a bad ref fails it).
    std::memcpy(refs.data(), page->bytes().data(), pages * sizeof(grant_ref_t));
    return refs;
  }
  for (std::size_t i = 0; i < pages; ++i) {  // older frontends: one key per page
    auto r = read_u32(s, base + "-ring-ref" + std::to_string(i), UINT32_MAX);
    if (!r) return Error{EPROTO, "channel: ring reference missing or malformed"};
    refs[i] = *r;
  }
  return refs;
}

Status ChannelDevice::connect(xen::Store& s, const std::string& fe_path, domid_t fe_dom) {
  // The frame limit needs at least 2^5 data pages per ring.
  auto order = read_u32(s, fe_path + "/ring-page-order", channel::kMaxRingPageOrder);
  if (!order) return order.error();
  if (*order < 5) return Error{EPROTO, "channel: ring-page-order below 5"};
  const std::size_t pages = 1 + (std::size_t{1} << *order);
  auto up_refs = ring_refs(s, fe_path, "up", pages, fe_dom);
  if (!up_refs) return up_refs.error();
  auto down_refs = ring_refs(s, fe_path, "down", pages, fe_dom);
  if (!down_refs) return down_refs.error();
  auto port = read_u32(s, fe_path + "/event-channel", 1U << 17U);
  if (!port) return port.error();

  auto up = gnt_->map(fe_dom, *up_refs, true);
  auto down = up ? gnt_->map(fe_dom, *down_refs, true) : Result<xen::GrantMapping>(up.error());
  if (!up || !down) {
    const Error e = up ? down.error() : up.error();
    spdlog::warn("dom={} dev={}: mapping {} {} pages (refs {}..) failed: {} (errno {})", domid(), name(),
                 up ? "down" : "up", pages, up ? (*down_refs)[0] : (*up_refs)[0], e.what, e.code);
    return Error{e.code, up ? "channel: cannot map the down ring" : "channel: cannot map the up ring"};
  }
  try {
    evtchn_ = xen::EventChannel::bind_interdomain(fe_dom, *port);
    up_ = std::move(up.value());
    down_ = std::move(down.value());
    session_ = std::make_unique<channel::BackendSession<xen::EventChannel>>(
        up_.bytes(), down_.bytes(), *evtchn_, channel::kMaxFrame,
        [this](std::span<const std::byte> tlv) -> Result<std::uint32_t> {
          auto j = decode_(tlv);
          if (!j) return j.error();
          const std::uint32_t n = count_records(tlv);
          hints_.push_back({{"received_ns", channel::now_ns()}, {"hints", std::move(*j)}});
          if (registry_) {
            if (auto set = hints::decode(tlv)) (void)registry_->publish(domid(), daemon::HintSource::channel, name(), *set);
          }
          if (hints_.size() > kMaxHintSets) hints_.erase(hints_.begin());
          return n;
        });
  } catch (const std::exception& e) {
    spdlog::warn("dom={} dev={}: connect refused: {}", domid(), name(), e.what());
    session_.reset();
    evtchn_.reset();
    up_.reset();
    down_.reset();
    return Error{EPROTO, "channel: ring header or event channel invalid"};
  }
  auto w = loop_->add_fd(evtchn_->fd(), EPOLLIN, [this](std::uint32_t) { on_event(); });
  if (!w) {
    disconnect();
    return w.error();
  }
  evtchn_watch_ = *w;
  ++connects_;
  spdlog::info("dom={} dev={}: connected ({} data pages per ring, port {})", domid(), name(), pages - 1, *port);
  pump();  // frames may already be waiting
  return {};
}

void ChannelDevice::disconnect() {
  if (bench_) finish_bench({{"ok", false}, {"error", "the channel closed before the agent answered"}});
  if (loop_ && evtchn_watch_) loop_->remove(evtchn_watch_);
  evtchn_watch_ = 0;
  if (session_) accumulate(totals_, session_->stats());
  session_.reset();
  evtchn_.reset();
  up_.reset();
  down_.reset();
}

void ChannelDevice::on_store() {
  if (!store_) return;
  (void)backend::pump_watches(*store_, driver_ ? &*driver_ : nullptr, domid(), name(), "channel");
}

void ChannelDevice::on_event() {
  ++events_;
  if (!evtchn_) return;
  auto c = evtchn_->consume();
  if (!c) {
    close(c.error(), "event channel");
    return;
  }
  pump();
}

void ChannelDevice::pump() {
  if (!session_) return;
  auto r = session_->pump();
  if (!r) {
    close(r.error(), session_->detail());
    return;
  }
  if (*r == channel::PumpResult::Again && !pump_posted_) {
    pump_posted_ = true;
    // The device may be stopped and destroyed (detach) before this task runs: a detach posted while pump() ran
    // sits ahead of it in the queue.
    loop_->post([this, alive = std::weak_ptr<const char>(alive_)] {
      if (alive.expired()) return;
      pump_posted_ = false;
      pump();
    });
  }
}

void ChannelDevice::close(const Error& e, const std::string& detail) {
  ++closes_for_violation_;
  last_error_ = std::string(e.what) + (detail.empty() ? "" : " (" + detail + ")");
  spdlog::error("dom={} dev={}: closed: {}", domid(), name(), last_error_);
  if (driver_) driver_->fault(e.what);
  disconnect();
}

namespace {
// A JSON integer in [1, max] (parsed socket JSON holds unsigned, C++-built JSON signed values).
std::optional<std::uint64_t> positive(const nlohmann::json& j, std::uint64_t max) {
  if (j.is_number_unsigned()) {
    const auto v = j.get<std::uint64_t>();
    if (v >= 1 && v <= max) return v;
  } else if (j.is_number_integer()) {
    const auto v = j.get<std::int64_t>();
    if (v >= 1 && static_cast<std::uint64_t>(v) <= max) return static_cast<std::uint64_t>(v);
  }
  return std::nullopt;
}
}  // namespace

void ChannelDevice::control(const nlohmann::json& req, ControlDone done) {
  using nlohmann::json;
  auto fail = [&](const std::string& why) { done({{"ok", false}, {"error", why}}); };
  const auto op = req.value("op", std::string());
  if (op != "bench") return fail("unknown channel operation '" + op.substr(0, 32) + "' (known: bench)");
  if (!session_) return fail("the channel is not connected (is `gears-front agent` running in the guest?)");
  if (!(session_->peer_features() & channel::kFeatureAgent))
    return fail("the guest's frontend is not an agent: run `gears-front agent` in the guest");
  if (bench_ || session_->bench_outstanding()) return fail("a benchmark is already running on this channel");
  channel::BenchRequest br;
  const auto what = req.value("what", std::string("bulk_up"));
  if (what == "bulk_up") br.kind = channel::BenchKind::BulkUp;
  else if (what == "bulk_down") br.kind = channel::BenchKind::BulkDown;
  else if (what == "msgs") br.kind = channel::BenchKind::Msgs;
  else if (what == "rtt") br.kind = channel::BenchKind::Rtt;
  else return fail("bench: 'what' must be bulk_up, bulk_down, msgs or rtt");
  const bool bulk = br.kind == channel::BenchKind::BulkUp || br.kind == channel::BenchKind::BulkDown;
  const json amount = req.value("amount", json(bulk ? 64ULL << 20U : br.kind == channel::BenchKind::Msgs ? 100000U : 1000U));
  const std::uint64_t max_amount = bulk ? channel::kMaxBenchBytes : channel::kMaxBenchCount;
  const auto n = positive(amount, max_amount);
  if (!n) return fail("bench: 'amount' must be 1.." + std::to_string(max_amount));
  br.amount = *n;
  if (br.kind == channel::BenchKind::Msgs) {
    const json size = req.value("size", json(64));
    const auto sz = positive(size, channel::kMaxFrame);
    if (!sz) return fail("bench: 'size' must be 1.." + std::to_string(channel::kMaxFrame));
    br.size = static_cast<std::uint32_t>(*sz);
  }
  const json verify = req.value("verify", json(true));
  if (!verify.is_boolean()) return fail("bench: 'verify' must be true or false");
  br.verify = verify.get<bool>();
  const json timeout = req.value("timeout_s", json(600));
  const auto timeout_s = positive(timeout, 86400);
  if (!timeout_s) return fail("bench: 'timeout_s' must be 1..86400");
  br.id = next_bench_id_++;

  const auto t0 = channel::now_ns();
  auto sink = [this, what, br, t0](const channel::BenchResult& r) {
    if (!bench_ || bench_->id != r.id) return;  // timed out earlier: nobody waits for it any more
    const double secs = static_cast<double>(r.elapsed_ns) / 1e9;
    json res = {{"what", what}, {"amount", r.amount}, {"seconds", secs}, {"match", r.match},
                {"status", r.status}, {"dom0_seconds", static_cast<double>(channel::now_ns() - t0) / 1e9}};
    if (br.kind == channel::BenchKind::BulkUp || br.kind == channel::BenchKind::BulkDown)
      res["mb_per_s"] = secs > 0 ? static_cast<double>(r.amount) / 1e6 / secs : 0.0;
    if (br.kind == channel::BenchKind::Msgs) {
      res["size"] = br.size;
      res["msgs_per_s"] = secs > 0 ? static_cast<double>(r.amount) / secs : 0.0;
    }
    if (br.kind == channel::BenchKind::Rtt) {
      res["p50_us"] = static_cast<double>(r.p50_ns) / 1e3;
      res["mean_us"] = r.amount ? static_cast<double>(r.elapsed_ns) / 1e3 / static_cast<double>(r.amount) : 0.0;
    }
    if (r.status != 0) {
      finish_bench({{"ok", false}, {"error", "the agent's measurement failed: " + std::string(std::strerror(static_cast<int>(r.status)))},
                    {"result", res}});
      return;
    }
    ++benches_;
    finish_bench({{"ok", true}, {"result", res}});
  };
  if (auto s = session_->request_bench(br, sink); !s) return fail(std::string("bench: ") + std::string(s.error().what));
  bench_ = PendingBench{std::move(done), 0, br.id};
  auto t = loop_->add_timer(std::chrono::seconds(*timeout_s), std::chrono::nanoseconds(0),
                            [this, alive = std::weak_ptr<const char>(alive_)] {
                              if (alive.expired() || !bench_) return;
                              bench_->timer = 0;  // one-shot: already removed
                              finish_bench({{"ok", false}, {"error", "the agent did not answer in time"}});
                            });
  if (t) bench_->timer = *t;
  pump();
}

void ChannelDevice::finish_bench(nlohmann::json reply) {
  if (!bench_) return;
  auto b = std::move(*bench_);
  bench_.reset();
  if (b.timer && loop_) loop_->remove(b.timer);
  b.done(std::move(reply));
}

nlohmann::json ChannelDevice::stats() const {
  channel::BackendStats st = totals_;
  if (session_) accumulate(st, session_->stats());
  return {{"state", driver_ ? std::string(xenbus::state_name(driver_->state())) : "down"},
          {"connected", session_ != nullptr},
          {"ops", st.frames_in + st.frames_out},
          {"bytes", st.bytes_in + st.bytes_out},
          {"errors", closes_for_violation_},
          {"bytes_in", st.bytes_in},
          {"bytes_out", st.bytes_out},
          {"hint_sets", st.hint_sets},
          {"msgs", st.msgs},
          {"pings", st.pings},
          {"events", events_},
          {"connects", connects_},
          {"agent", session_ != nullptr && (session_->peer_features() & channel::kFeatureAgent) != 0},
          {"benches", benches_},
          {"last_error", last_error_}};
}

void ChannelDevice::metrics(daemon::MetricSet& out) const {
  const auto s = stats();
  out.add("gears_channel_bytes_in_total", daemon::MetricType::counter, "Bulk bytes received from the domU.",
          s["bytes_in"].get<double>());
  out.add("gears_channel_bytes_out_total", daemon::MetricType::counter, "Bulk bytes sent to the domU.",
          s["bytes_out"].get<double>());
  out.add("gears_channel_hint_sets_total", daemon::MetricType::counter, "Hint sets received.",
          s["hint_sets"].get<double>());
  out.add("gears_channel_violations_total", daemon::MetricType::counter, "Channels closed for protocol violations.",
          s["errors"].get<double>());
  out.add("gears_channel_connected", daemon::MetricType::gauge, "1 while the ring pair is mapped.",
          session_ ? 1.0 : 0.0);
}

nlohmann::json ChannelDevice::hints() const { return hints_; }

xenbus::DeviceNodes channel_nodes(domid_t domu, unsigned devid) {
  xenbus::DeviceNodes n;
  n.be_type = "gears";
  n.fe_type = "gears";
  n.fe_dom = domu;
  n.devid = devid;
  return n;
}

void create_channel_nodes(xen::Store& s, domid_t domu, unsigned devid) {
  xenbus::create_device_nodes(s, channel_nodes(domu, devid));
}

void remove_channel_nodes(xen::Store& s, domid_t domu, unsigned devid) {
  xenbus::remove_device_nodes(s, channel_nodes(domu, devid));
}

std::unique_ptr<daemon::Device> make_channel_device(const daemon::DeviceSpec& spec, daemon::HintRegistry* registry) {
  return std::make_unique<ChannelDevice>(spec, decode_hint_set, registry);
}

std::unique_ptr<daemon::DiscoverySource> make_channel_discovery() {
  return std::make_unique<backend::XenbusDiscovery>("gears", "channel");
}

}  // namespace gears::chan
