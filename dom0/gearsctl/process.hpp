// Running xl: spawn, optionally capture stdout, wait. stderr passes through to the user.
#pragma once

#include <string>
#include <vector>

namespace gears::ctl {

struct ProcessResult {
  int exit_code = 0;  // 127: could not be started; 128+N: killed by signal N
  std::string out;    // stdout, when captured
};

[[nodiscard]] ProcessResult run_process(const std::vector<std::string>& argv, bool capture_stdout);

}  // namespace gears::ctl
