// ControlClient: one connection to gearsd's control socket; one JSON line out, one JSON line back.
#pragma once

#include <chrono>
#include <stdexcept>
#include <string>

#include <nlohmann/json.hpp>

#include "dom0/gearsd/fd.hpp"

namespace gears::ctl {

// A failure a user can act on (daemon not running, timeout, ...). The message is complete and one line.
class CtlError : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

inline constexpr const char* kDefaultSocket = "/run/gears/gearsd.sock";

class ControlClient {
 public:
  explicit ControlClient(std::string path, std::chrono::milliseconds timeout = std::chrono::seconds(30));  // throws CtlError
  // Sends `req` and returns the response object (which may carry "ok": false). Throws CtlError on I/O failure.
  [[nodiscard]] nlohmann::json request(const nlohmann::json& req);

 private:
  std::string path_;
  std::chrono::milliseconds timeout_;
  daemon::Fd fd_;
  std::string in_;
};

}  // namespace gears::ctl
