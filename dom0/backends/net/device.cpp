#include "dom0/backends/net/device.hpp"
#include "dom0/common/watch_pump.hpp"

#include <spdlog/spdlog.h>
#include <sys/epoll.h>

#include <cstdio>
#include <cstring>
#include <stdexcept>

#include "dom0/common/discovery.hpp"
#include "dom0/gearsd/hint_text.hpp"

namespace gears::net {
namespace {

constexpr std::size_t kTxBatchSlots = 64;   // slots consumed per TX round (one grant-copy call)
constexpr std::size_t kRxBatchFrames = 32;  // frames per RX round (one grant-copy call)
constexpr int kMaxRounds = 8;               // rounds per wake-up before yielding to other devices on the worker
// An RX frame takes at most kRxFramePages pages (a 64 KiB TSO frame from the TAP plus headers, rounded up).
constexpr std::size_t kRxFramePages = 17;
constexpr std::size_t kRxBuf = kRxFramePages * 4096;
// rx-pool: room for 2 frames of the largest size per round (a round ends when a largest frame no longer fits; rounds
// averaged 1.3-1.9 frames in the lab). Room for 8 (8.4-8.8 frames per round) was no faster over 7 rounds each
// (session 15). Each page is one of gntalloc's grants, taken once per worker (Pools).
constexpr std::size_t kRxPoolPages = 2 * kRxFramePages;
constexpr auto kPolicyPoll = std::chrono::milliseconds(200);
// tx-split=grant: the pool (device.hpp). gearsd runs in dom0, so the pool is granted to, and copied by, domain 0.
constexpr domid_t kSelf = 0;
constexpr std::size_t kPoolPieces = kTxBatchSlots + kMaxTxDataSlots;  // a batch's slots + its first packet's carry
constexpr std::size_t kPoolHeads = kTxBatchSlots + 1;
constexpr std::size_t kPoolPages = kPoolPieces + (kPoolHeads * kTxHeadCopy + kPage - 1) / kPage;
static_assert(kPage % kTxHeadCopy == 0, "a head never crosses a pool page");

bool valid_mac(const std::string& m) {
  if (m.size() != 17) return false;
  for (std::size_t i = 0; i < 17; ++i) {
    const char c = m[i];
    if (i % 3 == 2) {
      if (c != ':') return false;
    } else if (!((c >= '0' && c <= '9') || (c >= 'a' && c <= 'f') || (c >= 'A' && c <= 'F'))) {
      return false;
    }
  }
  const unsigned first = static_cast<unsigned>(std::stoul(m.substr(0, 2), nullptr, 16));
  return (first & 1U) == 0;  // not multicast
}

std::string param_string(const nlohmann::json& p, const char* key) {
  auto it = p.find(key);
  if (it == p.end()) return {};
  if (!it->is_string()) throw std::invalid_argument(std::string("vif: '") + key + "' must be a string");
  return it->get<std::string>();
}

// An on|off parameter; `dflt` when absent. Throws std::invalid_argument naming the key otherwise.
bool param_on_off(const nlohmann::json& p, const char* key, bool dflt) {
  if (!p.contains(key)) return dflt;
  const std::string v = param_string(p, key);
  if (v != "on" && v != "off")
    throw std::invalid_argument(std::string("vif: ") + key + " must be on or off, got '" + v + "'");
  return v == "on";
}

unsigned param_uint(const nlohmann::json& p, const char* key, unsigned dflt, unsigned lo, unsigned hi) {
  auto it = p.find(key);
  if (it == p.end()) return dflt;
  std::uint64_t v = 0;
  if (it->is_number_unsigned()) {
    v = it->get<std::uint64_t>();
  } else if (it->is_string()) {
    auto r = xenbus::parse_uint(it->get<std::string>(), hi);
    if (!r) throw std::invalid_argument(std::string("vif: '") + key + "' must be a number in " + std::to_string(lo) +
                                        ".." + std::to_string(hi));
    v = *r;
  } else {
    throw std::invalid_argument(std::string("vif: '") + key + "' must be a number");
  }
  if (v < lo || v > hi)
    throw std::invalid_argument(std::string("vif: '") + key + "' out of range " + std::to_string(lo) + ".." +
                                std::to_string(hi));
  return static_cast<unsigned>(v);
}

}  // namespace

static_assert(kMaxMtu + kEthHlen + 4 <= kXskFrameSize, "every vif frame fits one AF_XDP frame");

const char* to_string(TxSplit m) {
  switch (m) {
    case TxSplit::map: return "map";
    case TxSplit::grant: return "grant";
    case TxSplit::off: break;
  }
  return "off";
}

VifConfig parse_vif_config(const nlohmann::json& params, std::uint32_t dom, std::uint32_t devid) {
  if (!params.is_object()) throw std::invalid_argument("vif: params must be an object");
  static const std::vector<std::string> known = {"mac",   "bridge", "ifname",   "mtu",     "queues",
                                                 "hints", "host",   "xdp-mode", "coalesce", "tx-split", "tx-split-min",
                                                 "rx-offload", "rx-pool", "ack-filter"};
  for (const auto& [k, v] : params.items())
    if (std::find(known.begin(), known.end(), k) == known.end()) {
      std::string list;
      for (const auto& n : known) list += (list.empty() ? "" : ", ") + n;
      throw std::invalid_argument("vif: unknown parameter '" + k + "' (known: " + list + ")");
    }
  VifConfig c;
  c.mac = param_string(params, "mac");
  if (c.mac.empty()) {
    char buf[18];
    std::snprintf(buf, sizeof buf, "00:16:3e:%02x:%02x:%02x", (dom >> 8U) & 0x7FU, dom & 0xFFU, devid & 0xFFU);
    c.mac = buf;
  } else if (!valid_mac(c.mac)) {
    throw std::invalid_argument("vif: mac '" + c.mac + "' is not a unicast xx:xx:xx:xx:xx:xx address");
  }
  c.bridge = param_string(params, "bridge");
  if (!c.bridge.empty() && !valid_ifname(c.bridge)) throw std::invalid_argument("vif: bad bridge name '" + c.bridge + "'");
  c.ifname = param_string(params, "ifname");
  if (c.ifname.empty()) c.ifname = "gvif" + std::to_string(dom) + "." + std::to_string(devid);
  if (!valid_ifname(c.ifname)) throw std::invalid_argument("vif: bad interface name '" + c.ifname + "'");
  c.mtu = param_uint(params, "mtu", kDefaultMtu, 68, kMaxMtu);
  const std::string host = param_string(params, "host");
  if (host.rfind("xdp:", 0) == 0) {
    c.xdp_if = host.substr(4);
    if (!valid_ifname(c.xdp_if)) throw std::invalid_argument("vif: host=xdp:<interface>: bad interface name '" + c.xdp_if + "'");
    if (!c.bridge.empty())
      throw std::invalid_argument("vif: bridge applies to host=tap only (host=xdp binds " + c.xdp_if + " itself)");
  } else if (!host.empty() && host != "tap") {
    throw std::invalid_argument("vif: host must be tap or xdp:<interface>, got '" + host + "'");
  }
  const std::string mode = param_string(params, "xdp-mode");
  if (!mode.empty()) {
    if (c.xdp_if.empty()) throw std::invalid_argument("vif: xdp-mode applies to host=xdp:<interface> only");
    if (mode == "native") c.xdp_mode = XdpMode::native;
    else if (mode == "skb") c.xdp_mode = XdpMode::skb;
    else if (mode != "auto") throw std::invalid_argument("vif: xdp-mode must be auto, native or skb, got '" + mode + "'");
  }
  c.coalesce = param_on_off(params, "coalesce", c.coalesce);
  if (params.contains("tx-split")) {
    const std::string v = param_string(params, "tx-split");
    if (v == "off") c.tx_split = TxSplit::off;
    else if (v == "map") c.tx_split = TxSplit::map;
    else if (v == "grant") c.tx_split = TxSplit::grant;
    else throw std::invalid_argument("vif: tx-split must be off, map or grant, got '" + v + "'");
  }
  c.rx_offload = param_on_off(params, "rx-offload", c.rx_offload);
  c.rx_pool = param_on_off(params, "rx-pool", c.rx_pool);
  c.ack_filter = param_on_off(params, "ack-filter", c.ack_filter);
  c.tx_split_min = param_uint(params, "tx-split-min", kDefaultTxSplitMin, static_cast<unsigned>(kTxHeadCopy) + 1,
                              static_cast<unsigned>(kMaxPacket));
  c.queues = param_uint(params, "queues", kMaxQueues, 1, kMaxQueues);
  const std::string hints = param_string(params, "hints");
  if (!hints.empty()) {
    const auto hc = daemon::check_hint_text(hints);
    if (!hc.ok) throw std::invalid_argument("vif: hints: " + hc.error);
    c.qos = policy_from_hints(hc.parsed, c.qos);
  }
  return c;
}

xenbus::DeviceNodes vif_nodes(domid_t dom, unsigned devid, const VifConfig& cfg) {
  xenbus::DeviceNodes n;
  n.be_type = "gears-vif";
  n.fe_type = "vif";
  n.fe_dom = dom;
  n.devid = devid;
  n.fe_keys = {{"mac", cfg.mac}, {"handle", std::to_string(devid)}};
  n.be_keys = {{"mac", cfg.mac}, {"handle", std::to_string(devid)}, {"bridge", cfg.bridge}, {"mtu", std::to_string(cfg.mtu)}};
  return n;
}

NetDevice::NetDevice(daemon::DeviceSpec spec, HostFactory host, const daemon::HintRegistry* hints)
    : daemon::Device(std::move(spec)), host_factory_(std::move(host)), hints_(hints) {
  cfg_ = parse_vif_config(this->spec().params, domid(), key().devid);
  base_qos_ = cfg_.qos;
}

NetDevice::~NetDevice() = default;

Status NetDevice::start(daemon::Reactor& loop) {
  loop_ = &loop;
  try {
    store_.emplace();
    gnt_.emplace();
    tx_copy_.emplace(*gnt_, 128);
    rx_copy_.emplace(*gnt_, 64);
    host_ = host_factory_(cfg_);
    make_tx_pool();
    make_rx_pool();
    const auto dom = static_cast<domid_t>(domid());
    xenbus::create_device_nodes(*store_, vif_nodes(dom, key().devid, cfg_));
    driver_.emplace(*store_, vif_nodes(dom, key().devid, cfg_).be_path(), static_cast<xenbus::BackendHooks&>(*this));
  } catch (const std::exception& e) {
    spdlog::error("dom={} dev={}: cannot start: {}", domid(), name(), e.what());
    last_error_ = e.what();
    return Error{EIO, "vif: setup failed"};
  }
  auto w = loop.add_fd(store_->fd(), EPOLLIN, [this](std::uint32_t) { on_store(); });
  if (!w) return w.error();
  store_watch_ = *w;
  auto t = loop.add_fd(host_->fd(), 0, [this](std::uint32_t) { service_rx(); });
  if (!t) return t.error();
  tap_watch_ = *t;
  auto p = loop.add_timer(kPolicyPoll, kPolicyPoll, [this] { poll_policy(); });
  if (!p) return p.error();
  policy_timer_ = *p;
  poll_policy();
  if (auto s = driver_->start(); !s) return s;
  spdlog::info("dom={} dev={}: vif backend ready at {} (InitWait), host {} mac {} qos {}", domid(), name(),
               driver_->be_path(), host_->name(), cfg_.mac, cfg_.qos.to_json().dump());
  return {};
}

void NetDevice::stop() {
  if (loop_) {
    for (auto id : {store_watch_, tap_watch_, resume_timer_, policy_timer_})
      if (id) loop_->remove(id);
  }
  store_watch_ = tap_watch_ = resume_timer_ = policy_timer_ = 0;
  disconnect();
  if (store_ && driver_ && !driver_->removed())
    (void)store_->write(driver_->be_path() + "/state", std::to_string(static_cast<int>(XenbusStateClosed)));
  driver_.reset();
  if (store_) xenbus::remove_device_nodes(*store_, vif_nodes(static_cast<domid_t>(domid()), key().devid, cfg_));
  host_.reset();
}

Status NetDevice::advertise(xen::StoreOps& t, const std::string& be) {
  const std::pair<const char*, std::string> keys[] = {
      {"feature-sg", "1"},
      {"feature-gso-tcpv4", host_->offloads() ? "1" : "0"},
      {"feature-gso-tcpv6", host_->offloads() ? "1" : "0"},
      {"feature-ipv6-csum-offload", "1"},
      {"feature-rx-copy", "1"},
      {"feature-rx-flip", "0"},
      {"feature-split-event-channels", "1"},
      {"multi-queue-max-queues", std::to_string(cfg_.queues)},
      {"mtu", std::to_string(cfg_.mtu)},
  };
  for (const auto& [k, v] : keys)
    if (auto s = t.write(be + "/" + k, v); !s) return s;
  return {};
}

Status NetDevice::connect(xen::Store& s, const std::string& fe, domid_t fe_dom) {
  fe_dom_ = fe_dom;
  auto rx_copy = xenbus::read_uint_or(s, fe + "/request-rx-copy", 1, 0);
  if (!rx_copy) return Error{EPROTO, "vif: request-rx-copy malformed"};
  if (*rx_copy != 1) return Error{EPROTO, "vif: frontend does not request rx-copy (rx-flip is not supported)"};
  auto notify = xenbus::read_uint_or(s, fe + "/feature-rx-notify", 1, 0);
  if (!notify || *notify != 1) return Error{EPROTO, "vif: frontend lacks feature-rx-notify"};
  // RX offloads the frontend takes (netif.h defaults: IPv4 checksum offload on unless refused, the rest off).
  bool fe_keys[5];
  const std::pair<const char*, std::uint64_t> rx_keys[] = {{"feature-sg", 0},
                                                           {"feature-no-csum-offload", 0},
                                                           {"feature-ipv6-csum-offload", 0},
                                                           {"feature-gso-tcpv4", 0},
                                                           {"feature-gso-tcpv6", 0}};
  for (std::size_t i = 0; i < std::size(rx_keys); ++i) {
    auto v = xenbus::read_uint_or(s, fe + "/" + rx_keys[i].first, 1, rx_keys[i].second);
    if (!v) return Error{EPROTO, std::string("vif: ") + rx_keys[i].first + " malformed"};
    fe_keys[i] = *v == 1;
  }
  fe_rx_ = RxCaps{fe_keys[0], !fe_keys[1], fe_keys[2], fe_keys[3], fe_keys[4]};
  auto nq = xenbus::read_uint_or(s, fe + "/multi-queue-num-queues", cfg_.queues, 1);
  if (!nq || *nq == 0) return Error{EPROTO, "vif: multi-queue-num-queues malformed or out of range"};
  for (unsigned i = 0; i < *nq; ++i) {
    const std::string dir = *nq == 1 ? fe : fe + "/queue-" + std::to_string(i);
    if (auto st = connect_queue(s, dir, i); !st) {
      disconnect();
      return st;
    }
  }
  ++st_.connects;
  if (!board_slot_) {
    board_slot_ = QosBoard::instance().claim(cfg_.qos);
    if (!board_slot_) spdlog::warn("dom={} dev={}: QoS board full; this vif is not scheduled", domid(), name());
  }
  build_flows();
  set_rx_offloads(cfg_.rx_offload && host_->offloads()
                      ? HostRxOffloads{fe_rx_.host_csum(), fe_rx_.host_tso4(), fe_rx_.host_tso6()}
                      : HostRxOffloads{});
  set_host_polling(true);
  spdlog::info("dom={} dev={}: connected: {} queue(s), {} event channels, rx offloads: csum {} tso4 {} tso6 {}", domid(),
               name(), *nq, queues_[0]->ev_rx ? "split" : "shared", host_rx_.csum, host_rx_.tso4, host_rx_.tso6);
  for (auto& q : queues_) service_tx(*q);
  service_rx();
  return {};
}

Status NetDevice::connect_queue(xen::Store& s, const std::string& dir, unsigned index) {
  auto txr = xenbus::read_uint(s, dir + "/tx-ring-ref", UINT32_MAX);
  auto rxr = xenbus::read_uint(s, dir + "/rx-ring-ref", UINT32_MAX);
  if (!txr || !rxr) return Error{EPROTO, "vif: tx-ring-ref/rx-ring-ref missing or malformed"};
  auto ev_tx = xenbus::read_uint_or(s, dir + "/event-channel-tx", 1U << 17U, UINT64_MAX);
  auto ev_rx = xenbus::read_uint_or(s, dir + "/event-channel-rx", 1U << 17U, UINT64_MAX);
  auto ev = xenbus::read_uint_or(s, dir + "/event-channel", 1U << 17U, UINT64_MAX);
  if (!ev_tx || !ev_rx || !ev) return Error{EPROTO, "vif: event channel key malformed"};
  const bool split = *ev_tx != UINT64_MAX && *ev_rx != UINT64_MAX;
  if (!split && *ev == UINT64_MAX) return Error{EPROTO, "vif: no event channel given"};

  auto q = std::make_unique<Queue>();
  q->index = index;
  auto tm = gnt_->map(fe_dom_, static_cast<grant_ref_t>(*txr), true);
  if (!tm) return Error{tm.error().code, "vif: cannot map the tx ring"};
  auto rm = gnt_->map(fe_dom_, static_cast<grant_ref_t>(*rxr), true);
  if (!rm) return Error{rm.error().code, "vif: cannot map the rx ring"};
  q->tx_map = std::move(tm.value());
  q->rx_map = std::move(rm.value());
  try {
    q->tx.emplace(q->tx_map.data(), xen::kPageSize);
    q->rx.emplace(q->rx_map.data(), xen::kPageSize);
    if (split) {
      q->ev_tx = xen::EventChannel::bind_interdomain(fe_dom_, static_cast<evtchn_port_t>(*ev_tx));
      q->ev_rx = xen::EventChannel::bind_interdomain(fe_dom_, static_cast<evtchn_port_t>(*ev_rx));
    } else {
      q->ev_tx = xen::EventChannel::bind_interdomain(fe_dom_, static_cast<evtchn_port_t>(*ev));
    }
  } catch (const std::exception& e) {
    spdlog::warn("dom={} dev={}: queue {}: {}", domid(), name(), index, e.what());
    return Error{EPROTO, "vif: cannot bind the event channel"};
  }
  Queue* qp = q.get();
  auto w = loop_->add_fd(q->ev_tx->fd(), EPOLLIN, [this, qp](std::uint32_t) { on_tx_event(*qp); });
  if (!w) return w.error();
  q->w_tx = *w;
  if (q->ev_rx) {
    auto r = loop_->add_fd(q->ev_rx->fd(), EPOLLIN, [this, qp](std::uint32_t) { on_rx_event(*qp); });
    if (!r) {
      loop_->remove(q->w_tx);
      return r.error();
    }
    q->w_rx = *r;
  }
  queues_.push_back(std::move(q));
  return {};
}

void NetDevice::set_rx_offloads(const HostRxOffloads& o) {
  if (!host_ || o == host_rx_) return;
  if (auto st = host_->set_rx_offloads(o); !st) {
    // Frames stay complete (the host's previous setting): slower towards the guest, never wrong.
    spdlog::warn("dom={} dev={}: cannot set the host's rx offloads: {}", domid(), name(), st.error().what);
    return;
  }
  host_rx_ = o;
}

void NetDevice::disconnect() {
  set_host_polling(false);
  set_rx_offloads({});  // the next frontend may take less
  for (auto& q : queues_) {
    if (loop_ && q->w_tx) loop_->remove(q->w_tx);
    if (loop_ && q->w_rx) loop_->remove(q->w_rx);
  }
  queues_.clear();
  if (loop_ && resume_timer_) loop_->remove(resume_timer_);
  resume_timer_ = 0;
  rx_stash_.reset();
  release_flows();
  if (board_slot_) QosBoard::instance().release(*board_slot_);
  board_slot_.reset();
}

void NetDevice::on_store() {
  if (!store_) return;
  (void)backend::pump_watches(*store_, driver_ ? &*driver_ : nullptr, domid(), name(), "vif");
}

void NetDevice::close(std::string_view why) {
  ++st_.faults;
  last_error_ = std::string(why);
  spdlog::error("dom={} dev={}: closed: frontend misbehaved: {}", domid(), name(), why);
  if (driver_) driver_->fault(why);
  disconnect();
}

void NetDevice::on_tx_event(Queue& q) {
  ++st_.events;
  auto c = q.ev_tx->consume();
  if (!c) return close("event channel failed");
  const bool shared = !q.ev_rx;  // read now: service_tx may close the vif and free q
  service_tx(q);
  if (shared && !queues_.empty()) service_rx();  // one channel for both directions
}

void NetDevice::on_rx_event(Queue& q) {
  ++st_.events;
  auto c = q.ev_rx->consume();
  if (!c) return close("event channel failed");
  service_rx();
}

// ---- QoS ----------------------------------------------------------------------------------------------------

void NetDevice::set_policy(const QosPolicy& p) {
  if (p == cfg_.qos) return;
  spdlog::info("dom={} dev={}: qos {} -> {}", domid(), name(), cfg_.qos.to_json().dump(), p.to_json().dump());
  cfg_.qos = p;
  ++st_.policy_changes;
  if (board_slot_) QosBoard::instance().update(*board_slot_, p);
  if (!flows_.empty()) build_flows();  // the default class's place in the drain order
}

void NetDevice::poll_policy() {
  // Control path: what the domain's hints say for this vif (domain scope, then device scope; newest field
  // wins) overrides the device's own params; withdrawn hints fall back to them.
  if (hints_) {
    if (const auto v = hints_->version(domid()); v != hints_version_) {
      hints_version_ = v;
      const auto eff = hints_->effective(domid(), hints::DevType::vif, key().devid);
      set_policy(policy_from_hints(nlohmann::json::parse(hints::to_json(eff)), base_qos_));
      std::vector<hints::HintSet> sets;
      for (auto& r : hints_->snapshot(domid())) sets.push_back(std::move(r.set));
      if (auto rules = flow_rules(sets); rules != flow_rules_) {
        nlohmann::json j = nlohmann::json::array();
        for (const auto& r : rules) j.push_back({{"flow", r.subject}, {"qos", r.policy.to_json()}});
        spdlog::info("dom={} dev={}: flow classes: {}", domid(), name(), j.dump());
        flow_rules_ = std::move(rules);
        if (!queues_.empty()) build_flows();
      }
    }
  }
  // Feedback: what TX achieved since the last tick (QosBoard::report); with flow classes, per class.
  const std::int64_t now = mono_ns();
  const double dt = static_cast<double>(now - last_tick_ns_);
  auto rate = [&](std::uint64_t bytes, std::uint64_t before) {
    return bytes < before ? 0 : static_cast<std::uint64_t>(static_cast<double>(bytes - before) * 1e9 / dt);
  };
  const std::uint64_t vif_bytes = flows_.empty() ? st_.tx_bytes : flows_[0].bytes;
  if (last_tick_ns_ != 0 && now > last_tick_ns_) {
    achieved_bps_ = rate(vif_bytes, last_tick_bytes_);
    if (board_slot_) QosBoard::instance().report(*board_slot_, achieved_bps_);
    for (auto& c : flows_) {
      c.achieved_bps = rate(c.bytes, c.tick_bytes);
      if (c.slot) QosBoard::instance().report(*c.slot, c.achieved_bps);
    }
  }
  for (auto& c : flows_) c.tick_bytes = c.bytes;
  last_tick_ns_ = now;
  last_tick_bytes_ = vif_bytes;
}

// ---- Per-flow classes (sched.hpp) ----------------------------------------------------------------------------

TokenBucket& NetDevice::class_bucket(std::size_t i) { return i == 0 ? bucket_ : flows_[i].bucket; }

void NetDevice::refresh_class(FlowClass& c, std::int64_t now) {
  if (!c.slot) {
    c.bucket.set_rate(c.rule.policy.rate, now);
    return;
  }
  const auto g = QosBoard::instance().grant(*c.slot, now);
  c.contended = g.contended;
  c.bucket.set_rate(g.rate, now);
}

void NetDevice::build_flows() {
  release_flows();
  if (flow_rules_.empty()) return;
  flows_.resize(1 + flow_rules_.size());
  for (std::size_t i = 0; i < flow_rules_.size(); ++i) {
    auto& c = flows_[1 + i];
    c.rule = flow_rules_[i];
    c.slot = QosBoard::instance().claim(c.rule.policy);
    if (!c.slot) spdlog::warn("dom={} dev={}: QoS board full; flow class {} has only its stated rate", domid(), name(),
                              c.rule.subject);
  }
  flows_[0].rule.policy = cfg_.qos;
  flow_order_.clear();
  for (std::size_t i = 0; i < flows_.size(); ++i) flow_order_.push_back(i);
  std::stable_sort(flow_order_.begin(), flow_order_.end(), [&](std::size_t a, std::size_t b) {
    return (a == 0 ? cfg_.qos.cls : flows_[a].rule.policy.cls) < (b == 0 ? cfg_.qos.cls : flows_[b].rule.policy.cls);
  });
}

// A held TX frame to the host, counted as the batch path counts its writes.
void NetDevice::write_held(const FlowClass::Held& h) {
  if (host_->write(h.hdr, h.bytes)) {
    ++st_.tx_packets;
    st_.tx_bytes += h.bytes.size();
  } else {
    ++st_.tx_host_errors;
  }
}

// Held frames were accepted from the guest (their slots answered OKAY): they go to the host now, unshaped, rather
// than being lost.
void NetDevice::release_flows() {
  bool wrote = false;
  for (auto& c : flows_) {
    for (const auto& h : c.held) {
      if (host_) {
        write_held(h);
        wrote = true;
      }
    }
    st_.rx_flow_dropped += c.rx_held.size();  // not yet delivered: lost as a flushed queue would be
    if (c.slot) QosBoard::instance().release(*c.slot);
  }
  if (wrote) host_->flush();
  flows_.clear();
  flow_order_.clear();
  flows_held_ = 0;
}

// A checked TX frame of a batch, with flow classes: passes (written with the batch) while its class has tokens and
// no backlog; else joins the backlog as a private copy, or is dropped when that is full.
void NetDevice::admit(TxItem& it, const std::byte* pages, std::int64_t now) {
  const std::size_t head = it.split ? it.head : it.pkt.len;
  it.fclass = flow_rules_.empty() ? 0 : 1 + classify(flow_rules_, flow_tuple({it.data, head}));
  if (it.fclass >= flows_.size()) it.fclass = 0;
  FlowClass& c = flows_[it.fclass];
  TokenBucket& b = class_bucket(it.fclass);
  const std::optional<std::size_t> slot = it.fclass == 0 ? board_slot_ : c.slot;
  if (slot) QosBoard::instance().mark_active(*slot, now);
  if (c.held.empty() && b.ready(now)) {
    b.charge(it.pkt.len);
    ++c.packets;
    c.bytes += it.pkt.len;
    return;
  }
  it.held = true;
  if (c.held_bytes + it.pkt.len > flow_backlog_limit(b.rate())) {
    ++c.dropped;
    ++st_.tx_flow_dropped;
    return;
  }
  FlowClass::Held h;
  h.hdr = it.hdr;
  h.bytes.resize(it.pkt.len);
  std::memcpy(h.bytes.data(), it.data, head);
  for (std::size_t i = 0; it.split && i < it.npieces; ++i) {
    const TxPiece& p = tx_pieces_[it.first_piece + i];
    std::memcpy(h.bytes.data() + p.pkt_off, pages + p.page * xen::kPageSize + p.offset, p.len);
  }
  c.held_bytes += h.bytes.size();
  c.held.push_back(std::move(h));
  ++c.delayed;
  ++st_.tx_flow_delayed;
  ++flows_held_;
}

// Backlogs, best class first, as far as their tokens go; a timer brings back what is left.
void NetDevice::drain_flows(std::int64_t now) {
  if (flows_held_ == 0) return;
  std::int64_t wait = INT64_MAX;
  bool wrote = false;
  for (const std::size_t i : flow_order_) {
    FlowClass& c = flows_[i];
    if (c.held.empty()) continue;
    TokenBucket& b = class_bucket(i);
    if (i == 0) (void)refresh_rate(now);
    else refresh_class(c, now);
    while (!c.held.empty() && b.ready(now)) {
      auto& h = c.held.front();
      write_held(h);
      wrote = true;
      b.charge(h.bytes.size());
      ++c.packets;
      c.bytes += h.bytes.size();
      c.held_bytes -= h.bytes.size();
      c.held.pop_front();
      --flows_held_;
    }
    const std::optional<std::size_t> slot = i == 0 ? board_slot_ : c.slot;
    if (slot) QosBoard::instance().mark_active(*slot, now);
    if (!c.held.empty()) wait = std::min(wait, b.wait_ns(now));
  }
  if (wrote) host_->flush();
  if (wait != INT64_MAX) schedule_resume(wait);
}

// RX with flow classes: everything the host has is read now, whether or not the guest posted buffers, so a better
// class's frame never waits behind a worse class's in the host's queue. Each frame joins its class's FIFO (at most
// kRxClassBacklog bytes; beyond, it is dropped and counted: the sender backs off); service_rx() delivers the best
// class first.
void NetDevice::pull_rx() {
  if (rx_scratch_.size() < kRxBuf) rx_scratch_.resize(kRxBuf);
  for (int i = 0; i < 256; ++i) {
    virtio_net_hdr h{};
    auto r = host_->read(h, rx_scratch_);
    if (!r) return;
    if (*r == 0) {  // did not fit our buffer
      ++st_.rx_dropped;
      continue;
    }
    const std::span<std::byte> bytes{rx_scratch_.data(), *r};
    auto plan = plan_rx(RxHeader{h.flags, h.gso_type, h.gso_size, h.csum_start, h.csum_offset}, bytes, fe_rx_);
    if (!plan) {
      ++st_.rx_dropped;
      continue;
    }
    if (plan->sw_csum) {
      if (!complete_partial_csum(bytes, h.csum_start, h.csum_offset)) {
        ++st_.rx_dropped;
        continue;
      }
      ++st_.rx_csum_sw;
    }
    std::size_t ci = 1 + classify(flow_rules_, flow_tuple(bytes));
    if (ci >= flows_.size()) ci = 0;
    FlowClass& c = flows_[ci];
    std::optional<PureAck> ack;
    if (cfg_.ack_filter && !plan->gso) ack = pure_ack(bytes);
    if (ack && !c.rx_held.empty() && c.rx_held.back().ack && supersedes(*ack, *c.rx_held.back().ack)) {
      auto& last = c.rx_held.back();  // its connection's latest frame, still waiting: this one says all it said
      c.rx_held_bytes = c.rx_held_bytes - last.frame.len + bytes.size();
      last.bytes.assign(bytes.begin(), bytes.end());
      last.frame.hdr = h;
      last.frame.len = bytes.size();
      last.frame.plan = *plan;
      last.ack = ack;
      ++st_.rx_acks_filtered;
      continue;
    }
    if (c.rx_held_bytes + bytes.size() > kRxClassBacklog) {
      ++c.rx_dropped;
      ++st_.rx_flow_dropped;
      continue;
    }
    FlowClass::RxHeld held;
    held.bytes.assign(bytes.begin(), bytes.end());
    held.frame.hdr = h;
    held.frame.len = bytes.size();
    held.frame.plan = *plan;
    held.frame.pool_page = SIZE_MAX;
    held.ack = ack;
    c.rx_held_bytes += bytes.size();
    c.rx_held.push_back(std::move(held));
  }
}

std::uint64_t NetDevice::refresh_rate(std::int64_t now) {
  std::uint64_t r = cfg_.qos.rate;
  contended_ = false;
  if (board_slot_) {
    const auto g = QosBoard::instance().grant(*board_slot_, now);
    r = g.rate;
    contended_ = g.contended;
  }
  bucket_.set_rate(r, now);
  return r;
}

void NetDevice::schedule_resume(std::int64_t delay_ns) {
  if (resume_timer_) return;
  auto t = loop_->add_timer(std::chrono::nanoseconds(std::max<std::int64_t>(delay_ns, 100'000)),
                            std::chrono::nanoseconds(0), [this] {
                              resume_timer_ = 0;
                              for (std::size_t i = 0; i < queues_.size(); ++i) service_tx(*queues_[i]);
                            });
  if (t) resume_timer_ = *t;
}

// ---- TX: domU -> host ----------------------------------------------------------------------------------------

void NetDevice::service_tx(Queue& q) {
  if (!q.tx) return;
  for (int round = 0; round < kMaxRounds; ++round) {
    const std::int64_t now = mono_ns();
    (void)refresh_rate(now);
    if (!flows_.empty()) {
      drain_flows(now);  // classes are shaped per frame (admit), never at the ring
    } else if (!bucket_.ready(now)) {
      ++st_.tx_throttled;
      schedule_resume(bucket_.wait_ns(now));
      return;  // req_event stays where it is: the timer brings us back
    }
    batch_.clear();
    tx_copy_->clear();
    tx_map_refs_.clear();
    tx_pieces_.clear();
    std::string_view fatal;
    std::size_t bufs = 0, heads = 0;
    auto pool_ref = [&](const std::byte* p) {
      return tx_pool_->refs()[static_cast<std::size_t>(p - tx_pool_->data()) / kPage];
    };
    auto pool_offset = [&](const std::byte* p) {
      return static_cast<std::uint16_t>(static_cast<std::size_t>(p - tx_pool_->data()) % kPage);
    };
    const TxSplit split = host_->gathers() ? cfg_.tx_split : TxSplit::off;
    auto n = q.tx->consume(kTxBatchSlots, [&](const netif_tx_request_t& req) {
      if (!fatal.empty()) return;
      const TxVerdict v = q.parser.feed(req);
      if (v == TxVerdict::need_more) return;
      if (v == TxVerdict::fatal) {
        fatal = q.parser.why();
        return;
      }
      TxItem item;
      item.pkt = q.parser.packet();
      item.drop = v == TxVerdict::drop;
      if (item.drop) {
        ++st_.tx_dropped;
        spdlog::debug("dom={} dev={}: tx packet dropped: {}", domid(), name(), q.parser.why());
      } else {
        item.split = split != TxSplit::off && item.pkt.len >= cfg_.tx_split_min;  // tx_split_min > kTxHeadCopy
        // The pool holds kPoolPieces pieces and kPoolHeads heads per batch; a batch's pieces come from at most its
        // own slots and the carried-over slots of its first packet, so the pool never runs out.
        const bool pooled = item.split && split == TxSplit::grant;
        if (pooled) {
          item.base = tx_pool_->data() + kPoolPieces * kPage + heads * kTxHeadCopy;
          ++heads;
        } else {
          if (tx_bufs_.size() <= bufs) tx_bufs_.emplace_back(kMaxPacket);
          item.base = tx_bufs_[bufs++].data();
        }
        item.head = item.split ? kTxHeadCopy : item.pkt.len;
        item.first_seg = tx_copy_->size();
        item.first_piece = tx_pieces_.size();
        const std::size_t first_ref = tx_map_refs_.size();
        std::size_t off = 0;
        for (std::size_t i = 0; i < item.pkt.nslots && !item.drop; ++i) {
          const TxSlot& s = item.pkt.slots[i];
          if (s.len == 0) continue;
          // Validated: offset + len <= page and the lengths sum to pkt.len <= kMaxPacket.
          const std::size_t copy = off < item.head ? std::min<std::size_t>(s.len, item.head - off) : 0;
          if (copy > 0) {
            const auto ok = pooled ? tx_copy_->copy_grant_to_grant(fe_dom_, s.gref, s.offset, kSelf,
                                                                   pool_ref(item.base + off),
                                                                   pool_offset(item.base + off),
                                                                   static_cast<std::uint16_t>(copy))
                                   : tx_copy_->copy_from_grant(fe_dom_, s.gref, s.offset, {item.base + off, copy});
            item.drop = !ok;
          }
          if (!item.drop && copy < s.len) {  // item.split: the rest of this slot is a piece
            const auto pofs = static_cast<std::uint16_t>(s.offset + copy);
            const auto plen = static_cast<std::uint16_t>(s.len - copy);
            auto page = static_cast<std::uint32_t>(pooled ? tx_pieces_.size() : tx_map_refs_.size());
            if (pooled) {
              item.drop = !tx_copy_->copy_grant_to_grant(fe_dom_, s.gref, pofs, kSelf, tx_pool_->refs()[page], pofs, plen);
            } else {
              tx_map_refs_.push_back(s.gref);
            }
            tx_pieces_.push_back({page, pofs, plen, static_cast<std::uint32_t>(off + copy)});
          }
          off += s.len;
        }
        item.nsegs = tx_copy_->size() - item.first_seg;
        if (item.drop) {  // nothing of it is mapped or written
          tx_pieces_.resize(item.first_piece);
          tx_map_refs_.resize(first_ref);
        }
        item.npieces = tx_pieces_.size() - item.first_piece;
      }
      batch_.push_back(item);
    });
    if (!n) return close(n.error().what);
    if (!fatal.empty()) return close(fatal);
    if (auto s = flush_tx(q); !s) return close(s.error().what);
    if (*n == 0) {
      auto more = q.tx->final_check_for_requests();
      if (!more) return close(more.error().what);
      if (!*more) return;
    }
  }
  // Still busy: yield to the other devices on this worker, then continue.
  const auto idx = q.index;
  loop_->post([this, idx, alive = std::weak_ptr<const char>(alive_)] {
    if (alive.expired() || idx >= queues_.size()) return;
    service_tx(*queues_[idx]);
  });
}

// Self-granted page pools, one set per worker thread, shared by that worker's vifs. A vif touches them only inside
// one service_tx() or service_rx() call on its owning thread, and nothing in them outlives the call (an RX frame
// left waiting for buffers moves to rx_stash_buf_), so vifs never see each other's bytes and gntalloc's grants
// (its `limit`, 1024 by default) are spent per worker, not per vif.
struct NetDevice::Pools {
  xen::GrantSharer sharer;  // throws without gntalloc
  std::optional<xen::GrantShare> tx, rx;
};

std::shared_ptr<NetDevice::Pools> NetDevice::worker_pools() {
  thread_local std::weak_ptr<Pools> mine;
  if (auto p = mine.lock()) return p;
  auto p = std::make_shared<Pools>();
  mine = p;
  return p;
}

// Throws if gntalloc is missing or out of grants.
xen::GrantShare& NetDevice::pool(std::optional<xen::GrantShare> Pools::*which, std::size_t pages) {
  if (!pools_) pools_ = worker_pools();
  auto& share = (*pools_).*which;
  if (!share) share.emplace(pools_->sharer, kSelf, pages, true);
  return *share;
}

// tx-split=grant needs gntalloc (xen_gntalloc in dom0); without it the vif still works, copying every frame whole.
void NetDevice::make_tx_pool() {
  if (cfg_.tx_split != TxSplit::grant || !host_->gathers()) return;  // AF_XDP: frames are copied whole anyway
  try {
    tx_pool_ = &pool(&Pools::tx, kPoolPages);
  } catch (const std::exception& e) {
    tx_pool_ = nullptr;
    cfg_.tx_split = TxSplit::off;
    spdlog::warn("dom={} dev={}: tx-split=grant: no page pool ({}); frames are copied whole", domid(), name(), e.what());
  }
}

// rx-pool=on: RX frames are read into pages gearsd grants to itself and copied ref to ref into the frontend's
// buffers, as tx-split=grant does for TX. Without gntalloc (or grants) frames are read into private buffers and
// copied from there.
void NetDevice::make_rx_pool() {
  if (!cfg_.rx_pool) return;
  try {
    rx_pool_ = &pool(&Pools::rx, kRxPoolPages);
  } catch (const std::exception& e) {
    rx_pool_ = nullptr;
    cfg_.rx_pool = false;
    spdlog::warn("dom={} dev={}: rx-pool: no page pool ({}); rx frames go through private buffers", domid(), name(),
                 e.what());
  }
}

// Reads what tx_pieces_ describe into their packets' buffers by grant copy: the fallback when the batch's grants
// could not be mapped (one bad ref fails the whole map). Every mapped item becomes a copied one, and is dropped
// (tx_copy_errors) if any of its copies fails. Items copied in the first place keep their verdicts.
void NetDevice::copy_mapped_rest() {
  tx_copy_->clear();
  for (auto& it : batch_) {
    if (it.drop || !it.split) continue;
    std::byte* data = it.base;
    it.first_seg = tx_copy_->size();
    for (std::size_t i = 0; i < it.npieces; ++i) {
      const TxPiece& p = tx_pieces_[it.first_piece + i];
      if (!tx_copy_->copy_from_grant(fe_dom_, tx_map_refs_[p.page], p.offset, {data + p.pkt_off, p.len})) {
        it.drop = true;
        ++st_.tx_copy_errors;
        break;
      }
    }
    it.nsegs = tx_copy_->size() - it.first_seg;
  }
  const bool copied = tx_copy_->size() == 0 || static_cast<bool>(tx_copy_->execute());
  for (auto& it : batch_) {
    if (!it.split) continue;
    it.split = false;
    it.head = it.pkt.len;
    if (it.drop) continue;
    bool ok = copied;
    for (std::size_t i = 0; ok && i < it.nsegs; ++i) ok = static_cast<bool>(tx_copy_->segment(it.first_seg + i));
    if (!ok) {
      ++st_.tx_copy_errors;
      it.drop = true;
    }
  }
}

Status NetDevice::flush_tx(Queue& q) {
  if (batch_.empty()) return {};
  ++st_.tx_batches;
  const std::int64_t t0 = mono_ns();
  const bool copied = tx_copy_->size() == 0 || static_cast<bool>(tx_copy_->execute());
  // First verdicts: the copies (heads of mapped packets included).
  for (auto& it : batch_) {
    bool ok = copied;
    for (std::size_t i = 0; ok && !it.drop && i < it.nsegs; ++i) ok = static_cast<bool>(tx_copy_->segment(it.first_seg + i));
    if (!it.drop && !ok) {
      ++st_.tx_copy_errors;
      it.drop = true;
    }
  }
  // The batch's mapped pages, read-only, in one call. They stay mapped until the host has the frames, and the
  // responses wait for the unmap: the frontend ends its grants when it sees them.
  std::optional<xen::GrantMapping> mapping;
  if (!tx_map_refs_.empty()) {
    if (auto m = gnt_->map(fe_dom_, tx_map_refs_, false)) {
      mapping.emplace(std::move(m).value());
    } else {
      ++st_.tx_map_failures;
      spdlog::debug("dom={} dev={}: tx batch of {} grants not mappable ({}): copied instead", domid(), name(),
                    tx_map_refs_.size(), m.error().what);
      copy_mapped_rest();
    }
  }
  const std::int64_t t1 = mono_ns();
  st_.tx_copy_ns += static_cast<std::uint64_t>(t1 - t0);
  for (auto& it : batch_) {
    it.data = nullptr;
    if (it.drop) continue;
    std::byte* data = it.base;
    if (auto h = offload_header(it.pkt, {data, it.head}); !h) {
      ++st_.tx_dropped;
      it.drop = true;
    } else {
      it.hdr = *h;
      it.data = data;
    }
  }
  if (!flows_.empty()) {
    const std::byte* pages = mapping ? mapping->data() : tx_pool_ ? tx_pool_->data() : nullptr;
    for (std::size_t i = 1; i < flows_.size(); ++i) refresh_class(flows_[i], t1);
    for (auto& it : batch_)
      if (it.data != nullptr) admit(it, pages, t1);
  }
  // Every verdict is known: with nothing mapped, the responses go out before the host writes, so the frontend
  // frees its slots (and its skbs: TCP small queues) while dom0 forwards the batch. A host-side write failure
  // after that is a drop on the wire (tx_host_errors).
  auto respond = [&]() -> Status {
    for (const auto& it : batch_) {
      const std::int16_t status = it.data != nullptr ? std::int16_t{NETIF_RSP_OKAY} : std::int16_t{NETIF_RSP_ERROR};
      for (std::size_t i = 0; i < it.pkt.nrsp; ++i) {
        const std::int32_t id = it.pkt.rsp[i];
        netif_tx_response_t r{};
        r.id = id < 0 ? 0 : static_cast<std::uint16_t>(id);
        r.status = id < 0 ? static_cast<std::int16_t>(NETIF_RSP_NULL) : status;
        if (auto s = q.tx->put_response(r); !s) return s;
      }
    }
    return q.tx->push_responses(*q.ev_tx);
  };
  if (!mapping) {
    if (auto s = respond(); !s) return s;
  }
  // Host writes. With coalescing, consecutive frames of one TCP flow grow the first one's buffer in place
  // (coalesce.hpp) and go out as one GSO frame. Only where offload headers reach the host: a port without them
  // (AF_XDP) must never see a GSO frame. The counters stay per guest frame: tx_packets/tx_bytes/tx_host_errors
  // count what the guest sent, tx_merged the frames that saved a host write.
  const bool coalesce = cfg_.coalesce && host_->offloads();
  std::uint64_t bytes = 0;
  MergeFrame acc;
  virtio_net_hdr acc_hdr{};
  std::uint64_t acc_frames = 0, acc_bytes = 0;  // guest frames and their bytes in acc
  auto count = [&](const Status& s, std::uint64_t frames, std::uint64_t nbytes) {
    if (!s) {
      st_.tx_host_errors += frames;  // host queue full or interface down: lost, as on a real NIC
    } else {
      st_.tx_packets += frames;
      st_.tx_bytes += nbytes;
      bytes += nbytes;
    }
  };
  auto write_acc = [&] {
    if (acc_frames == 0) return;
    count(host_->write(acc_hdr, acc.buf.first(acc.len)), acc_frames, acc_bytes);
    acc_frames = 0;
  };
  std::array<iovec, kMaxGatherParts> parts{};
  for (const auto& it : batch_) {
    if (it.data == nullptr || it.held) continue;
    if (it.split) {  // never coalesced: [private head | pieces in the mapping or the pool]
      write_acc();
      std::byte* pages = mapping ? mapping->data() : tx_pool_->data();
      parts[0] = {it.data, it.head};
      for (std::size_t i = 0; i < it.npieces; ++i) {
        const TxPiece& p = tx_pieces_[it.first_piece + i];
        parts[1 + i] = {pages + p.page * xen::kPageSize + p.offset, p.len};
      }
      count(host_->write_gather(it.hdr, {parts.data(), 1 + it.npieces}), 1, it.pkt.len);
      ++st_.tx_split;
      continue;
    }
    if (coalesce && acc_frames > 0) {
      const MergeResult m = merge_frames(acc, acc_hdr, {it.data, it.pkt.len}, it.hdr);
      if (m == MergeResult::merged) {
        ++acc_frames;
        acc_bytes += it.pkt.len;
        ++st_.tx_merged;
        continue;
      }
      ++st_.tx_merge_refused[static_cast<std::size_t>(m)];
    }
    write_acc();
    acc = MergeFrame{{it.data, kMaxPacket}, it.pkt.len};  // tx_bufs_ entries hold kMaxPacket bytes
    acc_hdr = it.hdr;
    acc_frames = 1;
    acc_bytes = it.pkt.len;
  }
  write_acc();
  host_->flush();
  if (mapping) {
    mapping.reset();  // unmapped before the frontend learns it may end the grants
    if (auto s = respond(); !s) return s;
  }
  const std::int64_t t2 = mono_ns();
  st_.tx_host_ns += static_cast<std::uint64_t>(t2 - t1);
  if (flows_.empty()) {  // (else admit() charged each frame's class)
    bucket_.charge(bytes);
    if (board_slot_ && bytes) QosBoard::instance().mark_active(*board_slot_, t2);
  }
  return {};
}

Result<virtio_net_hdr> NetDevice::offload_header(const TxPacket& p, std::span<const std::byte> frame) {
  virtio_net_hdr h{};
  if (p.csum_blank || p.gso) {
    auto l4 = parse_l4(frame);
    if (!l4) return l4.error();
    h.flags = VIRTIO_NET_HDR_F_NEEDS_CSUM;
    h.csum_start = l4->csum_start;
    h.csum_offset = l4->csum_offset;
    ++st_.tx_csum;
    if (p.gso) {
      if (!l4->tcp || l4->ipv6 != (p.gso->type == XEN_NETIF_GSO_TYPE_TCPV6))
        return Error{EINVAL, "vif: GSO type does not match the frame"};
      h.gso_type = p.gso->type == XEN_NETIF_GSO_TYPE_TCPV6 ? VIRTIO_NET_HDR_GSO_TCPV6 : VIRTIO_NET_HDR_GSO_TCPV4;
      h.gso_size = p.gso->size;
      h.hdr_len = l4->hdr_len;
      ++st_.tx_gso;
    }
  } else if (p.data_validated) {
    h.flags = VIRTIO_NET_HDR_F_DATA_VALID;
  }
  return h;
}

// ---- RX: host -> domU ----------------------------------------------------------------------------------------

void NetDevice::set_host_polling(bool on) {
  if (!loop_ || !tap_watch_ || on == host_polling_) return;
  if (loop_->modify_fd(tap_watch_, on ? std::uint32_t{EPOLLIN} : 0U)) host_polling_ = on;
}

void NetDevice::service_rx() {
  if (queues_.empty()) return;
  Queue& q = *queues_[0];  // all RX on queue 0: one TAP fd, and TCP needs its frames in order
  const bool classes = !flows_.empty();
  for (int round = 0; round < kMaxRounds; ++round) {
    rx_copy_->clear();
    rx_slots_.clear();
    rx_taken_.clear();
    if (classes) pull_rx();
    std::size_t nframes = 0, waiting_for = 0, pool_next = 0;
    bool host_empty = false;
    // ack-filter: a pure ACK read from the host is held at rx_frames_[nframes], unconsumed, while the next frame is
    // read behind it (index nframes + 1); a later ACK of its connection replaces it. Holding starts only with >= 2
    // requests posted, so the held ACK (one slot) always fits when it goes out.
    bool holding = false;
    PureAck held_ack;
    // Takes f's ring requests and queues its copies; false: the vif was closed.
    auto take_slots = [&](RxFrame& f, std::size_t need) {
      f.first_slot = rx_slots_.size();
      std::size_t k = 0, data = 0;
      auto c = q.rx->consume(need, [&](const netif_rx_request_t& req) {
        RxSlot s{req.id, 0, true};
        if (k == 1 && f.plan.gso) {
          s.extra = true;  // this request's page stays unused: its slot carries the extra
        } else {
          const std::size_t off = data * kPage;
          const std::size_t len = std::min(kPage, f.len - off);
          s.len = static_cast<std::uint16_t>(len);
          s.ok = req.gref < kMaxGrantRef;
          if (s.ok && f.pool_page != SIZE_MAX)
            s.ok = static_cast<bool>(rx_copy_->copy_grant_to_grant(kSelf, rx_pool_->refs()[f.pool_page + data], 0, fe_dom_,
                                                                   req.gref, 0, static_cast<std::uint16_t>(len)));
          else if (s.ok)
            s.ok = static_cast<bool>(rx_copy_->copy_to_grant({f.data + off, len}, fe_dom_, req.gref, 0));
          s.seg = s.ok ? rx_copy_->size() - 1 : SIZE_MAX;
          ++data;
        }
        rx_slots_.push_back(s);
        ++k;
      });
      if (!c) {
        close(c.error().what);
        return false;
      }
      if (*c != need) {
        close("vif: rx ring: posted requests vanished");  // pending() only grows
        return false;
      }
      f.nslots = k;
      return true;
    };
    while (nframes + (holding ? 1U : 0U) < kRxBatchFrames && (!rx_pool_ || pool_next + kRxFramePages <= kRxPoolPages)) {
      const std::size_t idx = nframes + (holding ? 1 : 0);  // where this frame goes
      if (rx_frames_.size() <= idx) rx_frames_.emplace_back();
      RxFrame& f = rx_frames_[idx];
      if (rx_stash_) {
        f = *rx_stash_;
        rx_stash_.reset();
        std::swap(rx_taken_buf_, rx_stash_buf_);  // its bytes stay put until this round's copies ran
        f.data = rx_taken_buf_.data();
      } else if (classes) {  // the best class's oldest frame (pull_rx)
        FlowClass* best = nullptr;
        for (const std::size_t i : flow_order_) {
          if (!flows_[i].rx_held.empty()) {
            best = &flows_[i];
            break;
          }
        }
        if (best == nullptr) {
          host_empty = true;
          break;
        }
        auto& h = best->rx_held.front();
        rx_taken_.push_back(std::move(h.bytes));
        f = h.frame;
        f.data = rx_taken_.back().data();
        best->rx_held_bytes -= f.len;
        ++best->rx_packets;
        best->rx_bytes += f.len;
        best->rx_held.pop_front();
      } else {
        std::span<std::byte> room;
        if (rx_pool_) {
          f.pool_page = pool_next;
          room = {rx_pool_->data() + pool_next * kPage, kRxBuf};
        } else {
          while (rx_bufs_.size() <= idx) rx_bufs_.emplace_back(kRxBuf);
          f.pool_page = SIZE_MAX;
          room = rx_bufs_[idx];
        }
        f.data = room.data();
        auto r = host_->read(f.hdr, room);
        if (!r) {
          host_empty = true;  // EAGAIN, or an error the next poll reports again
          break;
        }
        f.len = *r;
        if (f.len == 0) {  // did not fit our buffer
          ++st_.rx_dropped;
          continue;
        }
        const std::span<std::byte> bytes{f.data, f.len};
        auto plan = plan_rx(RxHeader{f.hdr.flags, f.hdr.gso_type, f.hdr.gso_size, f.hdr.csum_start, f.hdr.csum_offset},
                            bytes, fe_rx_);
        if (!plan) {
          ++st_.rx_dropped;
          spdlog::debug("dom={} dev={}: rx frame of {} bytes dropped: {}", domid(), name(), f.len, plan.error().what);
          continue;
        }
        f.plan = *plan;
        if (f.plan.sw_csum) {
          if (!complete_partial_csum(bytes, f.hdr.csum_start, f.hdr.csum_offset)) {  // bounds checked by plan_rx
            ++st_.rx_dropped;
            continue;
          }
          ++st_.rx_csum_sw;
        }
        if (f.pool_page != SIZE_MAX) pool_next += f.plan.data_slots;  // its pages stay its own for this round
      }
      // Pure ACKs are looked at only as read from the host here; with classes pull_rx() filtered them already.
      std::optional<PureAck> ack;
      if (cfg_.ack_filter && !classes && !f.plan.gso && f.plan.ring_slots() == 1) ack = pure_ack({f.data, f.len});
      if (holding) {
        if (ack && supersedes(*ack, held_ack)) {
          rx_frames_[nframes] = f;  // the later ACK takes the held one's place
          if (f.pool_page == SIZE_MAX && f.data == rx_bufs_[idx].data()) std::swap(rx_bufs_[nframes], rx_bufs_[idx]);
          held_ack = *ack;
          ++st_.rx_acks_filtered;
          continue;
        }
        if (!take_slots(rx_frames_[nframes], 1)) return;
        ++nframes;  // this frame now sits at rx_frames_[nframes]
        holding = false;
      }
      RxFrame& g = rx_frames_[nframes];
      const std::size_t need = g.plan.ring_slots();
      auto avail = q.rx->pending();
      if (!avail) return close(avail.error().what);
      if (ack && *avail >= 2) {
        holding = true;
        held_ack = *ack;
        continue;
      }
      if (*avail < need) {  // wait for the frontend to post enough (netback does the same); frames queue in the host
        rx_stash_buf_.assign(g.data, g.data + g.len);
        rx_stash_.emplace(g);
        rx_stash_->data = rx_stash_buf_.data();
        rx_stash_->pool_page = SIZE_MAX;
        waiting_for = need;
        break;
      }
      if (!take_slots(g, need)) return;
      ++nframes;
    }
    if (holding) {  // the last ACK read: nothing later covers it in this round
      if (!take_slots(rx_frames_[nframes], 1)) return;
      ++nframes;
    }
    if (nframes > 0) {
      ++st_.rx_batches;
      const std::int64_t t0 = mono_ns();
      const bool copied = rx_copy_->size() == 0 || static_cast<bool>(rx_copy_->execute());
      st_.rx_copy_ns += static_cast<std::uint64_t>(mono_ns() - t0);
      for (std::size_t i = 0; i < nframes; ++i) {
        const RxFrame& f = rx_frames_[i];
        bool ok = copied;
        for (std::size_t j = 0; j < f.nslots; ++j) {
          const RxSlot& s = rx_slots_[f.first_slot + j];
          ok = ok && s.ok && (s.extra || static_cast<bool>(rx_copy_->segment(s.seg)));
        }
        if (ok) {
          ++st_.rx_packets;
          st_.rx_bytes += f.len;
          if (f.plan.gso) ++st_.rx_gso;
          if ((f.plan.flags & NETRXF_csum_blank) != 0) ++st_.rx_csum_blank;
        } else {
          ++st_.rx_copy_errors;
        }
        std::size_t di = 0;  // data slot index
        for (std::size_t j = 0; j < f.nslots; ++j) {
          const RxSlot& s = rx_slots_[f.first_slot + j];
          netif_rx_response_t r{};
          if (s.extra) {
            static_assert(sizeof(netif_extra_info) == sizeof(netif_rx_response_t));
            std::memcpy(&r, &*f.plan.gso, sizeof r);  // overlays the response in the request's own slot
          } else {
            r.id = s.id;
            r.offset = 0;
            r.flags = static_cast<std::uint16_t>((di == 0 ? f.plan.flags : 0U) |
                                                 (di + 1 < f.plan.data_slots ? NETRXF_more_data : 0U));
            r.status = ok ? static_cast<std::int16_t>(s.len) : static_cast<std::int16_t>(NETIF_RSP_ERROR);
            ++di;
          }
          if (auto st = q.rx->put_response(r); !st) return close(st.error().what);
        }
      }
      auto& ev = q.ev_rx ? *q.ev_rx : *q.ev_tx;
      if (auto st = q.rx->push_responses(ev); !st) return close(st.error().what);
      if (board_slot_) QosBoard::instance().mark_active(*board_slot_, mono_ns());
    }
    if (waiting_for > 0) {
      // Arms req_event at cons + waiting_for: the post that completes the frame's slots wakes us.
      auto more = q.rx->wait_for_requests(static_cast<std::uint32_t>(waiting_for));
      if (!more) return close(more.error().what);
      if (*more) continue;
      set_host_polling(classes);  // with classes the host is read ahead (pull_rx), so it never backs up behind us
      return;
    }
    set_host_polling(true);
    if (host_empty) return;
  }
  // More frames are queued: level-triggered polling brings us back after the other devices had their turn.
}

// ---- gearsd ---------------------------------------------------------------------------------------------------

// Nonzero coalescing refusals by reason (to_string): why consecutive frames still cost a host write each.
nlohmann::json NetDevice::merge_refusals() const {
  auto j = nlohmann::json::object();
  for (std::size_t i = 0; i < kMergeResults; ++i)
    if (st_.tx_merge_refused[i] != 0) j[std::string(to_string(static_cast<MergeResult>(i)))] = st_.tx_merge_refused[i];
  return j;
}

nlohmann::json NetDevice::stats() const {
  return {{"state", driver_ ? std::string(xenbus::state_name(driver_->state())) : "down"},
          {"connected", !queues_.empty()},
          {"queues", queues_.size()},
          {"host", host_ ? host_->name() : ""},
          {"host_port", host_ ? host_->stats() : nlohmann::json()},
          {"mac", cfg_.mac},
          {"ops", st_.tx_packets + st_.rx_packets},
          {"bytes", st_.tx_bytes + st_.rx_bytes},
          {"errors", st_.tx_dropped + st_.rx_dropped + st_.tx_copy_errors + st_.rx_copy_errors + st_.faults},
          {"tx_packets", st_.tx_packets},
          {"tx_bytes", st_.tx_bytes},
          {"tx_dropped", st_.tx_dropped},
          {"tx_copy_errors", st_.tx_copy_errors},
          {"tx_host_errors", st_.tx_host_errors},
          {"tx_gso", st_.tx_gso},
          {"tx_csum", st_.tx_csum},
          {"tx_throttled", st_.tx_throttled},
          {"rx_packets", st_.rx_packets},
          {"rx_bytes", st_.rx_bytes},
          {"rx_dropped", st_.rx_dropped},
          {"rx_copy_errors", st_.rx_copy_errors},
          {"rx_gso", st_.rx_gso},
          {"rx_csum_blank", st_.rx_csum_blank},
          {"rx_csum_sw", st_.rx_csum_sw},
          {"rx_acks_filtered", st_.rx_acks_filtered},
          {"ack_filter", cfg_.ack_filter},
          {"rx_offloads", {{"csum", host_rx_.csum}, {"tso4", host_rx_.tso4}, {"tso6", host_rx_.tso6}}},
          {"rx_pool", rx_pool_ != nullptr},
          {"events", st_.events},
          {"coalesce", cfg_.coalesce},
          {"tx_split", to_string(cfg_.tx_split)},
          {"tx_split_min", cfg_.tx_split_min},
          {"tx_split_frames", st_.tx_split},
          {"tx_map_failures", st_.tx_map_failures},
          {"profile", {{"tx_batches", st_.tx_batches}, {"tx_copy_ns", st_.tx_copy_ns}, {"tx_host_ns", st_.tx_host_ns},
                       {"tx_merged", st_.tx_merged}, {"tx_merge_refused", merge_refusals()},
                       {"rx_batches", st_.rx_batches}, {"rx_copy_ns", st_.rx_copy_ns}}},
          {"connects", st_.connects},
          {"faults", st_.faults},
          {"qos", cfg_.qos.to_json()},
          {"qos_rate_Bps", bucket_.rate()},
          {"qos_achieved_Bps", achieved_bps_},
          {"qos_squeeze_permille", board_slot_ ? QosBoard::instance().squeeze(*board_slot_) : 1000U},
          {"qos_contended", contended_},
          {"policy_changes", st_.policy_changes},
          {"tx_flow_delayed", st_.tx_flow_delayed},
          {"tx_flow_dropped", st_.tx_flow_dropped},
          {"rx_flow_dropped", st_.rx_flow_dropped},
          {"flows", flow_stats()},
          {"classes", flow_classes()},
          {"last_error", last_error_}};
}

// gearsctl top's sub-rows: {"<class> <flow>": {reqs, bytes}} per flow class (none without flow classes).
nlohmann::json NetDevice::flow_classes() const {
  auto out = nlohmann::json::object();
  for (std::size_t i = 0; i < flows_.size(); ++i) {
    const auto& c = flows_[i];
    const auto cls = (i == 0 ? cfg_.qos : c.rule.policy).to_json()["class"].get<std::string>();
    out[cls + " " + (i == 0 ? std::string("default") : c.rule.subject)] = {{"reqs", c.packets + c.rx_packets},
                                                                           {"bytes", c.bytes + c.rx_bytes}};
  }
  return out;
}

// Per flow class: the rules while disconnected (no counters then), else every class, the default one first.
nlohmann::json NetDevice::flow_stats() const {
  auto out = nlohmann::json::array();
  if (flows_.empty()) {
    for (const auto& r : flow_rules_) out.push_back({{"flow", r.subject}, {"qos", r.policy.to_json()}});
    return out;
  }
  for (std::size_t i = 0; i < flows_.size(); ++i) {
    const auto& c = flows_[i];
    out.push_back({{"flow", i == 0 ? std::string("default") : c.rule.subject},
                   {"qos", (i == 0 ? cfg_.qos : c.rule.policy).to_json()},
                   {"rate_Bps", i == 0 ? bucket_.rate() : c.bucket.rate()},
                   {"achieved_Bps", c.achieved_bps},
                   {"contended", i == 0 ? contended_ : c.contended},
                   {"packets", c.packets},
                   {"bytes", c.bytes},
                   {"delayed", c.delayed},
                   {"dropped", c.dropped},
                   {"backlog_bytes", c.held_bytes},
                   {"rx_packets", c.rx_packets},
                   {"rx_bytes", c.rx_bytes},
                   {"rx_dropped", c.rx_dropped},
                   {"rx_backlog_bytes", c.rx_held_bytes}});
  }
  return out;
}

void NetDevice::metrics(daemon::MetricSet& out) const {
  using daemon::MetricType;
  const std::vector<daemon::Label> cls = {{"class", cfg_.qos.to_json()["class"].get<std::string>()}};
  auto c = [&](const char* n, const char* help, std::uint64_t v) {
    out.add(n, MetricType::counter, help, static_cast<double>(v), cls);
  };
  c("gears_vif_tx_packets_total", "Packets the domU sent (delivered to the host side).", st_.tx_packets);
  c("gears_vif_tx_bytes_total", "Bytes the domU sent.", st_.tx_bytes);
  c("gears_vif_tx_dropped_total", "Malformed TX packets dropped.", st_.tx_dropped);
  c("gears_vif_tx_merged_total", "TX frames coalesced into the previous frame of their TCP flow.", st_.tx_merged);
  c("gears_vif_tx_split_total", "TX frames written to the host split (tx-split=map|grant).", st_.tx_split);
  c("gears_vif_tx_throttled_total", "TX rounds deferred by the QoS token bucket.", st_.tx_throttled);
  c("gears_vif_rx_packets_total", "Packets delivered to the domU.", st_.rx_packets);
  c("gears_vif_rx_bytes_total", "Bytes delivered to the domU.", st_.rx_bytes);
  c("gears_vif_rx_dropped_total", "Packets for the domU dropped (too large, or an offload it cannot take).", st_.rx_dropped);
  c("gears_vif_rx_gso_total", "TSO frames delivered to the domU whole (GSO extra).", st_.rx_gso);
  c("gears_vif_rx_acks_filtered_total", "Pure TCP ACKs not delivered: a later ACK of the same batch covered them.",
    st_.rx_acks_filtered);
  c("gears_vif_faults_total", "Times the vif was closed for a protocol violation.", st_.faults);
  out.add("gears_vif_qos_rate_bytes", MetricType::gauge, "Current TX rate limit in bytes/s (0 = none).",
          static_cast<double>(bucket_.rate()), cls);
  out.add("gears_vif_connected", MetricType::gauge, "1 while the rings are mapped.", queues_.empty() ? 0.0 : 1.0, cls);
  for (std::size_t i = 0; i < flows_.size(); ++i) {
    const auto& fc = flows_[i];
    const std::vector<daemon::Label> fl = {
        {"class", (i == 0 ? cfg_.qos : fc.rule.policy).to_json()["class"].get<std::string>()},
        {"flow", i == 0 ? std::string("default") : fc.rule.subject}};
    auto f = [&](const char* n, const char* help, std::uint64_t v) {
      out.add(n, MetricType::counter, help, static_cast<double>(v), fl);
    };
    f("gears_vif_flow_tx_bytes_total", "Bytes of a flow class the domU sent (delivered to the host side).", fc.bytes);
    f("gears_vif_flow_tx_delayed_total", "Frames of a flow class held in its backlog for tokens.", fc.delayed);
    f("gears_vif_flow_tx_dropped_total", "Frames of a flow class dropped: its backlog was full.", fc.dropped);
    out.add("gears_vif_flow_rate_bytes", MetricType::gauge, "Current TX rate limit of a flow class (0 = none).",
            static_cast<double>(i == 0 ? bucket_.rate() : fc.bucket.rate()), fl);
  }
}

nlohmann::json NetDevice::hints() const { return nlohmann::json::array({{{"qos", cfg_.qos.to_json()}}}); }

std::unique_ptr<daemon::Device> make_net_device(const daemon::DeviceSpec& spec, const daemon::HintRegistry* hints) {
  return std::make_unique<NetDevice>(spec, [](const VifConfig& c) -> std::unique_ptr<HostPort> {
    if (!c.xdp_if.empty()) return std::make_unique<XskPort>(c.xdp_if, c.xdp_mode);
    return std::make_unique<TapPort>(c.ifname, c.mtu, c.bridge);
  }, hints);
}

std::unique_ptr<daemon::DiscoverySource> make_net_discovery() {
  return std::make_unique<backend::XenbusDiscovery>("gears-vif", "vif");
}

}  // namespace gears::net
