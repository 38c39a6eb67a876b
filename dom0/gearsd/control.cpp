#include "dom0/gearsd/control.hpp"
#include "dom0/gearsd/metrics.hpp"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>

#include <cerrno>
#include <cstring>
#include <map>
#include <stdexcept>
#include <system_error>

#include <fmt/format.h>
#include <spdlog/spdlog.h>

namespace gears::daemon {

namespace {

[[noreturn]] void throw_errno(const std::string& what) {
  throw std::system_error(errno, std::generic_category(), what);
}

Fd listen_unix(const std::string& path) {
  sockaddr_un addr{};
  if (path.empty() || path.size() >= sizeof addr.sun_path)
    throw std::runtime_error(fmt::format("control socket path '{}' is empty or too long", path));
  std::memcpy(addr.sun_path, path.data(), path.size());
  addr.sun_family = AF_UNIX;

  if (const auto slash = path.rfind('/'); slash != std::string::npos && slash > 0) {
    const std::string dir = path.substr(0, slash);
    if (::mkdir(dir.c_str(), 0755) != 0 && errno != EEXIST) throw_errno("mkdir " + dir);
  }
  struct stat st {};
  if (::lstat(path.c_str(), &st) == 0) {
    if (!S_ISSOCK(st.st_mode)) throw std::runtime_error(path + " exists and is not a socket");
    Fd probe(::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0));
    if (probe && ::connect(probe.get(), reinterpret_cast<const sockaddr*>(&addr), sizeof addr) == 0)
      throw std::runtime_error("another server is listening on " + path);
    ::unlink(path.c_str());  // stale socket from a previous run
  }
  Fd fd(::socket(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0));
  if (!fd) throw_errno("socket(AF_UNIX)");
  if (::bind(fd.get(), reinterpret_cast<const sockaddr*>(&addr), sizeof addr) != 0) throw_errno("bind " + path);
  if (::chmod(path.c_str(), 0660) != 0) throw_errno("chmod " + path);
  if (::listen(fd.get(), 16) != 0) throw_errno("listen " + path);
  return fd;
}

Fd listen_tcp(const std::string& address, std::uint16_t port) {
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_port = htons(port);
  if (::inet_pton(AF_INET, address.c_str(), &addr.sin_addr) != 1)
    throw std::runtime_error(fmt::format("metrics address '{}' is not an IPv4 address", address));
  Fd fd(::socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0));
  if (!fd) throw_errno("socket(AF_INET)");
  const int one = 1;
  if (::setsockopt(fd.get(), SOL_SOCKET, SO_REUSEADDR, &one, sizeof one) != 0) throw_errno("SO_REUSEADDR");
  if (::bind(fd.get(), reinterpret_cast<const sockaddr*>(&addr), sizeof addr) != 0)
    throw_errno(fmt::format("bind {}:{}", address, port));
  if (::listen(fd.get(), 16) != 0) throw_errno("listen");
  return fd;
}

// Appends what is readable now. Returns false on EOF or a hard error.
bool read_available(int fd, std::string& in, std::size_t cap) {
  char buf[16384];
  while (in.size() < cap) {
    const ssize_t n = ::recv(fd, buf, sizeof buf, 0);
    if (n > 0) {
      in.append(buf, static_cast<std::size_t>(n));
      continue;
    }
    if (n < 0 && errno == EAGAIN) return true;
    if (n < 0 && errno == EINTR) continue;
    return false;
  }
  return true;
}

// Writes what the socket takes now. Returns false on a hard error.
bool write_available(int fd, std::string& out) {
  while (!out.empty()) {
    const ssize_t n = ::send(fd, out.data(), out.size(), MSG_NOSIGNAL);
    if (n > 0) {
      out.erase(0, static_cast<std::size_t>(n));
      continue;
    }
    if (n < 0 && errno == EAGAIN) return true;
    if (n < 0 && errno == EINTR) continue;
    return false;
  }
  return true;
}

}  // namespace

