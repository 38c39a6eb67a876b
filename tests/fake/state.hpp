// Internal state of the fake hypervisor. One World per process, guarded by World::mu.
#pragma once

#include "tests/fake/fake.hpp"

#include "common/xen/libxen.hpp"

#include <cstddef>
#include <cstdint>
#include <deque>
#include <map>
#include <memory>
#include <mutex>
#include <set>
#include <string>
#include <utility>
#include <vector>

struct xenevtchn_handle;
struct xengntdev_handle;

namespace gears::fake::detail {

inline constexpr std::size_t kPage = 4096;

// A pollable flag: readable iff set() was called more recently than clear().
class Doorbell {
 public:
  Doorbell();
  ~Doorbell();
  Doorbell(const Doorbell&) = delete;
  Doorbell& operator=(const Doorbell&) = delete;
  void set();
  void clear();
  [[nodiscard]] int fd() const { return fd_; }

 private:
  int fd_;
  bool armed_ = false;
};

// memfd-backed page store shared by grants, guest memory and monitor rings.
class MemFile {
 public:
  explicit MemFile(std::size_t pages);
  ~MemFile();
  MemFile(const MemFile&) = delete;
  MemFile& operator=(const MemFile&) = delete;
  [[nodiscard]] int fd() const { return fd_; }
  [[nodiscard]] std::size_t pages() const { return pages_; }
  // The hypervisor's own mapping of the whole file (read/write).
  [[nodiscard]] std::byte* base() const { return base_; }

 private:
  int fd_;
  std::size_t pages_;
  std::byte* base_;
};

// Reserves `pages` of address space and maps file pages into it (MAP_SHARED|MAP_FIXED).
// Returns nullptr with errno set on failure.
void* reserve_range(std::size_t pages);
bool map_page_at(void* at, const MemFile& file, std::size_t page, int prot);

// ---- xenstore ----
struct Node {
  std::string value;
  std::vector<xs_permissions> perms;  // [0] = owner + default, rest = ACL
};
using Tree = std::map<std::string, Node>;

struct WatchEvent {
  std::string path;
  std::string token;
};

struct Txn {
  const void* owner = nullptr;  // the XsHandle that started it
  domid_t dom = 0;
  Tree tree;                                        // private copy the transaction works on
  std::map<std::string, std::uint64_t> start_gens;  // live generations when it started
  std::map<std::string, std::uint64_t> seen;        // accessed path -> start generation (0 = none)
  struct Op {
    enum Kind { Write, Mkdir, Rm, SetPerms } kind;
    std::string path;
    std::string value;
    std::vector<xs_permissions> perms;
  };
  std::vector<Op> ops;
};

struct XsHandle {
  domid_t dom = 0;
  Doorbell bell;
  std::vector<WatchEvent> watches;  // registered (path, token)
  std::deque<WatchEvent> queue;     // fired, not yet read
};

// ---- grants ----
struct Grant {
  domid_t grantee = 0;
  bool writable = false;
  std::shared_ptr<MemFile> file;
  std::size_t page = 0;
  unsigned map_count = 0;
  bool ended = false;
};

struct GntMap {  // one xengnttab mapping (contiguous)
  xengntdev_handle* owner = nullptr;
  std::size_t pages = 0;
  std::vector<std::pair<domid_t, grant_ref_t>> refs;
};

struct GntShare {  // one xengntshr_share_pages call
  xengntdev_handle* owner = nullptr;
  domid_t granter = 0;
  std::size_t pages = 0;
  std::vector<grant_ref_t> refs;
};

// ---- event channels ----
struct Port {
  xenevtchn_handle* owner = nullptr;  // nullptr: owned by the (fake) hypervisor
  bool bound = false;                 // interdomain connection established
  domid_t remote_dom = 0;             // unbound: who may bind; bound: the peer
  evtchn_port_t remote_port = 0;
  bool pending = false;
  bool masked = false;
  std::size_t kicks = 0;              // notifications received (for hypervisor-owned ports)
};

struct EvtHandle {
  domid_t dom = 0;
  Doorbell bell;
  std::deque<evtchn_port_t> queue;  // delivered, not yet read by xenevtchn_pending
  std::set<evtchn_port_t> ports;
};

// ---- monitor ----
struct Monitor {
  std::shared_ptr<MemFile> ring;   // one page: vm_event_sring_t
  evtchn_port_t xen_port = 0;      // port in the guest's space, owned by the hypervisor
  domid_t client = 0;
  std::uint32_t req_prod_pvt = 0;  // Xen's front ring private producer
  std::uint32_t rsp_cons = 0;
  std::size_t outstanding_paused = 0;
  std::map<std::uint16_t, CtrlRegMonitor> ctrlregs;
};

struct World {
  std::mutex mu;
  // xenstore
  Tree tree;
  std::map<std::string, std::uint64_t> gens;  // last change generation, kept for deleted nodes
  std::uint64_t gen_counter = 0;
  std::set<XsHandle*> xs_handles;
  std::map<xs_transaction_t, Txn> txns;
  xs_transaction_t next_txn = 1;
  int fail_writes = 0;
  int fail_errno = EIO;
  int fail_commits = 0;
  // grants
  std::map<std::pair<domid_t, grant_ref_t>, Grant> grants;
  std::map<void*, GntMap> gnt_maps;
  std::map<void*, GntShare> gnt_shares;
  std::size_t gnttab_handles = 0;
  std::size_t gntshr_handles = 0;
  // event channels
  std::map<std::pair<domid_t, evtchn_port_t>, Port> ports;
  std::set<EvtHandle*> evt_handles;
  std::size_t dropped = 0;
  // foreign memory / xc
  std::map<domid_t, std::shared_ptr<MemFile>> guest_mem;
  std::map<void*, std::size_t> foreign_maps;  // address -> pages
  std::size_t foreign_handles = 0;
  std::size_t xc_handles = 0;
  std::map<domid_t, Monitor> monitors;
  std::map<domid_t, std::size_t> unanswered_at_disable;
  std::map<domid_t, int> pause_counts;

  World();
  void reset_store();
};

World& world();

// Event channel primitives used by several fake components. Caller holds world().mu.
EvtHandle* evt_handle(xenevtchn_handle* h);
evtchn_port_t alloc_port(World& w, domid_t dom);
void deliver(World& w, domid_t dom, evtchn_port_t port);
int send(World& w, domid_t dom, evtchn_port_t port);  // 0 or -errno
void close_port(World& w, domid_t dom, evtchn_port_t port);

}  // namespace gears::fake::detail
