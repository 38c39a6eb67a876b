#include "common/xenbus/nodes.hpp"

#include <charconv>

#include "common/util/error.hpp"
#include "common/xenbus/state_machine.hpp"

namespace gears::xenbus {

std::string DeviceNodes::be_path() const {
  return "/local/domain/" + std::to_string(be_dom) + "/backend/" + be_type + "/" + std::to_string(fe_dom) + "/" +
         std::to_string(devid);
}

std::string DeviceNodes::fe_path() const {
  return "/local/domain/" + std::to_string(fe_dom) + "/device/" + fe_type + "/" + std::to_string(devid);
}

void create_device_nodes(xen::Store& s, const DeviceNodes& n) {
  const std::string be = n.be_path(), fe = n.fe_path();
  if (s.exists(be) && s.exists(fe)) return;
  const std::string init = std::to_string(static_cast<int>(XenbusStateInitialising));
  auto st = s.transact([&](xen::Transaction& t) -> Status {
    if (auto r = t.mkdir(fe); !r) return r;
    if (auto r = t.set_perms(fe, xen::Perms{n.fe_dom, xen::Access::None, {{n.be_dom, xen::Access::Read}}}); !r)
      return r;
    if (auto r = t.write(fe + "/backend", be); !r) return r;
    if (auto r = t.write(fe + "/backend-id", std::to_string(n.be_dom)); !r) return r;
    for (const auto& [k, v] : n.fe_keys)
      if (auto r = t.write(fe + "/" + k, v); !r) return r;
    if (auto r = t.write(fe + "/state", init); !r) return r;
    if (auto r = t.mkdir(be); !r) return r;
    if (auto r = t.set_perms(be, xen::Perms{n.be_dom, xen::Access::None, {{n.fe_dom, xen::Access::Read}}}); !r)
      return r;
    if (auto r = t.write(be + "/frontend", fe); !r) return r;
    for (const auto& [k, v] : n.be_keys)
      if (auto r = t.write(be + "/" + k, v); !r) return r;
    if (auto r = t.write(be + "/online", "1"); !r) return r;
    // Discovery treats a backend directory as complete once frontend-id exists: written last but one.
    if (auto r = t.write(be + "/frontend-id", std::to_string(n.fe_dom)); !r) return r;
    return t.write(be + "/state", init);
  });
  if (!st)
    throw XenError(n.be_type + ": cannot create xenstore nodes for dom " + std::to_string(n.fe_dom) + " dev " +
                       std::to_string(n.devid),
                   st.error().code);
}

void remove_device_nodes(xen::Store& s, const DeviceNodes& n) {
  (void)s.rm(n.be_path());
  (void)s.rm(n.fe_path());
}

Result<std::uint64_t> parse_uint(std::string_view t, std::uint64_t max) {
  std::uint64_t out = 0;
  auto [end, ec] = std::from_chars(t.data(), t.data() + t.size(), out);
  if (t.empty() || t.size() > 20 || ec != std::errc{} || end != t.data() + t.size() || out > max)
    return Error{EPROTO, "malformed or out-of-range number"};
  return out;
}

Result<std::uint64_t> read_uint(xen::Store& s, const std::string& path, std::uint64_t max) {
  auto v = s.read(path);
  if (!v) return Error{ENOENT, "xenstore key missing"};
  auto r = parse_uint(*v, max);
  if (!r) return Error{EPROTO, "xenstore key malformed or out of range"};
  return r;
}

Result<std::uint64_t> read_uint_or(xen::Store& s, const std::string& path, std::uint64_t max,
                                   std::uint64_t dflt) {
  auto v = s.read(path);
  if (!v) return dflt;
  auto r = parse_uint(*v, max);
  if (!r) return Error{EPROTO, "xenstore key malformed or out of range"};
  return r;
}

Result<unsigned> read_num_queues(xen::Store& s, const std::string& fe_path, unsigned max_queues) {
  auto v = s.read(fe_path + "/" + std::string(kNumQueuesKey));
  if (!v) return 1U;
  auto n = parse_uint(*v, max_queues);
  if (!n || *n == 0) return Error{EPROTO, "multi-queue-num-queues malformed, 0, or above multi-queue-max-queues"};
  return static_cast<unsigned>(*n);
}

std::string queue_path(const std::string& fe_path, unsigned i, unsigned n) {
  return n <= 1 ? fe_path : fe_path + "/queue-" + std::to_string(i);
}

}  // namespace gears::xenbus
