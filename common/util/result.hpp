// Result types for the data path. Setup code throws (gears::XenError); hot paths return these.
#pragma once

#include <cerrno>
#include <string_view>
#include <utility>
#include <variant>

namespace gears {

// An error on the data path: an errno-style code plus a static description.
struct Error {
  int code = 0;                 // errno value, or EPROTO for protocol violations
  std::string_view what = {};   // static storage only; never owns
};

// Success or an Error. Discarding one is a compile error under -Werror.
class [[nodiscard]] Status {
 public:
  constexpr Status() = default;
  constexpr Status(Error e) : err_(e), failed_(true) {}  // NOLINT(google-explicit-constructor)
  [[nodiscard]] constexpr bool ok() const { return !failed_; }
  constexpr explicit operator bool() const { return ok(); }
  [[nodiscard]] constexpr const Error& error() const { return err_; }

 private:
  Error err_{};
  bool failed_ = false;
};

template <class T>
class [[nodiscard]] Result {
 public:
  Result(T v) : v_(std::move(v)) {}       // NOLINT(google-explicit-constructor)
  Result(Error e) : v_(e) {}              // NOLINT(google-explicit-constructor)
  [[nodiscard]] bool ok() const { return std::holds_alternative<T>(v_); }
  explicit operator bool() const { return ok(); }
  [[nodiscard]] T& value() & { return std::get<T>(v_); }
  [[nodiscard]] const T& value() const& { return std::get<T>(v_); }
  [[nodiscard]] T&& value() && { return std::get<T>(std::move(v_)); }
  [[nodiscard]] const Error& error() const { return std::get<Error>(v_); }
  T* operator->() { return &value(); }
  T& operator*() { return value(); }

 private:
  std::variant<T, Error> v_;
};

inline Error errno_error(std::string_view what) { return Error{errno, what}; }

}  // namespace gears
