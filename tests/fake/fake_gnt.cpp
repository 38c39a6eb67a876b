// Fake grant tables: xengntshr (gntalloc) shares memfd pages, xengnttab (gntdev) maps the same pages
// (real shared memory) or copies through them.
// Checks as in Xen: the ref must exist and not be ended, be granted to the mapping/copying domain,
// and allow writes when asked to. A failed map fails the whole call with EINVAL (Linux gntdev).
// Unsharing a page that is still mapped defers ending the grant until the last unmap (gntalloc).
// Not modelled: max_grants limits, unmap notifications (notify_offset/notify_port are ignored).
#include "tests/fake/state.hpp"

#include "common/xen/libxen.hpp"

#include <sys/mman.h>

#include <cerrno>
#include <cstring>

struct xengntdev_handle {
  domid_t dom = 0;
  bool sharer = false;
};

namespace gears::fake::detail {
namespace {

grant_ref_t alloc_ref(World& w, domid_t granter) {
  grant_ref_t ref = GNTTAB_NR_RESERVED_ENTRIES;
  for (auto it = w.grants.lower_bound({granter, ref}); it != w.grants.end() && it->first.first == granter; ++it) {
    if (it->first.second != ref) break;
    ++ref;
  }
  return ref;
}

void release_grant(World& w, std::pair<domid_t, grant_ref_t> key) {
  auto it = w.grants.find(key);
  if (it == w.grants.end()) return;
  if (it->second.map_count == 0)
    w.grants.erase(it);
  else
    it->second.ended = true;  // ended once the last mapping goes
}

void drop_mapping(World& w, std::map<void*, GntMap>::iterator it) {
  ::munmap(it->first, it->second.pages * kPage);
  for (const auto& key : it->second.refs) {
    auto g = w.grants.find(key);
    if (g == w.grants.end()) continue;
    if (--g->second.map_count == 0 && g->second.ended) w.grants.erase(g);
  }
  w.gnt_maps.erase(it);
}

void drop_share(World& w, std::map<void*, GntShare>::iterator it) {
  ::munmap(it->first, it->second.pages * kPage);
  for (grant_ref_t ref : it->second.refs) release_grant(w, {it->second.granter, ref});
  w.gnt_shares.erase(it);
}

// Resolves one side of a copy. Returns GNTST_okay and sets *p, or a GNTST_* error.
std::int16_t resolve(World& w, domid_t self, const xengnttab_grant_copy_segment::xengnttab_copy_ptr& ptr, bool is_ref, std::uint16_t len,
                     bool write, std::byte** p) {
  if (!is_ref) {
    *p = static_cast<std::byte*>(ptr.virt);
    return GNTST_okay;
  }
  auto it = w.grants.find({ptr.foreign.domid, ptr.foreign.ref});
  if (it == w.grants.end() || it->second.ended) return GNTST_bad_gntref;
  const Grant& g = it->second;
  if (g.grantee != self) return GNTST_permission_denied;
  if (write && !g.writable) return GNTST_permission_denied;
  if (std::size_t{ptr.foreign.offset} + len > kPage) return GNTST_bad_copy_arg;
  *p = g.file->base() + g.page * kPage + ptr.foreign.offset;
  return GNTST_okay;
}

}  // namespace
}  // namespace gears::fake::detail

using namespace gears::fake::detail;  // NOLINT(google-build-using-namespace)

