#include "common/ring/xen_ring.hpp"

#include <gtest/gtest.h>

#include <atomic>
#include <cstdlib>
#include <thread>
#include <vector>

#include "tests/unit/ring/c_ring_peer.h"
#include "tests/unit/ring/shm_region.hpp"

namespace gears::ring {
namespace {

constexpr std::size_t kPage = 4096;
using BlkBack = BackRing<blkif_sring>;
using BlkFront = FrontRing<blkif_sring>;
using BlkTraits = XenRingTraits<blkif_sring>;

blkif_request make_req(std::uint64_t id) {
  blkif_request r{};
  r.operation = BLKIF_OP_READ;
  r.nr_segments = static_cast<std::uint8_t>(1 + id % BLKIF_MAX_SEGMENTS_PER_REQUEST);
  r.handle = 51712;
  r.id = id;
  r.sector_number = id * 8;
  for (std::uint8_t s = 0; s < r.nr_segments; ++s) {
    r.seg[s].gref = static_cast<grant_ref_t>(id + s);
    r.seg[s].first_sect = 0;
    r.seg[s].last_sect = 7;
  }
  return r;
}
bool same(const blkif_request& a, const blkif_request& b) { return std::memcmp(&a, &b, sizeof a) == 0; }
blkif_response make_rsp(std::uint64_t id) {
  blkif_response r{};
  r.id = id;
  r.operation = BLKIF_OP_READ;
  r.status = BLKIF_RSP_OKAY;
  return r;
}

struct Pages {
  explicit Pages(std::size_t n) : bytes(n * kPage), mem(static_cast<std::byte*>(std::aligned_alloc(kPage, bytes))) {
    std::memset(mem, 0xA5, bytes);  // garbage, as a fresh grant would hold
  }
  ~Pages() { std::free(mem); }
  Pages(const Pages&) = delete;
  Pages& operator=(const Pages&) = delete;
  blkif_sring* sring() const { return reinterpret_cast<blkif_sring*>(mem); }
  std::size_t bytes;
  std::byte* mem;
};

TEST(XenRing, RingSizeMatchesTheMacrosForMultiPageRings) {
  for (std::size_t pages : {1U, 2U, 4U, 8U, 16U}) {
    const std::size_t b = pages * kPage;
    EXPECT_EQ(BlkTraits::entries_for(b), cpeer_const_size_blkif(b)) << pages;
    EXPECT_EQ(XenRingTraits<netif_tx_sring>::entries_for(b), cpeer_const_size_netif_tx(b)) << pages;
    EXPECT_EQ(XenRingTraits<netif_rx_sring>::entries_for(b), cpeer_const_size_netif_rx(b)) << pages;
    EXPECT_EQ(XenRingTraits<xen_sndif_sring>::entries_for(b), cpeer_const_size_sndif(b)) << pages;
    Pages p(pages);
    EXPECT_EQ(BlkTraits::entries_for(b), cpeer_ptr_size_blkif(p.mem, b)) << pages;
  }
  EXPECT_EQ(BlkTraits::entries_for(kPage), 32U);  // the well-known blkif ring size
  EXPECT_EQ(XenRingTraits<netif_tx_sring>::entries_for(kPage), 256U);
  EXPECT_EQ(BlkTraits::entries_for(16 * kPage), 512U);
  EXPECT_EQ(BlkTraits::entries_for(64), 0U);
  EXPECT_THROW(BlkBack(Pages(1).mem, 64), std::invalid_argument);
}

TEST(XenRing, MacroFrontToBackRingAcrossManyWraps) {
  for (std::size_t pages : {1U, 4U}) {
    Pages p(pages);
    blkif_front_ring_t cf{};
    cpeer_blk_front_init(&cf, p.mem, p.bytes);
    BlkBack back(p.mem, p.bytes);
    ASSERT_EQ(back.size(), cf.nr_ents);
    std::uint64_t next_id = 0;
    std::uint64_t expect_id = 0;
    std::uint64_t answered = 0;
    std::vector<blkif_request> batch;
    for (int round = 0; round < 300; ++round) {
      const unsigned n = 1 + static_cast<unsigned>(round * 7) % back.size();
      batch.clear();
      for (unsigned i = 0; i < n; ++i) batch.push_back(make_req(next_id++));
      ASSERT_GE(cpeer_blk_front_push(&cf, batch.data(), n), 0);
      std::vector<std::uint64_t> got;
      auto c = back.consume(back.size(), [&](const blkif_request& r) {
        EXPECT_TRUE(same(r, make_req(expect_id))) << expect_id;
        got.push_back(r.id);
        ++expect_id;
      });
      ASSERT_TRUE(c.ok());
      ASSERT_EQ(*c, n);
      for (auto id : got) ASSERT_TRUE(back.put_response(make_rsp(id)).ok());
      (void)back.push_responses();
      std::vector<blkif_response> rsps(back.size());
      const unsigned t = cpeer_blk_front_take(&cf, rsps.data(), back.size());
      ASSERT_EQ(t, n);
      for (unsigned i = 0; i < t; ++i) EXPECT_EQ(rsps[i].id, answered++);
    }
    EXPECT_GT(next_id, 20U * back.size());  // wrapped many times
  }
}

TEST(XenRing, FrontRingToMacroBack) {
  Pages p(2);
  BlkFront front(p.mem, p.bytes);
  blkif_back_ring_t cb{};
  cpeer_blk_back_init(&cb, p.mem, p.bytes);
  ASSERT_EQ(front.size(), cb.nr_ents);
  std::uint64_t id = 0;
  std::uint64_t rsp_id = 0;
  for (int round = 0; round < 200; ++round) {
    const unsigned n = 1 + static_cast<unsigned>(round * 13) % front.size();
    for (unsigned i = 0; i < n; ++i) ASSERT_TRUE(front.put_request(make_req(id + i)).ok());
    (void)front.push_requests();
    std::vector<blkif_request> reqs(front.size());
    ASSERT_EQ(cpeer_blk_back_take(&cb, reqs.data(), front.size()), static_cast<int>(n));
    std::vector<blkif_response> rsps;
    for (unsigned i = 0; i < n; ++i) {
      EXPECT_TRUE(same(reqs[i], make_req(id + i)));
      rsps.push_back(make_rsp(reqs[i].id));
    }
    id += n;
    (void)cpeer_blk_back_respond(&cb, rsps.data(), n);
    auto c = front.consume(front.size(), [&](const blkif_response& r) { EXPECT_EQ(r.id, rsp_id++); });
    ASSERT_TRUE(c.ok());
    EXPECT_EQ(*c, n);
  }
  EXPECT_EQ(front.free_requests(), front.size());
}

TEST(XenRing, NetifTxRingInteroperatesToo) {
  Pages p(1);
  netif_tx_front_ring_t cf{};
  cpeer_nettx_front_init(&cf, p.mem, p.bytes);
  BackRing<netif_tx_sring> back(p.mem, p.bytes);
  ASSERT_EQ(back.size(), 256U);
  std::vector<netif_tx_request> reqs(200);
  for (std::uint16_t i = 0; i < 200; ++i) reqs[i] = netif_tx_request{static_cast<grant_ref_t>(i), 0, 0, i, 1500};
  ASSERT_GE(cpeer_nettx_front_push(&cf, reqs.data(), 200), 0);
  std::uint16_t expect = 0;
  auto c = back.consume(1000, [&](const netif_tx_request& r) {
    EXPECT_EQ(r.id, expect);
    EXPECT_EQ(r.size, 1500);
    ++expect;
    EXPECT_TRUE(back.put_response(netif_tx_response{r.id, NETIF_RSP_OKAY}).ok());
  });
  ASSERT_EQ(*c, 200U);
  EXPECT_TRUE(back.push_responses());  // the front's initial rsp_event = 1 asks for it
  std::vector<netif_tx_response> rsps(256);
  EXPECT_EQ(cpeer_nettx_front_take(&cf, rsps.data(), 256), 200U);
  EXPECT_EQ(rsps[199].id, 199);
}

TEST(XenRing, EventSuppressionMatchesTheMacros) {
  Pages p(1);
  blkif_front_ring_t cf{};
  cpeer_blk_front_init(&cf, p.mem, p.bytes);
  BlkBack back(p.mem, p.bytes);
  const auto r0 = make_req(0);
  // Fresh ring: req_event = 1, so the first push notifies.
  EXPECT_EQ(cpeer_blk_front_push(&cf, &r0, 1), 1);
  // The back is awake (has not re-armed): further pushes are silent.
  EXPECT_EQ(cpeer_blk_front_push(&cf, &r0, 1), 0);
  EXPECT_EQ(*back.consume(10, [](const blkif_request&) {}), 2U);
  EXPECT_EQ(cpeer_blk_front_push(&cf, &r0, 1), 0);
  // Final check with work pending: does not arm, says "work".
  EXPECT_TRUE(*back.final_check_for_requests());
  EXPECT_EQ(*back.consume(10, [](const blkif_request&) {}), 1U);
  // Final check on an empty ring: arms req_event = req_cons + 1, says "sleep".
  EXPECT_FALSE(*back.final_check_for_requests());
  EXPECT_EQ(p.sring()->req_event, back.req_cons() + 1);
  EXPECT_EQ(cpeer_blk_front_push(&cf, &r0, 1), 1);  // ... so the next push notifies
  EXPECT_EQ(cpeer_blk_front_push(&cf, &r0, 1), 0);

  // Responses, mirrored: front arms via the macro, our push reports notify exactly then.
  EXPECT_EQ(*back.consume(10, [](const blkif_request&) {}), 2U);
  for (std::uint64_t i = 0; i < 5; ++i) ASSERT_TRUE(back.put_response(make_rsp(i)).ok());
  ASSERT_FALSE(back.put_response(make_rsp(9)).ok());  // nothing left to answer
  EXPECT_TRUE(back.push_responses());                 // initial rsp_event = 1
  std::vector<blkif_response> out(8);
  EXPECT_EQ(cpeer_blk_front_take(&cf, out.data(), 8), 5U);
  EXPECT_EQ(cpeer_blk_front_final_check(&cf), 0);  // arms rsp_event
  EXPECT_EQ(cpeer_blk_front_push(&cf, &r0, 1), 0);
  EXPECT_EQ(*back.consume(10, [](const blkif_request&) {}), 1U);
  ASSERT_TRUE(back.put_response(make_rsp(5)).ok());
  EventfdNotifier ev;
  ASSERT_TRUE(back.push_responses(ev).ok());
  EXPECT_EQ(*ev.drain(), 1U);
}

TEST(XenRing, BackRingFinalCheckRacesWithMacroPush) {
  // The Dekker pair: a push that lands between our arm and re-check is seen by the re-check.
  Pages p(1);
  blkif_front_ring_t cf{};
  cpeer_blk_front_init(&cf, p.mem, p.bytes);
  BlkBack back(p.mem, p.bytes);
  const auto r0 = make_req(0);
  EXPECT_FALSE(*back.final_check_for_requests());
  EXPECT_EQ(cpeer_blk_front_push(&cf, &r0, 1), 1);
  EXPECT_TRUE(*back.final_check_for_requests());
}

// A consumer needing several requests at once (an RX packet over n slots): the C front's pushes below
// cons + n do not notify, the one reaching it does.
TEST(XenRing, WaitForSeveralRequestsArmsTheEventAtTheLastOne) {
  Pages p(1);
  blkif_front_ring_t cf{};
  cpeer_blk_front_init(&cf, p.mem, p.bytes);
  BlkBack back(p.mem, p.bytes);
  const auto r0 = make_req(0);
  EXPECT_EQ(cpeer_blk_front_push(&cf, &r0, 1), 1);
  EXPECT_FALSE(*back.wait_for_requests(3));  // 1 of 3
  EXPECT_EQ(p.sring()->req_event, back.req_cons() + 3);
  EXPECT_EQ(cpeer_blk_front_push(&cf, &r0, 1), 0);  // 2 of 3: no notification
  EXPECT_EQ(cpeer_blk_front_push(&cf, &r0, 1), 1);  // 3 of 3: notified
  EXPECT_TRUE(*back.wait_for_requests(3));
  EXPECT_EQ(*back.consume(3, [](const blkif_request&) {}), 3U);
  EXPECT_EQ(back.wait_for_requests(0).error().code, EINVAL);
  EXPECT_EQ(back.wait_for_requests(back.size() + 1).error().code, EINVAL);
}

TEST(XenRing, FrontRingRefusesToOverfill) {
  Pages p(1);
  BlkFront front(p.mem, p.bytes);
  for (std::uint32_t i = 0; i < front.size(); ++i) ASSERT_TRUE(front.put_request(make_req(i)).ok());
  EXPECT_TRUE(front.full());
  EXPECT_EQ(front.put_request(make_req(99)).error().code, ENOSPC);
}

// ---- hostile frontends ----

TEST(XenRingHostile, ProducerIndexMoreThanRingSizeAheadIsFatal) {
  Pages p(1);
  blkif_front_ring_t cf{};
  cpeer_blk_front_init(&cf, p.mem, p.bytes);
  BlkBack back(p.mem, p.bytes);
  p.sring()->req_prod = back.size() + 1;
  EXPECT_EQ(back.pending().error().code, EPROTO);
  EXPECT_EQ(back.consume(100, [](const blkif_request&) { FAIL(); }).error().code, EPROTO);
  EXPECT_EQ(back.final_check_for_requests().error().code, EPROTO);
  blkif_back_ring_t cb{};
  cpeer_blk_back_init(&cb, p.mem, p.bytes);
  std::vector<blkif_request> tmp(64);
  EXPECT_EQ(cpeer_blk_back_take(&cb, tmp.data(), 64), -1);  // the macro agrees
  p.sring()->req_prod = back.size();  // exactly a full ring is legal
  EXPECT_EQ(*back.pending(), back.size());
}

TEST(XenRingHostile, OverflowCountsUnansweredRequests) {
  Pages p(1);
  blkif_front_ring_t cf{};
  cpeer_blk_front_init(&cf, p.mem, p.bytes);
  BlkBack back(p.mem, p.bytes);
  std::vector<blkif_request> reqs(back.size());
  for (std::uint32_t i = 0; i < back.size(); ++i) reqs[i] = make_req(i);
  ASSERT_GE(cpeer_blk_front_push(&cf, reqs.data(), back.size()), 0);
  ASSERT_EQ(*back.consume(1000, [](const blkif_request&) {}), back.size());
  // Nothing answered yet, so one more request would overwrite an unanswered slot.
  p.sring()->req_prod = back.size() + 1;
  EXPECT_EQ(back.pending().error().code, EPROTO);
  p.sring()->req_prod = back.size();
  EXPECT_EQ(*back.pending(), 0U);
}

TEST(XenRingHostile, ProducerIndexGoingBackwardsIsFatal) {
  Pages p(1);
  blkif_front_ring_t cf{};
  cpeer_blk_front_init(&cf, p.mem, p.bytes);
  BlkBack back(p.mem, p.bytes);
  std::vector<blkif_request> reqs(5, make_req(1));
  ASSERT_GE(cpeer_blk_front_push(&cf, reqs.data(), 5), 0);
  ASSERT_EQ(*back.consume(5, [](const blkif_request&) {}), 5U);
  p.sring()->req_prod = 3;  // within "size of rsp_prod_pvt" but behind req_cons
  EXPECT_EQ(back.pending().error().code, EPROTO);
}

TEST(XenRingHostile, RequestIsCopiedBeforeTheCallbackSeesIt) {
  Pages p(1);
  blkif_front_ring_t cf{};
  cpeer_blk_front_init(&cf, p.mem, p.bytes);
  BlkBack back(p.mem, p.bytes);
  const auto r0 = make_req(7);
  ASSERT_GE(cpeer_blk_front_push(&cf, &r0, 1), 0);
  auto c = back.consume(1, [&](const blkif_request& r) {
    p.sring()->ring[0].req.nr_segments = 200;  // the frontend rewrites the slot mid-validation
    p.sring()->ring[0].req.id = 666;
    EXPECT_EQ(r.nr_segments, r0.nr_segments);
    EXPECT_EQ(r.id, 7U);
    EXPECT_NE(static_cast<const void*>(&r), static_cast<const void*>(&p.sring()->ring[0].req));
  });
  EXPECT_EQ(*c, 1U);
}

TEST(XenRingHostile, FrontendScribblingOnRspProdDoesNotConfuseTheBack) {
  Pages p(1);
  blkif_front_ring_t cf{};
  cpeer_blk_front_init(&cf, p.mem, p.bytes);
  BlkBack back(p.mem, p.bytes);
  const auto r0 = make_req(1);
  ASSERT_GE(cpeer_blk_front_push(&cf, &r0, 1), 0);
  ASSERT_EQ(*back.consume(1, [](const blkif_request&) {}), 1U);
  p.sring()->rsp_prod = 12345;
  ASSERT_TRUE(back.put_response(make_rsp(1)).ok());
  (void)back.push_responses();
  EXPECT_EQ(p.sring()->rsp_prod, 1U);
}

TEST(XenRingHostile, BackendOverrunningResponsesIsFatalForTheFront) {
  Pages p(1);
  BlkFront front(p.mem, p.bytes);
  ASSERT_TRUE(front.put_request(make_req(1)).ok());
  (void)front.push_requests();
  p.sring()->rsp_prod = 2;  // two responses to one request
  EXPECT_EQ(front.pending().error().code, EPROTO);
  p.sring()->rsp_prod = 1;
  EXPECT_EQ(*front.pending(), 1U);
}

// ---- both C++ halves, two threads, sleeping on eventfds ----

TEST(XenRingThreads, MillionRequestsRoundTripWithEventSuppression) {
  constexpr std::uint64_t kReqs = 1'000'000;
  test::DualMapping shm(2 * kPage);
  EventfdNotifier to_back;
  EventfdNotifier to_front;
  FrontRing<netif_tx_sring> front(shm.a().data(), shm.a().size());
  std::atomic<bool> back_failed{false};
  std::uint64_t back_sleeps = 0;
  std::thread backend([&] {
    BackRing<netif_tx_sring> back(shm.b().data(), shm.b().size());
    std::uint64_t seen = 0;
    while (seen < kReqs && !back_failed) {
      auto c = back.consume(64, [&](const netif_tx_request& r) {
        if (r.id != static_cast<std::uint16_t>(seen) || r.offset != static_cast<std::uint16_t>(seen >> 16U))
          back_failed = true;
        if (!back.put_response(netif_tx_response{r.id, NETIF_RSP_OKAY}).ok()) back_failed = true;
        ++seen;
      });
      if (!c) { back_failed = true; break; }
      if (!back.push_responses(to_front).ok()) back_failed = true;
      if (*c > 0) continue;
      auto more = back.final_check_for_requests();
      if (!more) { back_failed = true; break; }
      if (!*more) {
        ++back_sleeps;
        if (!to_back.wait(-1).ok() || !to_back.drain().ok()) back_failed = true;
      }
    }
  });
  std::uint64_t sent = 0;
  std::uint64_t got = 0;
  std::uint64_t bad = 0;
  while (got < kReqs) {
    while (sent < kReqs && !front.full()) {
      ASSERT_TRUE(front.put_request(netif_tx_request{0, static_cast<std::uint16_t>(sent >> 16U), 0,
                                                     static_cast<std::uint16_t>(sent), 64}).ok());
      ++sent;
    }
    ASSERT_TRUE(front.push_requests(to_back).ok());
    auto c = front.consume(1024, [&](const netif_tx_response& r) {
      if (r.id != static_cast<std::uint16_t>(got)) ++bad;
      ++got;
    });
    ASSERT_TRUE(c.ok());
    if (*c > 0) continue;
    auto more = front.final_check_for_responses();
    ASSERT_TRUE(more.ok());
    if (!*more) {
      auto k = to_front.wait(-1);  // a lost wake-up hangs here (ctest timeout), never a timing check
      ASSERT_TRUE(k.ok() && *k);
      ASSERT_TRUE(to_front.drain().ok());
    }
  }
  backend.join();
  EXPECT_FALSE(back_failed);
  EXPECT_EQ(bad, 0U);
  std::printf("requests=%llu back_sleeps=%llu\n", static_cast<unsigned long long>(kReqs),
              static_cast<unsigned long long>(back_sleeps));
}

}  // namespace
}  // namespace gears::ring