nlohmann::json error_response(const std::string& message) { return {{"ok", false}, {"error", message}}; }

// ---------------------------------------------------------------------------------------------------------------
// ControlServer

struct ControlServer::Impl : std::enable_shared_from_this<ControlServer::Impl> {
  struct Conn {
    Fd fd;
    WatchId watch = 0;
    std::string in, out;
    bool busy = false;         // a request is with the handler; later lines wait (responses stay in order)
    bool in_process = false;   // process() is on the stack for this connection
    bool peer_closed = false;  // read EOF; finish pending work, then close
    bool closing = false;      // close once `out` is flushed
  };

  Impl(Reactor& l, std::string p, Handler h, std::size_t max) : loop(l), path(std::move(p)), handler(std::move(h)), max_request(max) {}

  void start() {
    listener = listen_unix(path);
    auto w = loop.add_fd(listener.get(), EPOLLIN, [this](std::uint32_t) { on_accept(); });
    if (!w) throw std::system_error(w.error().code, std::generic_category(), std::string(w.error().what));
    listen_watch = w.value();
  }

  ~Impl() {
    for (auto& [id, c] : conns) loop.remove(c->watch);
    if (listener) {
      loop.remove(listen_watch);
      ::unlink(path.c_str());
    }
  }

  void on_accept() {
    for (;;) {
      Fd fd(::accept4(listener.get(), nullptr, nullptr, SOCK_NONBLOCK | SOCK_CLOEXEC));
      if (!fd) return;  // EAGAIN, or a transient error (EMFILE...) that a later readiness retries
      if (conns.size() >= kMaxConnections) {
        spdlog::warn("control: refusing connection: {} already open", conns.size());
        continue;
      }
      const std::uint64_t id = next_id++;
      auto c = std::make_unique<Conn>();
      c->fd = std::move(fd);
      auto w = loop.add_fd(c->fd.get(), EPOLLIN, [this, id](std::uint32_t ev) { on_event(id, ev); });
      if (!w) continue;
      c->watch = w.value();
      conns.emplace(id, std::move(c));
    }
  }

  Conn* get(std::uint64_t id) {
    auto it = conns.find(id);
    return it == conns.end() ? nullptr : it->second.get();
  }

  void on_event(std::uint64_t id, std::uint32_t ev) {
    Conn* c = get(id);
    if (!c) return;
    if (ev & (EPOLLHUP | EPOLLERR)) return close(id);
    if (ev & EPOLLOUT) {
      if (!write_available(c->fd.get(), c->out)) return close(id);
    }
    if ((ev & EPOLLIN) && !c->busy && !c->closing && !c->peer_closed) {
      // Read at most one line's worth beyond the limit: enough to tell an oversized request.
      if (!read_available(c->fd.get(), c->in, c->in.size() + max_request + 2)) c->peer_closed = true;
      process(*c, id);
    }
    settle(id);
  }

  // Hands complete lines to the handler, one at a time.
  void process(Conn& c, std::uint64_t id) {
    c.in_process = true;
    while (!c.busy && !c.closing) {
      std::size_t nl = c.in.find('\n');
      if (nl == std::string::npos) {
        if (c.in.size() > max_request) {
          send(c, error_response(fmt::format("request too large (limit {} bytes)", max_request)));
          c.closing = true;
          break;
        }
        if (!c.peer_closed || c.in.empty()) break;
        nl = c.in.size();  // the last request may lack its newline
        c.in.push_back('\n');
      }
      std::string line = c.in.substr(0, nl);
      c.in.erase(0, nl + 1);
      if (!line.empty() && line.back() == '\r') line.pop_back();
      if (line.find_first_not_of(" \t") == std::string::npos) continue;
      if (line.size() > max_request) {
        send(c, error_response(fmt::format("request too large (limit {} bytes)", max_request)));
        c.closing = true;
        break;
      }
      dispatch(c, id, line);
    }
    c.in_process = false;
  }

