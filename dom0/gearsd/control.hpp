// ControlServer: newline-delimited JSON over a Unix stream socket (protocol: dom0/gearsd/README.md).
// Transport only: framing, bounds, malformed input and per-connection ordering. Verbs live in the Handler.
#pragma once

#include <cstddef>
#include <cstdint>
#include <functional>
#include <memory>
#include <string>

#include <nlohmann/json.hpp>

#include "dom0/gearsd/reactor.hpp"

namespace gears::daemon {

class ControlServer {
 public:
  // Sends the response for one request. Call at most once, on the loop thread; may be called after the
  // handler returned (asynchronous verbs). Calls for a connection that has gone away are dropped.
  using Reply = std::function<void(nlohmann::json response)>;
  // Receives only well-formed requests: a JSON object with a string "verb".
  using Handler = std::function<void(const nlohmann::json& request, Reply reply)>;

  static constexpr std::size_t kDefaultMaxRequest = 64 * 1024;  // bytes per line, newline excluded
  static constexpr std::size_t kMaxConnections = 64;

  // Binds `path` (creating its parent directory, replacing a stale socket; refusing when another server
  // answers there). Throws std::system_error / std::runtime_error on setup failure.
  ControlServer(Reactor& loop, std::string path, Handler handler, std::size_t max_request = kDefaultMaxRequest);
  ~ControlServer();  // closes every connection and unlinks the socket
  ControlServer(const ControlServer&) = delete;
  ControlServer& operator=(const ControlServer&) = delete;

  [[nodiscard]] const std::string& path() const;
  [[nodiscard]] std::size_t connections() const;

  struct Impl;

 private:
  std::shared_ptr<Impl> impl_;
};

// {"ok":false,"error":<message>}
[[nodiscard]] nlohmann::json error_response(const std::string& message);

// Serves GET /metrics (and /) over HTTP/1.0 on a TCP port for Prometheus scrapers; anything else gets 404.
class MetricsHttpServer {
 public:
  using Body = std::function<void(std::string body)>;  // call once, on the loop thread
  using Render = std::function<void(Body done)>;
  // port 0 picks an ephemeral port (see port()). Throws on setup failure.
  MetricsHttpServer(Reactor& loop, const std::string& address, std::uint16_t port, Render render);
  ~MetricsHttpServer();
  MetricsHttpServer(const MetricsHttpServer&) = delete;
  MetricsHttpServer& operator=(const MetricsHttpServer&) = delete;
  [[nodiscard]] std::uint16_t port() const;

  struct Impl;

 private:
  std::shared_ptr<Impl> impl_;
};

}  // namespace gears::daemon
