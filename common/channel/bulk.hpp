// Bulk-mode data: a deterministic byte stream both ends can produce or check, and its checksum.
#pragma once

#include <xxhash.h>

#include <cstddef>
#include <cstdint>
#include <memory>
#include <span>
#include <vector>

namespace gears::channel {

// Byte o of the stream for `seed` is pattern(seed)[o % kPatternBytes]. The pattern length is not a
// multiple of any frame size, so consecutive frames carry different bytes.
class PatternSource {
 public:
  static constexpr std::size_t kPatternBytes = (1U << 20U) + 4099U;

  explicit PatternSource(std::uint64_t seed) : pattern_(kPatternBytes) {
    std::uint64_t x = seed ^ 0x9E3779B97F4A7C15ULL;
    for (std::size_t i = 0; i < kPatternBytes; i += 8) {
      x += 0x9E3779B97F4A7C15ULL;  // splitmix64
      std::uint64_t z = x;
      z = (z ^ (z >> 30U)) * 0xBF58476D1CE4E5B9ULL;
      z = (z ^ (z >> 27U)) * 0x94D049BB133111EBULL;
      z ^= z >> 31U;
      for (std::size_t b = 0; b < 8 && i + b < kPatternBytes; ++b)
        pattern_[i + b] = static_cast<std::byte>((z >> (8U * b)) & 0xFFU);
    }
  }
  // The next up-to-n contiguous bytes of the stream (shorter at the pattern's end).
  [[nodiscard]] std::span<const std::byte> next(std::size_t n) {
    const std::size_t left = kPatternBytes - pos_;
    const std::size_t k = n < left ? n : left;
    std::span<const std::byte> out(pattern_.data() + pos_, k);
    pos_ = (pos_ + k) % kPatternBytes;
    return out;
  }
  // Step back n bytes (n <= kPatternBytes), e.g. after a chunk could not be sent.
  void rewind(std::size_t n) { pos_ = (pos_ + kPatternBytes - n) % kPatternBytes; }

 private:
  std::vector<std::byte> pattern_;
  std::size_t pos_ = 0;
};

// Streaming XXH64 (libxxhash). Scalar on purpose: under the lab's TCG, SIMD (XXH3) is emulated and
// measured ~3x slower than the transfer it checks; on hardware both run at many GB/s.
class Checksum {
 public:
  Checksum() : st_(XXH64_createState(), &XXH64_freeState) { reset(); }
  void reset() { XXH64_reset(st_.get(), 0); }
  void update(std::span<const std::byte> b) { XXH64_update(st_.get(), b.data(), b.size()); }
  [[nodiscard]] std::uint64_t digest() const { return XXH64_digest(st_.get()); }

 private:
  std::unique_ptr<XXH64_state_t, decltype(&XXH64_freeState)> st_;
};

// Checksum of the first `bytes` bytes of stream(seed), computed locally.
[[nodiscard]] inline std::uint64_t expected_checksum(std::uint64_t seed, std::uint64_t bytes) {
  PatternSource src(seed);
  Checksum c;
  while (bytes > 0) {
    auto chunk = src.next(bytes < (1U << 20U) ? bytes : (1U << 20U));
    c.update(chunk);
    bytes -= chunk.size();
  }
  return c.digest();
}

}  // namespace gears::channel