  void dispatch(Conn& c, std::uint64_t id, const std::string& line) {
    nlohmann::json req = nlohmann::json::parse(line, nullptr, /*allow_exceptions=*/false);
    if (req.is_discarded()) return send(c, error_response("malformed JSON"));
    if (!req.is_object()) return send(c, error_response("request must be a JSON object"));
    auto verb = req.find("verb");
    if (verb == req.end() || !verb->is_string())
      return send(c, error_response("request needs a string \"verb\""));
    nlohmann::json req_id = req.contains("id") ? req["id"] : nlohmann::json();
    c.busy = true;
    std::weak_ptr<Impl> self = weak_from_this();
    Reply reply = [self, id, req_id, used = false](nlohmann::json resp) mutable {
      if (used) return;
      used = true;
      auto impl = self.lock();
      if (!impl) return;
      Conn* conn = impl->get(id);
      if (!conn) return;
      if (!req_id.is_null() && resp.is_object()) resp["id"] = req_id;
      conn->busy = false;
      impl->send(*conn, resp);
      if (!conn->in_process) {
        impl->process(*conn, id);
        impl->settle(id);
      }
    };
    try {
      handler(req, std::move(reply));
    } catch (const std::exception& ex) {
      // A handler bug must not take the daemon down; answer if the handler did not.
      spdlog::error("control: verb '{}' threw: {}", verb->get<std::string>(), ex.what());
      if (c.busy) {
        c.busy = false;
        send(c, error_response(std::string("internal error: ") + ex.what()));
      }
    }
  }

  void send(Conn& c, const nlohmann::json& resp) {
    c.out += resp.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace);
    c.out += '\n';
  }

  // Flushes, then closes or re-arms the watch to match what the connection waits for.
  void settle(std::uint64_t id) {
    Conn* c = get(id);
    if (!c) return;
    if (!write_available(c->fd.get(), c->out)) return close(id);
    const bool idle = !c->busy && c->out.empty();
    if (idle && (c->closing || (c->peer_closed && c->in.empty()))) return close(id);
    std::uint32_t want = 0;
    if (!c->out.empty()) want |= EPOLLOUT;
    if (!c->busy && !c->closing && !c->peer_closed) want |= EPOLLIN;
    if (!loop.modify_fd(c->watch, want).ok()) close(id);
  }

  void close(std::uint64_t id) {
    auto it = conns.find(id);
    if (it == conns.end()) return;
    loop.remove(it->second->watch);
    conns.erase(it);
  }

  Reactor& loop;
  std::string path;
  Handler handler;
  std::size_t max_request;
  Fd listener;
  WatchId listen_watch = 0;
  std::map<std::uint64_t, std::unique_ptr<Conn>> conns;
  std::uint64_t next_id = 1;
};

ControlServer::ControlServer(Reactor& loop, std::string path, Handler handler, std::size_t max_request)
    : impl_(std::make_shared<Impl>(loop, std::move(path), std::move(handler), max_request)) {
  impl_->start();
}
ControlServer::~ControlServer() = default;
const std::string& ControlServer::path() const { return impl_->path; }
std::size_t ControlServer::connections() const { return impl_->conns.size(); }

// ---------------------------------------------------------------------------------------------------------------
// MetricsHttpServer

struct MetricsHttpServer::Impl : std::enable_shared_from_this<MetricsHttpServer::Impl> {
  static constexpr std::size_t kMaxHeader = 8192;
  struct Conn {
    Fd fd;
    WatchId watch = 0;
    std::string in, out;
    bool answered = false;  // the response is (being) produced; ignore further input
  };

  Impl(Reactor& l, Render r) : loop(l), render(std::move(r)) {}
  ~Impl() {
    for (auto& [id, c] : conns) loop.remove(c->watch);
    if (listener) loop.remove(listen_watch);
  }

