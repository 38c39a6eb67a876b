// gears-vchan-xfer: exchanges a deterministic pseudo-random byte stream in BOTH directions at once over the
// stock libxenvchan, verifies what it receives and reports checksums and throughput.
//
//   domU:  gears-vchan-xfer server --peer 0    --path /local/domain/<domU>/data/vchan-test --bytes 64M
//   dom0:  gears-vchan-xfer client --peer <domU> --path /local/domain/<domU>/data/vchan-test --bytes 64M --json
//
// Stream contract (shared by both roles, so either side can be replaced by another implementation):
//   - direction client->server uses seed (seed ^ kC2S), server->client uses (seed ^ kS2C); bytes are the
//     little-endian 64-bit words of splitmix64(seed) in order, truncated to --bytes.
//   - checksum: h = 0xcbf29ce484222325; per 64-bit LE word w (the tail zero-padded): h = (h ^ w) * 0x100000001b3,
//     h ^= h >> 29. The sender's tx_checksum must equal the receiver's rx_checksum.
//   - after sending all its bytes AND receiving all the peer's bytes, each side sends one trailer byte 0xA5.
//     Receiving the peer's trailer means the peer has consumed everything: then the client closes first and the
//     server waits for that close (the server owns the shared pages).
//
// Small-message modes (--mode msgs|rtt), the libxenvchan peer of `gears-front bench msgs|rtt`. The SERVER (the
// side that creates the vchan, in the domU like gears-front) is the active, measuring side; the CLIENT (dom0, like
// gearsd) is passive and takes count and size from the header, so its --count/--size are ignored.
//   - header, active -> passive, right after the connection: 4 LE u64 words {kMagic, mode (2 msgs, 3 rtt), count,
//     size}.
//   - msgs: `count` messages of `size` bytes, each written with ONE libxenvchan_write call (continued only when
//     the ring is full; --batch B writes B messages per call instead, an extra data point, not the stock use);
//     byte k of message i is (i + k) & 0xff, as in gears-front. The passive side reads the
//     stream in chunks of up to 64 KiB, hashes it (XXH3-64, streaming, so chunking does not matter) and, after
//     count*size bytes, replies {messages received, checksum} (2 LE u64). msgs/s = count / (first message write
//     -> reply read), measured by the active side. match = both words equal the active side's.
//   - rtt: `count` times: the active side writes the LE u64 i (8 bytes), the passive side reads 8 bytes and
//     writes them back, the active side reads them; each round trip is timed (median/p10/p90 in microseconds,
//     sorted-index statistics as in gears-front). match = every pong carried its ping's sequence number.
//   - then the active side writes the trailer byte 0xA5; the passive side closes on it, the server waits for
//     that close (as in bulk).
//   Waiting is the stock idiom: a read/write that returns 0 has asked the peer for a notification, then poll()
//   on the event channel fd; nobody spins.
extern "C" {  // libxenvchan.h has no C++ guard of its own
#include <libxenvchan.h>
}
#include <poll.h>

#include <CLI/CLI.hpp>
#include <algorithm>
#include <array>
#include <chrono>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <optional>
#include <span>
#include <stdexcept>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include "common/channel/bulk.hpp"  // gears::channel::Checksum (XXH3-64), as gears-front and gearsd hash
#include "common/util/error.hpp"
#include "common/util/noncopyable.hpp"

namespace {

using Clock = std::chrono::steady_clock;
constexpr std::uint64_t kC2S = 0x6332735f73747265ULL;
constexpr std::uint64_t kS2C = 0x7332635f73747265ULL;
constexpr std::uint8_t kTrailer = 0xA5;
constexpr std::size_t kBlock = 64 * 1024;  // multiple of 8: generator and checker work per block

double seconds_since(Clock::time_point t0) {
  return std::chrono::duration<double>(Clock::now() - t0).count();
}

// splitmix64 stream of 64-bit words, emitted block by block.
class Stream {
 public:
  explicit Stream(std::uint64_t seed) : state_(seed) {}
  void fill(std::uint8_t* out, std::size_t len) {  // len is a multiple of 8, except for the last block
    for (std::size_t off = 0; off < len; off += 8) {
      const std::uint64_t w = next();
      std::uint8_t le[8];
      for (std::size_t i = 0; i < 8; ++i) le[i] = static_cast<std::uint8_t>(w >> (8 * i));
      std::memcpy(out + off, le, std::min<std::size_t>(8, len - off));
    }
  }

