// A userspace blkif frontend for tests: talks to a Gears vbd backend the way xen-blkfront does (xenbus
// handshake, multi-page ring, grants through gntalloc, one event channel), and can also misbehave on purpose
// (raw ring access) for lab.semblk.hostile. Runs in a domU (where the kernel's xen-blkfront must not own the
// device: unload it first) and in unit tests over the fake hypervisor. One thread.
#pragma once

#include <chrono>
#include <cstdint>
#include <memory>
#include <optional>
#include <span>
#include <string>

// clang-format off
#include <xen/io/blkif.h>
// clang-format on

#include "common/ring/xen_ring.hpp"
#include "common/xen/evtchn.hpp"
#include "common/xen/grant.hpp"
#include "common/xen/store.hpp"
#include "common/xenbus/driver.hpp"

namespace gears::blkfront {

struct Options {
  unsigned devid = 0;
  unsigned ring_page_order = 0;  // clamped to the backend's max-ring-page-order
  bool persistent = false;       // write feature-persistent = 1
  std::size_t data_pages = 64;   // granted once, used for every request's data
  int timeout_ms = 30000;
};

class Frontend : private xenbus::FrontendHooks {
 public:
  using Ring = ring::FrontRing<blkif_sring>;
  explicit Frontend(Options opts);  // connects or throws XenError
  ~Frontend() override;
  Frontend(const Frontend&) = delete;
  Frontend& operator=(const Frontend&) = delete;

  [[nodiscard]] std::uint64_t sectors() const { return sectors_; }
  [[nodiscard]] std::uint64_t max_indirect() const { return max_indirect_; }
  [[nodiscard]] std::span<std::byte> data() const { return data_.bytes(); }
  [[nodiscard]] grant_ref_t data_ref(std::size_t page) const { return data_.refs()[page]; }
  [[nodiscard]] Ring& ring() { return *ring_; }
  [[nodiscard]] std::span<std::byte> raw_ring() const { return ring_share_.bytes(); }

  // Queues a request, publishes it and notifies.
  [[nodiscard]] Status submit(const blkif_request& r);
  // The next response (waiting up to the timeout); ETIMEDOUT if none.
  [[nodiscard]] Result<blkif_response> wait_response(int timeout_ms);
  [[nodiscard]] Status kick() const { return evtchn_->notify(); }

  // Convenience: one synchronous read/write of `pages` data pages at `sector` (direct or indirect request).
  [[nodiscard]] Result<std::int16_t> rw(std::uint8_t op, std::uint64_t sector, std::size_t first_page,
                                        std::size_t pages);
  [[nodiscard]] Result<std::int16_t> flush();

  // True once the backend has left Connected (it closed us), within the timeout.
  [[nodiscard]] bool wait_closed_by_backend(int timeout_ms);
  [[nodiscard]] std::string backend_error();

 private:
  Status setup(xen::Store& s, xen::StoreOps& t, const std::string& fe_path, const std::string& be_path,
               domid_t be_dom) override;
  Status connected(xen::Store& s, const std::string& be_path) override;
  void disconnect() override;
  void pump_store(int timeout_ms);

  Options opts_;
  xen::Store store_;
  xen::GrantSharer sharer_;
  std::optional<xenbus::FrontendDriver> driver_;
  xen::GrantShare ring_share_, data_, indirect_;
  std::unique_ptr<Ring> ring_;
  std::optional<xen::EventChannel> evtchn_;
  std::uint64_t sectors_ = 0, max_indirect_ = 0;
  std::uint64_t next_id_ = 1;
};

}  // namespace gears::blkfront
