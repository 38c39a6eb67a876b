// `gearsctl create <cfg>`: validate the Gears keys, `xl create -p`, attach the Gears devices, `xl unpause`.
// On failure after the domain exists it is detached and destroyed, so nothing is left half set up.
#pragma once

#include <iosfwd>
#include <string>

namespace gears::ctl {

struct CreateOptions {
  std::string config;
  std::string socket;
  std::string xl = "xl";  // the xl binary (tests substitute a fake)
  bool dry_run = false;
  bool json = false;
};

// Exit codes: 0 done; 1 a step failed (already cleaned up); 2 bad config (nothing was changed).
[[nodiscard]] int run_create(const CreateOptions& opts, std::ostream& out, std::ostream& err);

}  // namespace gears::ctl
