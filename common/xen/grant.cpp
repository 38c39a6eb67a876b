#include "common/xen/grant.hpp"

#include <sys/mman.h>

#include <string>
#include <utility>

namespace gears::xen {

// ---- GrantTable ----

GrantTable::GrantTable() : h_(xengnttab_open(nullptr, 0)) {
  if (h_ == nullptr) throw XenError("xengnttab_open");
}

GrantTable::~GrantTable() {
  if (h_ != nullptr) xengnttab_close(h_);
}

GrantTable::GrantTable(GrantTable&& o) noexcept : NonCopyable(std::move(o)), h_(std::exchange(o.h_, nullptr)) {}

GrantTable& GrantTable::operator=(GrantTable&& o) noexcept {
  if (this != &o) {
    if (h_ != nullptr) xengnttab_close(h_);
    h_ = std::exchange(o.h_, nullptr);
  }
  return *this;
}

Result<GrantMapping> GrantTable::map(domid_t dom, grant_ref_t ref, bool writable) {
  void* p = xengnttab_map_grant_ref(h_, dom, ref, writable ? PROT_READ | PROT_WRITE : PROT_READ);
  if (p == nullptr) return errno_error("xengnttab_map_grant_ref");
  return GrantMapping(h_, p, 1);
}

Result<GrantMapping> GrantTable::map(domid_t dom, std::span<const grant_ref_t> refs, bool writable) {
  if (refs.empty()) return Error{EINVAL, "map: no refs"};
  // libxengnttab takes a non-const array but never writes it.
  void* p = xengnttab_map_domain_grant_refs(h_, static_cast<std::uint32_t>(refs.size()), dom,
                                            const_cast<grant_ref_t*>(refs.data()),
                                            writable ? PROT_READ | PROT_WRITE : PROT_READ);
  if (p == nullptr) return errno_error("xengnttab_map_domain_grant_refs");
  return GrantMapping(h_, p, refs.size());
}

// ---- GrantMapping ----

void unmap_grant_pages(xengnttab_handle* h, void* addr, std::size_t pages) {
  (void)xengnttab_unmap(h, addr, static_cast<std::uint32_t>(pages));
}

// ---- PersistentGrantCache ----

Result<std::span<std::byte>> PersistentGrantCache::get(domid_t dom, grant_ref_t ref) {
  const auto k = key(dom, ref);
  if (auto it = map_.find(k); it != map_.end()) return it->second.bytes();
  if (map_.size() >= max_) return Error{ENOSPC, "persistent grant cache full"};
  auto m = table_->map(dom, ref, writable_);
  if (!m) return m.error();
  auto [it, inserted] = map_.emplace(k, std::move(m).value());
  return it->second.bytes();
}

bool PersistentGrantCache::contains(domid_t dom, grant_ref_t ref) const { return map_.count(key(dom, ref)) != 0; }

void PersistentGrantCache::erase(domid_t dom, grant_ref_t ref) { map_.erase(key(dom, ref)); }

// ---- GrantCopyBatch ----

Status GrantCopyBatch::copy_from_grant(domid_t dom, grant_ref_t ref, std::uint16_t offset, std::span<std::byte> dst) {
  if (dst.size() > kPageSize || offset + dst.size() > kPageSize) return Error{EINVAL, "grant copy crosses a page"};
  xengnttab_grant_copy_segment_t s{};
  s.source.foreign.ref = ref;
  s.source.foreign.offset = offset;
  s.source.foreign.domid = dom;
  s.dest.virt = dst.data();
  s.len = static_cast<std::uint16_t>(dst.size());
  s.flags = GNTCOPY_source_gref;
  segs_.push_back(s);
  return {};
}

Status GrantCopyBatch::copy_grant_to_grant(domid_t src_dom, grant_ref_t src_ref, std::uint16_t src_offset,
                                           domid_t dst_dom, grant_ref_t dst_ref, std::uint16_t dst_offset,
                                           std::uint16_t len) {
  if (len > kPageSize || src_offset + std::size_t{len} > kPageSize || dst_offset + std::size_t{len} > kPageSize)
    return Error{EINVAL, "grant copy crosses a page"};
  xengnttab_grant_copy_segment_t s{};
  s.source.foreign.ref = src_ref;
  s.source.foreign.offset = src_offset;
  s.source.foreign.domid = src_dom;
  s.dest.foreign.ref = dst_ref;
  s.dest.foreign.offset = dst_offset;
  s.dest.foreign.domid = dst_dom;
  s.len = len;
  s.flags = GNTCOPY_source_gref | GNTCOPY_dest_gref;
  segs_.push_back(s);
  return {};
}

Status GrantCopyBatch::copy_to_grant(std::span<const std::byte> src, domid_t dom, grant_ref_t ref,
                                     std::uint16_t offset) {
  if (src.size() > kPageSize || offset + src.size() > kPageSize) return Error{EINVAL, "grant copy crosses a page"};
  xengnttab_grant_copy_segment_t s{};
  // The source is only read; the C struct has no const member for it.
  s.source.virt = const_cast<std::byte*>(src.data());
  s.dest.foreign.ref = ref;
  s.dest.foreign.offset = offset;
  s.dest.foreign.domid = dom;
  s.len = static_cast<std::uint16_t>(src.size());
  s.flags = GNTCOPY_dest_gref;
  segs_.push_back(s);
  return {};
}

Status GrantCopyBatch::execute() {
  if (segs_.empty()) return {};
  for (auto& s : segs_) s.status = GNTST_general_error;
  if (xengnttab_grant_copy(table_->native(), static_cast<std::uint32_t>(segs_.size()), segs_.data()) != 0)
    return errno_error("xengnttab_grant_copy");
  return {};
}

Status GrantCopyBatch::segment(std::size_t i) const {
  switch (segs_[i].status) {
    case GNTST_okay: return {};
    case GNTST_bad_domain: return Error{EINVAL, "grant copy: bad domain"};
    case GNTST_bad_gntref: return Error{EINVAL, "grant copy: bad grant ref"};
    case GNTST_permission_denied: return Error{EPERM, "grant copy: permission denied"};
    case GNTST_bad_copy_arg: return Error{EINVAL, "grant copy: bad copy argument"};
    case GNTST_bad_page: return Error{EFAULT, "grant copy: bad page"};
    case GNTST_eagain: return Error{EAGAIN, "grant copy: try again"};
    default: return Error{EIO, "grant copy: failed"};
  }
}

bool GrantCopyBatch::all_ok() const {
  for (const auto& s : segs_)
    if (s.status != GNTST_okay) return false;
  return true;
}

// ---- GrantSharer / GrantShare ----

GrantSharer::GrantSharer() : h_(xengntshr_open(nullptr, 0)) {
  if (h_ == nullptr) throw XenError("xengntshr_open");
}

GrantSharer::~GrantSharer() {
  if (h_ != nullptr) xengntshr_close(h_);
}

GrantSharer::GrantSharer(GrantSharer&& o) noexcept : NonCopyable(std::move(o)), h_(std::exchange(o.h_, nullptr)) {}

GrantSharer& GrantSharer::operator=(GrantSharer&& o) noexcept {
  if (this != &o) {
    if (h_ != nullptr) xengntshr_close(h_);
    h_ = std::exchange(o.h_, nullptr);
  }
  return *this;
}

GrantShare::GrantShare(GrantSharer& sharer, domid_t peer, std::size_t pages, bool writable)
    : h_(sharer.native()), peer_(peer), refs_(pages) {
  if (pages == 0) throw XenError("xengntshr_share_pages: zero pages", EINVAL);
  void* p = xengntshr_share_pages(h_, peer, static_cast<int>(pages), refs_.data(), writable ? 1 : 0);
  if (p == nullptr) throw XenError("xengntshr_share_pages to dom" + std::to_string(peer));
  addr_ = static_cast<std::byte*>(p);
}

void GrantShare::reset() {
  if (addr_ != nullptr) (void)xengntshr_unshare(h_, addr_, static_cast<std::uint32_t>(refs_.size()));
  addr_ = nullptr;
  refs_.clear();
}

GrantShare::~GrantShare() { reset(); }

GrantShare::GrantShare(GrantShare&& o) noexcept
    : NonCopyable(std::move(o)), h_(o.h_), addr_(std::exchange(o.addr_, nullptr)), peer_(o.peer_),
      refs_(std::move(o.refs_)) {
  o.refs_.clear();
}

GrantShare& GrantShare::operator=(GrantShare&& o) noexcept {
  if (this != &o) {
    reset();
    h_ = o.h_;
    addr_ = std::exchange(o.addr_, nullptr);
    peer_ = o.peer_;
    refs_ = std::move(o.refs_);
    o.refs_.clear();
  }
  return *this;
}

}  // namespace gears::xen
