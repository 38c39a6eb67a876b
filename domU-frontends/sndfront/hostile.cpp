// gears-sndfront-hostile [--devid N] [--no-violation]: a crafted userspace sndif frontend for the media backend's
// hostile-input test. It binds to device/vsnd/<devid> of its own domain (the kernel's snd-xen-front must not be
// loaded, e.g. module_blacklist=snd_xen_front), connects stream 0/0 and then sends:
//   * malformed requests, each of which must get an error status (never a crash, never a hang);
//   * valid requests in between (a real OPEN with a granted buffer, WRITE, TRIGGER, CLOSE), which must succeed;
//   * last (unless --no-violation), a ring violation (req_prod far past the ring size): dom0 must close the
//     device (backend state Closing).
// Prints one JSON object: cases[{name, status, want_error, ok}], malformed, malformed_rejected, valid_ok,
// closed_by_dom0, ok.
#include <poll.h>
#include <unistd.h>

#include <chrono>
#include <cstdio>
#include <cstring>
#include <string>
#include <thread>
#include <vector>

#include <nlohmann/json.hpp>

#include "common/ring/shared_mem.hpp"
#include "common/ring/xen_ring.hpp"
#include "common/xen/evtchn.hpp"
#include "common/xen/grant.hpp"
#include "common/xen/store.hpp"

// clang-format off
#include <xen/io/sndif.h>
// clang-format on