 private:
  std::uint64_t next() {
    std::uint64_t z = (state_ += 0x9e3779b97f4a7c15ULL);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
    return z ^ (z >> 31);
  }
  std::uint64_t state_;
};

class Checksum {
 public:
  void update(const std::uint8_t* p, std::size_t len) {  // same block boundaries as Stream::fill
    for (std::size_t off = 0; off < len; off += 8) {
      std::uint64_t w = 0;
      const std::size_t n = std::min<std::size_t>(8, len - off);
      for (std::size_t i = 0; i < n; ++i) w |= std::uint64_t{p[off + i]} << (8 * i);
      h_ = (h_ ^ w) * 0x100000001b3ULL;
      h_ ^= h_ >> 29;
    }
  }
  [[nodiscard]] std::uint64_t value() const { return h_; }

 private:
  std::uint64_t h_ = 0xcbf29ce484222325ULL;
};

// Owns one libxenvchan endpoint.
class Vchan : gears::NonCopyable {
 public:
  static Vchan server(int peer, const std::string& path, std::size_t ring) {
    libxenvchan* v = libxenvchan_server_init(nullptr, peer, path.c_str(), ring, ring);
    if (v == nullptr) throw gears::XenError("libxenvchan_server_init(" + path + ")");
    return Vchan(v);
  }
  // Retries until the server has published the channel, or `wait` runs out.
  static Vchan client(int peer, const std::string& path, double wait) {
    const auto t0 = Clock::now();
    for (;;) {
      if (libxenvchan* v = libxenvchan_client_init(nullptr, peer, path.c_str())) return Vchan(v);
      if (seconds_since(t0) > wait) throw gears::XenError("libxenvchan_client_init(" + path + ")");
      std::this_thread::sleep_for(std::chrono::milliseconds(200));
    }
  }
  Vchan(Vchan&& o) noexcept : v_(std::exchange(o.v_, nullptr)) {}
  Vchan& operator=(Vchan&& o) noexcept {
    if (this != &o) {
      reset();
      v_ = std::exchange(o.v_, nullptr);
    }
    return *this;
  }
  ~Vchan() { reset(); }

  [[nodiscard]] libxenvchan* get() const { return v_; }
  void reset() {
    if (v_ != nullptr) libxenvchan_close(std::exchange(v_, nullptr));
  }

