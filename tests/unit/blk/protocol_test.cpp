// blkif protocol binding: every malformed request a hostile frontend can write gets a rejection with the
// right status and reason, and well-formed ones parse to exactly what they say.
#include <gtest/gtest.h>

#include <cstring>
#include <string>
#include <vector>

#include "dom0/backends/blk/protocol.hpp"

namespace gears::blk {
namespace {

DiskGeometry disk(std::uint64_t sectors = 1 << 20) {
  DiskGeometry g;
  g.sectors = sectors;
  return g;
}

blkif_request rw(std::uint8_t op, std::uint64_t sector, std::uint8_t nseg) {
  blkif_request r{};
  r.operation = op;
  r.nr_segments = nseg;
  r.id = 0xabcdef0123ULL;
  r.sector_number = sector;
  for (std::uint8_t i = 0; i < nseg && i < BLKIF_MAX_SEGMENTS_PER_REQUEST; ++i) {
    r.seg[i].gref = 100U + i;
    r.seg[i].first_sect = 0;
    r.seg[i].last_sect = 7;
  }
  return r;
}

blkif_request discard(std::uint64_t sector, std::uint64_t n, std::uint8_t flag = 0) {
  blkif_request_discard d{};
  d.operation = BLKIF_OP_DISCARD;
  d.flag = flag;
  d.id = 7;
  d.sector_number = sector;
  d.nr_sectors = n;
  blkif_request r{};
  std::memcpy(&r, &d, sizeof d);
  return r;
}

blkif_request indirect(std::uint8_t op, std::uint16_t nseg, std::uint64_t sector = 0) {
  blkif_request_indirect d{};
  d.operation = BLKIF_OP_INDIRECT;
  d.indirect_op = op;
  d.nr_segments = nseg;
  d.id = 9;
  d.sector_number = sector;
  for (auto& g : d.indirect_grefs) g = 200;
  blkif_request r{};
  std::memcpy(&r, &d, sizeof d);
  return r;
}

std::vector<std::byte> indirect_page(std::uint16_t nseg, std::uint8_t first = 0, std::uint8_t last = 7,
                                     grant_ref_t gref = 300) {
  std::vector<std::byte> page(kPageBytes);
  for (std::uint16_t i = 0; i < nseg; ++i) {
    blkif_request_segment s{gref + i, first, last};
    std::memcpy(page.data() + i * sizeof s, &s, sizeof s);
  }
  return page;
}

// ---- well-formed ---------------------------------------------------------------------------------

TEST(BlkProtocol, ReadParsesSegmentsAndRange) {
  auto r = rw(BLKIF_OP_READ, 64, 3);
  r.seg[1].first_sect = 2;
  r.seg[1].last_sect = 5;
  const Parsed p = parse_request(r, disk());
  ASSERT_TRUE(p.ok()) << p.reject().why;
  const Request& q = p.request();
  EXPECT_EQ(q.op, Op::read);
  EXPECT_EQ(q.id, 0xabcdef0123ULL);
  EXPECT_EQ(q.sector, 64U);
  EXPECT_EQ(q.nr_sectors, 8U + 4U + 8U);
  EXPECT_EQ(q.direct[1].offset, 1024U);
  EXPECT_EQ(q.direct[1].len, 2048U);
  EXPECT_EQ(q.wire_op, BLKIF_OP_READ);
}

TEST(BlkProtocol, PureFlushAndFlushWithData) {
  const Parsed pure = parse_request(rw(BLKIF_OP_FLUSH_DISKCACHE, 0, 0), disk());
  ASSERT_TRUE(pure.ok());
  EXPECT_EQ(pure.request().op, Op::flush);
  const Parsed data = parse_request(rw(BLKIF_OP_FLUSH_DISKCACHE, 8, 2), disk());
  ASSERT_TRUE(data.ok());
  EXPECT_EQ(data.request().op, Op::write);
  EXPECT_TRUE(data.request().flush_after);
  EXPECT_EQ(data.request().wire_op, BLKIF_OP_FLUSH_DISKCACHE);
}

TEST(BlkProtocol, DiscardParses) {
  const Parsed p = parse_request(discard(100, 2048), disk());
  ASSERT_TRUE(p.ok());
  EXPECT_EQ(p.request().op, Op::discard);
  EXPECT_EQ(p.request().bytes(), 2048U * 512U);
}

TEST(BlkProtocol, IndirectTwoSteps) {
  const Parsed head = parse_request(indirect(BLKIF_OP_WRITE, 32, 1024), disk());
  ASSERT_TRUE(head.ok());
  EXPECT_TRUE(head.request().indirect);
  EXPECT_EQ(head.request().nr_indirect_pages, 1U);
  EXPECT_EQ(head.request().wire_op, BLKIF_OP_WRITE);  // blkfront checks the echo against indirect_op
  std::vector<Segment> segs(32);
  const auto page = indirect_page(32);
  const Parsed full = parse_indirect_segments(head.request(), page, segs, disk());
  ASSERT_TRUE(full.ok()) << full.reject().why;
  EXPECT_EQ(full.request().nr_sectors, 32U * 8U);
  EXPECT_EQ(segs[31].gref, 331U);
}

TEST(BlkProtocol, ResponseEchoesIdAndOp) {
  const blkif_response r = make_response(42, BLKIF_OP_WRITE, BLKIF_RSP_ERROR);
  EXPECT_EQ(r.id, 42U);
  EXPECT_EQ(r.operation, BLKIF_OP_WRITE);
  EXPECT_EQ(r.status, BLKIF_RSP_ERROR);
}

// ---- malformed: each case names what a hostile frontend did and what we must answer -----------------

struct Bad {
  const char* name;
  blkif_request req;
  DiskGeometry geo;
  std::int16_t status;
  const char* why;  // substring of the rejection reason
};

std::vector<Bad> bad_cases() {
  std::vector<Bad> v;
  auto add = [&](const char* n, blkif_request r, std::int16_t st, const char* why, DiskGeometry g = disk()) {
    v.push_back({n, r, g, st, why});
  };
  {
    auto r = rw(BLKIF_OP_READ, 0, 1);
    r.operation = 0x77;
    add("UnknownOperation", r, BLKIF_RSP_EOPNOTSUPP, "unknown operation");
  }
  add("ReservedOperation", [] { auto r = rw(BLKIF_OP_READ, 0, 1); r.operation = BLKIF_OP_RESERVED_1; return r; }(),
      BLKIF_RSP_EOPNOTSUPP, "unknown operation");
  add("BarrierNotAdvertised", rw(BLKIF_OP_WRITE_BARRIER, 0, 1), BLKIF_RSP_EOPNOTSUPP, "barrier");
  add("ReadNoSegments", rw(BLKIF_OP_READ, 0, 0), BLKIF_RSP_ERROR, "no segments");
  add("WriteNoSegments", rw(BLKIF_OP_WRITE, 0, 0), BLKIF_RSP_ERROR, "no segments");
  {
    auto r = rw(BLKIF_OP_READ, 0, 11);
    r.nr_segments = 12;
    add("TooManyDirectSegments", r, BLKIF_RSP_ERROR, "more than 11");
  }
  {
    auto r = rw(BLKIF_OP_READ, 0, 11);
    r.nr_segments = 255;
    add("SegmentCountByteMax", r, BLKIF_RSP_ERROR, "more than 11");
  }
  {
    auto r = rw(BLKIF_OP_READ, 0, 2);
    r.seg[1].first_sect = 5;
    r.seg[1].last_sect = 4;
    add("FirstAfterLast", r, BLKIF_RSP_ERROR, "first_sect > last_sect");
  }
  {
    auto r = rw(BLKIF_OP_WRITE, 0, 1);
    r.seg[0].last_sect = 8;
    add("LastSectBeyondPage", r, BLKIF_RSP_ERROR, "beyond the page");
  }
  {
    auto r = rw(BLKIF_OP_WRITE, 0, 1);
    r.seg[0].first_sect = 200;
    r.seg[0].last_sect = 255;
    add("SectorsFarBeyondPage", r, BLKIF_RSP_ERROR, "beyond the page");
  }
  {
    auto r = rw(BLKIF_OP_READ, 0, 1);
    r.seg[0].gref = 0;
    add("ReservedGrantRef", r, BLKIF_RSP_ERROR, "reserved");
  }
  add("ReadBeyondEnd", rw(BLKIF_OP_READ, (1 << 20) - 4, 1), BLKIF_RSP_ERROR, "beyond the end");
  add("SectorWraps", rw(BLKIF_OP_READ, UINT64_MAX - 3, 1), BLKIF_RSP_ERROR, "beyond the end");
  add("StartPastEnd", rw(BLKIF_OP_WRITE, 1ULL << 40, 1), BLKIF_RSP_ERROR, "beyond the end");
  {
    auto g = disk();
    g.read_only = true;
    add("WriteReadOnly", rw(BLKIF_OP_WRITE, 0, 1), BLKIF_RSP_ERROR, "read-only", g);
    add("FlushDataReadOnly", rw(BLKIF_OP_FLUSH_DISKCACHE, 0, 1), BLKIF_RSP_ERROR, "read-only", g);
    add("DiscardReadOnly", discard(0, 8), BLKIF_RSP_ERROR, "read-only", g);
    add("IndirectWriteReadOnly", indirect(BLKIF_OP_WRITE, 16), BLKIF_RSP_ERROR, "read-only", g);
  }
  {
    auto g = disk();
    g.sector_size = 4096;
    add("MisalignedFor4K", rw(BLKIF_OP_READ, 3, 1), BLKIF_RSP_ERROR, "aligned", g);
    auto r = rw(BLKIF_OP_READ, 8, 1);
    r.seg[0].last_sect = 3;
    add("PartialSectorFor4K", r, BLKIF_RSP_ERROR, "aligned", g);
  }
  add("DiscardBeyondEnd", discard((1 << 20) - 1, 2), BLKIF_RSP_ERROR, "beyond the end");
  add("DiscardWraps", discard(8, UINT64_MAX), BLKIF_RSP_ERROR, "beyond the end");
  add("DiscardZero", discard(8, 0), BLKIF_RSP_ERROR, "zero sectors");
  add("SecureDiscard", discard(0, 8, BLKIF_DISCARD_SECURE), BLKIF_RSP_EOPNOTSUPP, "secure");
  add("DiscardUnknownFlag", discard(0, 8, 0x80), BLKIF_RSP_ERROR, "unknown flags");
  {
    auto g = disk();
    g.discard = false;
    add("DiscardNotAdvertised", discard(0, 8), BLKIF_RSP_EOPNOTSUPP, "not advertised", g);
  }
  add("IndirectWrapsFlush", indirect(BLKIF_OP_FLUSH_DISKCACHE, 4), BLKIF_RSP_ERROR, "neither read nor write");
  add("IndirectWrapsIndirect", indirect(BLKIF_OP_INDIRECT, 4), BLKIF_RSP_ERROR, "neither read nor write");
  add("IndirectNoSegments", indirect(BLKIF_OP_READ, 0), BLKIF_RSP_ERROR, "no segments");
  add("IndirectTooManySegments", indirect(BLKIF_OP_READ, kMaxIndirectSegments + 1), BLKIF_RSP_ERROR,
      "max-indirect-segments");
  add("IndirectSegmentsU16Max", indirect(BLKIF_OP_READ, 0xffff), BLKIF_RSP_ERROR, "max-indirect-segments");
  {
    auto g = disk();
    g.max_indirect = 8 * kSegsPerIndirectPage + 1;  // a (mis)configured limit cannot lift the page bound
    add("IndirectTooManyPages", indirect(BLKIF_OP_READ, static_cast<std::uint16_t>(g.max_indirect)), BLKIF_RSP_ERROR,
        "too many indirect pages", g);
  }
  {
    blkif_request_indirect d{};
    d.operation = BLKIF_OP_INDIRECT;
    d.indirect_op = BLKIF_OP_READ;
    d.nr_segments = 8;
    d.indirect_grefs[0] = 3;
    blkif_request r{};
    std::memcpy(&r, &d, sizeof d);
    add("IndirectPageReservedRef", r, BLKIF_RSP_ERROR, "indirect page grant ref");
  }
  return v;
}

class BlkMalformed : public ::testing::TestWithParam<Bad> {};

TEST_P(BlkMalformed, Rejected) {
  const Bad& b = GetParam();
  const Parsed p = parse_request(b.req, b.geo);
  ASSERT_FALSE(p.ok()) << b.name << " was accepted";
  EXPECT_EQ(p.reject().status, b.status) << p.reject().why;
  EXPECT_NE(p.reject().why.find(b.why), std::string_view::npos) << "reason: " << p.reject().why;
}

INSTANTIATE_TEST_SUITE_P(Cases, BlkMalformed, ::testing::ValuesIn(bad_cases()),
                         [](const ::testing::TestParamInfo<Bad>& i) { return std::string(i.param.name); });

TEST(BlkMalformed, ResponseEchoesTheIdOfARejectedRequest) {
  auto r = rw(BLKIF_OP_READ, 0, 0);
  r.id = 0x1122334455667788ULL;
  const Parsed p = parse_request(r, disk());
  ASSERT_FALSE(p.ok());
  EXPECT_EQ(p.reject().id, 0x1122334455667788ULL);
  EXPECT_EQ(p.reject().wire_op, BLKIF_OP_READ);
}

// Step 2 of an indirect request: the segments in the (privately copied) descriptor pages.
struct BadIndirect {
  const char* name;
  std::uint16_t nseg;
  std::uint8_t first, last;
  grant_ref_t gref;
  std::uint64_t sector;
  const char* why;
};

class BlkMalformedIndirect : public ::testing::TestWithParam<BadIndirect> {};

TEST_P(BlkMalformedIndirect, Rejected) {
  const BadIndirect& b = GetParam();
  const Parsed head = parse_request(indirect(BLKIF_OP_READ, b.nseg, b.sector), disk());
  ASSERT_TRUE(head.ok());
  std::vector<Segment> segs(b.nseg);
  const auto page = indirect_page(b.nseg, b.first, b.last, b.gref);
  const Parsed p = parse_indirect_segments(head.request(), page, segs, disk());
  ASSERT_FALSE(p.ok());
  EXPECT_NE(p.reject().why.find(b.why), std::string_view::npos) << p.reject().why;
  EXPECT_EQ(p.reject().wire_op, BLKIF_OP_READ);
}

INSTANTIATE_TEST_SUITE_P(
    Cases, BlkMalformedIndirect,
    ::testing::Values(BadIndirect{"SegmentFirstAfterLast", 4, 6, 2, 300, 0, "first_sect > last_sect"},
                      BadIndirect{"SegmentBeyondPage", 4, 0, 9, 300, 0, "beyond the page"},
                      BadIndirect{"SegmentReservedRef", 4, 0, 7, 1, 0, "reserved"},
                      BadIndirect{"RangeBeyondEnd", 64, 0, 7, 300, (1 << 20) - 8, "beyond the end"}),
    [](const ::testing::TestParamInfo<BadIndirect>& i) { return std::string(i.param.name); });

TEST(BlkMalformedIndirect, ShortPageBufferIsRefused) {
  const Parsed head = parse_request(indirect(BLKIF_OP_READ, 8), disk());
  ASSERT_TRUE(head.ok());
  std::vector<Segment> segs(8);
  std::vector<std::byte> tiny(16);
  EXPECT_FALSE(parse_indirect_segments(head.request(), tiny, segs, disk()).ok());
}

}  // namespace
}  // namespace gears::blk
