#include "services/proctrack/proctrack_device.hpp"

#include <sys/epoll.h>
#include <sys/utsname.h>

#include <algorithm>
#include <chrono>
#include <map>
#include <mutex>
#include <stdexcept>
#include <utility>

#include "dom0/gearsd/log.hpp"
#include "dom0/gearsd/reactor.hpp"
#include "services/proctrack/cr3.hpp"

namespace gears::proctrack {
namespace {

std::string param(const nlohmann::json& p, const char* key, std::string def) {
  auto it = p.find(key);
  if (it == p.end()) return def;
  if (it->is_string()) return it->get<std::string>();
  if (it->is_number_integer()) return std::to_string(it->get<std::int64_t>());
  throw std::invalid_argument(std::string("proctrack: param '") + key + "' must be a string or an integer");
}

std::int64_t int_param(const nlohmann::json& p, const char* key, std::int64_t def, std::int64_t lo, std::int64_t hi) {
  const std::string s = param(p, key, std::to_string(def));
  std::size_t used = 0;
  std::int64_t v = 0;
  try {
    v = std::stoll(s, &used);
  } catch (const std::exception&) {
    used = 0;
  }
  if (used != s.size() || s.empty() || v < lo || v > hi)
    throw std::invalid_argument(std::string("proctrack: param '") + key + "' must be an integer in " +
                                std::to_string(lo) + ".." + std::to_string(hi) + ", got '" + s.substr(0, 32) + "'");
  return v;
}

// The layout, loaded once per (BTF, symbols) pair: parsing BTF and scanning kallsyms took tens of seconds in
// the lab's dom0 under load, on gearsd's main thread, so a toggle loop timed out its attach request.
LinuxLayout cached_layout(const std::string& btf, const std::string& symbols) {
  static std::mutex mu;
  static std::map<std::pair<std::string, std::string>, LinuxLayout> cache;
  std::lock_guard lk(mu);
  const auto key = std::make_pair(btf, symbols);
  if (auto it = cache.find(key); it != cache.end()) return it->second;
  LinuxLayout l = LinuxLayout::load(btf, symbols);  // throws, naming the file
  cache.emplace(key, l);
  return l;
}

std::string default_system_map() {
  utsname u{};
  if (::uname(&u) != 0) return "/proc/kallsyms";
  return std::string("/boot/System.map-") + u.release + ":/proc/kallsyms";
}

}  // namespace

ProcTrackOptions ProcTrackOptions::parse(const nlohmann::json& p) {
  if (!p.is_object()) throw std::invalid_argument("proctrack: params must be an object");
  static const char* const kKnown[] = {"os", "btf", "system_map", "kpti", "idle_death_s", "rescan_ms"};
  for (const auto& [k, v] : p.items()) {
    bool known = false;
    for (const char* n : kKnown) known = known || k == n;
    if (!known) throw std::invalid_argument("proctrack: unknown param '" + k.substr(0, 32) +
                                            "' (known: os, btf, system_map, kpti, idle_death_s, rescan_ms)");
  }
  ProcTrackOptions o;
  const std::string os = param(p, "os", "linux");
  if (os != "linux" && os != "none") throw std::invalid_argument("proctrack: os must be linux or none, got '" + os.substr(0, 32) + "'");
  o.os_aware = os == "linux";
  o.btf = param(p, "btf", o.btf);
  o.system_map = param(p, "system_map", default_system_map());
  const std::string kpti = param(p, "kpti", "auto");
  if (kpti == "auto") o.kpti = KptiMode::automatic;
  else if (kpti == "on") o.kpti = KptiMode::on;
  else if (kpti == "off") o.kpti = KptiMode::off;
  else throw std::invalid_argument("proctrack: kpti must be auto, on or off, got '" + kpti.substr(0, 32) + "'");
  const std::int64_t idle = int_param(p, "idle_death_s", o.os_aware ? 0 : 10, 0, 86400);
  o.idle_death_ns = idle * 1'000'000'000;
  o.rescan_ms = int_param(p, "rescan_ms", 500, 50, 60000);
  return o;
}

ProcTrackDevice::ProcTrackDevice(daemon::DeviceSpec spec, Directory& dir)
    : Device(std::move(spec)),
      o_(ProcTrackOptions::parse(this->spec().params)),
      dir_(dir),
      dom_(static_cast<domid_t>(domid())),
      tracker_(AddressSpaceTracker::Options{o_.kpti, o_.idle_death_ns, 16}) {
  if (domid() == 0 || domid() >= 0x7ff0) throw std::invalid_argument("proctrack: needs a domU id");
  if (o_.os_aware) {
    LinuxLayout l = cached_layout(o_.btf, o_.system_map);  // throws, naming the file
    fm_.emplace();
    mem_ = std::make_unique<ForeignGuestMemory>(*fm_, dom_);
    linux_ = std::make_unique<LinuxIntrospector>(l, *mem_);
  }
  ring_ = xen::MonitorRing(xc_, dom_);  // throws (EBUSY: monitored by someone else; EOPNOTSUPP: PV)
}

ProcTrackDevice::~ProcTrackDevice() = default;  // ring_ tears down safely, before xc_ is closed

Status ProcTrackDevice::start(daemon::Reactor& loop) {
  loop_ = &loop;
  auto w = loop.add_fd(ring_.fd(), EPOLLIN, [this](std::uint32_t) { on_kick(); });
  if (!w) return w.error();
  fd_watch_ = w.value();
  auto t = loop.add_timer(std::chrono::milliseconds(o_.rescan_ms), std::chrono::milliseconds(o_.rescan_ms),
                          [this] { rescan(); });
  if (!t) {
    loop.remove(fd_watch_);
    fd_watch_ = 0;
    return t.error();
  }
  timer_ = t.value();
  started_ns_ = now_ns();
  dir_.start(domid(), started_ns_);
  if (auto s = ring_.monitor_cr3(true, /*sync=*/true, /*onchangeonly=*/true); !s) {
    loop.remove(fd_watch_);
    loop.remove(timer_);
    fd_watch_ = timer_ = 0;
    dir_.stop(domid(), now_ns());
    return s;
  }
  daemon::log_device(spdlog::level::info, key(), "monitoring CR3 writes (sync){}",
                     o_.os_aware ? ", Linux layer on" : ", OS-agnostic only");
  return {};
}

void ProcTrackDevice::stop() {
  if (loop_ != nullptr) {
    if (fd_watch_ != 0) loop_->remove(fd_watch_);
    if (timer_ != 0) loop_->remove(timer_);
    if (rename_timer_ != 0) loop_->remove(rename_timer_);
  }
  fd_watch_ = timer_ = rename_timer_ = 0;
  ring_ = xen::MonitorRing();  // pause, disable, drain + answer, unbind, unmap, disable, unpause
  dir_.stop(domid(), now_ns());
  daemon::log_device(spdlog::level::info, key(), "monitoring stopped after {} CR3 events", c_.cr3);
}

void ProcTrackDevice::on_kick() {
  ++c_.kicks;
  const std::int64_t t0 = now_ns();
  auto n = ring_.handle([&](const vm_event_request_t& req, vm_event_response_t&) { on_request(req, t0); });
  if (!n) {
    ++c_.ring_errors;
    daemon::log_device(spdlog::level::warn, key(), "monitor ring: {} ({})", n.error().what, n.error().code);
  }
  c_.handler_ns += static_cast<std::uint64_t>(now_ns() - t0);
}

void ProcTrackDevice::on_request(const vm_event_request_t& req, std::int64_t t) {
  ++c_.requests;
  const std::int64_t w0 = now_ns();
  struct Account {
    std::uint64_t& sum;
    std::int64_t w0;
    ~Account() { sum += static_cast<std::uint64_t>(now_ns() - w0); }
  } account{c_.work_ns, w0};
  if (req.version != VM_EVENT_INTERFACE_VERSION) {
    ++c_.bad_version;  // still answered by handle(): the vCPU must resume
    return;
  }
  if (req.reason != VM_EVENT_REASON_WRITE_CTRLREG || req.u.write_ctrlreg.index != VM_EVENT_X86_CR3) {
    ++c_.other;
    return;
  }
  ++c_.cr3;
  std::vector<AsEvent> as;
  const std::uint64_t k = tracker_.on_cr3(req.vcpu_id, req.u.write_ctrlreg.old_value, req.u.write_ctrlreg.new_value, t, as);
  std::vector<ProcEvent> evs;
  bool switched = false;
  for (const auto& e : as) switched = switched || e.kind == AsEvent::Kind::switch_in;
  if (linux_ && switched) {
    kernel_cr3_ = k;  // a kernel PGD: with KPTI, the key is the kernel half
    lstar_ = req.data.regs.x86.msr_lstar;
    if (needs_walk(k, tracker_.key(req.u.write_ctrlreg.old_value), !as.empty() && as.front().kind == AsEvent::Kind::birth)) {
      walk(t, evs);
    } else {
      ++c_.probes_only;
    }
  }
  Identity who{k, -1, {}};
  if (auto o = table_.owner(k)) who = *o;
  if (switched) {
    cur_key_[req.vcpu_id] = {k, who};
    dir_.ran(domid(), req.vcpu_id, t, who);
    for (const auto& e : evs)
      if (who.pid >= 0 && e.pid == who.pid && (e.type == "exec" || e.type == "birth")) {
        arm_rename_check();
        break;
      }
  }
  publish(evs, as, !evs.empty());
}

// A full walk is needed when the incoming address space is new, or its owner (from the last walk) no longer
// owns it: then the task list changed (a birth, exec or exit, or a recycled PGD page). Otherwise two probes
// suffice: the incoming owner is confirmed and the outgoing owner's comm is refreshed (it may have exec'd and
// be about to exit, and its exit should carry its last name).
bool ProcTrackDevice::needs_walk(std::uint64_t in_key, std::uint64_t out_key, bool born) {
  if (born) return true;
  const ProcRow* in = table_.owner_row(in_key);
  if (in == nullptr) return true;
  auto t = linux_->probe(kernel_cr3_, in->task);
  if (!t || !table_.refresh(*in, *t) || t->pgd == 0 || as_key(t->pgd, tracker_.kpti()) != in_key) return true;
  if (const ProcRow* out = table_.owner_row(out_key); out != nullptr && out != in)
    if (auto o = linux_->probe(kernel_cr3_, out->task)) (void)table_.refresh(*out, *o);
  return false;
}

void ProcTrackDevice::walk(std::int64_t t, std::vector<ProcEvent>& evs) {
  if (!linux_ || kernel_cr3_ == 0) return;
  const std::int64_t t0 = now_ns();
  auto w = linux_->walk(kernel_cr3_, lstar_);
  if (!w) {
    ++c_.walk_errors;
    last_walk_error_ = std::string(w.error().what);
    if (c_.walk_errors == 1 || c_.walk_errors % 1000 == 0)
      daemon::log_device(spdlog::level::warn, key(), "task-list walk failed ({} so far): {}", c_.walk_errors,
                         w.error().what);
    c_.walk_ns += static_cast<std::uint64_t>(now_ns() - t0);
    return;
  }
  std::vector<std::uint64_t> live;
  const std::size_t before = evs.size();
  if (table_.apply(w.value(), t, tracker_.kpti(), evs, live)) {
    // The oracle: an address space no task uses any more has died.
    std::vector<AsEvent> deaths;
    std::vector<std::uint64_t> dead;
    for (const auto& [key, info] : tracker_.live())
      if (std::find(live.begin(), live.end(), key) == live.end()) dead.push_back(key);
    for (std::uint64_t key : dead) tracker_.retire(key, t, deaths);
    for (const auto& d : deaths) evs.push_back(ProcEvent{"as_death", d.t_ns, -1, {}, d.key, 0, 0});
  }
  table_dirty_ = table_dirty_ || evs.size() != before;
  c_.walk_ns += static_cast<std::uint64_t>(now_ns() - t0);
}

void ProcTrackDevice::rescan() {
  std::vector<ProcEvent> evs;
  std::vector<AsEvent> as;
  const std::int64_t t = now_ns();
  tracker_.sweep(t, as);
  if (linux_ && kernel_cr3_ != 0) {
    // Paused, the task list cannot change under the walk; a failed pause still allows a bounded walk.
    const bool paused = xc_.pause(dom_).ok();
    if (!paused) ++c_.pause_errors;
    walk(t, evs);
    refresh_occupants(t);  // the walk read every name; this carries a changed one into the timeline
    if (paused && !xc_.unpause(dom_).ok()) ++c_.pause_errors;
  }
  table_dirty_ = true;
  publish(evs, as, true);
}

void ProcTrackDevice::arm_rename_check() {
  rename_checks_left_ = 2;
  if (rename_timer_ != 0 || loop_ == nullptr) return;
  auto t = loop_->add_timer(std::chrono::milliseconds(5), std::chrono::milliseconds(45), [this] {
    refresh_occupants(now_ns());
    if (--rename_checks_left_ <= 0 && rename_timer_ != 0) {
      loop_->remove(rename_timer_);
      rename_timer_ = 0;
    }
  });
  if (t) rename_timer_ = t.value();
}

void ProcTrackDevice::refresh_occupants(std::int64_t t) {
  if (!linux_ || kernel_cr3_ == 0) return;
  for (auto& [vcpu, cur] : cur_key_) {
    const ProcRow* row = table_.owner_row(cur.first);
    if (row == nullptr) continue;
    if (auto info = linux_->probe(kernel_cr3_, row->task); info && table_.refresh(*row, *info)) table_dirty_ = true;
    auto o = table_.owner(cur.first);
    if (!o || *o == cur.second) continue;
    ++c_.renames;
    cur.second = *o;
    dir_.ran(domid(), vcpu, t, *o);
  }
}

void ProcTrackDevice::publish(std::vector<ProcEvent>& evs, std::vector<AsEvent>& as, bool table_changed) {
  for (const auto& e : as) {
    if (e.kind == AsEvent::Kind::birth) evs.push_back(ProcEvent{"as_birth", e.t_ns, -1, {}, e.key, e.vcpu, 0});
    if (e.kind == AsEvent::Kind::death) evs.push_back(ProcEvent{"as_death", e.t_ns, -1, {}, e.key, 0, 0});
  }
  if (!evs.empty()) dir_.publish(domid(), std::move(evs));
  if (table_changed || table_dirty_) {
    dir_.set_table(domid(), table_.rows(), stats());
    table_dirty_ = false;
  }
}

nlohmann::json ProcTrackDevice::stats() const {
  const auto& a = tracker_.counters();
  const auto& p = table_.counters();
  const double secs = started_ns_ != 0 ? static_cast<double>(now_ns() - started_ns_) / 1e9 : 0.0;
  nlohmann::json j = {
      {"ops", c_.cr3},
      {"errors", c_.ring_errors + c_.walk_errors},
      {"os_aware", linux_ != nullptr},
      {"kpti", tracker_.kpti()},
      {"cr3_events", c_.cr3},
      {"requests", c_.requests},
      {"other_events", c_.other},
      {"bad_version", c_.bad_version},
      {"kicks", c_.kicks},
      {"monitored_s", secs},
      {"events_per_s", secs > 0 ? static_cast<double>(c_.cr3) / secs : 0.0},
      {"handler_s", static_cast<double>(c_.handler_ns) / 1e9},
      {"work_s", static_cast<double>(c_.work_ns) / 1e9},
      // Events/s dom0 could answer if answering were all it did (excludes the hypercalls, whose wall time
      // on a 1-pCPU lab includes the guest running).
      {"capacity_events_per_s", c_.work_ns > 0 ? static_cast<double>(c_.requests) * 1e9 / static_cast<double>(c_.work_ns) : 0.0},
      {"walk_s", static_cast<double>(c_.walk_ns) / 1e9},
      {"as_births", a.births},
      {"as_deaths", a.deaths},
      {"as_live", tracker_.live().size()},
      {"switches", a.switches},
      {"kpti_flips", a.kpti_flips},
      {"proc_births", p.births},
      {"proc_exits", p.exits},
      {"proc_execs", p.execs},
      {"processes", table_.size()},
      {"walks", p.walks},
      {"walks_incomplete", p.incomplete},
      {"walk_errors", c_.walk_errors},
      {"switches_without_walk", c_.probes_only},
      {"renames", c_.renames},
      {"pause_errors", c_.pause_errors},
  };
  if (!last_walk_error_.empty()) j["last_walk_error"] = last_walk_error_;
  if (mem_) j["foreign_maps"] = mem_->maps();
  return j;
}

void ProcTrackDevice::metrics(daemon::MetricSet& out) const {
  using daemon::MetricType;
  const auto& a = tracker_.counters();
  const auto& p = table_.counters();
  out.add("gears_proctrack_cr3_events_total", MetricType::counter, "CR3 write events handled.", static_cast<double>(c_.cr3));
  out.add("gears_proctrack_as_births_total", MetricType::counter, "Address spaces born (OS-agnostic).", static_cast<double>(a.births));
  out.add("gears_proctrack_as_deaths_total", MetricType::counter, "Address spaces dead.", static_cast<double>(a.deaths));
  out.add("gears_proctrack_process_births_total", MetricType::counter, "Processes born (Linux layer).", static_cast<double>(p.births));
  out.add("gears_proctrack_process_exits_total", MetricType::counter, "Processes exited (Linux layer).", static_cast<double>(p.exits));
  out.add("gears_proctrack_processes", MetricType::gauge, "Live user processes (Linux layer).", static_cast<double>(table_.size()));
  out.add("gears_proctrack_handler_seconds_total", MetricType::counter, "dom0 time spent answering events.",
          static_cast<double>(c_.handler_ns) / 1e9);
}

nlohmann::json ProcTrackDevice::hints() const {
  nlohmann::json vcpus = nlohmann::json::object();
  for (const auto& [vcpu, who] : dir_.running(domid())) {
    nlohmann::json w = {{"as", hex(who.as)}};
    if (who.pid >= 0) w["pid"] = who.pid, w["comm"] = who.comm;
    vcpus[std::to_string(vcpu)] = std::move(w);
  }
  return {{"running", std::move(vcpus)}, {"processes", table_.size()}};
}

std::unique_ptr<daemon::Device> make_proctrack_device(const daemon::DeviceSpec& spec) {
  return std::make_unique<ProcTrackDevice>(spec, Directory::global());
}

}  // namespace gears::proctrack
