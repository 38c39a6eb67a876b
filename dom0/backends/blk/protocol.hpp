// blkif protocol binding: turns a request the (hostile) frontend wrote into a validated, private value.
//
// Pure: no Xen calls, no I/O. The caller has already copied the ring slot out of shared memory
// (BackRing::consume hands us a private blkif_request); for BLKIF_OP_INDIRECT the caller copies the
// indirect descriptor pages into private memory too (grant copy) and calls parse_indirect_segments()
// on that copy. Nothing here ever reads shared memory, so there is no double fetch.
//
// Every field is bounded before use:
//   operation         READ, WRITE, FLUSH_DISKCACHE, DISCARD, INDIRECT{READ,WRITE}; WRITE_BARRIER and
//                     anything else -> EOPNOTSUPP response (we never advertise feature-barrier)
//   nr_segments       1..11 for READ/WRITE; 0..11 for FLUSH (0 = pure flush); 1..max_indirect for INDIRECT
//   indirect pages    ceil(nr_segments / 512) <= BLKIF_MAX_INDIRECT_PAGES_PER_REQUEST; each ref valid
//   segment           first_sect <= last_sect <= 7 (512-byte sectors in one 4 KiB page); grant ref >= 8
//                     (refs 0..7 are reserved for the toolstack)
//   sector range      sector_number + total sectors <= capacity, without u64 overflow
//   logical sectors   with sector-size 4096 every request must start and span whole 4 KiB sectors
//   mode              a read-only disk refuses WRITE, FLUSH-with-data and DISCARD
//   discard           only when advertised; BLKIF_DISCARD_SECURE is refused (discard-secure = 0)
// A request that fails these gets an error response (Verdict::reject); it never reaches the target.
// Ring-level violations (producer index) are the BackRing's business and close the device.
#pragma once

#include <array>
#include <cstddef>
#include <cstdint>
#include <span>
#include <string>
#include <string_view>

#include "common/util/result.hpp"

// clang-format off
#include <xen/io/blkif.h>
// clang-format on

namespace gears::blk {

inline constexpr std::uint32_t kSectorShift = 9;  // blkif sectors are always 512 bytes
inline constexpr std::uint32_t kPageBytes = 4096;
inline constexpr std::uint32_t kSectorsPerPage = kPageBytes >> kSectorShift;
inline constexpr std::uint32_t kSegsPerIndirectPage = kPageBytes / sizeof(blkif_request_segment);  // 512
inline constexpr std::uint32_t kMaxIndirectSegments = 256;  // what we advertise (feature-max-indirect-segments)
inline constexpr std::uint32_t kFirstUsableGref = 8;        // GNTTAB_NR_RESERVED_ENTRIES

enum class Op : std::uint8_t { read, write, flush, discard };

struct Segment {
  grant_ref_t gref = 0;
  std::uint16_t offset = 0;  // bytes into the granted page
  std::uint16_t len = 0;     // bytes, a multiple of 512, 512..4096
};

// A validated request, private to the backend.
struct Request {
  Op op = Op::read;
  std::uint8_t wire_op = 0;  // what the response must echo (indirect_op for INDIRECT)
  std::uint64_t id = 0;
  std::uint64_t sector = 0;   // 512-byte units
  std::uint64_t nr_sectors = 0;
  bool flush_after = false;  // FLUSH_DISKCACHE carrying data: write, then flush
  bool indirect = false;
  std::uint16_t nr_segments = 0;
  std::uint8_t nr_indirect_pages = 0;
  std::array<grant_ref_t, BLKIF_MAX_INDIRECT_PAGES_PER_REQUEST> indirect_refs{};
  std::array<Segment, BLKIF_MAX_SEGMENTS_PER_REQUEST> direct{};  // valid for !indirect

  [[nodiscard]] std::uint64_t bytes() const { return nr_sectors << kSectorShift; }
};

// The disk as the frontend was told about it.
struct DiskGeometry {
  std::uint64_t sectors = 0;          // capacity in 512-byte units
  std::uint32_t sector_size = 512;    // logical: 512 or 4096
  bool read_only = false;
  bool discard = true;                // feature-discard advertised
  std::uint32_t max_indirect = kMaxIndirectSegments;
};

// Why a request was refused: the response status and a static reason for the log/metrics.
struct Reject {
  std::int16_t status = BLKIF_RSP_ERROR;
  std::string_view why;
  std::uint64_t id = 0;
  std::uint8_t wire_op = 0;
};

// Either a request to serve (maybe still needing its indirect pages) or a rejection.
class Parsed {
 public:
  Parsed(Request r) : req_(r) {}  // NOLINT(google-explicit-constructor)
  Parsed(Reject r) : rej_(r), ok_(false) {}  // NOLINT(google-explicit-constructor)
  [[nodiscard]] bool ok() const { return ok_; }
  [[nodiscard]] const Request& request() const { return req_; }
  [[nodiscard]] Request& request() { return req_; }
  [[nodiscard]] const Reject& reject() const { return rej_; }

 private:
  Request req_{};
  Reject rej_{};
  bool ok_ = true;
};

// Step 1: the ring slot (already a private copy). For INDIRECT, the segments are not known yet: the
// caller copies request().nr_indirect_pages pages (refs in indirect_refs) and calls step 2.
[[nodiscard]] Parsed parse_request(const blkif_request& copy, const DiskGeometry& g);

// Step 2 (INDIRECT only): `pages` is the private copy of the indirect pages, at least
// nr_indirect_pages * 4096 bytes. Fills `out` (nr_segments entries) and the request's nr_sectors,
// then checks the sector range. `out` must hold nr_segments entries.
[[nodiscard]] Parsed parse_indirect_segments(const Request& head, std::span<const std::byte> pages,
                                             std::span<Segment> out, const DiskGeometry& g);

// Virtual device number of a vdev name, as libxl computes it: xvdb -> 51728 (202 << 8 | 1 << 4), xvdq and later
// -> the extended form (1 << 28 | index << 8), digits -> as is. Throws std::invalid_argument on anything else.
[[nodiscard]] std::uint32_t parse_vdev(const std::string& vdev);

// The blkif response for a request or a rejection.
[[nodiscard]] blkif_response make_response(std::uint64_t id, std::uint8_t wire_op, std::int16_t status);

}  // namespace gears::blk
