#include "dom0/backends/blk/attribution.hpp"

#include <fmt/format.h>

namespace gears::blk {

std::int32_t Attribution::look(std::uint32_t dom, std::uint32_t q, std::int64_t now_ns) {
  if (hints_ == nullptr) return -1;
  const auto oracle = hints_->process_oracle();
  if (!oracle) return -1;
  const auto who = oracle->submitter(dom, q, now_ns);
  return who ? index_of(*who) : -1;
}

std::int32_t Attribution::index_of(const daemon::GuestProcess& p) {
  const auto key = std::make_pair(p.pid, p.pid >= 0 ? 0 : p.as);  // a process may exec: pid is the identity
  if (auto it = by_key_.find(key); it != by_key_.end()) {
    procs_[static_cast<std::size_t>(it->second)].who.comm = p.comm;  // latest name (after exec)
    return it->second;
  }
  if (procs_.size() >= kMaxProcesses) {
    const auto other = std::make_pair(std::int32_t{-2}, std::uint64_t{0});
    if (auto it = by_key_.find(other); it != by_key_.end()) return it->second;
    procs_.push_back({daemon::GuestProcess{-2, "other", 0}});
    return by_key_[other] = static_cast<std::int32_t>(procs_.size() - 1);
  }
  procs_.push_back({p});
  return by_key_[key] = static_cast<std::int32_t>(procs_.size() - 1);
}

void Attribution::account(std::int32_t proc, bool write, std::uint64_t bytes) {
  if (proc < 0 || static_cast<std::size_t>(proc) >= procs_.size()) {
    ++unattributed_;
    return;
  }
  ++attributed_;
  Proc& p = procs_[static_cast<std::size_t>(proc)];
  ++p.reqs;
  (write ? p.bytes_written : p.bytes_read) += bytes;
}

nlohmann::json Attribution::to_json() const {
  nlohmann::json out = nlohmann::json::object();
  for (const auto& p : procs_) {
    const std::string name = p.who.pid >= 0 ? fmt::format("{} {}", p.who.pid, p.who.comm)
                             : p.who.pid == -2 ? std::string("other")
                                               : fmt::format("as:{:x}", p.who.as);
    out[name] = {{"pid", p.who.pid},
                 {"comm", p.who.comm},
                 {"reqs", p.reqs},
                 {"bytes", p.bytes_read + p.bytes_written},
                 {"bytes_read", p.bytes_read},
                 {"bytes_written", p.bytes_written}};
  }
  return out;
}

}  // namespace gears::blk
