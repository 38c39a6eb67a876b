// gears-blkfront-test: a userspace blkif frontend for the lab (runs in a domU whose kernel xen-blkfront is
// unloaded, so it owns device/vbd/<devid>).
//   gears-blkfront-test io --devid N [--pages 32] [--rounds 8]   write a pattern, read it back, compare
//   gears-blkfront-test hostile --devid N --case junk|prod|flood  misbehave; prints one JSON line
// junk: 16 kinds of malformed requests, each must get an error response, then a valid write/read still works.
// prod: req_prod far beyond the ring; flood: more requests than the ring holds. dom0 must close the device.
#include <CLI/CLI.hpp>

#include <cstdio>
#include <cstring>
#include <iostream>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "common/ring/shared_mem.hpp"
#include "domU-frontends/gears-blkfront/blkfront.hpp"

using gears::blkfront::Frontend;
using nlohmann::json;

namespace {

void fill(std::span<std::byte> b, std::uint64_t seed) {
  for (std::size_t i = 0; i < b.size(); i += 8) {
    const std::uint64_t v = (seed + i) * 0x9E3779B97F4A7C15ULL;
    std::memcpy(b.data() + i, &v, std::min<std::size_t>(8, b.size() - i));
  }
}

int cmd_io(Frontend& f, std::size_t pages, int rounds) {
  json out = {{"sectors", f.sectors()}};
  std::vector<std::byte> expect(pages * 4096);
  for (int r = 0; r < rounds; ++r) {
    const std::uint64_t sector = static_cast<std::uint64_t>(r) * pages * 8;
    fill(f.data().subspan(0, pages * 4096), 1000 + static_cast<std::uint64_t>(r));
    std::memcpy(expect.data(), f.data().data(), expect.size());
    auto w = f.rw(BLKIF_OP_WRITE, sector, 0, pages);
    if (!w || *w != BLKIF_RSP_OKAY) {
      out["error"] = "write failed";
      std::cout << out.dump() << "\n";
      return 1;
    }
    std::memset(f.data().data(), 0, pages * 4096);
    auto rd = f.rw(BLKIF_OP_READ, sector, 0, pages);
    if (!rd || *rd != BLKIF_RSP_OKAY || std::memcmp(expect.data(), f.data().data(), expect.size()) != 0) {
      out["error"] = "read back differs";
      std::cout << out.dump() << "\n";
      return 1;
    }
  }
  auto fl = f.flush();
  out["flush_ok"] = fl && *fl == BLKIF_RSP_OKAY;
  out["ok"] = true;
  std::cout << out.dump() << "\n";
  return 0;
}

blkif_request base(Frontend& f, std::uint8_t op, std::uint64_t id) {
  blkif_request r{};
  r.operation = op;
  r.id = id;
  r.nr_segments = 1;
  r.seg[0] = {f.data_ref(0), 0, 7};
  return r;
}

int cmd_junk(Frontend& f) {
  std::vector<std::pair<std::string, blkif_request>> cases;
  std::uint64_t id = 0x1000;
  auto add = [&](std::string n, blkif_request r) { cases.emplace_back(std::move(n), r); };
  { auto r = base(f, 0x55, id++); add("unknown-op", r); }
  { auto r = base(f, BLKIF_OP_WRITE_BARRIER, id++); add("barrier", r); }
  { auto r = base(f, BLKIF_OP_READ, id++); r.nr_segments = 0; add("no-segments", r); }
  { auto r = base(f, BLKIF_OP_READ, id++); r.nr_segments = 200; add("too-many-segments", r); }
  { auto r = base(f, BLKIF_OP_READ, id++); r.seg[0].first_sect = 6; r.seg[0].last_sect = 2; add("first-after-last", r); }
  { auto r = base(f, BLKIF_OP_WRITE, id++); r.seg[0].last_sect = 9; add("beyond-page", r); }
  { auto r = base(f, BLKIF_OP_READ, id++); r.seg[0].gref = 2; add("reserved-gref", r); }
  { auto r = base(f, BLKIF_OP_READ, id++); r.seg[0].gref = 0x7ffffff0; add("unknown-gref", r); }
  { auto r = base(f, BLKIF_OP_READ, id++); r.sector_number = f.sectors(); add("beyond-end", r); }
  { auto r = base(f, BLKIF_OP_WRITE, id++); r.sector_number = ~0ULL - 2; add("sector-wrap", r); }
  {
    blkif_request_discard d{};
    d.operation = BLKIF_OP_DISCARD; d.id = id++; d.sector_number = 8; d.nr_sectors = ~0ULL;
    blkif_request r{}; std::memcpy(&r, &d, sizeof d); add("discard-wrap", r);
    d.id = id++; d.nr_sectors = 8; d.flag = BLKIF_DISCARD_SECURE;
    std::memcpy(&r, &d, sizeof d); add("secure-discard", r);
  }
  {
    blkif_request_indirect d{};
    d.operation = BLKIF_OP_INDIRECT; d.indirect_op = BLKIF_OP_FLUSH_DISKCACHE; d.nr_segments = 4; d.id = id++;
    d.indirect_grefs[0] = f.data_ref(1);
    blkif_request r{}; std::memcpy(&r, &d, sizeof d); add("indirect-flush", r);
    d.indirect_op = BLKIF_OP_READ; d.nr_segments = 0xffff; d.id = id++;
    std::memcpy(&r, &d, sizeof d); add("indirect-too-many", r);
    d.nr_segments = 4; d.indirect_grefs[0] = 5; d.id = id++;
    std::memcpy(&r, &d, sizeof d); add("indirect-reserved-gref", r);
    // Indirect page whose segment descriptors are garbage.
    std::memset(f.data().data() + 4096, 0xff, 4096);
    d.indirect_grefs[0] = f.data_ref(1); d.id = id++;
    std::memcpy(&r, &d, sizeof d); add("indirect-garbage-segments", r);
  }
  json res = json::object();
  bool all_errors = true;
  for (auto& [n, r] : cases) {
    auto s = f.submit(r);
    auto rsp = s ? f.wait_response(10000) : gears::Result<blkif_response>(s.error());
    if (!rsp || rsp->id != r.id || rsp->status == BLKIF_RSP_OKAY) {
      all_errors = false;
      res[n] = rsp ? json(rsp->status) : json(std::string(rsp.error().what));
    } else {
      res[n] = rsp->status;
    }
  }
  // The device still serves good requests.
  fill(f.data().subspan(0, 4 * 4096), 77);
  auto w = f.rw(BLKIF_OP_WRITE, 0, 0, 4);
  auto rd = w ? f.rw(BLKIF_OP_READ, 0, 4, 4) : w;
  const bool good = w && *w == 0 && rd && *rd == 0 && std::memcmp(f.data().data(), f.data().data() + 4 * 4096, 4 * 4096) == 0;
  json out = {{"case", "junk"}, {"cases", cases.size()}, {"all_errors", all_errors}, {"responses", res},
              {"still_serving", good}, {"ok", all_errors && good}};
  std::cout << out.dump() << "\n";
  return all_errors && good ? 0 : 1;
}

int cmd_ring(Frontend& f, const std::string& which) {
  auto* s = reinterpret_cast<blkif_sring*>(f.raw_ring().data());
  if (which == "prod") {
    gears::ring::shm::store_release(s->req_prod, f.ring().req_prod_pvt() + f.ring().size() + 1000);
  } else {  // flood: more requests published than the ring has slots (no response consumed)
    gears::ring::shm::store_release(s->req_prod, f.ring().req_prod_pvt() + 2 * f.ring().size());
  }
  (void)f.kick();
  const bool closed = f.wait_closed_by_backend(20000);
  json out = {{"case", which}, {"closed_by_dom0", closed}, {"backend_error", f.backend_error()}, {"ok", closed}};
  std::cout << out.dump() << "\n";
  return closed ? 0 : 1;
}

}  // namespace

