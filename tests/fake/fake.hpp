// gears::fake — an in-process fake hypervisor behind the libxen* C API (link seam).
//
// Link gears::fakexen instead of gears::xenlibs and the same compiled gears::xen code runs against this
// fake. The fake defines xs_*, xengnttab_*, xengntshr_*, xenevtchn_*, xenforeignmemory_* and the xc_*
// used by MonitorRing with the exact prototypes of the real headers.
//
// Domains: every handle belongs to the domain that was current on its thread when it was opened
// (AsDomain below; default dom0). Both ends of a split driver can run in one process.
// All state is process-global and guarded by one mutex; handles may be used from several threads.
#pragma once

#include <cstdint>  // the Xen public headers expect <stdint.h> types

#include <xen/xen.h>
#include <xen/event_channel.h>
#include <xen/grant_table.h>

#include <cstddef>
#include <cstdint>
#include <optional>
#include <span>
#include <string>
#include <vector>

struct vm_event_st;

namespace gears::fake {

// Scoped thread-local "current domain": handles opened inside belong to `domid`.
class AsDomain {
 public:
  explicit AsDomain(domid_t domid);
  ~AsDomain();
  AsDomain(const AsDomain&) = delete;
  AsDomain& operator=(const AsDomain&) = delete;

 private:
  domid_t saved_;
};
[[nodiscard]] domid_t current_domain();

// Live-resource counters, for leak checks (all return to zero when everything is released).
struct Counters {
  std::size_t xs_handles = 0;
  std::size_t xs_watches = 0;
  std::size_t xs_transactions = 0;
  std::size_t gnttab_handles = 0;
  std::size_t gntshr_handles = 0;
  std::size_t grants = 0;          // grant entries not yet ended (includes unshared-but-still-mapped)
  std::size_t mapped_pages = 0;    // pages currently mapped through xengnttab
  std::size_t evtchn_handles = 0;
  std::size_t ports = 0;           // bound or unbound ports owned by handles
  std::size_t foreign_handles = 0;
  std::size_t foreign_pages = 0;   // pages currently mapped through xenforeignmemory
  std::size_t xc_handles = 0;
  std::size_t monitors = 0;        // domains with the monitor ring enabled
};
[[nodiscard]] Counters counters();

// Drops all fake state (store, grants, ports, guest memory, monitors, injected failures).
// Only call when no handle is open; the store is re-created with an empty root owned by dom0.
void reset();

// ---- xenstore ------------------------------------------------------------------------------
[[nodiscard]] std::optional<std::string> store_read(const std::string& path);  // bypasses perms
[[nodiscard]] bool store_exists(const std::string& path);
[[nodiscard]] std::vector<std::string> store_children(const std::string& path);
[[nodiscard]] std::string store_dump();  // "path = value" lines, sorted
// Writes as dom0 without firing permission checks (fires watches like any write).
void store_write(const std::string& path, const std::string& value);
// The next `n` mutating calls (write, mkdir, rm, set_permissions) fail with `err`.
void fail_next_writes(int n, int err = EIO);
// The next `n` transaction commits fail with EAGAIN even without a conflict.
void fail_next_commits(int n);
// Fires watches registered on a special path such as "@releaseDomain".
void fire_special(const std::string& special);

// ---- grant table ---------------------------------------------------------------------------
// Grant status as the hypervisor sees it: nullopt if (granter, ref) does not exist.
struct GrantInfo {
  domid_t grantee;
  bool writable;
  unsigned map_count;
  bool ended;  // unshared by the granter, waiting for unmaps
};
[[nodiscard]] std::optional<GrantInfo> grant_info(domid_t granter, grant_ref_t ref);

// ---- event channels ------------------------------------------------------------------------
// Notifications sent to a port whose peer had gone (dropped silently, as Xen does).
[[nodiscard]] std::size_t dropped_notifies();

// ---- foreign memory ------------------------------------------------------------------------
// Gives `domid` `frames` pages of zeroed guest memory (frame numbers 0..frames-1).
void set_guest_memory(domid_t domid, std::size_t frames);
// The hypervisor's view of that memory (for the test to fill or check).
[[nodiscard]] std::span<std::byte> guest_memory(domid_t domid);

// ---- vm_event monitor (the test acts as Xen) ------------------------------------------------
// Puts a request on `domid`'s monitor ring (as Xen's front ring) and kicks the event channel.
// Returns false if the monitor is not enabled or the ring is full.
bool monitor_push_request(domid_t domid, const vm_event_st& req);
// Consumes the responses the monitor client has pushed so far.
[[nodiscard]] std::vector<vm_event_st> monitor_pop_responses(domid_t domid);
// Number of notifications the client sent on the monitor event channel.
[[nodiscard]] std::size_t monitor_kicks(domid_t domid);
// Requests marked VCPU_PAUSED that were never answered when the monitor was disabled
// (on real Xen these vCPUs would stay paused: the teardown hazard).
[[nodiscard]] std::size_t monitor_unanswered_at_disable(domid_t domid);
// Last xc_monitor_write_ctrlreg setting for (domid, index): enabled, sync, onchangeonly.
struct CtrlRegMonitor {
  bool enabled = false;
  bool sync = false;
  bool onchangeonly = false;
  std::uint64_t bitmask = 0;
};
[[nodiscard]] CtrlRegMonitor monitor_ctrlreg(domid_t domid, std::uint16_t index);
[[nodiscard]] bool monitor_enabled(domid_t domid);
// Paused state of a domain as toggled by xc_domain_pause/unpause (pause count).
[[nodiscard]] int pause_count(domid_t domid);

}  // namespace gears::fake
