// Xenstore nodes of one split device, written the way libxl writes them, and strict readers for keys a
// (hostile) peer wrote.
//
// Layout (docs/ARCHITECTURE.md): backend  /local/domain/<be_dom>/backend/<be_type>/<fe_dom>/<devid>
//                                frontend /local/domain/<fe_dom>/device/<fe_type>/<devid>
// A Gears backend keeps the frontend's standard type (e.g. fe_type "vbd", so xen-blkfront binds) and uses its
// own backend type (e.g. "gears-vbd"), which kernel backends never watch.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "common/util/result.hpp"
#include "common/xen/store.hpp"

namespace gears::xenbus {

struct DeviceNodes {
  std::string be_type;  // e.g. "gears-vbd"
  std::string fe_type;  // e.g. "vbd"
  domid_t fe_dom = 0;
  unsigned devid = 0;
  domid_t be_dom = 0;
  // Extra keys written into each directory on creation (e.g. backend "params", frontend "virtual-device").
  std::vector<std::pair<std::string, std::string>> be_keys, fe_keys;

  [[nodiscard]] std::string be_path() const;
  [[nodiscard]] std::string fe_path() const;
};

// Creates both directories in one transaction: frontend dir owned by the domU and readable by the backend
// domain, backend dir owned by the backend domain and readable by the domU; cross-links, `online`, and
// state Initialising on both sides. Idempotent: does nothing if both directories exist. Throws XenError.
void create_device_nodes(xen::Store& s, const DeviceNodes& n);
// Removes both directories (missing ones are fine).
void remove_device_nodes(xen::Store& s, const DeviceNodes& n);

// Strict decimal read of a peer-written key: digits only, at most 20 of them, value <= max.
// Missing key -> ENOENT; anything else wrong -> EPROTO (callers name the key in their log line).
[[nodiscard]] Result<std::uint64_t> read_uint(xen::Store& s, const std::string& path, std::uint64_t max);
// Same, with a default when the key is absent (a malformed key is still an error).
[[nodiscard]] Result<std::uint64_t> read_uint_or(xen::Store& s, const std::string& path, std::uint64_t max,
                                                 std::uint64_t dflt);
// Parses a decimal string the same way.
[[nodiscard]] Result<std::uint64_t> parse_uint(std::string_view text, std::uint64_t max);

// ---- Multi-queue (blkif and netif use the same keys) --------------------------------------------------------
// The backend advertises `multi-queue-max-queues` = M; a frontend that wants N > 1 queues writes
// `multi-queue-num-queues` = N (1 <= N <= M) and puts each queue's ring refs and event channels under
// `queue-<i>/`; with one queue (key absent, or N = 1) they sit directly in the frontend directory.
inline constexpr std::string_view kMaxQueuesKey = "multi-queue-max-queues";
inline constexpr std::string_view kNumQueuesKey = "multi-queue-num-queues";

// The frontend's queue count: 1 when absent; EPROTO when malformed, 0, or above `max_queues`.
[[nodiscard]] Result<unsigned> read_num_queues(xen::Store& s, const std::string& fe_path, unsigned max_queues);
// Where queue `i` of `n` keeps its keys.
[[nodiscard]] std::string queue_path(const std::string& fe_path, unsigned i, unsigned n);

}  // namespace gears::xenbus
