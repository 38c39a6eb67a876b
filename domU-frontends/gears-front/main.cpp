// gears-front: the guest agent's CLI. Each verb opens the channel, does its work, and closes it.
//   gears-front hint "class=gold,rate=10M,latency=500us"   publish a hint set; prints dom0's ack
//   gears-front bench bulk --dir up|down --bytes N [--no-verify]
//   gears-front bench msgs --count N --size B | bench rtt --count N | bench memcpy --bytes N
//   gears-front agent [--hints TEXT] [--serve N]   stay connected and run dom0's benchmarks (gearsctl bench)
//   gears-front misbehave index|length|type|data|kind|flood  (tests: speak nonsense, expect dom0 to close us)
// Every verb prints one JSON object on stdout; errors go to stderr with a non-zero exit code.
#include <CLI/CLI.hpp>
#include <algorithm>
#include <chrono>
#include <csignal>
#include <cstdio>
#include <nlohmann/json.hpp>
#include <vector>

#include "common/ring/le.hpp"
#include "common/ring/stream_ring.hpp"
#include "domU-frontends/gears-front/front.hpp"
#include "domU-frontends/gears-front/hint_encode.hpp"

namespace {

using gears::front::Channel;
using nlohmann::json;

int print(const json& j, bool ok) {
  std::printf("%s\n", j.dump().c_str());
  return ok ? 0 : 3;
}

int fail(const std::string& what) {
  std::fprintf(stderr, "gears-front: %s\n", what.c_str());
  return 1;
}

double median(std::vector<double> v) {
  std::sort(v.begin(), v.end());
  return v.empty() ? 0 : v[v.size() / 2];
}

int misbehave(Channel& ch, const std::string& mode) {
  using namespace gears;
  auto mem = ch.raw_up_ring();
  auto* hdr = reinterpret_cast<ring::StreamRingHeader*>(mem.data());
  std::byte* data = mem.data() + ring::kStreamPageSize;
  const std::uint32_t size = static_cast<std::uint32_t>(mem.size() - ring::kStreamPageSize);
  const std::uint32_t prod = ring::shm::load_relaxed(hdr->prod);
  auto put_frame = [&](std::uint32_t len, std::uint16_t type, std::span<const std::byte> payload) {
    std::byte h[8];
    le::store32(h, len);
    le::store16(h + 4, type);
    le::store16(h + 6, 0);
    for (std::size_t i = 0; i < 8; ++i) data[(prod + i) & (size - 1)] = h[i];
    for (std::size_t i = 0; i < payload.size(); ++i) data[(prod + 8 + i) & (size - 1)] = payload[i];
    ring::shm::store_release(hdr->prod, prod + 8 + static_cast<std::uint32_t>(payload.size()));
  };
  if (mode == "index") {
    ring::shm::store_release(hdr->prod, ring::shm::load_relaxed(hdr->cons) + size + 4096);
  } else if (mode == "length") {
    put_frame(channel::kMaxFrame + 1, static_cast<std::uint16_t>(channel::FrameType::Hints), {});
  } else if (mode == "type") {
    put_frame(0, 0x7777, {});
  } else if (mode == "data") {
    const std::byte d[32] = {};
    put_frame(sizeof d, static_cast<std::uint16_t>(channel::FrameType::Data), d);
  } else if (mode == "kind") {
    const std::byte tlv[] = {std::byte{0xEE}, std::byte{0xEE}, std::byte{1}, std::byte{0}, std::byte{1}};
    put_frame(sizeof tlv, static_cast<std::uint16_t>(channel::FrameType::Hints), tlv);
  } else if (mode == "flood") {
    // Valid hint sets as fast as dom0 takes them, until it closes us (at most 20 s): the flood limit, not the
    // decoder, must close us. The limit is a rate dom0 measures while it consumes; a fixed burst can be read
    // across a window boundary when dom0 is slow (a loaded TCG host), so the flood lasts, not counts.
    auto tlv = gears::front::encode_hint_text("class=bronze");
    if (!tlv) return fail(tlv.error());
    const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(20);
    for (std::uint32_t sent = 1; std::chrono::steady_clock::now() < deadline; ++sent) {
      if (!ch.session().send_raw(static_cast<std::uint16_t>(channel::FrameType::Hints), *tlv).ok()) break;
      if (sent % 256 == 0) {
        (void)ch.kick();
        if (!ch.backend_connected()) break;
      }
    }
  } else {
    return fail("unknown misbehaviour '" + mode + "' (index|length|type|data|kind|flood)");
  }
  (void)ch.kick();
  const bool closed = ch.wait_closed_by_backend(10000);
  return print({{"misbehave", mode}, {"closed_by_dom0", closed}}, closed);
}

volatile std::sig_atomic_t g_stop = 0;
extern "C" void on_stop_signal(int) { g_stop = 1; }

// One JSON line when ready and one per served request (stdout, flushed), so scripts can follow along.
int run_agent(gears::front::Options opts, const std::string& hint_text, std::uint64_t serve_max) {
  struct sigaction sa {};
  sa.sa_handler = on_stop_signal;
  sigemptyset(&sa.sa_mask);
  ::sigaction(SIGTERM, &sa, nullptr);
  ::sigaction(SIGINT, &sa, nullptr);
  opts.agent = true;
  Channel ch(opts);
  if (!hint_text.empty()) {
    auto tlv = gears::front::encode_hint_text(hint_text);
    if (!tlv) return fail("bad hints: " + tlv.error());
    auto ack = ch.publish_hints(*tlv);
    if (!ack || ack->status != 0) return fail("dom0 did not accept the hints");
  }
  std::printf("%s\n", json{{"agent", "ready"}, {"backend_domain", ch.backend_domain()}}.dump().c_str());
  std::fflush(stdout);
  std::uint64_t served = 0;
  while (!g_stop) {
    auto r = ch.session().serve_one(1000);
    if (!r) return fail(std::string("agent: ") + std::string(r.error().what));
    if (*r) {
      ++served;
      std::printf("%s\n", json{{"served", served}}.dump().c_str());
      std::fflush(stdout);
      if (serve_max && served >= serve_max) break;
    } else if (!ch.backend_connected()) {
      return fail("agent: dom0 closed the channel");
    }
  }
  return print({{"agent", "stopped"}, {"served", served}}, true);
}

}  // namespace

