// The Gears block device (gearsd kind "vbd"): a blkif backend for an unmodified xen-blkfront.
//
// Ownership: everything (xenstore connection, rings, event channels, grant handles, persistent grants,
// the target and its io_uring/libnbd handle, the scheduler, the request slots) belongs to the device's
// worker thread; no locks. Data path per request:
//   ring slot --copy--> blkif_request --parse_request()--> Request (--grant copy--> indirect pages
//   --parse_indirect_segments()) --> slot (+ for writes: guest data copied into a private bounce
//   buffer) --> Scheduler --> Target --> (reads: bounce buffer copied to the guest) --> response.
// Guest data moves through persistent grants (grants=persistent, the default, when the frontend agrees):
// mapped once, memcpy'd, with grant copy as the fallback when the cache is full; or by grant copy alone
// (grants=copy, or a frontend without feature-persistent).
// Zero-bounce: with persistent grants and a target that takes iovecs (vectored_io(): the file target), a
// read/write whose every page is in the cache skips the bounce buffer: the target moves the data straight
// between the file and the mapped guest pages. Those pages stay mapped until the I/O completes (GrantPins).
// A bad request gets an error response (counted, logged once per reason). A broken ring (producer index,
// unreadable keys, unmappable ring) closes the device: xenbus Closing + `error`, one log line
// `dom=<d> dev=vbd/<n>: closed: <reason>`. Other devices are untouched.
#pragma once

#include <cstdint>
#include <map>
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
#include "dom0/backends/blk/attribution.hpp"
#include "dom0/backends/blk/grant_pins.hpp"
#include "dom0/backends/blk/protocol.hpp"
#include "dom0/backends/blk/sched.hpp"
#include "dom0/backends/blk/target.hpp"
#include "dom0/gearsd/device.hpp"
#include "dom0/gearsd/reactor.hpp"

namespace gears::blk {

inline constexpr std::uint32_t kMaxRingPageOrder = 4;  // 16 pages: 512 requests per queue
inline constexpr std::uint32_t kMaxQueues = 4;
inline constexpr std::uint32_t kMaxSlots = 256;        // requests held at once per device
inline constexpr std::size_t kMaxPersistentGrants = 1056;  // per device, as Linux blkback

enum class GrantMode : std::uint8_t { copy, persistent };

// Everything a vbd is configured with (device params, validated).
struct BlkConfig {
  std::string target;  // file:/path, /path, nbd://...
  bool read_only = false;
  std::uint32_t sector_size = 512;
  std::uint32_t virtual_device = 0;
  TargetOptions topts;
  DcacheOptions dcache;
  GrantMode grants = GrantMode::copy;
  SchedConfig sched;
  bool class_set = false;  // class= or hints=class=... given: the domain's hints do not override it
};
// Throws std::invalid_argument with a message naming the bad parameter.
[[nodiscard]] BlkConfig parse_config(const nlohmann::json& params, std::uint32_t devid);

class BlkDevice final : public daemon::Device, private xenbus::BackendHooks {
 public:
  // hints: gearsd's registry, for process identity (attribution), process-scoped classes (hint sets with a pid),
  // and the domain's class (a disk without its own class= takes the class of the domain's gears_hints, or of hints
  // published for this disk); nullptr = none.
  explicit BlkDevice(daemon::DeviceSpec spec, daemon::HintRegistry* hints = nullptr);
  ~BlkDevice() override;

  [[nodiscard]] Status start(daemon::Reactor& loop) override;
  [[nodiscard]] std::string prepare_detach(bool force) override;
  void stop() override;
  [[nodiscard]] nlohmann::json stats() const override;
  void metrics(daemon::MetricSet& out) const override;
  [[nodiscard]] nlohmann::json hints() const override;

 private:
  using Ring = ring::BackRing<blkif_sring>;
  struct Queue {
    xen::GrantMapping map;
    std::unique_ptr<Ring> ring;
    xen::EventChannel evtchn;
    daemon::WatchId watch = 0;
  };
  enum class SlotState : std::uint8_t { free, queued, target, flushing };
  struct Slot {
    SlotState state = SlotState::free;
    bool cancelled = false;
    std::uint32_t queue = 0;
    std::uint64_t gen = 0;
    Request req;
    std::vector<Segment> segs;
    std::byte* buf = nullptr;  // aligned bounce buffer, req.bytes() long
    std::size_t buf_len = 0;
    bool zero_copy = false;    // read/write served through iov (mapped guest pages), not buf
    std::vector<iovec> iov;    // zero-bounce: iov_n entries into persistently mapped pages (the target trims them)
    std::size_t iov_n = 0;
    Classified cls;
    std::uint64_t t_enq = 0, t_disp = 0;
    std::int32_t proc = -1;  // Attribution index of the submitting guest process
    std::int32_t rule = -1;  // Attribution rule key that gave its class (-1: none)
  };
  struct ClassStats {
    std::uint64_t reqs = 0, bytes = 0, wait_ns = 0, service_ns = 0;
  };

