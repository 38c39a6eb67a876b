#include "tests/fuzz/fuzz_entries.hpp"

#include <cstdlib>
#include <cstring>
#include <span>
#include <string_view>
#include <vector>

#include "common/hints/hints.hpp"
#include "common/ring/le.hpp"
#include "common/ring/stream_ring.hpp"

namespace gears::fuzz {
namespace {

void require(bool ok) {
  if (!ok) std::abort();
}

void check_accepted(const hints::HintSet& h) {
  std::vector<std::byte> buf(hints::kMaxEncodedSize);
  auto n = hints::encode(h, buf);
  require(n.ok());
  require(*n == hints::encoded_size(h));
  auto back = hints::decode(std::span(buf).first(*n));
  require(back.ok() && *back == h);
  auto text = hints::parse_text(hints::to_string(h));
  require(text.ok() && text.value() == h);
  require(!hints::to_json(h).empty());
}

// Consumes bytes from the fuzz input.
class Input {
 public:
  Input(const std::uint8_t* d, std::size_t n) : d_(d), n_(n) {}
  [[nodiscard]] bool empty() const { return off_ >= n_; }
  std::uint8_t u8() { return off_ < n_ ? d_[off_++] : 0; }
  std::uint32_t u32() {
    std::uint32_t v = 0;
    for (int i = 0; i < 4; ++i) v |= static_cast<std::uint32_t>(u8()) << (8 * i);
    return v;
  }

 private:
  const std::uint8_t* d_;
  std::size_t n_;
  std::size_t off_ = 0;
};

}  // namespace

int hints_decode(const std::uint8_t* data, std::size_t size) {
  auto r = hints::decode({reinterpret_cast<const std::byte*>(data), size});
  if (r.ok()) check_accepted(*r);
  return 0;
}

int hints_text(const std::uint8_t* data, std::size_t size) {
  auto r = hints::parse_text({reinterpret_cast<const char*>(data), size});
  if (r.ok()) {
    check_accepted(r.value());
  } else {
    require(!r.error().why.empty());
  }
  return 0;
}

int stream_consumer(const std::uint8_t* data, std::size_t size) {
  constexpr std::uint32_t kMaxFrame = 512;
  alignas(4096) static std::byte region[ring::stream_region_bytes(1)];
  std::memset(region, 0, sizeof region);
  ring::stream_ring_format(region, kMaxFrame);
  auto& hdr = *reinterpret_cast<ring::StreamRingHeader*>(region);
  std::byte* ring_data = region + ring::kStreamPageSize;
  Input in(data, size);
  ring::StreamConsumer c(std::span<std::byte>(region), ring::PollNotifier{}, kMaxFrame);
  std::vector<std::byte> payload(kMaxFrame);
  std::uint64_t consumed = 0;
  while (!in.empty()) {
    const std::uint8_t op = in.u8();
    switch (op % 8) {
      case 0:  // hostile producer: arbitrary prod
        hdr.prod = in.u32();
        break;
      case 1:  // producer advances prod by a small amount
        hdr.prod += in.u8();
        break;
      case 2: {  // producer writes bytes (possibly a frame header) at some offset
        const std::uint32_t off = in.u32() & (c.capacity() - 1);
        const std::size_t n = in.u8() % 16;
        for (std::size_t i = 0; i < n; ++i)
          ring_data[(off + i) & (c.capacity() - 1)] = static_cast<std::byte>(in.u8());
        break;
      }
      case 3: {
        auto r = c.read_frame(payload);
        if (r.ok() && r->has_value()) {
          require((*r)->len <= kMaxFrame);
          consumed += ring::kFrameHeaderSize + (*r)->len;
        }
        if (!r.ok()) require(r.error().code == EPROTO);
        break;
      }
      case 4: {
        std::vector<std::byte> out(in.u8());
        auto r = c.read(out);
        if (r.ok()) {
          require(*r <= out.size());
          consumed += *r;
        }
        break;
      }
      case 5: {
        auto a = c.available();
        if (a.ok()) require(*a <= c.capacity());
        break;
      }
      case 6: {
        std::size_t n = 0;
        auto r = c.read_frames(payload, in.u8(), [&](const ring::FrameHeader& h, std::span<const std::byte> p) {
          require(h.len == p.size() && h.len <= kMaxFrame);
          consumed += ring::kFrameHeaderSize + h.len;
          ++n;
        });
        if (r.ok()) require(*r == n);
        break;
      }
      default: {
        auto w = c.prepare_wait();
        if (!w.ok()) require(w.error().code == EPROTO);
        break;
      }
    }
    // The consumer's published index only ever moves by what it consumed.
    require(hdr.cons == static_cast<std::uint32_t>(consumed));
  }
  return 0;
}

}  // namespace gears::fuzz
