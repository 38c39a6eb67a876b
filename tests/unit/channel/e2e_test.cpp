// The semantic channel end to end over the fake hypervisor, in one process: dom0 runs ChannelDevice on a
// gearsd Reactor (its own thread, as a gearsd worker), each guest runs gears::front::Channel on a test thread
// (fake::AsDomain). Covers the handshake, hints, bulk both ways, msgs, ping, close + reconnect, and every kind of
// misbehaviour the device must answer by closing the channel, while a second domain keeps working.
#include <gtest/gtest.h>

#include <atomic>
#include <chrono>
#include <cstring>
#include <functional>
#include <map>
#include <future>
#include <memory>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include "common/channel/protocol.hpp"
#include "common/hints/hints.hpp"
#include "common/ring/le.hpp"
#include "common/ring/shared_mem.hpp"
#include "common/ring/stream_ring.hpp"
#include "dom0/channel/channel_device.hpp"
#include "dom0/gearsd/reactor.hpp"
#include "domU-frontends/gears-front/front.hpp"
#include "domU-frontends/gears-front/hint_encode.hpp"
#include "tests/fake/fake.hpp"
#include "tests/fake/loop_host.hpp"

namespace gears {
namespace {

using nlohmann::json;

std::string be_dir(unsigned dom) { return "/local/domain/0/backend/gears/" + std::to_string(dom) + "/0"; }
std::string fe_dir(unsigned dom) { return "/local/domain/" + std::to_string(dom) + "/device/gears/0"; }
std::string state_str(XenbusState s) { return std::to_string(static_cast<int>(s)); }

// Polls `pred` until it holds or `ms` pass.
using fake::eventually;

bool store_is(const std::string& path, const std::string& value) {
  const auto v = fake::store_read(path);
  return v && *v == value;
}

std::vector<std::byte> tlv(std::string_view text) {
  auto e = front::encode_hint_text(text);
  if (!e) throw std::runtime_error("test hint text: " + e.error());
  return *e;
}

// dom0: one Reactor on its own thread (a gearsd worker) hosting channel devices.
class Dom0 : public fake::LoopHost<> {
 public:
  ~Dom0() { shutdown(); }  // the devices go before `registry`
  Dom0() = default;
  Dom0(const Dom0&) = delete;
  Dom0& operator=(const Dom0&) = delete;

  // Creates and starts the channel device of `dom`.
  void add(unsigned dom) {
    daemon::DeviceSpec spec;
    spec.key = {"channel", dom, 0};
    spec.backend_path = be_dir(dom);
    const Status st = start(dom, chan::make_channel_device(spec, &registry));
    ASSERT_TRUE(st.ok()) << st.error().what;
  }
  json hints(unsigned dom) {
    return on_loop([this, dom] { return device(dom).hints(); });
  }
  std::size_t watches() {
    return on_loop([this] { return loop().watch_count(); });
  }

  daemon::HintRegistry registry;  // what gearsd's backends read; outlives the devices
};

// A guest's channel, opened and used as domain `dom` (handles belong to the domain current when opened, and the
// frontend opens new ones on reconnect).
front::Options guest_opts() {
  front::Options o;
  o.ring_page_order = 6;  // 256 KiB per direction: big enough for a flood of small frames without blocking
  o.timeout_ms = 10000;
  return o;
}

// Writes frames straight into the up ring's shared memory as a hostile guest would (no flow control).
class RawUp {
 public:
  explicit RawUp(front::Channel& ch) : mem_(ch.raw_up_ring()) {
    hdr_ = reinterpret_cast<ring::StreamRingHeader*>(mem_.data());
    data_ = mem_.data() + ring::kStreamPageSize;
    size_ = static_cast<std::uint32_t>(mem_.size() - ring::kStreamPageSize);
  }
  std::uint32_t size() const { return size_; }
  void frame(std::uint32_t len, std::uint16_t type, std::span<const std::byte> payload) {
    const std::uint32_t prod = ring::shm::load_relaxed(hdr_->prod);
    std::byte h[ring::kFrameHeaderSize];
    le::store32(h, len);
    le::store16(h + 4, type);
    le::store16(h + 6, 0);
    put(prod, h);
    put(prod + ring::kFrameHeaderSize, payload);
    ring::shm::store_release(hdr_->prod, prod + static_cast<std::uint32_t>(ring::kFrameHeaderSize + payload.size()));
  }
  void set_prod(std::uint32_t v) { ring::shm::store_release(hdr_->prod, v); }
  std::uint32_t cons() const { return ring::shm::load_relaxed(hdr_->cons); }
  std::uint32_t prod() const { return ring::shm::load_relaxed(hdr_->prod); }