  Status advertise(xen::StoreOps& t, const std::string& be_path) override;
  Status connect(xen::Store& s, const std::string& fe_path, domid_t fe_dom) override;
  void disconnect() override;

  void on_store();
  void on_event(std::uint32_t q);
  void on_target(std::uint32_t events);
  void pump(std::uint32_t q);
  void pump_all();
  // Detach helpers (stop(), blocking the worker for a bounded time): one service round; answer everything.
  void serve_once();
  void drain();
  // Serves until the frontend's state is Closed/gone (true) or `ms` passed (false).
  [[nodiscard]] bool wait_frontend_closed(int ms);
  // Requests of the current connection not yet answered.
  [[nodiscard]] std::size_t outstanding() const;
  // One request copied out of queue q's ring.
  void intake(std::uint32_t q, const blkif_request& raw, std::int32_t proc,
              const std::optional<Attribution::ProcClass>& pc);
  void respond(std::uint32_t q, std::uint64_t id, std::uint8_t op, std::int16_t status);
  void flush_responses();
  void dispatch();
  void complete(std::uint64_t tag, int result);
  void finish(std::uint32_t slot, std::int16_t status);
  void release(std::uint32_t slot);
  void close(std::string_view why, const std::string& detail);
  void update_target_poll();
  // Moves guest data between the segments and the bounce buffer. false = a grant failed.
  [[nodiscard]] bool copy_segments(Slot& s, bool to_guest);
  // Zero-bounce: points s.iov at every segment's mapped page. false = bounce (no persistent grants, a target
  // without iovecs, a page not in the cache).
  [[nodiscard]] bool map_segments(Slot& s);
  [[nodiscard]] std::span<const Segment> segments(const Slot& s) const;
  void note_reject(const Reject& r);

  nlohmann::json params_;
  BlkConfig cfg_;
  daemon::Reactor* loop_ = nullptr;
  std::optional<xen::Store> store_;
  std::optional<xenbus::BackendDriver> driver_;
  std::optional<xen::GrantTable> gnt_;
  std::unique_ptr<xen::PersistentGrantCache> pgrants_;
  GrantPins pins_;  // zero-bounce I/O in flight; keeps a disconnected cache mapped until it is done
  DiskGeometry geo_;
  std::vector<Queue> queues_;
  domid_t fe_dom_ = 0;
  std::uint64_t gen_ = 0;
  bool use_persistent_ = false;
  std::vector<std::uint32_t> dirty_;  // queues with responses to push
  std::vector<Slot> slots_;
  std::vector<std::uint32_t> free_slots_;
  std::vector<std::byte> indirect_buf_;
  std::unique_ptr<Scheduler> sched_;
  std::unique_ptr<Target> target_;
  daemon::WatchId store_watch_ = 0, target_watch_ = 0, timer_ = 0;
  std::uint32_t target_events_ = 0;
  std::uint64_t timer_at_ = 0;

  // Counters (survive reconnects).
  std::uint64_t ops_ = 0, bytes_rd_ = 0, bytes_wr_ = 0, flushes_ = 0, discards_ = 0, io_errors_ = 0;
  std::uint64_t rejected_ = 0, closes_ = 0, connects_ = 0, grant_failures_ = 0, pgrant_hits_ = 0, copies_ = 0;
  // Where a request's time goes (ns): grant copies (data and indirect pages), the target (dispatch -> completion).
  std::uint64_t copy_ns_ = 0, copy_calls_ = 0, target_ns_ = 0, wakeups_ = 0;
  // Reads/writes served zero-bounce (iovecs into the guest's pages) and through the bounce buffer.
  std::uint64_t zero_copy_ = 0, bounced_ = 0;
  std::array<ClassStats, kClasses> class_stats_{};
  std::vector<ClassStats> label_stats_;
  Attribution attr_;
  daemon::HintRegistry* hints_ = nullptr;
  std::uint64_t hint_sub_ = 0;
  std::string class_source_ = "default";  // where the default class comes from: disk | hints | default
  std::uint64_t class_changes_ = 0;
  std::shared_ptr<const char> alive_ = std::make_shared<const char>('\0');  // posted work checks it
  void refresh_class();  // loop thread
  void refresh_hints();  // loop thread: the default class and the process-scoped hint rules
  bool waits_for_proctrack_ = false;  // logged once: process rules but nothing attributed
  std::map<std::string, std::uint64_t, std::less<>> reject_reasons_;
  std::string last_error_;
};

[[nodiscard]] std::unique_ptr<daemon::Device> make_blk_device(const daemon::DeviceSpec& spec,
                                                             daemon::HintRegistry* hints = nullptr);
[[nodiscard]] std::unique_ptr<daemon::DiscoverySource> make_blk_discovery();
[[nodiscard]] xenbus::DeviceNodes blk_nodes(domid_t domu, unsigned devid);

}  // namespace gears::blk
