// The Gears vif: a netif backend in gearsd serving an unmodified xen-netfront (gearsd kind "vif").
//
// xenstore: backend/gears-vif/<dom>/<devid> (dom0), frontend device/vif/<devid> (domU), see README.md here.
// Everything below lives on the device's worker thread: the xenbus driver, every queue's rings and event
// channels, the grant-copy batches, the TAP fd and the token bucket. Nothing on the data path takes a lock.
//
// Rings (per queue; the contract of each is xen/io/netif.h + common/ring/xen_ring.hpp's hostile-frontend rules):
//   tx ring  requests = packets the domU sends (TxParser, protocol.hpp); responses in slot order after the
//            batch's grant copy ran, so the frontend never reuses a page we still read. Then the batch goes to
//            the host; with coalesce=on (and a host with offloads) consecutive frames of one TCP flow are merged
//            into one GSO frame first (coalesce.hpp).
//   rx ring  requests = empty pages the domU posts; we consume one only when a frame is ready for it, and
//            answer each with the bytes copied into it.
// Wake-ups: tx evtchn -> service_tx; rx evtchn -> service_rx (buffers posted); TAP readable -> service_rx.
// With no rx buffer posted, the TAP fd is taken out of epoll (its frames wait in the kernel queue) and the rx
// ring's req_event is armed, so the frontend's next post wakes us; with flow classes the TAP stays polled and is
// read ahead into per-class FIFOs (pull_rx). A throttled TX queue (QoS) resumes on a timer; with flow classes
// (sched.hpp) the ring is never held: throttled frames wait in their class's backlog, which the same timer drains.
#pragma once

#include <array>
#include <deque>
#include <functional>
#include <span>
#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "common/ring/xen_ring.hpp"
#include "common/xen/evtchn.hpp"
#include "common/xen/grant.hpp"
#include "common/xen/store.hpp"
#include "common/xenbus/driver.hpp"
#include "common/xenbus/nodes.hpp"
#include "dom0/backends/net/coalesce.hpp"
#include "dom0/backends/net/host.hpp"
#include "dom0/backends/net/protocol.hpp"
#include "dom0/backends/net/sched.hpp"
#include "dom0/gearsd/device.hpp"
#include "dom0/gearsd/hint_registry.hpp"
#include "dom0/gearsd/reactor.hpp"

