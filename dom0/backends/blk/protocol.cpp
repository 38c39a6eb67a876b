#include "dom0/backends/blk/protocol.hpp"

#include <cstring>
#include <stdexcept>
#include <string>

namespace gears::blk {
namespace {

Reject reject(const blkif_request& r, std::uint8_t wire_op, std::string_view why,
              std::int16_t status = BLKIF_RSP_ERROR) {
  return Reject{status, why, r.id, wire_op};
}

// One segment descriptor (from the ring slot or an indirect page), already private.
[[nodiscard]] bool segment(const blkif_request_segment& s, Segment& out, std::string_view& why) {
  if (s.gref < kFirstUsableGref) {
    why = "segment grant ref is reserved (< 8)";
    return false;
  }
  if (s.first_sect > s.last_sect) {
    why = "segment first_sect > last_sect";
    return false;
  }
  if (s.last_sect >= kSectorsPerPage) {
    why = "segment last_sect beyond the page";
    return false;
  }
  out.gref = s.gref;
  out.offset = static_cast<std::uint16_t>(std::uint32_t{s.first_sect} << kSectorShift);
  out.len = static_cast<std::uint16_t>((std::uint32_t{s.last_sect} - s.first_sect + 1U) << kSectorShift);
  return true;
}

// Range and alignment of [sector, sector + n) on the disk.
[[nodiscard]] std::string_view check_range(std::uint64_t sector, std::uint64_t n, const DiskGeometry& g) {
  if (sector > g.sectors || n > g.sectors - sector) return "sector range beyond the end of the disk";
  const std::uint64_t per = g.sector_size >> kSectorShift;
  if (per > 1 && (sector % per != 0 || n % per != 0)) return "request not aligned to the logical sector size";
  return {};
}

}  // namespace

Parsed parse_request(const blkif_request& r, const DiskGeometry& g) {
  Request q;
  q.id = r.id;
  q.wire_op = r.operation;
  switch (r.operation) {
    case BLKIF_OP_READ:
    case BLKIF_OP_WRITE:
    case BLKIF_OP_FLUSH_DISKCACHE: {
      q.op = r.operation == BLKIF_OP_READ ? Op::read : r.operation == BLKIF_OP_WRITE ? Op::write : Op::flush;
      const bool pure_flush = q.op == Op::flush && r.nr_segments == 0;
      if (r.nr_segments == 0 && !pure_flush) return reject(r, r.operation, "read/write with no segments");
      if (r.nr_segments > BLKIF_MAX_SEGMENTS_PER_REQUEST)
        return reject(r, r.operation, "more than 11 segments in a direct request");
      if (g.read_only && q.op != Op::read && !pure_flush) return reject(r, r.operation, "write to a read-only disk");
      if (pure_flush) return q;
      if (q.op == Op::flush) {  // FLUSH_DISKCACHE with data: write it, then flush
        q.op = Op::write;
        q.flush_after = true;
      }
      q.nr_segments = r.nr_segments;
      std::uint64_t n = 0;
      for (std::size_t i = 0; i < r.nr_segments; ++i) {
        std::string_view why;
        if (!segment(r.seg[i], q.direct[i], why)) return reject(r, r.operation, why);
        n += std::uint64_t{q.direct[i].len} >> kSectorShift;
      }
      q.sector = r.sector_number;
      q.nr_sectors = n;
      if (auto why = check_range(q.sector, n, g); !why.empty()) return reject(r, r.operation, why);
      return q;
    }
    case BLKIF_OP_DISCARD: {
      blkif_request_discard d;
      static_assert(sizeof d <= sizeof r);
      std::memcpy(&d, &r, sizeof d);
      q.op = Op::discard;
      if (!g.discard) return reject(r, r.operation, "discard not advertised", BLKIF_RSP_EOPNOTSUPP);
      if (g.read_only) return reject(r, r.operation, "discard on a read-only disk");
      if ((d.flag & BLKIF_DISCARD_SECURE) != 0)
        return reject(r, r.operation, "secure discard not advertised", BLKIF_RSP_EOPNOTSUPP);
      if (d.flag != 0) return reject(r, r.operation, "discard with unknown flags");
      if (d.nr_sectors == 0) return reject(r, r.operation, "discard of zero sectors");
      q.sector = d.sector_number;
      q.nr_sectors = d.nr_sectors;
      if (auto why = check_range(q.sector, q.nr_sectors, g); !why.empty()) return reject(r, r.operation, why);
      return q;
    }
    case BLKIF_OP_INDIRECT: {
      blkif_request_indirect ind;
      static_assert(sizeof ind <= sizeof r);
      std::memcpy(&ind, &r, sizeof ind);
      q.id = ind.id;
      q.wire_op = ind.indirect_op;
      q.indirect = true;
      if (ind.indirect_op != BLKIF_OP_READ && ind.indirect_op != BLKIF_OP_WRITE)
        return reject(r, ind.indirect_op, "indirect request wrapping neither read nor write");
      q.op = ind.indirect_op == BLKIF_OP_READ ? Op::read : Op::write;
      if (g.read_only && q.op == Op::write) return reject(r, ind.indirect_op, "write to a read-only disk");
      if (ind.nr_segments == 0) return reject(r, ind.indirect_op, "indirect request with no segments");
      if (ind.nr_segments > g.max_indirect)
        return reject(r, ind.indirect_op, "indirect request beyond feature-max-indirect-segments");
      const std::uint32_t pages = (ind.nr_segments + kSegsPerIndirectPage - 1U) / kSegsPerIndirectPage;
      if (pages > BLKIF_MAX_INDIRECT_PAGES_PER_REQUEST)
        return reject(r, ind.indirect_op, "too many indirect pages");
      for (std::uint32_t i = 0; i < pages; ++i) {
        if (ind.indirect_grefs[i] < kFirstUsableGref)
          return reject(r, ind.indirect_op, "indirect page grant ref is reserved (< 8)");
        q.indirect_refs[i] = ind.indirect_grefs[i];
      }
      q.nr_segments = ind.nr_segments;
      q.nr_indirect_pages = static_cast<std::uint8_t>(pages);
      q.sector = ind.sector_number;
      return q;  // nr_sectors comes with the segments (step 2)
    }
    case BLKIF_OP_WRITE_BARRIER:
      return reject(r, r.operation, "write barrier not advertised", BLKIF_RSP_EOPNOTSUPP);
    default:
      return reject(r, r.operation, "unknown operation", BLKIF_RSP_EOPNOTSUPP);
  }
}

Parsed parse_indirect_segments(const Request& head, std::span<const std::byte> pages, std::span<Segment> out,
                               const DiskGeometry& g) {
  Request q = head;
  auto rej = [&](std::string_view why) { return Reject{BLKIF_RSP_ERROR, why, head.id, head.wire_op}; };
  if (!head.indirect || head.nr_segments == 0 || out.size() < head.nr_segments ||
      pages.size() < std::size_t{head.nr_indirect_pages} * kPageBytes)
    return rej("indirect segments: internal size mismatch");
  std::uint64_t n = 0;
  for (std::size_t i = 0; i < head.nr_segments; ++i) {
    blkif_request_segment s;
    std::memcpy(&s, pages.data() + i * sizeof s, sizeof s);
    std::string_view why;
    if (!segment(s, out[i], why)) return rej(why);
    n += std::uint64_t{out[i].len} >> kSectorShift;
  }
  q.nr_sectors = n;
  if (auto why = check_range(q.sector, n, g); !why.empty()) return rej(why);
  return q;
}

std::uint32_t parse_vdev(const std::string& v) {
  if (!v.empty() && v.find_first_not_of("0123456789") == std::string::npos && v.size() <= 9)
    return static_cast<std::uint32_t>(std::stoul(v));
  if (v.size() >= 4 && v.size() <= 6 && v.rfind("xvd", 0) == 0) {
    std::uint32_t idx = 0;  // bijective base 26: a=0 .. z=25, aa=26 ...
    for (std::size_t i = 3; i < v.size(); ++i) {
      if (v[i] < 'a' || v[i] > 'z') throw std::invalid_argument("vdev '" + v + "': expected xvd<letters> or a number");
      idx = idx * 26 + static_cast<std::uint32_t>(v[i] - 'a') + 1;
    }
    --idx;
    if (idx < 16) return (202U << 8U) | (idx << 4U);
    return (1U << 28U) | (idx << 8U);
  }
  throw std::invalid_argument("vdev '" + v + "': expected xvd<letters> (e.g. xvdb) or a number");
}

blkif_response make_response(std::uint64_t id, std::uint8_t wire_op, std::int16_t status) {
  blkif_response r{};
  r.id = id;
  r.operation = wire_op;
  r.status = status;
  return r;
}

}  // namespace gears::blk
