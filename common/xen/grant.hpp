// Grant tables.
//   Backend side (gntdev):  GrantTable -> GrantMapping (map refs), PersistentGrantCache, GrantCopyBatch.
//   Frontend side (gntalloc): GrantSharer -> GrantShare (share pages of our own with a peer).
//
// Ownership: handles (GrantTable, GrantSharer) own the device; mappings/shares keep the raw handle
// pointer, survive moves of their handle, and must be destroyed before it. None is thread-safe.
// Memory from a mapping is shared with another domain: treat its contents as hostile and never read
// a field twice (copy, then validate).
#pragma once

#include "common/util/error.hpp"
#include "common/util/noncopyable.hpp"
#include "common/util/result.hpp"
#include "common/xen/libxen.hpp"
#include "common/xen/mapping.hpp"

#include <cstddef>
#include <cstdint>
#include <span>
#include <unordered_map>
#include <vector>

namespace gears::xen {

inline constexpr std::size_t kPageSize = 4096;

class GrantTable;
void unmap_grant_pages(xengnttab_handle* h, void* addr, std::size_t pages);
// Grant pages mapped into our address space; unmapped in the destructor.
using GrantMapping = PageMapping<xengnttab_handle, &unmap_grant_pages, GrantTable>;

// A gntdev handle: maps other domains' grants into this process.
class GrantTable : NonCopyable {
 public:
  GrantTable();  // throws XenError
  ~GrantTable();
  GrantTable(GrantTable&& o) noexcept;
  GrantTable& operator=(GrantTable&& o) noexcept;

  // Maps one granted page of `dom`. Fails (EINVAL on Linux) if the ref is unknown, not granted to
  // us, or read-only while `writable` is asked.
  [[nodiscard]] Result<GrantMapping> map(domid_t dom, grant_ref_t ref, bool writable);
  // Maps `refs` of `dom` contiguously, in order: page i of the mapping is refs[i]. All or nothing.
  [[nodiscard]] Result<GrantMapping> map(domid_t dom, std::span<const grant_ref_t> refs, bool writable);

  [[nodiscard]] xengnttab_handle* native() const { return h_; }

 private:
  xengnttab_handle* h_;
};


// Persistent grants (blkif feature-persistent): a (domid, ref) -> mapped page cache, bounded.
// Entries stay mapped until erased/cleared or the cache dies. Mapping mode (writable) is per cache.
class PersistentGrantCache : NonCopyable {
 public:
  PersistentGrantCache(GrantTable& table, std::size_t max_entries, bool writable = true)
      : table_(&table), max_(max_entries), writable_(writable) {}

  // The page for (dom, ref), mapping it on a miss. ENOSPC when full: map it transiently instead.
  [[nodiscard]] Result<std::span<std::byte>> get(domid_t dom, grant_ref_t ref);
  [[nodiscard]] bool contains(domid_t dom, grant_ref_t ref) const;
  void erase(domid_t dom, grant_ref_t ref);
  void clear() { map_.clear(); }
  [[nodiscard]] std::size_t size() const { return map_.size(); }
  [[nodiscard]] std::size_t capacity() const { return max_; }

 private:
  static std::uint64_t key(domid_t dom, grant_ref_t ref) { return (std::uint64_t{dom} << 32) | ref; }
  GrantTable* table_;
  std::size_t max_;
  bool writable_;
  std::unordered_map<std::uint64_t, GrantMapping> map_;
};

// Grant copies accumulated and executed in one call (xengnttab_grant_copy). Each segment stays
// inside one page on the granted side (offset + len <= 4096).
class GrantCopyBatch {
 public:
  explicit GrantCopyBatch(GrantTable& table, std::size_t reserve = 32) : table_(&table) { segs_.reserve(reserve); }

  // Queue a copy from the granted page (dom, ref) at `offset` into local memory `dst`.
  [[nodiscard]] Status copy_from_grant(domid_t dom, grant_ref_t ref, std::uint16_t offset, std::span<std::byte> dst);
  // Queue a copy between two granted pages, neither of them pinned by gntdev: (src_dom, src_ref) at src_offset
  // into (dst_dom, dst_ref) at dst_offset. Xen accepts a grant of our own to ourselves as either side.
  [[nodiscard]] Status copy_grant_to_grant(domid_t src_dom, grant_ref_t src_ref, std::uint16_t src_offset,
                                           domid_t dst_dom, grant_ref_t dst_ref, std::uint16_t dst_offset,
                                           std::uint16_t len);
  // Queue a copy from local memory `src` into the granted page (dom, ref) at `offset`.
  [[nodiscard]] Status copy_to_grant(std::span<const std::byte> src, domid_t dom, grant_ref_t ref,
                                     std::uint16_t offset);

  // Runs all queued segments in one call. An error here means the call itself failed; check
  // segment(i) for each segment's own outcome.
  [[nodiscard]] Status execute();
  // Outcome of segment i after execute(): ok, or code EINVAL/EPERM/EFAULT/EIO with the GNTST_* text.
  [[nodiscard]] Status segment(std::size_t i) const;
  [[nodiscard]] std::int16_t gntst(std::size_t i) const { return segs_[i].status; }
  // True if execute() succeeded and every segment is GNTST_okay.
  [[nodiscard]] bool all_ok() const;

  [[nodiscard]] std::size_t size() const { return segs_.size(); }
  void clear() { segs_.clear(); }

 private:
  GrantTable* table_;
  std::vector<xengnttab_grant_copy_segment_t> segs_;
};

class GrantShare;

// A gntalloc handle: shares our own pages with another domain.
class GrantSharer : NonCopyable {
 public:
  GrantSharer();  // throws XenError
  ~GrantSharer();
  GrantSharer(GrantSharer&& o) noexcept;
  GrantSharer& operator=(GrantSharer&& o) noexcept;
  [[nodiscard]] xengntshr_handle* native() const { return h_; }

 private:
  xengntshr_handle* h_;
};

// N zeroed pages of ours granted to `peer`; refs()[i] grants page i. Unshared in the destructor; if
// the peer still maps them, the grants end when it unmaps (the kernel defers it).
class GrantShare : NonCopyable {
 public:
  GrantShare() = default;
  GrantShare(GrantSharer& sharer, domid_t peer, std::size_t pages, bool writable = true);  // throws
  ~GrantShare();
  GrantShare(GrantShare&& o) noexcept;
  GrantShare& operator=(GrantShare&& o) noexcept;

  [[nodiscard]] std::span<const grant_ref_t> refs() const { return refs_; }
  [[nodiscard]] std::span<std::byte> bytes() const { return {addr_, refs_.size() * kPageSize}; }
  [[nodiscard]] std::byte* data() const { return addr_; }
  [[nodiscard]] std::size_t pages() const { return refs_.size(); }
  [[nodiscard]] domid_t peer() const { return peer_; }
  [[nodiscard]] bool valid() const { return addr_ != nullptr; }
  void reset();

 private:
  xengntshr_handle* h_ = nullptr;
  std::byte* addr_ = nullptr;
  domid_t peer_ = 0;
  std::vector<grant_ref_t> refs_;
};

}  // namespace gears::xen