namespace gears::net {

inline constexpr unsigned kMaxQueues = 4;
inline constexpr unsigned kDefaultMtu = 1500;
inline constexpr unsigned kMaxMtu = 4078;  // MTU + Ethernet + 802.1Q header fits one rx page
// How a large TX frame (>= tx-split-min bytes) reaches the host; smaller ones are always copied whole into a private
// buffer (and may be coalesced). A split frame's first kTxHeadCopy bytes are copied into private memory (every
// header the backend parses comes from there) and the rest stays in per-slot pieces written with one gathered
// write; it is never coalesced.
//   off    no split: every frame copied whole (gntdev pins our buffer page for every copy segment)
//   map    pieces read from the guest's pages, mapped read-only per batch; responses wait for the unmap
//   grant  pieces grant-copied into a pool of our own pages granted to ourselves: no page pinning per segment
//          (the default: fastest in the lab, docs/SEMNET.md)
enum class TxSplit { off, map, grant };
[[nodiscard]] const char* to_string(TxSplit m);
inline constexpr unsigned kDefaultTxSplitMin = 16384;
inline constexpr std::size_t kTxHeadCopy = 256;

// Device parameters (from `gearsctl attach --param k=v`, `gears_vif = ["k=v,..."]` or discovery).
struct VifConfig {
  std::string mac;     // the domU's MAC, "00:16:3e:xx:xx:xx"; derived from (dom, devid) if absent
  std::string bridge;  // bridge to enslave the TAP to; empty = none
  std::string ifname;  // TAP name; default gvif<dom>.<devid>
  unsigned mtu = kDefaultMtu;
  unsigned queues = kMaxQueues;  // multi-queue-max-queues advertised
  QosPolicy qos;                 // from the device's "hints" parameter
  std::string xdp_if;            // host=xdp:<if>: an AF_XDP port on that interface instead of a TAP
  XdpMode xdp_mode = XdpMode::automatic;
  bool coalesce = true;          // coalesce=on|off: merge a batch's TCP frames of one flow (coalesce.hpp)
  TxSplit tx_split = TxSplit::grant;           // tx-split=off|map|grant (grant: measured fastest, SEMNET.md)
  unsigned tx_split_min = kDefaultTxSplitMin;  // tx-split-min=N: frames of >= N bytes are split
  bool rx_offload = true;        // rx-offload=on|off: partial checksums and TSO frames towards the frontend
  bool rx_pool = true;           // rx-pool=on|off: RX frames read into self-granted pages (ref-to-ref copies)
  bool ack_filter = true;        // ack-filter=on|off: drop a pure ACK a later one of its batch supersedes (protocol.hpp)
};
// Parses and checks params; throws std::invalid_argument with a one-line reason naming the key.
[[nodiscard]] VifConfig parse_vif_config(const nlohmann::json& params, std::uint32_t dom, std::uint32_t devid);

struct VifStats {
  std::uint64_t tx_packets = 0, tx_bytes = 0, tx_dropped = 0, tx_copy_errors = 0, tx_host_errors = 0, tx_gso = 0,
                tx_csum = 0, tx_throttled = 0;
  std::uint64_t policy_changes = 0;
  std::uint64_t rx_packets = 0, rx_bytes = 0, rx_dropped = 0, rx_copy_errors = 0;
  std::uint64_t rx_gso = 0, rx_csum_blank = 0, rx_csum_sw = 0;  // TSO frames; partial checksums passed / completed
  std::uint64_t events = 0, faults = 0, connects = 0;
  // Where the time goes (ns) and how well work is batched.
  std::uint64_t tx_batches = 0, tx_copy_ns = 0, tx_host_ns = 0, rx_batches = 0, rx_copy_ns = 0;
  std::uint64_t tx_merged = 0;  // guest frames appended to the previous one (coalesce): host writes saved
  std::uint64_t tx_split = 0, tx_map_failures = 0;  // frames written split (tx-split); batches whose map failed
  std::uint64_t tx_flow_delayed = 0, tx_flow_dropped = 0;  // frames a flow class held back; dropped (backlog full)
  std::uint64_t rx_flow_dropped = 0;  // RX frames dropped: their class's FIFO was full
  std::uint64_t rx_acks_filtered = 0;  // pure ACKs not delivered: a later ACK of the same batch covered them
  std::array<std::uint64_t, kMergeResults> tx_merge_refused{};  // why a frame started a new host write, by reason
};

// Creates the host side of a vif (TAP in gearsd; a socketpair in unit tests). Throws on failure.
using HostFactory = std::function<std::unique_ptr<HostPort>(const VifConfig&)>;

class NetDevice final : public daemon::Device, private xenbus::BackendHooks {
 public:
  // Throws std::invalid_argument for bad params (reported to whoever attached the device). `hints`: gearsd's
  // registry (xl gears_hints, attach --hints, gears-front on the channel); polled on the policy timer.
  NetDevice(daemon::DeviceSpec spec, HostFactory host, const daemon::HintRegistry* hints = nullptr);
  ~NetDevice() override;

  [[nodiscard]] Status start(daemon::Reactor& loop) override;
  void stop() override;
  [[nodiscard]] nlohmann::json stats() const override;
  void metrics(daemon::MetricSet& out) const override;
  [[nodiscard]] nlohmann::json hints() const override;

  // Applies a new QoS policy live (worker thread), without touching the rings.
  void set_policy(const QosPolicy& p);
  [[nodiscard]] const QosPolicy& policy() const { return cfg_.qos; }
  [[nodiscard]] const VifStats& counters() const { return st_; }
  [[nodiscard]] bool connected() const { return !queues_.empty(); }

 private:
  struct Queue {
    unsigned index = 0;
    xen::GrantMapping tx_map, rx_map;
    std::optional<ring::BackRing<netif_tx_sring>> tx;
    std::optional<ring::BackRing<netif_rx_sring>> rx;
    std::optional<xen::EventChannel> ev_tx, ev_rx;  // ev_rx empty: one channel for both
    daemon::WatchId w_tx = 0, w_rx = 0;
    TxParser parser;
  };
  // A TX packet of the current batch: its data lands at `base` while the batch's grant copies run. A split packet
  // has only its first `head` bytes there; the rest are pieces (tx_pieces_) in the batch's mapping or the pool.
  struct TxItem {
    TxPacket pkt;
    std::size_t first_seg = 0, nsegs = 0;
    std::size_t first_piece = 0, npieces = 0;
    std::size_t head = 0;
    std::byte* base = nullptr;  // its tx_bufs_ entry, or its head slot in the pool (not dropped by the parser)
    bool split = false;
    bool drop = false;
    bool held = false;          // taken by its flow class's backlog (or dropped there): not written now
    std::size_t fclass = 0;     // its flow class (flows_), with flow classes
    virtio_net_hdr hdr{};       // set with data once the packet passed its checks
    std::byte* data = nullptr;  // = base once the packet passed its checks (coalescing grows it); null: error
  };