namespace {

using namespace gears;
using Clock = std::chrono::steady_clock;

bool wait_state(xen::Store& s, const std::string& path, const std::string& want, int ms) {
  const auto end = Clock::now() + std::chrono::milliseconds(ms);
  while (Clock::now() < end) {
    auto v = s.read(path);
    if (v && *v == want) return true;
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
  return false;
}

struct Front {
  xen::Store store;
  xen::GrantSharer sharer;
  xen::GrantShare ring_page, evt_page, buf, dir;
  xen::EventChannel req, evt;
  std::optional<ring::FrontRing<xen_sndif_sring>> ring;
  std::uint16_t next_id = 0;

  // One request, one response (or a timeout: status 1000).
  int call(xensnd_req r, xensnd_resp* out = nullptr) {
    r.id = next_id++;
    if (!ring->put_request(r).ok()) return 1001;
    if (!ring->push_requests(req).ok()) return 1002;
    const auto end = Clock::now() + std::chrono::seconds(5);
    while (Clock::now() < end) {
      xensnd_resp got{};
      bool have = false;
      auto n = ring->consume(1, [&](const xensnd_resp& rsp) {
        got = rsp;
        have = true;
      });
      if (!n) return 1003;
      if (have) {
        if (got.id != r.id || got.operation != r.operation) return 1004;
        if (out) *out = got;
        return got.status;
      }
      pollfd p{req.fd(), POLLIN, 0};
      (void)::poll(&p, 1, 20);
      (void)req.consume();
    }
    return 1000;
  }
};

xensnd_req op(std::uint8_t o) {
  xensnd_req r{};
  r.operation = o;
  return r;
}
xensnd_req rw(std::uint8_t o, std::uint32_t off, std::uint32_t len) {
  auto r = op(o);
  r.op.rw.offset = off;
  r.op.rw.length = len;
  return r;
}
xensnd_req open_req(std::uint32_t rate, std::uint8_t fmt, std::uint8_t ch, std::uint32_t buf, grant_ref_t dir,
                    std::uint32_t period) {
  auto r = op(XENSND_OP_OPEN);
  r.op.open.pcm_rate = rate;
  r.op.open.pcm_format = fmt;
  r.op.open.pcm_channels = ch;
  r.op.open.buffer_sz = buf;
  r.op.open.gref_directory = dir;
  r.op.open.period_sz = period;
  return r;
}

}  // namespace

int main(int argc, char** argv) {
  std::string devid = "0";
  bool violation = true;
  for (int i = 1; i < argc; ++i) {
    const std::string a = argv[i];
    if (a == "--devid" && i + 1 < argc) devid = argv[++i];
    else if (a == "--no-violation") violation = false;
    else {
      std::fprintf(stderr, "usage: gears-sndfront-hostile [--devid N] [--no-violation]\n");
      return 2;
    }
  }
  nlohmann::json out;
  try {
    Front f;
    const std::string fe = "device/vsnd/" + devid;
    auto be = f.store.read(fe + "/backend");
    if (!be) throw std::runtime_error("no " + fe + "/backend (is vsnd= in the domain's config?)");
    if (!wait_state(f.store, *be + "/state", "2", 30000)) throw std::runtime_error("backend never reached InitWait");
    const std::string st = fe + "/0/0";
    f.ring_page = xen::GrantShare(f.sharer, 0, 1, true);
    f.evt_page = xen::GrantShare(f.sharer, 0, 1, true);
    f.ring.emplace(f.ring_page.data(), 4096);
    f.req = xen::EventChannel::alloc_unbound(0);
    f.evt = xen::EventChannel::alloc_unbound(0);
    auto w = [&](const std::string& k, std::uint64_t v) {
      if (!f.store.write(st + "/" + k, std::to_string(v)).ok()) throw std::runtime_error("cannot write " + k);
    };
    w(XENSND_FIELD_RING_REF, f.ring_page.refs()[0]);
    w(XENSND_FIELD_EVT_CHNL, f.req.port());
    w(XENSND_FIELD_EVT_RING_REF, f.evt_page.refs()[0]);
    w(XENSND_FIELD_EVT_EVT_CHNL, f.evt.port());
    if (!f.store.write(fe + "/state", "3").ok()) throw std::runtime_error("cannot write state");
    if (!wait_state(f.store, *be + "/state", "4", 30000)) throw std::runtime_error("backend never connected");

    // A real 2-page buffer and its one-page directory.
    f.buf = xen::GrantShare(f.sharer, 0, 2, true);
    f.dir = xen::GrantShare(f.sharer, 0, 1, true);
    // Refs 3 and 4 are bogus: a 4-page OPEN through this directory must fail to map (a 2-page one reads only
    // the first two). Never 0: the guest's reserved grants (console, xenstore) ARE granted to dom0.
    const grant_ref_t d[5] = {0, f.buf.refs()[0], f.buf.refs()[1], 0x7fff0001U, 0x7fff0002U};
    std::memcpy(f.dir.data(), d, sizeof d);
    const grant_ref_t dir = f.dir.refs()[0];
    constexpr std::uint32_t kBuf = 8192;

    nlohmann::json cases = nlohmann::json::array();
    int malformed = 0, rejected = 0, valid = 0, valid_ok = 0;
    auto bad = [&](const char* name, const xensnd_req& r) {
      const int s = f.call(r);
      const bool ok = s < 0;  // an error status, not a timeout (>= 1000) nor success
      ++malformed;
      rejected += ok ? 1 : 0;
      cases.push_back({{"name", name}, {"status", s}, {"want_error", true}, {"ok", ok}});
    };
    auto good = [&](const char* name, const xensnd_req& r) {
      const int s = f.call(r);
      ++valid;
      valid_ok += s == 0 ? 1 : 0;
      cases.push_back({{"name", name}, {"status", s}, {"want_error", false}, {"ok", s == 0}});
    };
    bad("unknown_op", op(99));
    bad("write_before_open", rw(XENSND_OP_WRITE, 0, 4));
    bad("trigger_before_open", op(XENSND_OP_TRIGGER));
    bad("open_bad_rate", open_req(1, XENSND_PCM_FORMAT_S16_LE, 2, kBuf, dir, 1024));
    bad("open_bad_format", open_req(48000, XENSND_PCM_FORMAT_GSM, 2, kBuf, dir, 1024));
    bad("open_bad_channels", open_req(48000, XENSND_PCM_FORMAT_S16_LE, 7, kBuf, dir, 1024));
    bad("open_zero_buffer", open_req(48000, XENSND_PCM_FORMAT_S16_LE, 2, 0, dir, 0));
    bad("open_partial_frame_buffer", open_req(48000, XENSND_PCM_FORMAT_S16_LE, 2, 8190, dir, 0));
    bad("open_bogus_directory_gref", open_req(48000, XENSND_PCM_FORMAT_S16_LE, 2, kBuf, 0x7fff0000U, 1024));
    bad("open_buffer_bigger_than_granted", open_req(48000, XENSND_PCM_FORMAT_S16_LE, 2, 4U * 4096, dir, 1024));
    {
      auto q = op(XENSND_OP_HW_PARAM_QUERY);
      q.op.hw_param.formats = ~0ULL;
      q.op.hw_param.rates = {48000, 8000};
      q.op.hw_param.channels = {1, 2};
      q.op.hw_param.buffer = {1, 1000};
      q.op.hw_param.period = {1, 1000};
      bad("hw_query_inverted", q);
    }
    good("open", open_req(48000, XENSND_PCM_FORMAT_S16_LE, 2, kBuf, dir, 1024));
    bad("write_offset_past_buffer", rw(XENSND_OP_WRITE, kBuf, 4));
    bad("write_length_wraps", rw(XENSND_OP_WRITE, 4, 0xfffffffcU));
    bad("write_partial_frame", rw(XENSND_OP_WRITE, 0, 6));
    bad("read_on_playback", rw(XENSND_OP_READ, 0, 4));
    bad("set_volume_wrong_length", rw(XENSND_OP_SET_VOLUME, 0, 3));
    {
      auto t = op(XENSND_OP_TRIGGER);
      t.op.trigger.type = 9;
      bad("trigger_bad_type", t);
    }
    good("write", rw(XENSND_OP_WRITE, 0, 4096));
    good("trigger_start", [] { auto t = op(XENSND_OP_TRIGGER); t.op.trigger.type = XENSND_OP_TRIGGER_START; return t; }());
    good("trigger_stop", [] { auto t = op(XENSND_OP_TRIGGER); t.op.trigger.type = XENSND_OP_TRIGGER_STOP; return t; }());
    good("close", op(XENSND_OP_CLOSE));
    out["cases"] = cases;
    out["malformed"] = malformed;
    out["malformed_rejected"] = rejected;
    out["valid"] = valid;
    out["valid_ok"] = valid_ok;
    bool closed = false;
    if (violation) {
      // Ring violation: a producer index far past the ring size.
      auto* sring = static_cast<xen_sndif_sring*>(static_cast<void*>(f.ring_page.data()));
      ring::shm::store_release(sring->req_prod, f.ring->req_prod_pvt() + 1000);
      (void)f.req.notify();
      closed = wait_state(f.store, *be + "/state", "5", 15000);
      out["closed_by_dom0"] = closed;
    }
    out["ok"] = rejected == malformed && valid_ok == valid && (closed || !violation);
    // Leave the device reconnectable: Closed, then Initialising.
    (void)f.store.write(fe + "/state", "6");
    std::this_thread::sleep_for(std::chrono::milliseconds(300));
    (void)f.store.write(fe + "/state", "1");
  } catch (const std::exception& e) {
    out["error"] = e.what();
    out["ok"] = false;
  }
  std::printf("%s\n", out.dump().c_str());
  return out.value("ok", false) ? 0 : 1;
}