  void start(const std::string& address, std::uint16_t p) {
    listener = listen_tcp(address, p);
    sockaddr_in addr{};
    socklen_t len = sizeof addr;
    if (::getsockname(listener.get(), reinterpret_cast<sockaddr*>(&addr), &len) != 0) throw_errno("getsockname");
    port = ntohs(addr.sin_port);
    auto w = loop.add_fd(listener.get(), EPOLLIN, [this](std::uint32_t) { on_accept(); });
    if (!w) throw std::system_error(w.error().code, std::generic_category(), std::string(w.error().what));
    listen_watch = w.value();
  }

  void on_accept() {
    for (;;) {
      Fd fd(::accept4(listener.get(), nullptr, nullptr, SOCK_NONBLOCK | SOCK_CLOEXEC));
      if (!fd) return;
      if (conns.size() >= ControlServer::kMaxConnections) continue;
      const std::uint64_t id = next_id++;
      auto c = std::make_unique<Conn>();
      c->fd = std::move(fd);
      auto w = loop.add_fd(c->fd.get(), EPOLLIN, [this, id](std::uint32_t ev) { on_event(id, ev); });
      if (!w) continue;
      c->watch = w.value();
      conns.emplace(id, std::move(c));
    }
  }

  void on_event(std::uint64_t id, std::uint32_t ev) {
    auto it = conns.find(id);
    if (it == conns.end()) return;
    Conn& c = *it->second;
    if (ev & (EPOLLHUP | EPOLLERR)) return close(id);
    if (ev & EPOLLOUT) {
      if (!write_available(c.fd.get(), c.out) || c.out.empty()) return close(id);  // HTTP/1.0: one response
      return;
    }
    if (c.answered) return;
    const bool open = read_available(c.fd.get(), c.in, kMaxHeader + 1);
    const bool complete = c.in.find("\r\n\r\n") != std::string::npos || c.in.find("\n\n") != std::string::npos;
    if (!complete && c.in.size() <= kMaxHeader && open) return;
    c.answered = true;
    if (!loop.modify_fd(c.watch, 0).ok()) return close(id);
    if (!complete) return respond(id, "400 Bad Request", "text/plain", "bad request\n");
    const std::string line = c.in.substr(0, c.in.find_first_of("\r\n"));
    if (line.rfind("GET /metrics ", 0) == 0 || line.rfind("GET / ", 0) == 0) {
      std::weak_ptr<Impl> self = weak_from_this();
      render([self, id](std::string body) {
        if (auto impl = self.lock()) impl->respond(id, "200 OK", std::string(kPrometheusContentType), body);
      });
      return;
    }
    respond(id, "404 Not Found", "text/plain", "try GET /metrics\n");
  }

  void respond(std::uint64_t id, const std::string& status, const std::string& type, const std::string& body) {
    auto it = conns.find(id);
    if (it == conns.end()) return;
    Conn& c = *it->second;
    c.out = fmt::format("HTTP/1.0 {}\r\nContent-Type: {}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{}",
                        status, type, body.size(), body);
    if (!write_available(c.fd.get(), c.out) || c.out.empty()) return close(id);
    if (!loop.modify_fd(c.watch, EPOLLOUT).ok()) close(id);
  }

  void close(std::uint64_t id) {
    auto it = conns.find(id);
    if (it == conns.end()) return;
    loop.remove(it->second->watch);
    conns.erase(it);
  }

  Reactor& loop;
  Render render;
  Fd listener;
  WatchId listen_watch = 0;
  std::uint16_t port = 0;
  std::map<std::uint64_t, std::unique_ptr<Conn>> conns;
  std::uint64_t next_id = 1;
};

MetricsHttpServer::MetricsHttpServer(Reactor& loop, const std::string& address, std::uint16_t port, Render render)
    : impl_(std::make_shared<Impl>(loop, std::move(render))) {
  impl_->start(address, port);
}
MetricsHttpServer::~MetricsHttpServer() = default;
std::uint16_t MetricsHttpServer::port() const { return impl_->port; }

}  // namespace gears::daemon