  Status advertise(xen::StoreOps& t, const std::string& be_path) override;
  Status connect(xen::Store& s, const std::string& fe_path, domid_t fe_dom) override;
  void disconnect() override;

  Status connect_queue(xen::Store& s, const std::string& dir, unsigned index);
  void on_store();
  void on_tx_event(Queue& q);
  void on_rx_event(Queue& q);
  void service_tx(Queue& q);
  Status flush_tx(Queue& q);
  void copy_mapped_rest();
  void make_tx_pool();
  void make_rx_pool();
  struct Pools;
  [[nodiscard]] static std::shared_ptr<Pools> worker_pools();
  [[nodiscard]] xen::GrantShare& pool(std::optional<xen::GrantShare> Pools::*which, std::size_t pages);
  [[nodiscard]] Result<virtio_net_hdr> offload_header(const TxPacket& p, std::span<const std::byte> frame);
  [[nodiscard]] nlohmann::json merge_refusals() const;
  void service_rx();
  void set_host_polling(bool on);
  void set_rx_offloads(const HostRxOffloads& o);
  void poll_policy();
  void schedule_resume(std::int64_t delay_ns);
  void close(std::string_view why);
  [[nodiscard]] std::uint64_t refresh_rate(std::int64_t now);
  // Per-flow classes (sched.hpp).
  struct FlowClass;
  void build_flows();
  void release_flows();
  void refresh_class(FlowClass& c, std::int64_t now);
  [[nodiscard]] TokenBucket& class_bucket(std::size_t i);
  void admit(TxItem& it, const std::byte* pages, std::int64_t now);
  void drain_flows(std::int64_t now);
  void pull_rx();
  [[nodiscard]] nlohmann::json flow_stats() const;
  [[nodiscard]] nlohmann::json flow_classes() const;

  VifConfig cfg_;
  daemon::Reactor* loop_ = nullptr;
  std::optional<xen::Store> store_;
  std::optional<xenbus::BackendDriver> driver_;
  std::optional<xen::GrantTable> gnt_;
  std::optional<xen::GrantCopyBatch> tx_copy_, rx_copy_;
  HostFactory host_factory_;
  std::unique_ptr<HostPort> host_;
  std::vector<std::unique_ptr<Queue>> queues_;
  domid_t fe_dom_ = 0;
  RxCaps fe_rx_;                  // what the frontend takes on RX (its feature-* keys), read at connect
  HostRxOffloads host_rx_;        // what the host was asked to leave undone
  daemon::WatchId store_watch_ = 0, tap_watch_ = 0, resume_timer_ = 0, policy_timer_ = 0;
  std::int64_t last_tick_ns_ = 0;  // policy tick: TX achieved since the previous one
  std::uint64_t last_tick_bytes_ = 0, achieved_bps_ = 0;
  bool host_polling_ = false;