 private:
  explicit Vchan(libxenvchan* v) : v_(v) { v_->blocking = 0; }
  libxenvchan* v_;
};

// Blocks until the vchan's event channel fires or `ms` passes; acknowledges the event.
void wait_event(libxenvchan* v, int ms) {
  pollfd p{libxenvchan_fd_for_select(v), POLLIN, 0};
  if (poll(&p, 1, ms) > 0 && (p.revents & POLLIN) != 0) {
    if (libxenvchan_wait(v) < 0) throw gears::XenError("libxenvchan_wait");
  }
}

struct Report {
  std::uint64_t tx_sum = 0, rx_sum = 0, rx_bad_words = 0;
  double tx_s = 0, rx_s = 0;
  bool complete = false;
};

Report exchange(libxenvchan* v, std::uint64_t bytes, std::uint64_t tx_seed, std::uint64_t rx_seed, double idle_limit) {
  Stream tx_gen(tx_seed), rx_gen(rx_seed);
  Checksum tx_sum, rx_sum;
  std::vector<std::uint8_t> tx_buf(kBlock), rx_buf(kBlock), expect(kBlock);
  std::uint64_t tx_pos = 0, rx_pos = 0;   // bytes of payload sent / received
  std::size_t tx_len = 0, tx_off = 0;     // current outgoing block and how much of it is written
  std::size_t rx_len = 0;                 // bytes in the current incoming block
  bool trailer_sent = false, trailer_seen = false;
  Report r;
  const auto t0 = Clock::now();
  auto last_progress = t0;

  while (!(trailer_sent && trailer_seen)) {
    bool progress = false;
    // Send.
    if (tx_pos < bytes) {
      if (tx_off == tx_len) {
        tx_len = static_cast<std::size_t>(std::min<std::uint64_t>(kBlock, bytes - tx_pos));
        tx_gen.fill(tx_buf.data(), tx_len);
        tx_sum.update(tx_buf.data(), tx_len);
        tx_off = 0;
      }
      const int n = libxenvchan_write(v, tx_buf.data() + tx_off, tx_len - tx_off);
      if (n < 0) throw gears::XenError("libxenvchan_write");
      if (n > 0) {
        tx_off += static_cast<std::size_t>(n);
        tx_pos += static_cast<std::uint64_t>(n);
        progress = true;
        if (tx_pos == bytes) r.tx_s = seconds_since(t0);
      }
    } else if (!trailer_sent && rx_pos == bytes) {
      const int n = libxenvchan_write(v, &kTrailer, 1);
      if (n < 0) throw gears::XenError("libxenvchan_write(trailer)");
      trailer_sent = n == 1;
      progress = progress || trailer_sent;
    }
    // Receive.
    if (rx_pos < bytes) {
      const std::size_t want = static_cast<std::size_t>(std::min<std::uint64_t>(kBlock, bytes - (rx_pos - rx_len)));
      const int n = libxenvchan_read(v, rx_buf.data() + rx_len, want - rx_len);
      if (n < 0) throw gears::XenError("libxenvchan_read");
      if (n > 0) {
        rx_len += static_cast<std::size_t>(n);
        rx_pos += static_cast<std::uint64_t>(n);
        progress = true;
        if (rx_len == want) {
          rx_gen.fill(expect.data(), want);
          rx_sum.update(rx_buf.data(), want);
          if (std::memcmp(rx_buf.data(), expect.data(), want) != 0) {  // rare: then count the bad words
            for (std::size_t off = 0; off < want; off += 8) {
              const std::size_t k = std::min<std::size_t>(8, want - off);
              if (std::memcmp(rx_buf.data() + off, expect.data() + off, k) != 0) ++r.rx_bad_words;
            }
          }
          rx_len = 0;
          if (rx_pos == bytes) r.rx_s = seconds_since(t0);
        }
      }
    } else if (!trailer_seen) {
      std::uint8_t t = 0;
      const int n = libxenvchan_read(v, &t, 1);
      if (n < 0) throw gears::XenError("libxenvchan_read(trailer)");
      if (n == 1) {
        if (t != kTrailer) throw std::runtime_error("bad trailer byte: the stream is longer than --bytes");
        trailer_seen = true;
        progress = true;
      }
    }
    if (progress) {
      last_progress = Clock::now();
      continue;
    }
    if (libxenvchan_is_open(v) == 0) {
      throw std::runtime_error("peer closed the vchan after " + std::to_string(rx_pos) + " of " +
                               std::to_string(bytes) + " bytes received, " + std::to_string(tx_pos) + " sent");
    }
    if (seconds_since(last_progress) > idle_limit) {
      throw std::runtime_error("no progress for " + std::to_string(idle_limit) + " s (received " +
                               std::to_string(rx_pos) + ", sent " + std::to_string(tx_pos) + ")");
    }
    wait_event(v, 100);  // the timeout only covers a lost wake-up; events drive the loop
  }
  r.tx_sum = tx_sum.value();
  r.rx_sum = rx_sum.value();
  r.complete = true;
  return r;
}

// ---- msgs / rtt -------------------------------------------------------------------------------------------

constexpr std::uint64_t kMagic = 0x31584756'73726165ULL;  // "earsVGX1" (LE bytes), an arbitrary tag
constexpr std::uint64_t kModeMsgs = 2, kModeRtt = 3;

void put_le64(std::uint8_t* p, std::uint64_t v) {
  for (std::size_t i = 0; i < 8; ++i) p[i] = static_cast<std::uint8_t>(v >> (8 * i));
}
std::uint64_t get_le64(const std::uint8_t* p) {
  std::uint64_t v = 0;
  for (std::size_t i = 0; i < 8; ++i) v |= std::uint64_t{p[i]} << (8 * i);
  return v;
}

// Blocking helpers on a non-blocking vchan: retry, sleep on the event channel when nothing moves, give up after
// `idle` seconds without progress or when the peer closes.
class Io {
 public:
  Io(libxenvchan* v, double idle) : v_(v), idle_(idle) {}

