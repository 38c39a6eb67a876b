#include "dom0/backends/blk/device.hpp"
#include "dom0/common/watch_pump.hpp"

#include <spdlog/spdlog.h>
#include <sys/epoll.h>

#include <chrono>
#include <cstdlib>
#include <cstring>
#include <stdexcept>
#include <thread>

#include "dom0/common/discovery.hpp"

namespace gears::blk {
namespace {

constexpr std::uint32_t kVdiskReadonly = 4;  // VDISK_READONLY in blkif.h's `info`
constexpr int kDetachWaitMs = 10000;  // how long a detach waits for the frontend (TCG guests are slow)

std::uint64_t now_ns() {
  return static_cast<std::uint64_t>(
      std::chrono::duration_cast<std::chrono::nanoseconds>(std::chrono::steady_clock::now().time_since_epoch())
          .count());
}

std::string param(const nlohmann::json& p, const char* key, const std::string& dflt = "") {
  auto it = p.find(key);
  if (it == p.end()) return dflt;
  if (it->is_string()) return it->get<std::string>();
  if (it->is_number_unsigned()) return std::to_string(it->get<std::uint64_t>());
  throw std::invalid_argument(std::string(key) + ": must be a string");
}

// class=<c> out of a hint text such as "class=gold,latency=500us".
std::optional<std::uint8_t> class_from_hints(const std::string& text) {
  std::size_t p = 0;
  while (p < text.size()) {
    const auto e = text.find(',', p);
    const std::string item = text.substr(p, e == std::string::npos ? std::string::npos : e - p);
    if (item.rfind("class=", 0) == 0) return parse_class(item.substr(6));
    if (e == std::string::npos) break;
    p = e + 1;
  }
  return std::nullopt;
}

void free_buf(std::byte* p) { std::free(p); }  // NOLINT(cppcoreguidelines-no-malloc)

}  // namespace

BlkConfig parse_config(const nlohmann::json& p, std::uint32_t devid) {
  if (!p.is_object()) throw std::invalid_argument("params must be an object");
  BlkConfig c;
  c.target = param(p, "target");
  if (c.target.empty()) throw std::invalid_argument("target: missing (file:/path, /path or nbd://host/export)");
  const std::string mode = param(p, "mode", "w");
  if (mode != "w" && mode != "r" && mode != "rw" && mode != "ro")
    throw std::invalid_argument("mode='" + mode + "': expected r or w");
  c.read_only = mode == "r" || mode == "ro";
  c.topts.read_only = c.read_only;
  c.topts.cache = parse_cache_mode(param(p, "cache"));
  c.dcache = parse_dcache(param(p, "dcache"), param(p, "dcache-file"));
  const std::string ss = param(p, "sector-size", "512");
  if (ss != "512" && ss != "4096") throw std::invalid_argument("sector-size='" + ss + "': expected 512 or 4096");
  c.sector_size = static_cast<std::uint32_t>(std::stoul(ss));
  const std::string vdev = param(p, "vdev");
  c.virtual_device = vdev.empty() ? devid : parse_vdev(vdev);
  const std::string g = param(p, "grants", "persistent");  // measured faster (docs/SEMBLK.md)
  if (g == "copy") c.grants = GrantMode::copy;
  else if (g == "persistent") c.grants = GrantMode::persistent;
  else throw std::invalid_argument("grants='" + g + "': expected copy or persistent");
  c.sched.weights = parse_weights(param(p, "weights"), c.sched.weights);
  c.sched.extents = parse_regions(param(p, "regions"));
  c.sched.procs = parse_procs(param(p, "procs"));
  c.sched.rate_bps = parse_rate(param(p, "capacity", param(p, "rate")));  // the disk's capacity model (bytes/s)
  const std::string depth = param(p, "depth", "64");
  if (depth.empty() || depth.find_first_not_of("0123456789") != std::string::npos || depth.size() > 4 ||
      std::stoul(depth) < 1 || std::stoul(depth) > 1024)
    throw std::invalid_argument("depth='" + depth + "': expected 1..1024");
  c.sched.depth = static_cast<std::uint32_t>(std::stoul(depth));
  c.topts.depth = c.sched.depth;
  const std::string antic = param(p, "anticipate", "0");
  if (antic.empty() || antic.find_first_not_of("0123456789") != std::string::npos || antic.size() > 7)
    throw std::invalid_argument("anticipate='" + antic + "': expected microseconds (0..9999999)");
  c.sched.anticipate_us = static_cast<std::uint32_t>(std::stoul(antic));
  if (auto cls = param(p, "class"); !cls.empty()) {
    c.sched.default_class = parse_class(cls);
    c.class_set = true;
  }
  if (auto h = class_from_hints(param(p, "hints"))) {
    c.sched.default_class = *h;
    c.class_set = true;
  }
  return c;
}

xenbus::DeviceNodes blk_nodes(domid_t domu, unsigned devid) {
  xenbus::DeviceNodes n;
  n.be_type = "gears-vbd";
  n.fe_type = "vbd";
  n.fe_dom = domu;
  n.devid = devid;
  return n;
}

BlkDevice::BlkDevice(daemon::DeviceSpec spec, daemon::HintRegistry* hints)
    : daemon::Device(std::move(spec)), attr_(hints), hints_(hints) {
  // On the main thread (the factory): bad parameters and unreachable targets are reported to whoever
  // asked for the disk, with the reason.
  params_ = this->spec().params;
  if (!params_.contains("target")) {
    // Discovered without parameters (e.g. gearsd restarted): the backend directory keeps them.
    xen::Store st;
    const auto be = blk_nodes(static_cast<domid_t>(domid()), key().devid).be_path();
    if (auto t = st.read(be + "/params")) params_["target"] = *t;
    if (auto m = st.read(be + "/mode")) params_["mode"] = *m;
    if (auto g = st.read(be + "/gears-params")) {
      auto extra = nlohmann::json::parse(*g, nullptr, false);
      if (extra.is_object())
        for (auto& [k, v] : extra.items())
          if (!params_.contains(k)) params_[k] = v;
    }
  }
  cfg_ = parse_config(params_, key().devid);
  target_ = open_target(cfg_.target, cfg_.topts);
  if (cfg_.dcache.mode != DcacheMode::off) {
    if (cfg_.dcache.file.empty()) cfg_.dcache.file = default_dcache_file(domid(), key().devid);
    target_ = open_cached_target(std::move(target_), cfg_.dcache);
  }
}

BlkDevice::~BlkDevice() {
  if (hints_ && hint_sub_) hints_->unsubscribe(hint_sub_);
  target_.reset();  // waits for the kernel/server to release our buffers (and the guest pages of zero-bounce I/O)
  pins_.reset();
  for (auto& s : slots_) free_buf(s.buf);
}

Status BlkDevice::start(daemon::Reactor& loop) {
  loop_ = &loop;
  const auto dom = static_cast<domid_t>(domid());
  try {
    store_.emplace();
    const auto nodes = blk_nodes(dom, key().devid);
    geo_.sectors = target_->size_bytes() >> kSectorShift;
    geo_.sector_size = cfg_.sector_size;
    if (cfg_.sector_size == 4096) geo_.sectors &= ~std::uint64_t{7};
    geo_.read_only = cfg_.read_only || target_->read_only();
    geo_.discard = target_->can_discard() && !geo_.read_only;
    sched_ = std::make_unique<Scheduler>(cfg_.sched);
    label_stats_.assign(cfg_.sched.extents.size(), {});
    gnt_.emplace();
    slots_.resize(kMaxSlots);
    for (std::uint32_t i = 0; i < kMaxSlots; ++i) free_slots_.push_back(kMaxSlots - 1 - i);
    indirect_buf_.resize(std::size_t{BLKIF_MAX_INDIRECT_PAGES_PER_REQUEST} * kPageBytes);

    auto n = nodes;
    nlohmann::json keep = nlohmann::json::object();
    for (const char* k : {"grants", "regions", "procs", "weights", "capacity", "rate", "depth", "anticipate", "class", "hints", "cache",
                          "dcache", "dcache-file", "sector-size", "vdev"})
      if (params_.contains(k)) keep[k] = params_[k];
    n.be_keys = {{"params", cfg_.target},
                 {"mode", geo_.read_only ? "r" : "w"},
                 {"type", "gears"},
                 {"gears-params", keep.dump()}};
    n.fe_keys = {{"virtual-device", std::to_string(cfg_.virtual_device)}, {"device-type", "disk"}};
    xenbus::create_device_nodes(*store_, n);
    driver_.emplace(*store_, n.be_path(), static_cast<xenbus::BackendHooks&>(*this));
  } catch (const std::exception& e) {
    spdlog::error("dom={} dev={}: cannot start: {}", domid(), name(), e.what());
    return Error{EIO, "vbd: setup failed (see gearsd log)"};
  }
  auto w = loop.add_fd(store_->fd(), EPOLLIN, [this](std::uint32_t) { on_store(); });
  if (!w) return w.error();
  store_watch_ = *w;
  target_events_ = target_->poll_events();
  auto tw = loop.add_fd(target_->fd(), target_events_, [this](std::uint32_t ev) { on_target(ev); });
  if (!tw) return tw.error();
  target_watch_ = *tw;
  attr_.set_comm_rules(cfg_.sched.procs);
  if (cfg_.class_set) class_source_ = "disk";
  if (hints_) {
    // The listener runs on the publisher's thread: it only posts to our loop.
    const std::uint32_t me = domid();
    hint_sub_ = hints_->subscribe([this, me, alive = std::weak_ptr<const char>(alive_)](std::uint32_t changed) {
      if (changed != me || alive.expired()) return;
      loop_->post([this, alive] {
        if (!alive.expired()) refresh_hints();
      });
    });
    refresh_hints();
    class_changes_ = 0;  // counts live changes only
  }
  if (auto s = driver_->start(); !s) return s;
  spdlog::info("dom={} dev={}: backend ready at {} ({}, {} sectors, {}, grants={})", domid(), name(),
               driver_->be_path(), target_->describe(), geo_.sectors, geo_.read_only ? "ro" : "rw",
               cfg_.grants == GrantMode::copy ? "copy" : "persistent");
  return {};
}

// Detach as xl does (libxl: online=0 + Closing, then wait for the frontend). A frontend that keeps the disk open
// stays Connected (older blkfronts refuse with "Device in use"): unless forced, we then refuse the detach and
// go back to Connected, so the disk keeps working. Linux >= 5.19 blkfront closes even when mounted (it marks
// the disk dead): the detach then proceeds, and every request it issued is answered before the ring goes away
// (an unanswered one makes its del_gendisk, in xenwatch, wait forever).
std::string BlkDevice::prepare_detach(bool force) {
  if (!store_ || !driver_ || driver_->removed()) return {};
  const std::string be = driver_->be_path();
  (void)store_->write(be + "/online", "0");
  (void)store_->write(be + "/state", std::to_string(static_cast<int>(XenbusStateClosing)));
  if (wait_frontend_closed(kDetachWaitMs) || force) return {};
  (void)store_->write(be + "/state", std::to_string(static_cast<int>(XenbusStateConnected)));
  (void)store_->write(be + "/online", "1");
  return fmt::format("the guest did not release the disk within {} s (in use, e.g. mounted?): not detached, it keeps "
                     "working; unmount it in the guest, or detach --force (the guest's I/O to it then fails)",
                     kDetachWaitMs / 1000);
}

bool BlkDevice::wait_frontend_closed(int ms) {
  const std::string fe = driver_->fe_path();
  for (int t = 0; t <= ms; t += 50) {
    auto st = store_->read(fe + "/state");
    if (!st || *st == "6" || *st == "1") return true;  // gone, Closed, or never connected (Initialising)
    serve_once();  // keep serving while the frontend winds down: it may still have requests in flight
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
  }
  return false;
}

std::size_t BlkDevice::outstanding() const {
  std::size_t n = 0;
  for (const auto& s : slots_)
    if (s.state != SlotState::free && s.gen == gen_ && !s.cancelled) ++n;
  return n;
}

void BlkDevice::stop() {
  const auto dom = static_cast<domid_t>(domid());
  if (hints_ && hint_sub_) hints_->unsubscribe(hint_sub_);
  hint_sub_ = 0;
  if (store_ && driver_ && !driver_->removed()) {
    const std::string be = driver_->be_path();
    (void)store_->write(be + "/online", "0");
    (void)store_->write(be + "/state", std::to_string(static_cast<int>(XenbusStateClosing)));
    // Serve what the frontend already issued (bounded), then answer the rest with errors.
    for (int i = 0; i < 100 && outstanding() > 0; ++i) {
      serve_once();
      if (outstanding() > 0) std::this_thread::sleep_for(std::chrono::milliseconds(20));
    }
    drain();
    (void)store_->write(be + "/state", std::to_string(static_cast<int>(XenbusStateClosed)));
    // A forced detach of a disk in use: the frontend sees our Closed and closes too; until then, any request it
    // still issues is answered (with an error once the queue is drained), so nothing in the guest waits forever.
    if (!wait_frontend_closed(kDetachWaitMs))
      spdlog::warn("dom={} dev={}: frontend still not closed after {} s: removing the device anyway", domid(), name(),
                   kDetachWaitMs / 1000);
    drain();
  }
  if (loop_) {
    for (auto id : {store_watch_, target_watch_, timer_})
      if (id) loop_->remove(id);
  }
  store_watch_ = target_watch_ = timer_ = 0;
  disconnect();
  driver_.reset();
  target_.reset();  // waits for what the kernel still does: then no zero-bounce I/O is in flight
  pins_.reset();
  if (store_) xenbus::remove_device_nodes(*store_, blk_nodes(dom, key().devid));
}

// Process-scoped hint sets with a class (pid, comm) become the attribution's per-process rules; live.
void BlkDevice::refresh_hints() {
  refresh_class();
  if (attr_.set_hint_rules(hints_->snapshot(domid())))
    spdlog::info("dom={} dev={}: process classes from hints: {}", domid(), name(), attr_.rules_json().dump());
}

// A disk without its own class takes the one the registry resolves for it (domain-scope gears_hints, then hints
// scoped to this disk; newest wins), else silver. Requests already queued keep the class they were given.
void BlkDevice::refresh_class() {
  if (!sched_ || cfg_.class_set) return;
  const auto eff = hints_->effective(domid(), hints::DevType::vbd, key().devid);
  const std::uint8_t cls = eff.qos && eff.qos->cls < kClasses ? eff.qos->cls : SchedConfig{}.default_class;
  class_source_ = eff.qos ? "hints" : "default";
  if (cls == sched_->config().default_class) return;
  spdlog::info("dom={} dev={}: default class {} -> {} ({})", domid(), name(), sched_->config().default_class, cls,
               class_source_);
  sched_->set_default_class(cls);
  ++class_changes_;
}

void BlkDevice::serve_once() {
  if (target_) target_->on_ready(0, [this](std::uint64_t tag, int res) { complete(tag, res); });
  for (std::uint32_t q = 0; q < queues_.size(); ++q) pump(q);
  dispatch();
  flush_responses();
}

void BlkDevice::drain() {
  // Requests not yet at the target: answered with an error now.
  for (std::uint32_t si = 0; si < slots_.size(); ++si)
    if (slots_[si].state == SlotState::queued && !slots_[si].cancelled) {
      slots_[si].cancelled = true;
      if (slots_[si].gen == gen_) respond(slots_[si].queue, slots_[si].req.id, slots_[si].req.wire_op, BLKIF_RSP_ERROR);
    }
  // Requests at the target: their completions answer them (bounded wait).
  for (int i = 0; i < 200 && target_ && target_->in_flight() > 0; ++i) {
    target_->on_ready(EPOLLIN, [this](std::uint64_t tag, int res) { complete(tag, res); });
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  }
  flush_responses();
}

Status BlkDevice::advertise(xen::StoreOps& t, const std::string& be) {
  const std::pair<const char*, std::string> keys[] = {
      {"feature-flush-cache", "1"},
      {"feature-barrier", "0"},
      {"feature-discard", geo_.discard ? "1" : "0"},
      {"discard-granularity", std::to_string(geo_.sector_size > 4096 ? geo_.sector_size : 4096)},
      {"discard-alignment", "0"},
      {"discard-secure", "0"},
      {"feature-persistent", cfg_.grants == GrantMode::persistent ? "1" : "0"},
      {"feature-max-indirect-segments", std::to_string(geo_.max_indirect)},
      {"max-ring-page-order", std::to_string(kMaxRingPageOrder)},
      {"multi-queue-max-queues", std::to_string(kMaxQueues)},
      {"sectors", std::to_string(geo_.sectors)},
      {"info", std::to_string(geo_.read_only ? kVdiskReadonly : 0U)},
      {"sector-size", std::to_string(geo_.sector_size)},
      {"physical-sector-size", std::to_string(std::max<std::uint32_t>(geo_.sector_size, 4096))},
  };
  for (const auto& [k, v] : keys)
    if (auto s = t.write(be + "/" + k, v); !s) return s;
  return {};
}

Status BlkDevice::connect(xen::Store& s, const std::string& fe, domid_t fe_dom) {
  disconnect();
  auto fail = [&](std::string_view why, const std::string& detail) -> Status {
    last_error_ = std::string(why) + (detail.empty() ? "" : " (" + detail + ")");
    spdlog::error("dom={} dev={}: connect refused: {}", domid(), name(), last_error_);
    disconnect();
    return Error{EPROTO, why};
  };
  if (auto proto = s.read(fe + "/protocol"); proto && *proto != "x86_64-abi")
    return fail("unsupported blkif protocol", *proto);
  auto nq = xenbus::read_uint_or(s, fe + "/multi-queue-num-queues", kMaxQueues, 1);
  if (!nq || *nq == 0) return fail("multi-queue-num-queues malformed or out of range", "");
  auto persistent = xenbus::read_uint_or(s, fe + "/feature-persistent", 1, 0);
  if (!persistent) return fail("feature-persistent malformed", "");
  use_persistent_ = cfg_.grants == GrantMode::persistent && *persistent == 1;
  fe_dom_ = fe_dom;
  for (std::uint64_t qi = 0; qi < *nq; ++qi) {
    const std::string qp = *nq == 1 ? fe : fe + "/queue-" + std::to_string(qi);
    auto order = xenbus::read_uint_or(s, qp + "/ring-page-order", kMaxRingPageOrder, 0);
    if (!order) return fail("ring-page-order malformed or above max-ring-page-order", qp);
    const std::size_t pages = std::size_t{1} << *order;
    std::vector<grant_ref_t> refs(pages);
    for (std::size_t i = 0; i < pages; ++i) {
      auto r = xenbus::read_uint(s, *order == 0 && !s.exists(qp + "/ring-ref0") ? qp + "/ring-ref"
                                                                                 : qp + "/ring-ref" + std::to_string(i),
                                 UINT32_MAX);
      if (!r) return fail("ring-ref missing or malformed", qp);
      refs[i] = static_cast<grant_ref_t>(*r);
    }
    auto port = xenbus::read_uint(s, qp + "/event-channel", (1U << 17U) - 1);
    if (!port) return fail("event-channel missing or malformed", qp);
    auto m = gnt_->map(fe_dom, refs, true);
    if (!m) return fail("cannot map the ring", qp + ": " + std::string(m.error().what));
    Queue q;
    q.map = std::move(*m);
    try {
      // A ring that was in use (gearsd restarted under a connected frontend) resumes where the last responses
      // ended: requests after rsp_prod were never answered and are served again. Read once; BackRing then
      // bounds req_prod against it, so a bogus value only closes the device.
      auto* sring = reinterpret_cast<blkif_sring*>(q.map.data());
      const RING_IDX start = ring::shm::load_acquire(sring->rsp_prod);
      q.ring = std::make_unique<Ring>(q.map.data(), pages * kPageBytes, start);
      if (start != 0) spdlog::info("dom={} dev={}: resuming a ring at index {}", domid(), name(), start);
      q.evtchn = xen::EventChannel::bind_interdomain(fe_dom, static_cast<evtchn_port_t>(*port));
    } catch (const std::exception& e) {
      return fail("cannot attach the ring or bind its event channel", e.what());
    }
    queues_.push_back(std::move(q));
  }
  for (std::uint32_t qi = 0; qi < queues_.size(); ++qi) {
    auto w = loop_->add_fd(queues_[qi].evtchn.fd(), EPOLLIN, [this, qi](std::uint32_t) { on_event(qi); });
    if (!w) return fail("cannot watch the event channel", "");
    queues_[qi].watch = *w;
  }
  if (use_persistent_) pgrants_ = std::make_unique<xen::PersistentGrantCache>(*gnt_, kMaxPersistentGrants, true);
  ++connects_;
  ++gen_;
  spdlog::info("dom={} dev={}: connected: {} queue(s) of {} requests, grants={}", domid(), name(), queues_.size(),
               queues_[0].ring->size(), use_persistent_ ? "persistent" : "copy");
  pump_all();  // requests may already be waiting
  return {};
}

void BlkDevice::disconnect() {
  // A frontend that closes with requests in flight (Linux blkfront does, on Closing) still waits for their
  // responses: answer them while the rings are mapped.
  if (!queues_.empty() && outstanding() > 0) drain();
  for (auto& q : queues_)
    if (loop_ && q.watch) loop_->remove(q.watch);
  queues_.clear();
  dirty_.clear();
  // Unmapped now, or (zero-bounce I/O still in flight after the bounded drain) when the last of it completes.
  if (pins_.pins() > 0 && pgrants_)
    spdlog::warn("dom={} dev={}: {} zero-bounce I/O(s) still in flight: persistent grants stay mapped until done",
                 domid(), name(), pins_.pins());
  pins_.retire(std::move(pgrants_));
  ++gen_;
  // Requests still queued belong to the old connection: dropped when the scheduler hands them out.
  // Those in the target complete into the void (their generation is stale).
  for (auto& s : slots_)
    if (s.state == SlotState::queued) s.cancelled = true;
}

void BlkDevice::on_store() {
  if (!store_) return;
  if (backend::pump_watches(*store_, driver_ ? &*driver_ : nullptr, domid(), name(), "disk") ==
      backend::WatchPump::removed)
    disconnect();
}

void BlkDevice::on_event(std::uint32_t q) {
  if (q >= queues_.size()) return;
  ++wakeups_;
  auto c = queues_[q].evtchn.consume();
  if (!c) {
    close("event channel failed", "");
    return;
  }
  pump(q);
  flush_responses();
  dispatch();
}

void BlkDevice::pump_all() {
  for (std::uint32_t q = 0; q < queues_.size(); ++q) pump(q);
  flush_responses();
  dispatch();
}

void BlkDevice::pump(std::uint32_t q) {
  const std::uint64_t gen = gen_;
  const std::int32_t proc = attr_.look(domid(), q, static_cast<std::int64_t>(now_ns()));
  const auto pc = attr_.class_of(proc);
  if (proc < 0 && attr_.has_rules() && !waits_for_proctrack_) {
    waits_for_proctrack_ = true;
    spdlog::info("dom={} dev={}: per-process classes wait for proctrack to name the guest's processes "
                 "(gearsctl attach {} proctrack 0)", domid(), name(), domid());
  }
  while (q < queues_.size() && gen == gen_) {
    Ring& ring = *queues_[q].ring;
    if (free_slots_.empty()) return;  // resumed from complete()
    auto n = ring.consume(free_slots_.size(), [&](const blkif_request& r) { intake(q, r, proc, pc); });
    if (!n) {
      close("ring producer index out of range", "req_prod beyond the ring");
      return;
    }
    if (gen != gen_ || q >= queues_.size()) return;
    if (*n > 0) continue;
    auto more = queues_[q].ring->final_check_for_requests();
    if (!more) {
      close("ring producer index out of range", "req_prod beyond the ring");
      return;
    }
    if (!*more) return;
  }
}

void BlkDevice::note_reject(const Reject& r) {
  ++rejected_;
  auto [it, fresh] = reject_reasons_.try_emplace(std::string(r.why), 0);
  ++it->second;
  last_error_ = std::string("rejected: ") + std::string(r.why);
  if (fresh) spdlog::warn("dom={} dev={}: request rejected: {} (id {}, further ones counted)", domid(), name(), r.why, r.id);
}

void BlkDevice::intake(std::uint32_t q, const blkif_request& raw, std::int32_t proc,
                       const std::optional<Attribution::ProcClass>& pc) {
  Parsed p = parse_request(raw, geo_);
  if (!p.ok()) {
    note_reject(p.reject());
    respond(q, p.reject().id, p.reject().wire_op, p.reject().status);
    return;
  }
  const std::uint32_t si = free_slots_.back();
  free_slots_.pop_back();
  Slot& s = slots_[si];
  s.state = SlotState::queued;
  s.cancelled = false;
  s.queue = q;
  s.gen = gen_;
  s.req = p.request();
  s.cls = {};
  s.t_enq = now_ns();
  s.t_disp = 0;
  s.proc = proc;
  s.rule = -1;
  if (s.req.indirect) {
    // Copy the indirect pages into private memory (fetched once), then parse them: a page in the persistent-grant
    // cache is memcpy'd (blkfront grants its indirect pages persistently too), any other one grant-copied.
    std::optional<xen::GrantCopyBatch> b;
    bool copied = true;
    for (std::size_t i = 0; copied && i < s.req.nr_indirect_pages; ++i) {
      const auto dst = std::span(indirect_buf_).subspan(i * kPageBytes, kPageBytes);
      if (pgrants_) {
        if (auto page = pgrants_->get(fe_dom_, s.req.indirect_refs[i])) {
          std::memcpy(dst.data(), page->data(), kPageBytes);
          ++pgrant_hits_;
          continue;
        }
      }
      if (!b) b.emplace(*gnt_, s.req.nr_indirect_pages);
      copied = static_cast<bool>(b->copy_from_grant(fe_dom_, s.req.indirect_refs[i], 0, dst));
    }
    if (copied && b) {
      const std::uint64_t t0 = now_ns();
      copied = b->execute() && b->all_ok();
      copy_ns_ += now_ns() - t0;
      ++copy_calls_;
      copies_ += b->size();
    }
    if (!copied) {
      ++grant_failures_;
      note_reject(Reject{BLKIF_RSP_ERROR, "indirect page grant not copyable", s.req.id, s.req.wire_op});
      respond(q, s.req.id, s.req.wire_op, BLKIF_RSP_ERROR);
      release(si);
      return;
    }
    s.segs.resize(s.req.nr_segments);
    Parsed full = parse_indirect_segments(s.req, indirect_buf_, s.segs, geo_);
    if (!full.ok()) {
      note_reject(full.reject());
      respond(q, full.reject().id, full.reject().wire_op, full.reject().status);
      release(si);
      return;
    }
    s.req = full.request();
  }
  const bool data = s.req.op == Op::read || s.req.op == Op::write;
  const std::size_t len = data ? s.req.bytes() : 0;
  s.zero_copy = data && map_segments(s);
  if (data) ++(s.zero_copy ? zero_copy_ : bounced_);
  if (!s.zero_copy && len > s.buf_len) {
    free_buf(s.buf);
    s.buf = static_cast<std::byte*>(std::aligned_alloc(kPageBytes, (len + kPageBytes - 1) & ~std::size_t{kPageBytes - 1}));
    s.buf_len = s.buf ? len : 0;
    if (!s.buf) {
      respond(q, s.req.id, s.req.wire_op, BLKIF_RSP_ERROR);
      release(si);
      return;
    }
  }
  if (s.req.op == Op::write && !s.zero_copy && !copy_segments(s, false)) {
    ++grant_failures_;
    note_reject(Reject{BLKIF_RSP_ERROR, "data grant not copyable", s.req.id, s.req.wire_op});
    respond(q, s.req.id, s.req.wire_op, BLKIF_RSP_ERROR);
    release(si);
    return;
  }
  if (s.req.op == Op::flush) {
    s.cls = Classified{cfg_.sched.default_class, -1};
  } else {
    s.cls = sched_->classify(s.req.sector);
    if (pc) {  // the submitting process's class wins over extents and the default (the extent's label stays)
      s.cls.cls = pc->cls;
      s.rule = pc->key;
    }
  }
  sched_->enqueue(si, s.cls.cls, len, s.t_enq);
}

std::span<const Segment> BlkDevice::segments(const Slot& s) const {
  if (s.req.indirect) return {s.segs.data(), s.req.nr_segments};
  return {s.req.direct.data(), s.req.nr_segments};
}

bool BlkDevice::map_segments(Slot& s) {
  if (!pgrants_ || !target_ || !target_->vectored_io()) return false;
  const auto segs = segments(s);
  if (segs.size() > kMaxIovecs) return false;
  if (s.iov.size() < segs.size()) s.iov.resize(segs.size());
  std::size_t n = 0;
  const bool direct = cfg_.topts.cache == CacheMode::none;
  for (const auto& seg : segs) {  // validated by the parser: offset + len <= 4096
    if (direct && (seg.offset != 0 || seg.len != kPageBytes)) return false;  // O_DIRECT: whole pages only (alignment)
    auto page = pgrants_->get(fe_dom_, seg.gref);
    if (!page) return false;  // not mappable or the cache is full: the bounce path copies it (or reports it)
    std::byte* p = page->data() + seg.offset;
    if (n > 0 && static_cast<std::byte*>(s.iov[n - 1].iov_base) + s.iov[n - 1].iov_len == p)
      s.iov[n - 1].iov_len += seg.len;  // adjacent in our address space: one iovec
    else
      s.iov[n++] = iovec{p, seg.len};
  }
  s.iov_n = n;
  pgrant_hits_ += segs.size();
  return true;
}

bool BlkDevice::copy_segments(Slot& s, bool to_guest) {
  const auto segs = segments(s);
  xen::GrantCopyBatch b(*gnt_, segs.size());
  std::size_t off = 0;
  for (const auto& seg : segs) {
    std::span<std::byte> local(s.buf + off, seg.len);
    off += seg.len;
    if (pgrants_) {
      auto page = pgrants_->get(fe_dom_, seg.gref);
      if (page) {
        ++pgrant_hits_;
        if (to_guest) std::memcpy(page->data() + seg.offset, local.data(), seg.len);
        else std::memcpy(local.data(), page->data() + seg.offset, seg.len);
        continue;
      }
    }
    const Status st = to_guest ? b.copy_to_grant(local, fe_dom_, seg.gref, seg.offset)
                               : b.copy_from_grant(fe_dom_, seg.gref, seg.offset, local);
    if (!st) return false;
  }
  if (b.size() == 0) return true;
  copies_ += b.size();
  const std::uint64_t t0 = now_ns();
  const bool ok = b.execute() && b.all_ok();
  copy_ns_ += now_ns() - t0;
  ++copy_calls_;
  return ok;
}

void BlkDevice::respond(std::uint32_t q, std::uint64_t id, std::uint8_t op, std::int16_t status) {
  if (q >= queues_.size()) return;
  if (!queues_[q].ring->put_response(make_response(id, op, status))) return;
  if (std::find(dirty_.begin(), dirty_.end(), q) == dirty_.end()) dirty_.push_back(q);
}

void BlkDevice::flush_responses() {
  for (auto q : dirty_) {
    if (q >= queues_.size()) continue;
    if (!queues_[q].ring->push_responses(queues_[q].evtchn)) {
      close("cannot notify the frontend", "");
      return;
    }
  }
  dirty_.clear();
}

void BlkDevice::dispatch() {
  if (!sched_ || !target_) return;
  const std::uint64_t now = now_ns();
  std::uint64_t wake = 0;
  bool submitted = false;
  while (target_->in_flight() < target_->depth()) {
    auto si = sched_->next(now, &wake);
    if (!si) break;
    Slot& s = slots_[*si];
    if (s.cancelled) {
      sched_->complete(s.cls.cls, now);
      release(*si);
      continue;
    }
    s.state = SlotState::target;
    s.t_disp = now;
    TargetIo io;
    io.tag = *si;
    io.offset = s.req.sector << kSectorShift;
    switch (s.req.op) {
      case Op::read: io.kind = IoKind::read; break;
      case Op::write: io.kind = IoKind::write; break;
      case Op::flush: io.kind = IoKind::flush; break;
      case Op::discard: io.kind = IoKind::discard; io.length = s.req.bytes(); break;
    }
    if (s.req.op == Op::read || s.req.op == Op::write) {
      if (s.zero_copy) {
        io.iov = {s.iov.data(), s.iov_n};
        pins_.pin();  // until complete(): the guest pages must stay mapped
      } else {
        io.buf = {s.buf, s.req.bytes()};
      }
    }
    if (!target_->submit(io)) {
      complete(*si, -EIO);
      continue;
    }
    submitted = true;
  }
  if (submitted) {
    if (!target_->inline_io()) target_->kick();  // inline: done already, reported by on_target(0) below
    on_target(0);  // completions that arrived while submitting
  }
  if (wake > 0 && (timer_ == 0 || wake < timer_at_)) {
    if (timer_) loop_->remove(timer_);
    timer_at_ = wake;
    auto t = loop_->add_timer(std::chrono::nanoseconds(wake > now ? wake - now : 1), std::chrono::nanoseconds(0), [this] {
      timer_ = 0;
      dispatch();
      flush_responses();
    });
    timer_ = t ? *t : 0;
  }
  update_target_poll();
}

void BlkDevice::update_target_poll() {
  if (!target_ || !target_watch_) return;
  const std::uint32_t ev = target_->poll_events();
  if (ev != target_events_) {
    target_events_ = ev;
    (void)loop_->modify_fd(target_watch_, ev);
  }
}

void BlkDevice::on_target(std::uint32_t events) {
  if (!target_) return;
  target_->on_ready(events, [this](std::uint64_t tag, int res) { complete(tag, res); });
  flush_responses();
  if (events != 0) pump_all();  // completions freed slots: take more requests (pump_all -> dispatch)
  update_target_poll();
}

void BlkDevice::complete(std::uint64_t tag, int result) {
  const auto si = static_cast<std::uint32_t>(tag);
  if (si >= slots_.size()) return;
  Slot& s = slots_[si];
  if (s.t_disp != 0) target_ns_ += now_ns() - s.t_disp;
  if (s.zero_copy && s.state == SlotState::target) pins_.unpin();  // the data transfer is over (a flush may follow)
  if (result < 0) {
    ++io_errors_;
    last_error_ = std::string("target I/O error: ") + std::strerror(-result);
    spdlog::warn("dom={} dev={}: target error {} at sector {}", domid(), name(), std::strerror(-result), s.req.sector);
    finish(si, BLKIF_RSP_ERROR);
    return;
  }
  if (s.state == SlotState::target && s.req.flush_after) {
    s.state = SlotState::flushing;  // FLUSH_DISKCACHE with data: the data is written, now flush
    TargetIo io;
    io.kind = IoKind::flush;
    io.tag = si;
    if (target_->submit(io)) {
      target_->kick();
      return;
    }
    finish(si, BLKIF_RSP_ERROR);
    return;
  }
  if (s.req.op == Op::read && !s.zero_copy && s.gen == gen_ && !copy_segments(s, true)) {
    ++grant_failures_;
    finish(si, BLKIF_RSP_ERROR);
    return;
  }
  finish(si, BLKIF_RSP_OKAY);
}

void BlkDevice::finish(std::uint32_t si, std::int16_t status) {
  Slot& s = slots_[si];
  const std::uint64_t now = now_ns();
  sched_->complete(s.cls.cls, now);
  if (status == BLKIF_RSP_OKAY) {
    ++ops_;
    switch (s.req.op) {
      case Op::read: bytes_rd_ += s.req.bytes(); break;
      case Op::write: bytes_wr_ += s.req.bytes(); flushes_ += s.req.flush_after ? 1 : 0; break;
      case Op::flush: ++flushes_; break;
      case Op::discard: ++discards_; break;
    }
    const std::uint64_t b = (s.req.op == Op::read || s.req.op == Op::write) ? s.req.bytes() : 0;
    auto add = [&](ClassStats& c) {
      ++c.reqs;
      c.bytes += b;
      c.wait_ns += s.t_disp - s.t_enq;
      c.service_ns += now - s.t_disp;
    };
    add(class_stats_[s.cls.cls]);
    if (s.cls.label >= 0) add(label_stats_[static_cast<std::size_t>(s.cls.label)]);
    if (b > 0) attr_.account(s.proc, s.req.op == Op::write, b);
    if (s.rule >= 0) attr_.account_rule(s.rule, b);
  }
  if (s.gen == gen_) respond(s.queue, s.req.id, s.req.wire_op, status);
  release(si);
}

void BlkDevice::release(std::uint32_t si) {
  Slot& s = slots_[si];
  s.state = SlotState::free;
  s.cancelled = false;
  free_slots_.push_back(si);
}

void BlkDevice::close(std::string_view why, const std::string& detail) {
  ++closes_;
  last_error_ = std::string(why) + (detail.empty() ? "" : " (" + detail + ")");
  spdlog::error("dom={} dev={}: closed: {}", domid(), name(), last_error_);
  if (driver_) driver_->fault(why);
  disconnect();
}

nlohmann::json BlkDevice::stats() const {
  nlohmann::json classes = nlohmann::json::object(), labels = nlohmann::json::object();
  auto js = [](const ClassStats& c) {
    return nlohmann::json{{"reqs", c.reqs}, {"bytes", c.bytes}, {"wait_ms", static_cast<double>(c.wait_ns) / 1e6},
                          {"service_ms", static_cast<double>(c.service_ns) / 1e6}};
  };
  static const char* kNames[] = {"gold", "silver", "bronze", "3", "4", "5", "6", "7"};
  for (std::size_t i = 0; i < kClasses; ++i)
    if (class_stats_[i].reqs > 0) classes[kNames[i]] = js(class_stats_[i]);
  for (std::size_t i = 0; i < label_stats_.size(); ++i) {
    const auto& e = cfg_.sched.extents[i];
    labels[e.label.empty() ? "extent" + std::to_string(i) : e.label] = js(label_stats_[i]);
  }
  nlohmann::json j = {{"state", driver_ ? std::string(xenbus::state_name(driver_->state())) : "down"},
          {"connected", !queues_.empty()},
          {"target", target_ ? target_->describe() : cfg_.target},
          {"target_io", target_ && target_->inline_io() ? "inline" : "async"},
          {"sectors", geo_.sectors},
          {"queues", queues_.size()},
          {"grants", use_persistent_ ? "persistent" : "copy"},
          {"ops", ops_},
          {"bytes", bytes_rd_ + bytes_wr_},
          {"errors", rejected_ + io_errors_ + closes_},
          {"bytes_read", bytes_rd_},
          {"bytes_written", bytes_wr_},
          {"flushes", flushes_},
          {"discards", discards_},
          {"rejected", rejected_},
          {"reject_reasons", reject_reasons_},
          {"io_errors", io_errors_},
          {"closes_for_violation", closes_},
          {"grant_failures", grant_failures_},
          {"persistent_hits", pgrant_hits_},
          {"grant_copies", copies_},
          {"profile", {{"copy_ns", copy_ns_}, {"copy_calls", copy_calls_}, {"target_ns", target_ns_}, {"wakeups", wakeups_},
                       {"zero_copy", zero_copy_}, {"bounced", bounced_}}},
          {"connects", connects_},
          {"anticipations", sched_ ? sched_->anticipations() : 0},
          {"anticipation_hits", sched_ ? sched_->anticipation_hits() : 0},
          {"anticipation_misses", sched_ ? sched_->anticipation_misses() : 0},
          {"classes", classes},
          {"default_class", sched_ ? sched_->config().default_class : cfg_.sched.default_class},
          {"class_source", class_source_},
          {"class_changes", class_changes_},
          {"processes", labels},
          {"guest_processes", attr_.to_json()},
          {"process_classes", attr_.rules_json()},
          {"attributed_requests", attr_.attributed()},
          {"unattributed_requests", attr_.unattributed()},
          {"last_error", last_error_}};
  if (auto t = target_ ? target_->stats() : nlohmann::json(); !t.is_null()) j["dcache"] = std::move(t);
  return j;
}

void BlkDevice::metrics(daemon::MetricSet& out) const {
  out.add("gears_blk_read_bytes_total", daemon::MetricType::counter, "Bytes read by the guest.",
          static_cast<double>(bytes_rd_));
  out.add("gears_blk_written_bytes_total", daemon::MetricType::counter, "Bytes written by the guest.",
          static_cast<double>(bytes_wr_));
  out.add("gears_blk_requests_total", daemon::MetricType::counter, "Requests completed.", static_cast<double>(ops_));
  out.add("gears_blk_rejected_total", daemon::MetricType::counter, "Malformed requests answered with an error.",
          static_cast<double>(rejected_));
  out.add("gears_blk_violations_total", daemon::MetricType::counter, "Devices closed for ring violations.",
          static_cast<double>(closes_));
  out.add("gears_blk_connected", daemon::MetricType::gauge, "1 while the rings are mapped.", queues_.empty() ? 0.0 : 1.0);
  if (const auto d = target_ ? target_->stats() : nlohmann::json(); d.is_object()) {
    out.add("gears_blk_dcache_hits_total", daemon::MetricType::counter, "Reads served whole from the dom0 cache.",
            d["hits"].get<double>());
    out.add("gears_blk_dcache_misses_total", daemon::MetricType::counter, "Reads that needed the backing store.",
            d["misses"].get<double>());
    out.add("gears_blk_dcache_dirty_blocks", daemon::MetricType::gauge, "Cache blocks not yet written back.",
            d["dirty_blocks"].get<double>());
  }
  static const char* kNames[] = {"gold", "silver", "bronze", "3", "4", "5", "6", "7"};
  for (std::size_t i = 0; i < kClasses; ++i) {
    if (class_stats_[i].reqs == 0) continue;
    const std::string suffix = std::string("_") + kNames[i];
    out.add("gears_blk_class_bytes_total" + suffix, daemon::MetricType::counter, "Bytes served for a QoS class.",
            static_cast<double>(class_stats_[i].bytes));
    out.add("gears_blk_class_requests_total" + suffix, daemon::MetricType::counter, "Requests served for a QoS class.",
            static_cast<double>(class_stats_[i].reqs));
  }
}

nlohmann::json BlkDevice::hints() const {
  nlohmann::json ex = nlohmann::json::array();
  for (const auto& e : cfg_.sched.extents)
    ex.push_back({{"first", e.first}, {"last", e.last}, {"class", e.cls}, {"label", e.label}});
  const auto cls = sched_ ? sched_->config().default_class : cfg_.sched.default_class;
  return nlohmann::json::array({{{"kind", "vbd"}, {"default_class", cls}, {"extents", ex}}});
}

std::unique_ptr<daemon::Device> make_blk_device(const daemon::DeviceSpec& spec, daemon::HintRegistry* hints) {
  return std::make_unique<BlkDevice>(spec, hints);
}

std::unique_ptr<daemon::DiscoverySource> make_blk_discovery() {
  return std::make_unique<backend::XenbusDiscovery>("gears-vbd", "vbd");
}

}  // namespace gears::blk
