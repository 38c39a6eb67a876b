#include "dom0/gearsctl/client.hpp"

#include <poll.h>
#include <sys/socket.h>
#include <sys/un.h>

#include <cerrno>
#include <cstring>

#include <fmt/format.h>

namespace gears::ctl {

ControlClient::ControlClient(std::string path, std::chrono::milliseconds timeout)
    : path_(std::move(path)), timeout_(timeout) {
  sockaddr_un addr{};
  if (path_.empty() || path_.size() >= sizeof addr.sun_path) throw CtlError("socket path '" + path_ + "' is empty or too long");
  addr.sun_family = AF_UNIX;
  std::memcpy(addr.sun_path, path_.data(), path_.size());
  fd_.reset(::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0));
  if (!fd_) throw CtlError(fmt::format("socket: {}", std::strerror(errno)));
  if (::connect(fd_.get(), reinterpret_cast<const sockaddr*>(&addr), sizeof addr) != 0)
    throw CtlError(fmt::format("cannot reach gearsd at {}: {} (is gearsd running? see --socket)", path_,
                               std::strerror(errno)));
}

nlohmann::json ControlClient::request(const nlohmann::json& req) {
  const std::string line = req.dump() + "\n";
  std::size_t off = 0;
  while (off < line.size()) {
    const ssize_t n = ::send(fd_.get(), line.data() + off, line.size() - off, MSG_NOSIGNAL);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) throw CtlError(fmt::format("sending to gearsd at {}: {}", path_, std::strerror(errno)));
    off += static_cast<std::size_t>(n);
  }
  const auto deadline = std::chrono::steady_clock::now() + timeout_;
  for (;;) {
    if (const auto nl = in_.find('\n'); nl != std::string::npos) {
      auto resp = nlohmann::json::parse(in_.substr(0, nl), nullptr, false);
      in_.erase(0, nl + 1);
      if (resp.is_discarded() || !resp.is_object()) throw CtlError("gearsd sent a malformed response");
      return resp;
    }
    const auto left = std::chrono::duration_cast<std::chrono::milliseconds>(deadline - std::chrono::steady_clock::now());
    if (left.count() <= 0) throw CtlError(fmt::format("gearsd at {} did not answer within {} ms", path_, timeout_.count()));
    pollfd p{fd_.get(), POLLIN, 0};
    const int r = ::poll(&p, 1, static_cast<int>(left.count()));
    if (r < 0 && errno == EINTR) continue;
    if (r < 0) throw CtlError(fmt::format("poll: {}", std::strerror(errno)));
    if (r == 0) continue;
    char buf[65536];
    const ssize_t n = ::recv(fd_.get(), buf, sizeof buf, 0);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) throw CtlError(fmt::format("reading from gearsd at {}: {}", path_, std::strerror(errno)));
    if (n == 0) throw CtlError(fmt::format("gearsd at {} closed the connection", path_));
    if (in_.size() + static_cast<std::size_t>(n) > (64U << 20)) throw CtlError("gearsd response too large");
    in_.append(buf, static_cast<std::size_t>(n));
  }
}

}  // namespace gears::ctl
