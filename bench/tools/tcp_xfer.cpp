// gears-tcp-xfer: the TCP peer for channel benchmarks (the stock netfront/netback vif path).
//   gears-tcp-xfer server [--port P]                       serves any number of sequential clients
//   gears-tcp-xfer client --host H [--port P] --mode up|down|rtt|msgs [--bytes N] [--count N] [--size B]
// Bulk data is the channel's deterministic stream (same seed -> same bytes) and both ends checksum it.
// The client prints one JSON object.
#include <arpa/inet.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/socket.h>
#include <unistd.h>

#include <CLI/CLI.hpp>
#include <algorithm>
#include <csignal>
#include <cstdio>
#include <cstring>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "common/channel/bulk.hpp"
#include "common/channel/session.hpp"

namespace {

using gears::channel::Checksum;
using gears::channel::PatternSource;

struct Fd {
  int fd = -1;
  explicit Fd(int f) : fd(f) {}
  ~Fd() {
    if (fd >= 0) ::close(fd);
  }
  Fd(const Fd&) = delete;
  Fd& operator=(const Fd&) = delete;
};

bool write_all(int fd, const void* p, std::size_t n) {
  const auto* c = static_cast<const char*>(p);
  while (n > 0) {
    const ssize_t w = ::write(fd, c, n);
    if (w <= 0) return false;
    c += w;
    n -= static_cast<std::size_t>(w);
  }
  return true;
}
bool read_all(int fd, void* p, std::size_t n) {
  auto* c = static_cast<char*>(p);
  while (n > 0) {
    const ssize_t r = ::read(fd, c, n);
    if (r <= 0) return false;
    c += r;
    n -= static_cast<std::size_t>(r);
  }
  return true;
}

// Request header: mode (1 up, 2 down, 3 rtt, 4 msgs), size/count, seed.
struct Req {
  std::uint64_t mode, a, b, seed;
};

void send_stream(int fd, std::uint64_t bytes, std::uint64_t seed, Checksum& sum) {
  PatternSource src(seed);
  while (bytes > 0) {
    auto c = src.next(std::min<std::uint64_t>(bytes, 64 * 1024));
    sum.update(c);
    if (!write_all(fd, c.data(), c.size())) throw std::runtime_error("tcp write failed");
    bytes -= c.size();
  }
}
void recv_stream(int fd, std::uint64_t bytes, Checksum& sum) {
  std::vector<std::byte> buf(64 * 1024);
  while (bytes > 0) {
    const ssize_t r = ::read(fd, buf.data(), std::min<std::uint64_t>(bytes, buf.size()));
    if (r <= 0) throw std::runtime_error("tcp read failed");
    sum.update(std::span<const std::byte>(buf.data(), static_cast<std::size_t>(r)));
    bytes -= static_cast<std::uint64_t>(r);
  }
}

void serve_one(int c) {
  int one = 1;
  ::setsockopt(c, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
  Req q{};
  if (!read_all(c, &q, sizeof q)) return;
  Checksum sum;
  std::uint64_t reply[2] = {0, 0};
  if (q.mode == 1) {
    recv_stream(c, q.a, sum);
    reply[0] = q.a;
    reply[1] = sum.digest();
    write_all(c, reply, sizeof reply);
  } else if (q.mode == 2) {
    send_stream(c, q.a, q.seed, sum);
  } else if (q.mode == 3) {
    std::uint64_t v = 0;
    for (std::uint64_t i = 0; i < q.a; ++i) {
      if (!read_all(c, &v, sizeof v) || !write_all(c, &v, sizeof v)) return;
    }
  } else if (q.mode == 4) {
    recv_stream(c, q.a * q.b, sum);
    reply[0] = q.a;
    reply[1] = sum.digest();
    write_all(c, reply, sizeof reply);
  }
}

int server(int port) {
  // A client killed mid-download (the lab's floods end so) must cost one connection, not the server: EPIPE, no signal.
  std::signal(SIGPIPE, SIG_IGN);
  Fd s(::socket(AF_INET, SOCK_STREAM, 0));
  int one = 1;
  ::setsockopt(s.fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_port = htons(static_cast<std::uint16_t>(port));
  a.sin_addr.s_addr = htonl(INADDR_ANY);
  if (::bind(s.fd, reinterpret_cast<sockaddr*>(&a), sizeof a) < 0 || ::listen(s.fd, 4) < 0) {
    std::perror("gears-tcp-xfer: bind/listen");
    return 1;
  }
  for (;;) {
    Fd c(::accept(s.fd, nullptr, nullptr));
    if (c.fd < 0) continue;
    try {
      serve_one(c.fd);
    } catch (const std::exception& e) {
      std::fprintf(stderr, "gears-tcp-xfer: %s\n", e.what());
    }
  }
}

int client(const std::string& host, int port, const std::string& mode, std::uint64_t bytes, std::uint64_t count,
           std::uint64_t size) {
  Fd s(::socket(AF_INET, SOCK_STREAM, 0));
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_port = htons(static_cast<std::uint16_t>(port));
  if (::inet_pton(AF_INET, host.c_str(), &a.sin_addr) != 1) {
    std::fprintf(stderr, "gears-tcp-xfer: bad host '%s'\n", host.c_str());
    return 2;
  }
  if (::connect(s.fd, reinterpret_cast<sockaddr*>(&a), sizeof a) < 0) {
    std::perror("gears-tcp-xfer: connect");
    return 1;
  }
  int one = 1;
  ::setsockopt(s.fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
  const std::uint64_t seed = 7;
  nlohmann::json out{{"peer", "tcp"}, {"mode", mode}};
  const std::uint64_t t0 = gears::channel::now_ns();
  Checksum sum;
  std::uint64_t reply[2] = {0, 0};
  if (mode == "up") {
    Req q{1, bytes, 0, seed};
    write_all(s.fd, &q, sizeof q);
    send_stream(s.fd, bytes, seed, sum);
    if (!read_all(s.fd, reply, sizeof reply)) throw std::runtime_error("no reply");
    out["match"] = reply[1] == sum.digest();
    out["bytes"] = bytes;
  } else if (mode == "down") {
    Req q{2, bytes, 0, seed};
    write_all(s.fd, &q, sizeof q);
    recv_stream(s.fd, bytes, sum);
    out["match"] = sum.digest() == gears::channel::expected_checksum(seed, bytes);
    out["bytes"] = bytes;
  } else if (mode == "rtt") {
    Req q{3, count, 0, 0};
    write_all(s.fd, &q, sizeof q);
    std::vector<double> us;
    for (std::uint64_t i = 0; i < count; ++i) {
      const std::uint64_t t = gears::channel::now_ns();
      std::uint64_t v = i;
      if (!write_all(s.fd, &v, sizeof v) || !read_all(s.fd, &v, sizeof v)) throw std::runtime_error("rtt io");
      us.push_back(static_cast<double>(gears::channel::now_ns() - t) / 1e3);
    }
    std::sort(us.begin(), us.end());
    out["rtt_us_median"] = us[us.size() / 2];
    out["rtt_us_p10"] = us[us.size() / 10];
    out["rtt_us_p90"] = us[us.size() * 9 / 10];
    out["match"] = true;
  } else if (mode == "msgs") {
    Req q{4, count, size, 0};
    write_all(s.fd, &q, sizeof q);
    std::vector<std::byte> m(size);
    for (std::uint64_t i = 0; i < count; ++i) {
      for (std::size_t k = 0; k < size; ++k) m[k] = static_cast<std::byte>((i + k) & 0xFFU);
      sum.update(m);
      if (!write_all(s.fd, m.data(), m.size())) throw std::runtime_error("msgs write");
    }
    if (!read_all(s.fd, reply, sizeof reply)) throw std::runtime_error("no reply");
    out["match"] = reply[1] == sum.digest() && reply[0] == count;
    out["count"] = count;
  } else {
    std::fprintf(stderr, "gears-tcp-xfer: unknown mode '%s' (up|down|rtt|msgs)\n", mode.c_str());
    return 2;
  }
  const double secs = static_cast<double>(gears::channel::now_ns() - t0) / 1e9;
  out["seconds"] = secs;
  if (mode == "up" || mode == "down") out["mb_s"] = static_cast<double>(bytes) / 1e6 / secs;
  if (mode == "msgs") out["msgs_s"] = static_cast<double>(count) / secs;
  std::printf("%s\n", out.dump().c_str());
  return out["match"].get<bool>() ? 0 : 3;
}

}  // namespace

int main(int argc, char** argv) {
  CLI::App app{"gears-tcp-xfer: TCP peer for Gears channel benchmarks"};
  app.require_subcommand(1);
  int port = 5201;
  auto* srv = app.add_subcommand("server", "serve clients");
  srv->add_option("--port", port);
  auto* cli = app.add_subcommand("client", "run one measurement");
  std::string host, mode = "up";
  std::uint64_t bytes = 64ULL << 20U, count = 1000, size = 64;
  cli->add_option("--host", host)->required();
  cli->add_option("--port", port);
  cli->add_option("--mode", mode);
  cli->add_option("--bytes", bytes);
  cli->add_option("--count", count);
  cli->add_option("--size", size);
  CLI11_PARSE(app, argc, argv);
  try {
    if (*srv) return server(port);
    return client(host, port, mode, bytes, count, size);
  } catch (const std::exception& e) {
    std::fprintf(stderr, "gears-tcp-xfer: %s\n", e.what());
    return 1;
  }
}