  // Writes all of p with as few libxenvchan_write calls as the ring allows (one, unless the ring is full).
  void write_all(const void* p, std::size_t len, const char* what) {
    const auto* c = static_cast<const std::uint8_t*>(p);
    auto last = Clock::now();
    while (len > 0) {
      const int n = libxenvchan_write(v_, c, len);
      if (n < 0) throw gears::XenError(std::string("libxenvchan_write(") + what + ")");
      if (n > 0) {
        c += n;
        len -= static_cast<std::size_t>(n);
        last = Clock::now();
        continue;
      }
      stall(last, what);
    }
  }
  // Reads exactly len bytes.
  void read_all(void* p, std::size_t len, const char* what) {
    auto* c = static_cast<std::uint8_t*>(p);
    while (len > 0) {
      const std::size_t n = read_some(c, len, what);
      c += n;
      len -= n;
    }
  }
  // Reads 1..len bytes (whatever is there, waiting for at least one).
  std::size_t read_some(void* p, std::size_t len, const char* what) {
    auto last = Clock::now();
    for (;;) {
      const int n = libxenvchan_read(v_, p, len);
      if (n < 0) throw gears::XenError(std::string("libxenvchan_read(") + what + ")");
      if (n > 0) return static_cast<std::size_t>(n);
      stall(last, what);
    }
  }

