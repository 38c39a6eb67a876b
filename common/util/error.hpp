// Setup-time errors: thrown with errno context, never on the data path.
#pragma once

#include <cerrno>
#include <cstring>
#include <stdexcept>
#include <string>

namespace gears {

class XenError : public std::runtime_error {
 public:
  XenError(const std::string& what, int err)
      : std::runtime_error(what + ": " + std::strerror(err) + " (errno " + std::to_string(err) + ")"),
        errno_(err) {}
  explicit XenError(const std::string& what) : XenError(what, errno) {}
  [[nodiscard]] int code() const { return errno_; }

 private:
  int errno_;
};

}  // namespace gears