extern "C" {

xengnttab_handle* xengnttab_open(struct xentoollog_logger* /*logger*/, unsigned /*open_flags*/) {
  auto& w = world();
  std::lock_guard lk(w.mu);
  ++w.gnttab_handles;
  return new xengntdev_handle{gears::fake::current_domain(), false};
}

int xengnttab_close(xengnttab_handle* xgt) {
  if (xgt == nullptr) return 0;
  auto& w = world();
  {
    std::lock_guard lk(w.mu);
    for (auto it = w.gnt_maps.begin(); it != w.gnt_maps.end();) {
      auto next = std::next(it);
      if (it->second.owner == xgt) drop_mapping(w, it);
      it = next;
    }
    --w.gnttab_handles;
  }
  delete xgt;
  return 0;
}

void* xengnttab_map_grant_refs(xengnttab_handle* xgt, uint32_t count, uint32_t* domids, uint32_t* refs, int prot) {
  auto& w = world();
  int err = 0;
  void* base = nullptr;
  {
    std::lock_guard lk(w.mu);
    const bool want_write = (prot & PROT_WRITE) != 0;
    if (count == 0 || xgt == nullptr || xgt->sharer) err = EINVAL;
    for (uint32_t i = 0; err == 0 && i < count; ++i) {
      auto it = w.grants.find({static_cast<domid_t>(domids[i]), refs[i]});
      if (domids[i] > DOMID_FIRST_RESERVED || it == w.grants.end() || it->second.ended ||
          it->second.grantee != xgt->dom || (want_write && !it->second.writable))
        err = EINVAL;
    }
    if (err == 0) base = reserve_range(count);
    if (err == 0 && base == nullptr) err = ENOMEM;
    GntMap rec{xgt, count, {}};
    for (uint32_t i = 0; err == 0 && i < count; ++i) {
      Grant& g = w.grants.at({static_cast<domid_t>(domids[i]), refs[i]});
      if (!map_page_at(static_cast<std::byte*>(base) + i * kPage, *g.file, g.page, prot)) {
        err = ENOMEM;
        break;
      }
      ++g.map_count;
      rec.refs.emplace_back(static_cast<domid_t>(domids[i]), refs[i]);
    }
    if (err == 0) {
      w.gnt_maps.emplace(base, std::move(rec));
    } else if (base != nullptr) {
      for (const auto& key : rec.refs) --w.grants.at(key).map_count;
      ::munmap(base, count * kPage);
    }
  }
  if (err != 0) {
    errno = err;
    return nullptr;
  }
  return base;
}

void* xengnttab_map_grant_ref(xengnttab_handle* xgt, uint32_t domid, uint32_t ref, int prot) {
  return xengnttab_map_grant_refs(xgt, 1, &domid, &ref, prot);
}

void* xengnttab_map_domain_grant_refs(xengnttab_handle* xgt, uint32_t count, uint32_t domid, uint32_t* refs,
                                      int prot) {
  std::vector<uint32_t> domids(count, domid);
  return xengnttab_map_grant_refs(xgt, count, domids.data(), refs, prot);
}

void* xengnttab_map_grant_ref_notify(xengnttab_handle* xgt, uint32_t domid, uint32_t ref, int prot,
                                     uint32_t /*notify_offset*/, evtchn_port_t /*notify_port*/) {
  return xengnttab_map_grant_refs(xgt, 1, &domid, &ref, prot);
}

int xengnttab_unmap(xengnttab_handle* xgt, void* start_address, uint32_t count) {
  auto& w = world();
  int err = 0;
  {
    std::lock_guard lk(w.mu);
    auto it = w.gnt_maps.find(start_address);
    if (it == w.gnt_maps.end() || it->second.owner != xgt || it->second.pages != count)
      err = EINVAL;
    else
      drop_mapping(w, it);
  }
  if (err != 0) {
    errno = err;
    return -1;
  }
  return 0;
}

int xengnttab_set_max_grants(xengnttab_handle* /*xgt*/, uint32_t /*nr_grants*/) { return 0; }

int xengnttab_grant_copy(xengnttab_handle* xgt, uint32_t count, xengnttab_grant_copy_segment_t* segs) {
  auto& w = world();
  std::lock_guard lk(w.mu);
  for (uint32_t i = 0; i < count; ++i)
    if (segs[i].len > kPage) {
      errno = EINVAL;
      return -1;
    }
  for (uint32_t i = 0; i < count; ++i) {
    auto& s = segs[i];
    std::byte* src = nullptr;
    std::byte* dst = nullptr;
    std::int16_t st = resolve(w, xgt->dom, s.source, (s.flags & GNTCOPY_source_gref) != 0, s.len, false, &src);
    if (st == GNTST_okay) st = resolve(w, xgt->dom, s.dest, (s.flags & GNTCOPY_dest_gref) != 0, s.len, true, &dst);
    if (st == GNTST_okay) std::memmove(dst, src, s.len);
    s.status = st;
  }
  return 0;
}

xengntshr_handle* xengntshr_open(struct xentoollog_logger* /*logger*/, unsigned /*open_flags*/) {
  auto& w = world();
  std::lock_guard lk(w.mu);
  ++w.gntshr_handles;
  return new xengntdev_handle{gears::fake::current_domain(), true};
}

int xengntshr_close(xengntshr_handle* xgs) {
  if (xgs == nullptr) return 0;
  auto& w = world();
  {
    std::lock_guard lk(w.mu);
    for (auto it = w.gnt_shares.begin(); it != w.gnt_shares.end();) {
      auto next = std::next(it);
      if (it->second.owner == xgs) drop_share(w, it);
      it = next;
    }
    --w.gntshr_handles;
  }
  delete xgs;
  return 0;
}

void* xengntshr_share_pages(xengntshr_handle* xgs, uint32_t domid, int count, uint32_t* refs, int writable) {
  auto& w = world();
  int err = 0;
  void* addr = nullptr;
  {
    std::lock_guard lk(w.mu);
    if (xgs == nullptr || !xgs->sharer || count <= 0 || domid >= DOMID_FIRST_RESERVED) err = EINVAL;
    if (err == 0) {
      const auto n = static_cast<std::size_t>(count);
      auto file = std::make_shared<MemFile>(n);
      void* p = ::mmap(nullptr, n * kPage, PROT_READ | PROT_WRITE, MAP_SHARED, file->fd(), 0);
      if (p == MAP_FAILED) {
        err = ENOMEM;
      } else {
        addr = p;
        GntShare share{xgs, xgs->dom, n, {}};
        for (std::size_t i = 0; i < n; ++i) {
          grant_ref_t ref = alloc_ref(w, xgs->dom);
          w.grants.emplace(std::pair{xgs->dom, ref},
                           Grant{static_cast<domid_t>(domid), writable != 0, file, i, 0, false});
          share.refs.push_back(ref);
          refs[i] = ref;
        }
        w.gnt_shares.emplace(addr, std::move(share));
      }
    }
  }
  if (err != 0) {
    errno = err;
    return nullptr;
  }
  return addr;
}

void* xengntshr_share_page_notify(xengntshr_handle* xgs, uint32_t domid, uint32_t* ref, int writable,
                                  uint32_t /*notify_offset*/, evtchn_port_t /*notify_port*/) {
  return xengntshr_share_pages(xgs, domid, 1, ref, writable);
}

int xengntshr_unshare(xengntshr_handle* xgs, void* start_address, uint32_t count) {
  auto& w = world();
  int err = 0;
  {
    std::lock_guard lk(w.mu);
    auto it = w.gnt_shares.find(start_address);
    if (it == w.gnt_shares.end() || it->second.owner != xgs || it->second.pages != count)
      err = EINVAL;
    else
      drop_share(w, it);
  }
  if (err != 0) {
    errno = err;
    return -1;
  }
  return 0;
}

}  // extern "C"