 private:
  void stall(Clock::time_point last, const char* what) {
    if (libxenvchan_is_open(v_) == 0) throw std::runtime_error(std::string("peer closed the vchan during ") + what);
    if (seconds_since(last) > idle_) {
      throw std::runtime_error("no progress for " + std::to_string(idle_) + " s during " + what);
    }
    wait_event(v_, 100);
  }
  libxenvchan* v_;
  double idle_;
};

struct SmallReport {
  std::uint64_t mode = 0, count = 0, size = 0;
  double seconds = 0;                                   // active: first message write -> reply (msgs), all (rtt)
  std::uint64_t checksum = 0;                           // msgs: what we sent (active) / received (passive)
  std::uint64_t peer_count = 0, peer_checksum = 0;      // msgs, active: the passive side's reply
  std::vector<double> rtt_us;                           // rtt, active: sorted
  bool match = false;
};

SmallReport run_active(libxenvchan* v, std::uint64_t mode, std::uint64_t count, std::uint64_t size, std::uint64_t batch,
                       double idle) {
  Io io(v, idle);
  SmallReport r;
  r.mode = mode;
  r.count = count;
  r.size = size;
  std::uint8_t hdr[32];
  put_le64(hdr, kMagic);
  put_le64(hdr + 8, mode);
  put_le64(hdr + 16, count);
  put_le64(hdr + 24, size);
  io.write_all(hdr, sizeof hdr, "header");
  if (mode == kModeMsgs) {
    std::vector<std::uint8_t> m(size * batch);  // `batch` messages per libxenvchan_write (1 = one each)
    gears::channel::Checksum sum;
    const auto t0 = Clock::now();
    for (std::uint64_t i = 0; i < count;) {
      std::size_t len = 0;
      for (std::uint64_t j = 0; j < batch && i < count; ++j, ++i) {
        for (std::size_t k = 0; k < size; ++k) m[len + k] = static_cast<std::uint8_t>((i + k) & 0xFFU);
        len += size;
      }
      sum.update(std::as_bytes(std::span(m.data(), len)));
      io.write_all(m.data(), len, "msgs");
    }
    std::uint8_t reply[16];
    io.read_all(reply, sizeof reply, "msgs reply");
    r.seconds = seconds_since(t0);
    r.checksum = sum.digest();
    r.peer_count = get_le64(reply);
    r.peer_checksum = get_le64(reply + 8);
    r.match = r.peer_count == count && r.peer_checksum == r.checksum;
  } else {
    r.rtt_us.reserve(count);
    r.match = true;
    const auto t0 = Clock::now();
    for (std::uint64_t i = 0; i < count; ++i) {
      std::uint8_t b[8];
      put_le64(b, i);
      const auto t = Clock::now();
      io.write_all(b, sizeof b, "ping");
      io.read_all(b, sizeof b, "pong");
      r.rtt_us.push_back(std::chrono::duration<double, std::micro>(Clock::now() - t).count());
      r.match = r.match && get_le64(b) == i;
    }
    r.seconds = seconds_since(t0);
    std::sort(r.rtt_us.begin(), r.rtt_us.end());
  }
  io.write_all(&kTrailer, 1, "trailer");
  return r;
}

SmallReport run_passive(libxenvchan* v, std::uint64_t want_mode, double idle) {
  Io io(v, idle);
  SmallReport r;
  std::uint8_t hdr[32];
  io.read_all(hdr, sizeof hdr, "header");
  if (get_le64(hdr) != kMagic) throw std::runtime_error("bad header: the server does not speak --mode msgs|rtt");
  r.mode = get_le64(hdr + 8);
  r.count = get_le64(hdr + 16);
  r.size = get_le64(hdr + 24);
  if (r.mode != want_mode) {
    throw std::runtime_error("the server runs mode " + std::to_string(r.mode) + ", we were given mode " +
                             std::to_string(want_mode));
  }
  const auto t0 = Clock::now();
  if (r.mode == kModeMsgs) {
    if (r.size == 0 || r.size > 65536) throw std::runtime_error("bad message size in the header");
    gears::channel::Checksum sum;
    std::vector<std::uint8_t> buf(kBlock);
    std::uint64_t left = r.count * r.size;
    while (left > 0) {
      const std::size_t n = io.read_some(buf.data(), static_cast<std::size_t>(std::min<std::uint64_t>(left, buf.size())),
                                         "msgs");
      sum.update(std::as_bytes(std::span(buf.data(), n)));
      left -= n;
    }
    r.checksum = sum.digest();
    std::uint8_t reply[16];
    put_le64(reply, r.count);  // every byte arrived, so every message did
    put_le64(reply + 8, r.checksum);
    io.write_all(reply, sizeof reply, "msgs reply");
  } else if (r.mode == kModeRtt) {
    for (std::uint64_t i = 0; i < r.count; ++i) {
      std::uint8_t b[8];
      io.read_all(b, sizeof b, "ping");
      io.write_all(b, sizeof b, "pong");
    }
  } else {
    throw std::runtime_error("unknown mode " + std::to_string(r.mode) + " in the header");
  }
  r.seconds = seconds_since(t0);
  std::uint8_t t = 0;
  io.read_all(&t, 1, "trailer");
  if (t != kTrailer) throw std::runtime_error("bad trailer byte after the last message");
  r.match = true;
  return r;
}

std::uint64_t parse_size(const std::string& s) {
  std::size_t used = 0;
  const unsigned long long v = std::stoull(s, &used, 0);
  const std::string suffix = s.substr(used);
  std::uint64_t mult = 1;
  if (suffix == "K" || suffix == "k" || suffix == "KiB") mult = 1ULL << 10;
  else if (suffix == "M" || suffix == "MiB") mult = 1ULL << 20;
  else if (suffix == "G" || suffix == "GiB") mult = 1ULL << 30;
  else if (!suffix.empty()) throw std::invalid_argument("bad size suffix in '" + s + "'");
  return v * mult;
}

}  // namespace

