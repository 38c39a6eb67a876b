// Little-endian wire helpers: explicit byte order for every multi-byte field we put on a wire.
#pragma once

#include <cstddef>
#include <cstdint>

namespace gears::le {

[[nodiscard]] constexpr std::uint16_t load16(const std::byte* p) {
  return static_cast<std::uint16_t>(std::to_integer<unsigned>(p[0]) |
                                    (std::to_integer<unsigned>(p[1]) << 8U));
}
[[nodiscard]] constexpr std::uint32_t load32(const std::byte* p) {
  return static_cast<std::uint32_t>(load16(p)) | (static_cast<std::uint32_t>(load16(p + 2)) << 16U);
}
[[nodiscard]] constexpr std::uint64_t load64(const std::byte* p) {
  return static_cast<std::uint64_t>(load32(p)) | (static_cast<std::uint64_t>(load32(p + 4)) << 32U);
}
constexpr void store16(std::byte* p, std::uint16_t v) {
  p[0] = static_cast<std::byte>(v & 0xFFU);
  p[1] = static_cast<std::byte>(v >> 8U);
}
constexpr void store32(std::byte* p, std::uint32_t v) {
  store16(p, static_cast<std::uint16_t>(v & 0xFFFFU));
  store16(p + 2, static_cast<std::uint16_t>(v >> 16U));
}
constexpr void store64(std::byte* p, std::uint64_t v) {
  store32(p, static_cast<std::uint32_t>(v & 0xFFFFFFFFU));
  store32(p + 4, static_cast<std::uint32_t>(v >> 32U));
}

}  // namespace gears::le
