#include "tests/fake/state.hpp"

#include <sys/eventfd.h>
#include <sys/mman.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <stdexcept>

namespace gears::fake {
namespace {
thread_local domid_t t_current = 0;
}

AsDomain::AsDomain(domid_t domid) : saved_(t_current) { t_current = domid; }
AsDomain::~AsDomain() { t_current = saved_; }
domid_t current_domain() { return t_current; }

namespace detail {

Doorbell::Doorbell() : fd_(::eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC)) {
  if (fd_ < 0) throw std::runtime_error("fake: eventfd failed");
}
Doorbell::~Doorbell() { ::close(fd_); }

void Doorbell::set() {
  if (armed_) return;
  std::uint64_t one = 1;
  if (::write(fd_, &one, sizeof one) == sizeof one) armed_ = true;
}

void Doorbell::clear() {
  if (!armed_) return;
  std::uint64_t v = 0;
  if (::read(fd_, &v, sizeof v) == sizeof v) armed_ = false;
}

MemFile::MemFile(std::size_t pages) : fd_(::memfd_create("gears-fake", MFD_CLOEXEC)), pages_(pages) {
  if (fd_ < 0) throw std::runtime_error("fake: memfd_create failed");
  if (::ftruncate(fd_, static_cast<off_t>(pages * kPage)) != 0) {
    ::close(fd_);
    throw std::runtime_error("fake: ftruncate failed");
  }
  void* p = ::mmap(nullptr, pages * kPage, PROT_READ | PROT_WRITE, MAP_SHARED, fd_, 0);
  if (p == MAP_FAILED) {
    ::close(fd_);
    throw std::runtime_error("fake: mmap failed");
  }
  base_ = static_cast<std::byte*>(p);
}

MemFile::~MemFile() {
  ::munmap(base_, pages_ * kPage);
  ::close(fd_);
}

void* reserve_range(std::size_t pages) {
  void* p = ::mmap(nullptr, pages * kPage, PROT_NONE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
  return p == MAP_FAILED ? nullptr : p;
}

bool map_page_at(void* at, const MemFile& file, std::size_t page, int prot) {
  void* p = ::mmap(at, kPage, prot, MAP_SHARED | MAP_FIXED, file.fd(), static_cast<off_t>(page * kPage));
  return p != MAP_FAILED;
}

World::World() { reset_store(); }

void World::reset_store() {
  tree.clear();
  gens.clear();
  gen_counter = 0;
  txns.clear();
  Node root;
  root.perms.push_back(xs_permissions{0, XS_PERM_NONE});
  tree.emplace("/", std::move(root));
  for (const char* p : {"/local", "/local/domain", "/tool", "/vm"}) {
    Node n;
    n.perms.push_back(xs_permissions{0, XS_PERM_NONE});
    tree.emplace(p, std::move(n));
  }
}

World& world() {
  static World w;
  return w;
}

}  // namespace detail

Counters counters() {
  auto& w = detail::world();
  std::lock_guard lk(w.mu);
  Counters c;
  c.xs_handles = w.xs_handles.size();
  for (auto* h : w.xs_handles) c.xs_watches += h->watches.size();
  c.xs_transactions = w.txns.size();
  c.gnttab_handles = w.gnttab_handles;
  c.gntshr_handles = w.gntshr_handles;
  c.grants = w.grants.size();
  for (auto& [addr, m] : w.gnt_maps) c.mapped_pages += m.pages;
  c.evtchn_handles = w.evt_handles.size();
  for (auto& [key, p] : w.ports)
    if (p.owner != nullptr) ++c.ports;
  c.foreign_handles = w.foreign_handles;
  for (auto& [addr, n] : w.foreign_maps) c.foreign_pages += n;
  c.xc_handles = w.xc_handles;
  c.monitors = w.monitors.size();
  return c;
}

void reset() {
  auto& w = detail::world();
  std::lock_guard lk(w.mu);
  w.reset_store();
  w.fail_writes = 0;
  w.fail_commits = 0;
  w.grants.clear();
  w.gnt_maps.clear();
  w.gnt_shares.clear();
  w.ports.clear();
  w.dropped = 0;
  w.guest_mem.clear();
  w.foreign_maps.clear();
  w.monitors.clear();
  w.unanswered_at_disable.clear();
  w.pause_counts.clear();
}

std::optional<GrantInfo> grant_info(domid_t granter, grant_ref_t ref) {
  auto& w = detail::world();
  std::lock_guard lk(w.mu);
  auto it = w.grants.find({granter, ref});
  if (it == w.grants.end()) return std::nullopt;
  const auto& g = it->second;
  return GrantInfo{g.grantee, g.writable, g.map_count, g.ended};
}

std::size_t dropped_notifies() {
  auto& w = detail::world();
  std::lock_guard lk(w.mu);
  return w.dropped;
}

void set_guest_memory(domid_t domid, std::size_t frames) {
  auto& w = detail::world();
  std::lock_guard lk(w.mu);
  w.guest_mem[domid] = std::make_shared<detail::MemFile>(frames);
}

std::span<std::byte> guest_memory(domid_t domid) {
  auto& w = detail::world();
  std::lock_guard lk(w.mu);
  auto it = w.guest_mem.find(domid);
  if (it == w.guest_mem.end()) return {};
  return {it->second->base(), it->second->pages() * detail::kPage};
}

int pause_count(domid_t domid) {
  auto& w = detail::world();
  std::lock_guard lk(w.mu);
  auto it = w.pause_counts.find(domid);
  return it == w.pause_counts.end() ? 0 : it->second;
}

}  // namespace gears::fake