int main(int argc, char** argv) {
  CLI::App app{"gears-vchan-xfer: bidirectional libxenvchan transfer with checksums and throughput"};
  app.require_subcommand(1);
  std::string role;
  int peer = -1;
  std::string path;
  std::string bytes_s = "64M";
  std::string ring_s = "256K";
  std::uint64_t seed = 0x6765617273ULL;
  double wait = 60;
  double idle = 60;
  bool json = false;
  std::string mode = "bulk";
  std::uint64_t count = 100000;
  std::uint64_t msg_size = 64;
  std::uint64_t batch = 1;
  for (const char* r : {"server", "client"}) {
    CLI::App* s = app.add_subcommand(r, r == std::string("server")
                                            ? "create the vchan (gntalloc side; usually in the domU)"
                                            : "connect to the vchan (usually in dom0)");
    s->callback([&role, r] { role = r; });
    s->add_option("--peer", peer, "domid of the other end")->required();
    s->add_option("--path", path, "xenstore directory of the vchan")->required();
    s->add_option("--bytes", bytes_s, "payload per direction (suffix K, M, G)");
    s->add_option("--ring", ring_s, "server: minimum ring size per direction (suffix K, M)");
    s->add_option("--seed", seed, "stream seed (both ends must agree)");
    s->add_option("--wait", wait, "seconds to wait for the peer to appear");
    s->add_option("--idle-timeout", idle, "seconds without progress before giving up");
    s->add_flag("--json", json, "print one JSON object (for the lab and the benchmark harness)");
    s->add_option("--mode", mode, "bulk (both directions at once), msgs (one-way small messages) or rtt "
                                  "(ping/pong); in msgs/rtt the server measures")
        ->check(CLI::IsMember({"bulk", "msgs", "rtt"}));
    s->add_option("--count", count, "msgs/rtt, server: messages or round trips")->check(CLI::Range(1ULL, 1ULL << 40));
    s->add_option("--size", msg_size, "msgs, server: bytes per message")->check(CLI::Range(1, 65536));
    s->add_option("--batch", batch, "msgs, server: messages per libxenvchan_write (default 1: one write each)")
        ->check(CLI::Range(1, 4096));
  }
  CLI11_PARSE(app, argc, argv);

  try {
    const std::uint64_t bytes = parse_size(bytes_s);
    const std::size_t ring = parse_size(ring_s);
    const bool server = role == "server";
    std::optional<Vchan> vc;
    const auto t_setup = Clock::now();
    if (server) {
      vc.emplace(Vchan::server(peer, path, ring));
      while (libxenvchan_is_open(vc->get()) == 2) {  // 2 = no client yet
        if (seconds_since(t_setup) > wait) throw std::runtime_error("no client connected within --wait");
        wait_event(vc->get(), 200);
      }
    } else {
      vc.emplace(Vchan::client(peer, path, wait));
    }
    const double setup_s = seconds_since(t_setup);
    if (mode != "bulk") {
      const std::uint64_t m = mode == "msgs" ? kModeMsgs : kModeRtt;
      const SmallReport r = server ? run_active(vc->get(), m, count, m == kModeMsgs ? msg_size : 8,
                                                       m == kModeMsgs ? batch : 1, idle)
                                   : run_passive(vc->get(), m, idle);
      const std::size_t ring_rx = std::size_t{1} << vc->get()->read.order;
      const std::size_t ring_tx = std::size_t{1} << vc->get()->write.order;
      if (server) {
        const auto t_close = Clock::now();
        while (libxenvchan_is_open(vc->get()) == 1 && seconds_since(t_close) < 10) wait_event(vc->get(), 100);
      }
      vc.reset();
      const bool active = server;
      std::string body;
      char buf[512];
      if (r.mode == kModeMsgs) {
        std::snprintf(buf, sizeof buf,
                      "\"count\":%llu,\"size\":%llu,\"batch\":%llu,\"seconds\":%.6f,\"msgs_s\":%.1f,"
                      "\"checksum\":\"%016llx\"",
                      static_cast<unsigned long long>(r.count), static_cast<unsigned long long>(r.size),
                      static_cast<unsigned long long>(active ? batch : 0), r.seconds,
                      r.seconds > 0 ? static_cast<double>(r.count) / r.seconds : 0.0,
                      static_cast<unsigned long long>(r.checksum));
        body = buf;
        if (active) {
          std::snprintf(buf, sizeof buf, ",\"peer_count\":%llu,\"peer_checksum\":\"%016llx\"",
                        static_cast<unsigned long long>(r.peer_count), static_cast<unsigned long long>(r.peer_checksum));
          body += buf;
        }
      } else {
        std::snprintf(buf, sizeof buf, "\"count\":%llu,\"size\":8,\"seconds\":%.6f",
                      static_cast<unsigned long long>(r.count), r.seconds);
        body = buf;
        if (active && !r.rtt_us.empty()) {
          const auto& u = r.rtt_us;
          double sum = 0;
          for (const double x : u) sum += x;
          std::snprintf(buf, sizeof buf,
                        ",\"rtt_us_median\":%.3f,\"rtt_us_p10\":%.3f,\"rtt_us_p90\":%.3f,\"rtt_us_min\":%.3f,"
                        "\"rtt_us_max\":%.3f,\"rtt_us_mean\":%.3f",
                        u[u.size() / 2], u[u.size() / 10], u[u.size() * 9 / 10], u.front(), u.back(),
                        sum / static_cast<double>(u.size()));
          body += buf;
        }
      }
      if (json) {
        std::printf("{\"tool\":\"gears-vchan-xfer\",\"role\":\"%s\",\"mode\":\"%s\",\"active\":%s,\"peer\":%d,"
                    "\"path\":\"%s\",\"ring_bytes\":%zu,\"ring_rx_bytes\":%zu,\"ring_tx_bytes\":%zu,"
                    "\"setup_s\":%.3f,%s,\"match\":%s,\"ok\":%s}\n",
                    role.c_str(), mode.c_str(), active ? "true" : "false", peer, path.c_str(), ring, ring_rx, ring_tx,
                    setup_s, body.c_str(), r.match ? "true" : "false", r.match ? "true" : "false");
      } else {
        std::printf("%s (%s, %s): %s; %s\n", role.c_str(), mode.c_str(), active ? "active" : "passive", body.c_str(),
                    r.match ? "match" : "MISMATCH");
      }
      return r.match ? 0 : 1;
    }
    const Report r = exchange(vc->get(), bytes, seed ^ (server ? kS2C : kC2S), seed ^ (server ? kC2S : kS2C), idle);
    if (server) {  // let the client close first: it may still be reading our trailer from our pages
      const auto t_close = Clock::now();
      while (libxenvchan_is_open(vc->get()) == 1 && seconds_since(t_close) < 10) wait_event(vc->get(), 100);
    }
    vc.reset();

    const double mb = static_cast<double>(bytes) / 1e6;
    const double tx_mbps = r.tx_s > 0 ? mb / r.tx_s : 0;
    const double rx_mbps = r.rx_s > 0 ? mb / r.rx_s : 0;
    const bool ok = r.complete && r.rx_bad_words == 0;
    if (json) {
      std::printf(
          "{\"tool\":\"gears-vchan-xfer\",\"role\":\"%s\",\"peer\":%d,\"path\":\"%s\",\"bytes\":%llu,"
          "\"ring_bytes\":%zu,\"setup_s\":%.3f,\"tx_s\":%.3f,\"rx_s\":%.3f,\"tx_mbps\":%.2f,\"rx_mbps\":%.2f,"
          "\"tx_checksum\":\"%016llx\",\"rx_checksum\":\"%016llx\",\"rx_bad_words\":%llu,\"ok\":%s}\n",
          role.c_str(), peer, path.c_str(), static_cast<unsigned long long>(bytes), ring, setup_s, r.tx_s, r.rx_s,
          tx_mbps, rx_mbps, static_cast<unsigned long long>(r.tx_sum), static_cast<unsigned long long>(r.rx_sum),
          static_cast<unsigned long long>(r.rx_bad_words), ok ? "true" : "false");
    } else {
      std::printf("%s: %llu bytes each way; tx %.2f MB/s (%.2f s), rx %.2f MB/s (%.2f s); tx_checksum %016llx "
                  "rx_checksum %016llx; received stream %s\n",
                  role.c_str(), static_cast<unsigned long long>(bytes), tx_mbps, r.tx_s, rx_mbps, r.rx_s,
                  static_cast<unsigned long long>(r.tx_sum), static_cast<unsigned long long>(r.rx_sum),
                  ok ? "verified" : "CORRUPT");
    }
    return ok ? 0 : 1;
  } catch (const std::exception& e) {
    std::fprintf(stderr, "gears-vchan-xfer %s: %s\n", role.c_str(), e.what());
    return 2;
  }
}
