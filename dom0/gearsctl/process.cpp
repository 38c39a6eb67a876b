#include "dom0/gearsctl/process.hpp"

#include <fcntl.h>
#include <spawn.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>

#include "dom0/gearsd/fd.hpp"

extern char** environ;

namespace gears::ctl {

ProcessResult run_process(const std::vector<std::string>& argv, bool capture_stdout) {
  ProcessResult r;
  if (argv.empty()) return {127, {}};
  std::vector<char*> args;
  for (const auto& a : argv) args.push_back(const_cast<char*>(a.c_str()));
  args.push_back(nullptr);

  daemon::Fd rd, wr;
  if (capture_stdout) {
    int p[2];
    if (::pipe2(p, O_CLOEXEC) != 0) return {127, {}};
    rd.reset(p[0]);
    wr.reset(p[1]);
  }
  posix_spawn_file_actions_t fa;
  posix_spawn_file_actions_init(&fa);
  if (capture_stdout) posix_spawn_file_actions_adddup2(&fa, wr.get(), STDOUT_FILENO);
  pid_t pid = 0;
  const int rc = ::posix_spawnp(&pid, args[0], &fa, nullptr, args.data(), environ);
  posix_spawn_file_actions_destroy(&fa);
  if (rc != 0) return {127, {}};
  wr.reset();
  if (capture_stdout) {
    char buf[4096];
    for (;;) {
      const ssize_t n = ::read(rd.get(), buf, sizeof buf);
      if (n < 0 && errno == EINTR) continue;
      if (n <= 0) break;
      r.out.append(buf, static_cast<std::size_t>(n));
    }
  }
  int status = 0;
  while (::waitpid(pid, &status, 0) < 0) {
    if (errno != EINTR) return {127, r.out};
  }
  r.exit_code = WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
  return r;
}

}  // namespace gears::ctl