  // TX batch state (worker-owned scratch).
  std::vector<TxItem> batch_;
  std::vector<std::vector<std::byte>> tx_bufs_;
  struct TxPiece {
    std::uint32_t page = 0;     // page of the batch's mapping (index into tx_map_refs_), or of the pool
    std::uint16_t offset = 0;   // in that page
    std::uint16_t len = 0;
    std::uint32_t pkt_off = 0;  // where these bytes sit in the packet
  };
  std::vector<grant_ref_t> tx_map_refs_;
  std::vector<TxPiece> tx_pieces_;
  // tx-split=grant: kTxBatchSlots piece pages (piece i of a batch in page i, at its offset in the guest's page, so
  // no copy crosses a page) and the heads' pages (kTxHeadCopy bytes each), granted to our own domain.
  std::shared_ptr<Pools> pools_;         // this worker's (device.cpp); tx_pool_ and rx_pool_ point into it
  xen::GrantShare* tx_pool_ = nullptr;
  // RX: frames read from the TAP, waiting for their grant copies. A frame's bytes sit in the rx pool (pages
  // pool_page.. of rx_pool_, contiguous in our mapping, so every piece is copied grant ref to grant ref: no page of
  // ours pinned per segment), or, without a pool and for a stashed frame, in a private buffer.
  struct RxFrame {
    std::byte* data = nullptr;
    std::size_t len = 0;
    virtio_net_hdr hdr{};
    std::size_t pool_page = SIZE_MAX;        // SIZE_MAX: private buffer
    std::size_t first_slot = 0, nslots = 0;  // into rx_slots_ (ring order: first data slot, GSO extra, the rest)
    RxPlan plan{};
  };
  struct RxSlot {
    std::uint16_t id = 0;
    std::uint16_t len = 0;
    bool ok = false;                // the copy was queued (or nothing to copy: the extra slot)
    bool extra = false;             // the GSO extra's slot: answered with the netif_extra_info
    std::size_t seg = SIZE_MAX;     // its segment in rx_copy_
  };
  std::vector<RxFrame> rx_frames_;
  std::vector<RxSlot> rx_slots_;
  std::optional<RxFrame> rx_stash_;  // read, waiting for enough posted rx requests; its bytes in rx_stash_buf_
  std::vector<std::byte> rx_stash_buf_, rx_taken_buf_;  // the stash's bytes; a taken stash's until its copy ran
  std::vector<std::vector<std::byte>> rx_bufs_;         // per frame of a round, without a pool
  xen::GrantShare* rx_pool_ = nullptr;                 // rx-pool=on with gntalloc: kRxPoolPages pages

  QosPolicy base_qos_;               // from the device's own params; domain hints override it
  const daemon::HintRegistry* hints_ = nullptr;
  std::uint64_t hints_version_ = 0;  // the registry version of this domain last applied
  TokenBucket bucket_;
  std::optional<std::size_t> board_slot_;
  bool contended_ = false;
  // Per-flow classes, while the domain has flow rules and the vif is connected: flows_[0] is the default class (the
  // vif's board slot and bucket_), flows_[1 + i] flow_rules_[i]'s. Empty: the vif is one class, gated at the ring.
  struct FlowClass {
    FlowRule rule;                    // keys empty for the default class
    std::optional<std::size_t> slot;  // its own board slot (the default class uses board_slot_)
    TokenBucket bucket;               // (the default class uses bucket_)
    struct Held {
      virtio_net_hdr hdr{};
      std::vector<std::byte> bytes;
    };
    std::deque<Held> held;            // FIFO: the class's frames keep their order
    std::size_t held_bytes = 0;
    std::uint64_t packets = 0, bytes = 0, delayed = 0, dropped = 0;
    // RX: frames read from the host ahead of the guest's buffers, in arrival order (pull_rx()).
    struct RxHeld {
      RxFrame frame;
      std::vector<std::byte> bytes;
      std::optional<PureAck> ack;  // ack-filter: a later pure ACK of its connection may replace it while it waits
    };
    std::deque<RxHeld> rx_held;
    std::size_t rx_held_bytes = 0;
    std::uint64_t rx_packets = 0, rx_bytes = 0, rx_dropped = 0;
    std::uint64_t tick_bytes = 0, achieved_bps = 0;
    bool contended = false;
  };
  void write_held(const FlowClass::Held& h);
  std::vector<FlowRule> flow_rules_;
  std::vector<FlowClass> flows_;
  std::vector<std::size_t> flow_order_;  // flows_ indices, best class first: the order backlogs drain in
  std::size_t flows_held_ = 0;           // frames in all TX backlogs
  std::vector<std::vector<std::byte>> rx_taken_;  // this RX round's frames taken from rx_held (alive until copied)
  std::vector<std::byte> rx_scratch_;             // pull_rx()'s read buffer
  VifStats st_;
  std::string last_error_;
  std::shared_ptr<const char> alive_ = std::make_shared<const char>('\0');
};

// gearsd's factory for kind "vif".
[[nodiscard]] std::unique_ptr<daemon::Device> make_net_device(const daemon::DeviceSpec& spec,
                                                              const daemon::HintRegistry* hints);
// Discovery of Gears vifs: backend/gears-vif directories.
[[nodiscard]] std::unique_ptr<daemon::DiscoverySource> make_net_discovery();
// The xenstore nodes of a Gears vif (frontend device/vif/<devid>, backend backend/gears-vif/<dom>/<devid>).
[[nodiscard]] xenbus::DeviceNodes vif_nodes(domid_t dom, unsigned devid, const VifConfig& cfg);

}  // namespace gears::net
