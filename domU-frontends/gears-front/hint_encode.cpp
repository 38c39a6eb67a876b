#include "domU-frontends/gears-front/hint_encode.hpp"

#include "common/hints/hints.hpp"

namespace gears::front {

EncodedHints encode_hint_text(std::string_view text) {
  auto parsed = hints::parse_text(text);
  if (!parsed) return parsed.error().message();
  std::vector<std::byte> out(hints::kMaxEncodedSize);
  auto n = hints::encode(parsed.value(), out);
  if (!n) return std::string(n.error().what);
  out.resize(*n);
  return out;
}

}  // namespace gears::front