 private:
  void put(std::uint32_t at, std::span<const std::byte> b) {
    for (std::size_t i = 0; i < b.size(); ++i) data_[(at + i) & (size_ - 1)] = b[i];
  }
  std::span<std::byte> mem_;
  ring::StreamRingHeader* hdr_;
  std::byte* data_;
  std::uint32_t size_;
};

enum class Misbehaviour { index, length, type, data, kind, flood };
const char* name(Misbehaviour m) {
  switch (m) {
    case Misbehaviour::index: return "index";
    case Misbehaviour::length: return "length";
    case Misbehaviour::type: return "type";
    case Misbehaviour::data: return "data";
    case Misbehaviour::kind: return "kind";
    case Misbehaviour::flood: return "flood";
  }
  return "?";
}
// What last_error must mention for each.
const char* expected_error(Misbehaviour m) {
  switch (m) {
    case Misbehaviour::index: return "peer index out of range";
    case Misbehaviour::length: return "frame length exceeds max_frame";
    case Misbehaviour::type: return "unknown frame type";
    case Misbehaviour::data: return "Data outside a transfer";
    case Misbehaviour::kind: return "unknown kind";
    case Misbehaviour::flood: return "flood";
  }
  return "";
}

void misbehave(front::Channel& ch, Misbehaviour m) {
  RawUp up(ch);
  switch (m) {
    case Misbehaviour::index:  // producer more than a ring ahead of the consumer
      up.set_prod(up.cons() + up.size() + 4096);
      break;
    case Misbehaviour::length:
      up.frame(channel::kMaxFrame + 1, static_cast<std::uint16_t>(channel::FrameType::Hints), {});
      break;
    case Misbehaviour::type:
      up.frame(0, 0x7777, {});
      break;
    case Misbehaviour::data: {
      const std::byte d[32] = {};
      up.frame(sizeof d, static_cast<std::uint16_t>(channel::FrameType::Data), d);
      break;
    }
    case Misbehaviour::kind: {  // record kind 0xEEEE, len 1
      const std::byte t[] = {std::byte{0xEE}, std::byte{0xEE}, std::byte{1}, std::byte{0}, std::byte{1}};
      up.frame(sizeof t, static_cast<std::uint16_t>(channel::FrameType::Hints), t);
      break;
    }
    case Misbehaviour::flood: {
      // Valid hint sets as fast as dom0 takes them, until it closes us: the limit is a rate dom0 measures while it
      // consumes, so a fixed burst could be read across a window boundary on a slow (sanitized, loaded) host.
      const auto h = tlv("class=bronze");
      const auto bytes = static_cast<std::uint32_t>(ring::kFrameHeaderSize + h.size());
      const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(20);
      std::uint32_t sent = 0;
      while ((sent % 64 != 0 || ch.backend_connected()) && std::chrono::steady_clock::now() < deadline) {
        if (up.prod() - up.cons() + bytes > up.size()) {  // ring full: let dom0 drain it (if it still does)
          if (!ch.backend_connected()) break;
          (void)ch.kick();
          std::this_thread::sleep_for(std::chrono::milliseconds(1));
          continue;
        }
        up.frame(static_cast<std::uint32_t>(h.size()), static_cast<std::uint16_t>(channel::FrameType::Hints), h);
        if (++sent % 512 == 0) (void)ch.kick();
      }
      break;
    }
  }
  ASSERT_TRUE(ch.kick().ok());
}

class ChannelE2E : public ::testing::Test {
 protected:
  void SetUp() override { fake::reset(); }
  void TearDown() override {
    const auto c = fake::counters();
    EXPECT_EQ(c.xs_handles, 0U);
    EXPECT_EQ(c.xs_watches, 0U);
    EXPECT_EQ(c.xs_transactions, 0U);
    EXPECT_EQ(c.gnttab_handles, 0U);
    EXPECT_EQ(c.gntshr_handles, 0U);
    EXPECT_EQ(c.grants, 0U);
    EXPECT_EQ(c.mapped_pages, 0U);
    EXPECT_EQ(c.evtchn_handles, 0U);
    EXPECT_EQ(c.ports, 0U);
  }
};

TEST_F(ChannelE2E, ConnectHintsBulkMsgsPingCloseReconnect) {
  {
    Dom0 dom0;
    dom0.add(5);
    // The device created its nodes and waits for a frontend.
    EXPECT_TRUE(store_is(be_dir(5) + "/state", state_str(XenbusStateInitWait)));
    EXPECT_TRUE(store_is(be_dir(5) + "/feature-gears-hints", "1"));
    EXPECT_TRUE(store_is(fe_dir(5) + "/backend", be_dir(5)));
    EXPECT_EQ(dom0.stats(5)["connected"], false);

    const std::uint64_t kBulk = 3 * 1024 * 1024 + 12345;  // not a multiple of the frame size
    {
      fake::AsDomain guest(5);
      front::Channel ch(guest_opts());
      EXPECT_EQ(ch.backend_domain(), 0);
      EXPECT_TRUE(store_is(be_dir(5) + "/state", state_str(XenbusStateConnected)));
      EXPECT_TRUE(store_is(fe_dir(5) + "/state", state_str(XenbusStateConnected)));
      EXPECT_EQ(dom0.stats(5)["connected"], true);

      // Hints: acknowledged with the record count and visible in dom0.
      const auto set1 = tlv("class=gold,rate=10M,latency=500us");
      auto ack = ch.publish_hints(set1);
      ASSERT_TRUE(ack.ok()) << ack.error().what;
      EXPECT_EQ(ack->status, 0U);
      EXPECT_EQ(ack->records, 4U);  // scope, qos, rate, latency
      auto ack2 = ch.publish_hints(tlv("pid=42,comm=mpv,role=media"));
      ASSERT_TRUE(ack2.ok()) << ack2.error().what;
      EXPECT_EQ(ack2->records, 3U);  // scope, role, process
      auto ack3 = ch.publish_hints(tlv("flow=1,flow=2,flow=0x33,rate=1Mi"));
      ASSERT_TRUE(ack3.ok()) << ack3.error().what;
      EXPECT_EQ(ack3->records, 5U);  // scope, rate, 3 flow keys
      const json h = dom0.hints(5);
      ASSERT_EQ(h.size(), 3U) << h.dump();
      EXPECT_EQ(h[2]["hints"]["scope"], "flow");
      EXPECT_EQ(h[2]["hints"]["flow_keys"].size(), 3U);
      EXPECT_EQ(h[0]["hints"]["qos"]["class"], "gold");
      EXPECT_EQ(h[0]["hints"]["rate_bps"], 10000000);
      EXPECT_EQ(h[0]["hints"]["latency_us"], 500);
      EXPECT_EQ(h[1]["hints"]["scope"], "process");
      EXPECT_EQ(h[1]["hints"]["process"]["comm"], "mpv");
      EXPECT_EQ(h[1]["hints"]["role"], "media");
      // ... and in the registry the backends read, under the device's name.
      const auto recs = dom0.registry.snapshot(5);
      ASSERT_EQ(recs.size(), 3U);
      EXPECT_EQ(recs[0].origin, "channel/0");
      EXPECT_EQ(recs[0].source, daemon::HintSource::channel);
      EXPECT_EQ(dom0.registry.effective(5, hints::DevType::vif, 0).qos->cls, hints::kGold);
      EXPECT_EQ(daemon::hint_subject(recs[1].set), "process:pid=42");
      EXPECT_TRUE(dom0.registry.snapshot(6).empty());

      // Bulk both ways, checksummed by both ends and against the expected stream.
      auto up = ch.session().bulk_up(kBulk, 7, true);
      ASSERT_TRUE(up.ok()) << up.error().what;
      EXPECT_TRUE(up->match());
      EXPECT_EQ(up->expected_checksum, channel::expected_checksum(7, kBulk));
      auto down = ch.session().bulk_down(kBulk, 11, true);
      ASSERT_TRUE(down.ok()) << down.error().what;
      EXPECT_TRUE(down->match()) << down->local_checksum << " " << down->remote_checksum << " "
                                 << down->expected_checksum;
      auto empty = ch.session().bulk_up(0, 1, true);
      ASSERT_TRUE(empty.ok()) << empty.error().what;

      // Messages and pings.
      auto m = ch.session().msgs(5000, 64);
      ASSERT_TRUE(m.ok()) << m.error().what;
      EXPECT_TRUE(m->match);
      auto m2 = ch.session().msgs(3, 1000);
      ASSERT_TRUE(m2.ok()) << m2.error().what;
      EXPECT_TRUE(m2->match);
      for (std::uint64_t seq = 1; seq <= 20; ++seq) {
        auto p = ch.session().ping(seq);
        ASSERT_TRUE(p.ok()) << p.error().what;
      }

      const json st = dom0.stats(5);
      EXPECT_EQ(st["bytes_in"], kBulk);
      EXPECT_EQ(st["bytes_out"], kBulk);
      EXPECT_EQ(st["hint_sets"], 3);
      EXPECT_EQ(st["msgs"], 5003);
      EXPECT_EQ(st["pings"], 20);
      EXPECT_EQ(st["errors"], 0);
      EXPECT_EQ(st["connects"], 1);
      EXPECT_EQ(st["state"], "Connected");
    }  // Channel destroyed: orderly close

    EXPECT_TRUE(eventually([] { return store_is(fe_dir(5) + "/state", state_str(XenbusStateClosed)); }));
    EXPECT_TRUE(eventually([&] { return dom0.stats(5)["connected"] == false; }));
    EXPECT_TRUE(eventually([] { return store_is(be_dir(5) + "/state", state_str(XenbusStateClosed)); }))
        << fake::store_read(be_dir(5) + "/state").value_or("(none)");
    EXPECT_FALSE(fake::store_exists(be_dir(5) + "/error"));
    // The rings were unmapped by dom0 and ended by the guest.
    EXPECT_TRUE(eventually([] { return fake::counters().mapped_pages == 0 && fake::counters().grants == 0; }));

    // A second Channel object reconnects; the counters and hints survive the reconnect.
    {
      fake::AsDomain guest(5);
      front::Channel ch(guest_opts());
      auto p = ch.session().ping(99);
      ASSERT_TRUE(p.ok()) << p.error().what;
      auto up = ch.session().bulk_up(1 << 20, 3, true);
      ASSERT_TRUE(up.ok()) << up.error().what;
      EXPECT_TRUE(up->match());
      auto ack = ch.publish_hints(tlv("class=silver"));
      ASSERT_TRUE(ack.ok()) << ack.error().what;
      const json st = dom0.stats(5);
      EXPECT_EQ(st["connects"], 2);
      EXPECT_EQ(st["bytes_in"], kBulk + (1 << 20));
      EXPECT_EQ(st["hint_sets"], 4);
      EXPECT_EQ(dom0.hints(5).size(), 4U);
    }
    EXPECT_TRUE(eventually([] { return store_is(be_dir(5) + "/state", state_str(XenbusStateClosed)); }));
    dom0.shutdown();
  }
  // stop() removed the device's nodes.
  EXPECT_FALSE(fake::store_exists(be_dir(5)));
  EXPECT_FALSE(fake::store_exists(fe_dir(5)));
}

TEST_F(ChannelE2E, MisbehaviourClosesOnlyThatChannelAndTheGuestCanReconnect) {
  Dom0 dom0;
  dom0.add(5);
  dom0.add(6);

  // Domain 6 works all along, on its own thread.
  std::atomic<bool> stop{false};
  std::atomic<std::uint64_t> good_rounds{0};
  std::atomic<bool> good_failed{false};
  std::string good_error;  // written by the dom 6 thread only, read after join
  std::promise<void> good_up;
  std::thread good([&] {
    try {
      fake::AsDomain guest(6);
      front::Channel ch(guest_opts());
      good_up.set_value();
      std::uint64_t seq = 0;
      while (!stop.load()) {
        auto p = ch.session().ping(++seq);
        if (!p) throw std::runtime_error(std::string("ping: ") + std::string(p.error().what));
        if (seq % 16 == 0) {
          auto b = ch.session().bulk_down(64 * 1024 + seq, seq, true);
          if (!b || !b->match()) throw std::runtime_error("bulk_down failed");
          auto a = ch.publish_hints(tlv("class=gold,latency=100us"));
          if (!a || a->status != 0) throw std::runtime_error("hints failed");
        }
        good_rounds.fetch_add(1);
      }
    } catch (const std::exception& e) {
      good_error = e.what();
      good_failed = true;
      try {
        good_up.set_value();
      } catch (const std::future_error&) {
      }
    }
  });
  good_up.get_future().wait();

  std::uint64_t errors = 0;
  for (auto m : {Misbehaviour::index, Misbehaviour::length, Misbehaviour::type, Misbehaviour::data,
                 Misbehaviour::kind, Misbehaviour::flood}) {
    SCOPED_TRACE(name(m));
    const std::uint64_t before = good_rounds.load();
    {
      fake::AsDomain guest(5);
      front::Channel ch(guest_opts());
      auto p = ch.session().ping(1);  // healthy before
      ASSERT_TRUE(p.ok()) << p.error().what;
      misbehave(ch, m);
      EXPECT_TRUE(ch.wait_closed_by_backend(10000));
    }
    // dom0 closed the channel: error node, Closing (then Closed once the guest closed too), counted, reason kept.
    EXPECT_TRUE(fake::store_exists(be_dir(5) + "/error"));
    const json st = dom0.stats(5);
    EXPECT_EQ(st["errors"], ++errors);
    EXPECT_EQ(st["connected"], false);
    const std::string last = st["last_error"];
    EXPECT_FALSE(last.empty());
    EXPECT_NE(last.find(expected_error(m)), std::string::npos) << last;
    EXPECT_TRUE(eventually([] {
      const auto s = fake::store_read(be_dir(5) + "/state");
      return s && (*s == state_str(XenbusStateClosing) || *s == state_str(XenbusStateClosed));
    }));
    // Domain 6 made progress meanwhile and its device saw no error.
    EXPECT_TRUE(eventually([&] { return good_rounds.load() > before + 5 || good_failed.load(); }));
    EXPECT_EQ(dom0.stats(6)["errors"], 0);
  }

  // After all that, domain 5 reconnects cleanly (error node cleared on reset) and works.
  {
    fake::AsDomain guest(5);
    front::Channel ch(guest_opts());
    EXPECT_FALSE(fake::store_exists(be_dir(5) + "/error"));
    auto b = ch.session().bulk_up(2 << 20, 5, true);
    ASSERT_TRUE(b.ok()) << b.error().what;
    EXPECT_TRUE(b->match());
    auto d = ch.session().bulk_down(2 << 20, 6, true);
    ASSERT_TRUE(d.ok()) << d.error().what;
    EXPECT_TRUE(d->match());
    EXPECT_EQ(dom0.stats(5)["connects"], 7);  // 6 misbehaving sessions + this one
  }

  stop = true;
  good.join();
  EXPECT_EQ(good_error, "");
  EXPECT_GT(good_rounds.load(), 0U);
  const json st6 = dom0.stats(6);
  EXPECT_EQ(st6["errors"], 0);
  EXPECT_EQ(st6["connects"], 1);
  EXPECT_EQ(st6["last_error"], "");
  EXPECT_GT(st6["pings"].get<std::uint64_t>(), 0U);

  dom0.shutdown();
}

// Agent mode: dom0 asks, the guest's agent measures and answers; a plain frontend is refused; a BenchResult nobody
// asked for closes the channel.
TEST_F(ChannelE2E, AgentServesDom0sBenchmarks) {
  Dom0 dom0;
  dom0.add(5);
  // No guest yet: a clear refusal, not a hang.
  json r = dom0.control(5, {{"op", "bench"}, {"what", "rtt"}});
  EXPECT_EQ(r["ok"], false);
  EXPECT_NE(r["error"].get<std::string>().find("not connected"), std::string::npos) << r.dump();
  EXPECT_EQ(dom0.control(5, {{"op", "reboot"}})["ok"], false);

  {
    fake::AsDomain g(5);
    front::Channel plain(guest_opts());
    r = dom0.control(5, {{"op", "bench"}, {"what", "rtt"}});
    EXPECT_EQ(r["ok"], false);
    EXPECT_NE(r["error"].get<std::string>().find("not an agent"), std::string::npos) << r.dump();
  }
  ASSERT_TRUE(eventually([&] { return !dom0.stats(5)["connected"].get<bool>(); }));

  std::atomic<bool> stop{false};
  std::atomic<int> served{0};
  std::promise<void> ready;
  std::thread guest([&] {
    fake::AsDomain g(5);
    front::Options o = guest_opts();
    o.agent = true;
    front::Channel ch(o);
    ready.set_value();
    while (!stop) {
      auto s = ch.session().serve_one(50);
      ASSERT_TRUE(s.ok()) << s.error().what;
      if (*s) ++served;
    }
  });
  ready.get_future().wait();
  ASSERT_TRUE(eventually([&] { return dom0.stats(5)["agent"].get<bool>(); }));

  // Bad parameters never reach the guest.
  for (const json& bad : {json{{"op", "bench"}, {"what", "sideways"}}, json{{"op", "bench"}, {"amount", 0}},
                          json{{"op", "bench"}, {"what", "msgs"}, {"size", 70000}},
                          json{{"op", "bench"}, {"verify", "yes"}}, json{{"op", "bench"}, {"amount", -5}}}) {
    r = dom0.control(5, bad);
    EXPECT_EQ(r["ok"], false) << bad.dump();
  }
  EXPECT_EQ(served.load(), 0);

  r = dom0.control(5, {{"op", "bench"}, {"what", "bulk_up"}, {"amount", 3'000'017}});
  ASSERT_EQ(r["ok"], true) << r.dump();
  EXPECT_EQ(r["result"]["match"], true);
  EXPECT_EQ(r["result"]["amount"], 3'000'017);
  EXPECT_GT(r["result"]["mb_per_s"].get<double>(), 0.0);
  r = dom0.control(5, {{"op", "bench"}, {"what", "bulk_down"}, {"amount", 2'000'000}});
  ASSERT_EQ(r["ok"], true) << r.dump();
  EXPECT_EQ(r["result"]["match"], true);
  r = dom0.control(5, {{"op", "bench"}, {"what", "msgs"}, {"amount", 2000}, {"size", 100}});
  ASSERT_EQ(r["ok"], true) << r.dump();
  EXPECT_EQ(r["result"]["match"], true);
  EXPECT_EQ(r["result"]["size"], 100);
  r = dom0.control(5, {{"op", "bench"}, {"what", "rtt"}, {"amount", 50}});
  ASSERT_EQ(r["ok"], true) << r.dump();
  EXPECT_GT(r["result"]["p50_us"].get<double>(), 0.0);
  EXPECT_TRUE(eventually([&] { return served.load() == 4; }));  // the guest counts after it answered
  const json st = dom0.stats(5);
  EXPECT_EQ(st["benches"], 4);
  EXPECT_EQ(st["bytes_in"], 3'000'017);
  EXPECT_EQ(st["bytes_out"], 2'000'000);
  EXPECT_EQ(st["errors"], 0);
  stop = true;
  guest.join();

  // A hostile guest answers a question nobody asked.
  {
    fake::AsDomain g(5);
    front::Options o = guest_opts();
    o.agent = true;
    front::Channel ch(o);
    std::byte b[channel::kBenchResultSize];
    channel::encode(channel::BenchResult{77, 0, 1, 1, 0, true}, std::span<std::byte, channel::kBenchResultSize>(b));
    RawUp(ch).frame(sizeof b, static_cast<std::uint16_t>(channel::FrameType::BenchResult), b);
    ASSERT_TRUE(ch.kick().ok());
    ASSERT_TRUE(eventually([&] { return dom0.stats(5)["errors"].get<std::uint64_t>() == 1; }));
    EXPECT_NE(dom0.stats(5)["last_error"].get<std::string>().find("BenchResult nobody asked for"), std::string::npos);
  }
  dom0.shutdown();
}

// A hand-written frontend for the handshake's grant forms: rings of 1 + 2^5 pages, announced either with one
// xenstore key per page (the older form) or with a directory page per ring whose entries it can corrupt.
struct HandFront {
  enum class Form { keys, directory, bad_directory };
  HandFront(unsigned dom, Form form) : guest(static_cast<domid_t>(dom)) {
    const std::size_t pages = 1 + (std::size_t{1} << 5U);
    up = xen::GrantShare(sharer, 0, pages, true);
    down = xen::GrantShare(sharer, 0, pages, true);
    ring::stream_ring_format(up.bytes(), channel::kMaxFrame);
    ring::stream_ring_format(down.bytes(), channel::kMaxFrame);
    evtchn = xen::EventChannel::alloc_unbound(0);
    const std::string fe = fe_dir(dom);
    fake::store_write(fe + "/ring-page-order", "5");
    if (form == Form::keys) {
      for (std::size_t i = 0; i < pages; ++i) {
        fake::store_write(fe + "/up-ring-ref" + std::to_string(i), std::to_string(up.refs()[i]));
        fake::store_write(fe + "/down-ring-ref" + std::to_string(i), std::to_string(down.refs()[i]));
      }
    } else {
      up_dir = xen::GrantShare(sharer, 0, 1, false);
      down_dir = xen::GrantShare(sharer, 0, 1, false);
      std::memcpy(up_dir.data(), up.refs().data(), up.refs().size_bytes());
      std::memcpy(down_dir.data(), down.refs().data(), down.refs().size_bytes());
      if (form == Form::bad_directory) std::memset(down_dir.data() + 4 * 7, 0xff, 4);  // entry 7: no such grant
      fake::store_write(fe + "/up-ring-dir-ref", std::to_string(up_dir.refs()[0]));
      fake::store_write(fe + "/down-ring-dir-ref", std::to_string(down_dir.refs()[0]));
    }
    fake::store_write(fe + "/event-channel", std::to_string(evtchn->port()));
    fake::store_write(fe + "/state", state_str(XenbusStateInitialised));
  }
  fake::AsDomain guest;
  xen::GrantSharer sharer;
  xen::GrantShare up, down, up_dir, down_dir;
  std::optional<xen::EventChannel> evtchn;
};

TEST_F(ChannelE2E, RingGrantsByKeysOrDirectoryAndABadDirectoryEntryIsRefused) {
  Dom0 dom0;
  dom0.add(5);
  dom0.add(6);
  dom0.add(7);
  {
    HandFront keys(5, HandFront::Form::keys);
    HandFront dir(6, HandFront::Form::directory);
    HandFront bad(7, HandFront::Form::bad_directory);
    EXPECT_TRUE(eventually([] { return store_is(be_dir(5) + "/state", state_str(XenbusStateConnected)); }));
    EXPECT_TRUE(eventually([] { return store_is(be_dir(6) + "/state", state_str(XenbusStateConnected)); }));
    // Entry 7 of dom 7's down directory names no grant: the map fails, the device never connects.
    EXPECT_TRUE(eventually([] {
      return store_is(be_dir(7) + "/state", state_str(XenbusStateClosing)) ||
             store_is(be_dir(7) + "/state", state_str(XenbusStateClosed));
    })) << fake::store_read(be_dir(7) + "/state").value_or("?");
    EXPECT_EQ(dom0.stats(7)["connected"], false);
    EXPECT_EQ(dom0.stats(5)["connected"], true);
    EXPECT_EQ(dom0.stats(6)["connected"], true);
    // dom0 mapped each directory page only while it copied the entries out: the ring pages stay mapped.
    EXPECT_EQ(fake::grant_info(6, dir.up_dir.refs()[0])->map_count, 0U);
    EXPECT_EQ(fake::grant_info(6, dir.up.refs()[0])->map_count, 1U);
  }
  dom0.shutdown();
}

// gearsd detaches a device (stop + destroy on its worker) while the guest streams into it: the device must not
// run anything after it is gone (a re-pump it posted to the loop), and everything is released.
TEST_F(ChannelE2E, DetachWhileTheGuestStreams) {
  for (int round = 0; round < 3; ++round) {
    SCOPED_TRACE(round);
    Dom0 dom0;
    dom0.add(5);
    std::promise<void> connected;
    std::atomic<bool> got_error{false};
    std::thread guest([&] {
      fake::AsDomain g(5);
      front::Options o = guest_opts();
      o.timeout_ms = 500;  // dom0 goes away mid-transfer: give up quickly
      front::Channel ch(o);
      connected.set_value();
      auto r = ch.session().bulk_up(std::uint64_t{1} << 34U, 1, false);  // far more than we let it send
      got_error = !r.ok();
    });
    connected.get_future().wait();
    ASSERT_TRUE(eventually([&] { return dom0.stats(5)["bytes_in"].get<std::uint64_t>() > (8U << 20U); }));
    dom0.shutdown();  // stop + destroy on the loop thread, then the loop ends
    guest.join();
    EXPECT_TRUE(got_error.load());
  }
}

}  // namespace
}  // namespace gears