int main(int argc, char** argv) {
  CLI::App app{"gears-blkfront-test: userspace blkif frontend for tests"};
  gears::blkfront::Options o;
  std::size_t pages = 32;
  int rounds = 8;
  std::string which;
  app.add_option("--devid", o.devid, "device/vbd/<devid>")->required();
  app.add_option("--ring-order", o.ring_page_order, "ring-page-order to ask for")->capture_default_str();
  app.add_flag("--persistent", o.persistent, "Announce feature-persistent");
  auto* io = app.add_subcommand("io", "Write a pattern, read it back, compare");
  io->add_option("--pages", pages, "Pages per request (>11 uses an indirect request)")->check(CLI::Range(1, 64));
  io->add_option("--rounds", rounds, "Requests of each kind")->check(CLI::Range(1, 100000));
  auto* hostile = app.add_subcommand("hostile", "Misbehave (see the file header)");
  hostile->add_option("--case", which, "junk|prod|flood")->required()->check(CLI::IsMember({"junk", "prod", "flood"}));
  app.require_subcommand(1);
  CLI11_PARSE(app, argc, argv);
  try {
    Frontend f(o);
    if (*io) return cmd_io(f, pages, rounds);
    if (which == "junk") return cmd_junk(f);
    return cmd_ring(f, which);
  } catch (const std::exception& e) {
    std::cout << json{{"ok", false}, {"error", e.what()}}.dump() << "\n";
    return 1;
  }
}