int main(int argc, char** argv) {
  CLI::App app{"gears-front: the Gears guest agent (semantic channel to dom0)"};
  app.require_subcommand(1);
  gears::front::Options opts;
  app.add_option("--devid", opts.devid, "Channel device id")->capture_default_str();
  app.add_option("--ring-order", opts.ring_page_order, "log2 of data pages per ring (5..9)")
      ->capture_default_str()->check(CLI::Range(5, 9));
  int timeout_s = 30;
  app.add_option("--timeout", timeout_s, "Seconds to wait for dom0")->capture_default_str()->check(CLI::Range(1, 3600));

  std::string hint_text;
  auto* hint = app.add_subcommand("hint", "Publish a hint set, e.g. \"class=gold,rate=10M,latency=500us\"");
  hint->add_option("hints", hint_text, "Hints in text form")->required();

  auto* bench = app.add_subcommand("bench", "Measure the channel");
  bench->require_subcommand(1);
  std::string dir = "up";
  std::uint64_t bytes = 256ULL << 20U, count = 100000, size = 64, seed = 1;
  bool no_verify = false;
  auto* bulk = bench->add_subcommand("bulk", "Bulk transfer with checksums");
  bulk->add_option("--dir", dir, "up (domU->dom0) or down")->check(CLI::IsMember({"up", "down", "both"}));
  bulk->add_option("--bytes", bytes)->capture_default_str();
  bulk->add_option("--seed", seed)->capture_default_str();
  bulk->add_flag("--no-verify", no_verify, "Skip checksums (pure transport speed)");
  auto* msgs = bench->add_subcommand("msgs", "Small one-way messages");
  msgs->add_option("--count", count)->capture_default_str();
  msgs->add_option("--size", size)->capture_default_str()->check(CLI::Range(1, 65536));
  auto* rtt = bench->add_subcommand("rtt", "Ping/Pong round trips");
  rtt->add_option("--count", count)->capture_default_str();
  auto* mcpy = bench->add_subcommand("memcpy", "This domain's memcpy bandwidth (no channel)");
  mcpy->add_option("--bytes", bytes)->capture_default_str();

  std::string agent_hints;
  std::uint64_t serve_max = 0;
  auto* agent = app.add_subcommand("agent", "Stay connected: publish hints, serve dom0's benchmarks until SIGTERM");
  agent->add_option("--hints", agent_hints, "Publish this hint set first");
  agent->add_option("--serve", serve_max, "Exit after serving this many requests (0 = never)")->capture_default_str();

  std::string mode;
  auto* bad = app.add_subcommand("misbehave", "Send garbage on purpose (tests)");
  bad->add_option("mode", mode, "index|length|type|data|kind|flood")->required();

  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    const int rc = app.exit(e);
    return rc == 0 ? 0 : 2;
  }
  opts.timeout_ms = timeout_s * 1000;

  try {
    if (*mcpy) {
      return print({{"mode", "memcpy"}, {"bytes", bytes},
                    {"mb_s", gears::front::memcpy_mb_s(bytes, 5)}}, true);
    }
    if (*hint) {
      auto tlv = gears::front::encode_hint_text(hint_text);
      if (!tlv) return fail("bad hints: " + tlv.error());
      Channel ch(opts);
      auto ack = ch.publish_hints(*tlv);
      if (!ack) return fail(std::string("dom0 did not accept the hints: ") + std::string(ack.error().what));
      return print({{"published", hint_text}, {"records", ack->records}, {"status", ack->status}}, ack->status == 0);
    }
    if (*agent) return run_agent(opts, agent_hints, serve_max);
    if (*bad) {
      Channel ch(opts);
      return misbehave(ch, mode);
    }
    Channel ch(opts);
    auto& s = ch.session();
    if (*bulk) {
      json out{{"mode", "bulk"}, {"bytes", bytes}, {"verify", !no_verify}, {"ring_pages", ch.data_pages()}};
      bool ok = true;
      for (const char* d : {"up", "down"}) {
        if (dir != "both" && dir != d) continue;
        auto r = std::string(d) == "up" ? s.bulk_up(bytes, seed, !no_verify) : s.bulk_down(bytes, seed + 1, !no_verify);
        if (!r) return fail(std::string("bulk ") + d + ": " + std::string(r.error().what));
        const bool match = no_verify || r->match();
        ok = ok && match;
        out[d] = {{"seconds", r->seconds}, {"mb_s", static_cast<double>(bytes) / 1e6 / r->seconds},
                  {"checksum_local", r->local_checksum}, {"checksum_dom0", r->remote_checksum},
                  {"checksum_expected", r->expected_checksum}, {"match", match}};
      }
      out["match"] = ok;
      return print(out, ok);
    }
    if (*msgs) {
      auto r = s.msgs(count, size);
      if (!r) return fail(std::string("msgs: ") + std::string(r.error().what));
      return print({{"mode", "msgs"}, {"count", count}, {"size", size}, {"seconds", r->seconds},
                    {"msgs_s", static_cast<double>(count) / r->seconds}, {"match", r->match}}, r->match);
    }
    if (*rtt) {
      std::vector<double> us;
      for (std::uint64_t i = 0; i < count; ++i) {
        auto r = s.ping(i);
        if (!r) return fail(std::string("rtt: ") + std::string(r.error().what));
        us.push_back(static_cast<double>(*r) / 1e3);
      }
      std::sort(us.begin(), us.end());
      return print({{"mode", "rtt"}, {"count", count}, {"rtt_us_median", median(us)},
                    {"rtt_us_p10", us[us.size() / 10]}, {"rtt_us_p90", us[us.size() * 9 / 10]}, {"match", true}}, true);
    }
  } catch (const std::exception& e) {
    return fail(e.what());
  }
  return 2;
}
