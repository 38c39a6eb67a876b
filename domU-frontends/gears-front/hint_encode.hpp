#pragma once

#include <cstddef>
#include <string>
#include <string_view>
#include <variant>
#include <vector>

namespace gears::front {

// Text form ("class=gold,rate=10M,...", see common/hints) -> a TLV hint set, or the parser's message.
class EncodedHints {
 public:
  EncodedHints(std::vector<std::byte> v) : v_(std::move(v)) {}  // NOLINT(google-explicit-constructor)
  EncodedHints(std::string e) : v_(std::move(e)) {}             // NOLINT(google-explicit-constructor)
  [[nodiscard]] explicit operator bool() const { return std::holds_alternative<std::vector<std::byte>>(v_); }
  [[nodiscard]] const std::vector<std::byte>& operator*() const { return std::get<std::vector<std::byte>>(v_); }
  [[nodiscard]] const std::string& error() const { return std::get<std::string>(v_); }

 private:
  std::variant<std::vector<std::byte>, std::string> v_;
};

[[nodiscard]] EncodedHints encode_hint_text(std::string_view text);

}  // namespace gears::front
