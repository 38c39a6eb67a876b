// check_hint_text(): common/hints' text parser behind a length bound, with the parsed set as JSON.
#include "dom0/gearsd/hint_text.hpp"

#include <fmt/format.h>

namespace gears::daemon {

HintCheck check_hint_text(std::string_view text) {
  HintCheck r;
  if (text.size() > kMaxHintText) {
    r.error = fmt::format("hint text is {} bytes, limit {}", text.size(), kMaxHintText);
    return r;
  }
  const hints::ParseResult p = hints::parse_text(text);
  if (!p.ok()) {
    r.error = p.error().message();
    return r;
  }
  r.set = p.value();
  r.parsed = nlohmann::json::parse(hints::to_json(r.set), nullptr, /*allow_exceptions=*/false);
  if (r.parsed.is_discarded()) {  // to_json always emits valid JSON; never expected
    r.error = "internal error: hints::to_json produced invalid JSON";
    r.parsed = nullptr;
    return r;
  }
  r.ok = true;
  return r;
}

}  // namespace gears::daemon
