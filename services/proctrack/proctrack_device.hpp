// ProcTrackDevice: the proctrack service for one HVM/PVH domain, hosted by gearsd as kind "proctrack".
//
// Attach = start monitoring, detach = stop; any number of times on a live domain (MonitorRing's teardown
// pauses the domain, disables the CR3 event, answers every pending request, then tears the ring down, so no
// vCPU is ever left paused). Synchronous CR3 events only: the lab saw an asynchronous teardown kill a domU.
//
// Per CR3 event (the vCPU waits for our answer): the OS-agnostic tracker infers births/switches; on a real
// switch the optional Linux layer walks the task list (PID, comm, process birth/exec/exit) when the incoming
// address space is new or its owner changed, and otherwise only re-reads the incoming and outgoing task_structs;
// the vCPU's occupant goes to the Directory (who_ran) and events to its event log. A timer re-walks the task
// list every `rescan_ms` with the domain paused, so exits are seen even when the guest goes idle.
//
// params (strings, from `gearsctl attach <dom> proctrack 0 --param k=v`):
//   os          linux (default) | none        the OS-aware layer on or off
//   btf         BTF of the guest kernel       default /sys/kernel/btf/vmlinux
//   system_map  symbols of the guest kernel: ':'-separated System.map/kallsyms candidates, default
//               /boot/System.map-$(uname -r):/proc/kallsyms (dom0 must run the guest's kernel build then)
//   kpti        auto (default) | on | off
//   idle_death_s seconds without a load after which an address space is declared dead (0 = off; default 0
//               with os=linux, where the task list decides, and 10 with os=none)
//   rescan_ms   task-list rescan period, 50..60000 (default 500)
#pragma once

#include <cstdint>
#include <map>
#include <memory>
#include <optional>
#include <string>

#include "common/xen/foreign.hpp"
#include "common/xen/monitor.hpp"
#include "dom0/gearsd/device.hpp"
#include "services/proctrack/directory.hpp"
#include "services/proctrack/linux.hpp"
#include "services/proctrack/process_table.hpp"
#include "services/proctrack/tracker.hpp"

namespace gears::daemon {
class Reactor;
}

namespace gears::proctrack {

struct ProcTrackOptions {
  bool os_aware = true;
  std::string btf = "/sys/kernel/btf/vmlinux";
  std::string system_map;  // candidates; default /boot/System.map-<uname -r>:/proc/kallsyms
  KptiMode kpti = KptiMode::automatic;
  std::int64_t idle_death_ns = -1;  // <0: default for the os mode
  std::int64_t rescan_ms = 500;

  // Throws std::invalid_argument with a one-line message on a bad or unknown parameter.
  static ProcTrackOptions parse(const nlohmann::json& params);
};

class ProcTrackDevice final : public daemon::Device {
 public:
  // Opens the monitor ring (EBUSY: someone else monitors the domain) and loads the kernel layout. Throws.
  ProcTrackDevice(daemon::DeviceSpec spec, Directory& dir);
  ~ProcTrackDevice() override;

  [[nodiscard]] Status start(daemon::Reactor& loop) override;
  void stop() override;
  [[nodiscard]] nlohmann::json stats() const override;
  void metrics(daemon::MetricSet& out) const override;
  [[nodiscard]] nlohmann::json hints() const override;

 private:
  void on_kick();
  void on_request(const vm_event_request_t& req, std::int64_t t);
  [[nodiscard]] bool needs_walk(std::uint64_t in_key, std::uint64_t out_key, bool born);
  void walk(std::int64_t t, std::vector<ProcEvent>& evs);
  void rescan();
  // Re-reads the names of the vCPUs' current occupants into the table and, when one changed, the timeline.
  void refresh_occupants(std::int64_t t);
  void arm_rename_check();
  void publish(std::vector<ProcEvent>& evs, std::vector<AsEvent>& as, bool table_changed);

  ProcTrackOptions o_;
  Directory& dir_;
  domid_t dom_;
  xen::XenCtrl xc_;
  xen::MonitorRing ring_;
  std::optional<xen::ForeignMemory> fm_;
  std::unique_ptr<ForeignGuestMemory> mem_;
  std::unique_ptr<LinuxIntrospector> linux_;
  AddressSpaceTracker tracker_;
  ProcessTable table_;
  daemon::Reactor* loop_ = nullptr;
  std::uint64_t fd_watch_ = 0, timer_ = 0;
  // A process that execs loads its new address space (exec_mmap) before Linux gives it its new name
  // (__set_task_comm, later in the same execve), so the walk at that CR3 write reads the old name, and a process
  // that then runs alone makes no further CR3 write. After a birth or exec of the incoming process, its name is
  // read again 5 ms and 50 ms later (rename_timer_, one at a time); every rescan does the same for all vCPUs.
  std::uint64_t rename_timer_ = 0;
  int rename_checks_left_ = 0;
  std::map<std::uint32_t, std::pair<std::uint64_t, Identity>> cur_key_;  // vCPU -> last switch's key, occupant
  std::uint64_t kernel_cr3_ = 0, lstar_ = 0;
  bool table_dirty_ = false;

  struct Counters {
    std::uint64_t requests = 0, cr3 = 0, other = 0, bad_version = 0, kicks = 0, ring_errors = 0;
    std::uint64_t walk_errors = 0, pause_errors = 0, probes_only = 0, renames = 0;
    std::uint64_t handler_ns = 0;  // wall time from kick to notify returned (on 1 pCPU: includes guest time)
    std::uint64_t work_ns = 0;     // time spent on the requests themselves (tracker, walk, publish)
    std::uint64_t walk_ns = 0;
  } c_;
  std::string last_walk_error_;
  std::int64_t started_ns_ = 0;
};

[[nodiscard]] std::unique_ptr<daemon::Device> make_proctrack_device(const daemon::DeviceSpec& spec);

}  // namespace gears::proctrack
