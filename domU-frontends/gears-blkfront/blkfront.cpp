#include "domU-frontends/gears-blkfront/blkfront.hpp"

#include <poll.h>

#include <cstring>
#include <vector>

namespace gears::blkfront {

Frontend::Frontend(Options opts) : opts_(opts) {
  const std::string fe = "device/vbd/" + std::to_string(opts_.devid);
  if (!store_.exists(fe + "/backend"))
    throw XenError("no vbd at " + fe + " (attach one from dom0: gearsctl attach <dom> vbd <devid> --param target=...)",
                   ENODEV);
  driver_.emplace(store_, fe, static_cast<xenbus::FrontendHooks&>(*this));
  if (auto s = driver_->connect(opts_.timeout_ms); !s)
    throw XenError(std::string("xenbus: ") + std::string(s.error().what) + " (state " +
                       std::string(xenbus::state_name(driver_->state())) + ")",
                   s.error().code);
}

Frontend::~Frontend() {
  if (driver_) driver_->close();
}

void Frontend::pump_store(int timeout_ms) {
  if (auto s = driver_->pump(timeout_ms); !s)
    throw XenError(std::string("xenbus: ") + std::string(s.error().what), s.error().code);
}

Status Frontend::setup(xen::Store& s, xen::StoreOps& t, const std::string& fe, const std::string& be, domid_t be_dom) {
  auto max_order = s.read_uint(be + "/max-ring-page-order");
  const unsigned order = max_order ? std::min<unsigned>(opts_.ring_page_order, static_cast<unsigned>(*max_order)) : 0;
  auto mi = s.read_uint(be + "/feature-max-indirect-segments");
  max_indirect_ = mi ? *mi : 0;
  const std::size_t pages = std::size_t{1} << order;
  try {
    ring_share_ = xen::GrantShare(sharer_, be_dom, pages, true);
    ring_ = std::make_unique<Ring>(ring_share_.data(), pages * xen::kPageSize);
    data_ = xen::GrantShare(sharer_, be_dom, opts_.data_pages, true);
    indirect_ = xen::GrantShare(sharer_, be_dom, 1, true);
    evtchn_ = xen::EventChannel::alloc_unbound(be_dom);
  } catch (const XenError& e) {
    disconnect();
    return Error{e.code(), "cannot grant the ring/data pages or allocate the event channel"};
  }
  if (order == 0) {
    if (auto r = t.write(fe + "/ring-ref", std::to_string(ring_share_.refs()[0])); !r) return r;
  } else {
    if (auto r = t.write(fe + "/ring-page-order", std::to_string(order)); !r) return r;
    for (std::size_t i = 0; i < pages; ++i)
      if (auto r = t.write(fe + "/ring-ref" + std::to_string(i), std::to_string(ring_share_.refs()[i])); !r) return r;
  }
  if (auto r = t.write(fe + "/protocol", "x86_64-abi"); !r) return r;
  if (auto r = t.write(fe + "/feature-persistent", opts_.persistent ? "1" : "0"); !r) return r;
  return t.write(fe + "/event-channel", std::to_string(evtchn_->port()));
}

Status Frontend::connected(xen::Store& s, const std::string& be) {
  auto n = s.read_uint(be + "/sectors");
  if (!n) return Error{EPROTO, "backend connected without `sectors`"};
  sectors_ = *n;
  return {};
}

void Frontend::disconnect() {
  evtchn_.reset();
  ring_.reset();
  ring_share_.reset();
  data_.reset();
  indirect_.reset();
}

Status Frontend::submit(const blkif_request& r) {
  if (!ring_) return Error{ENOTCONN, "not connected"};
  if (auto s = ring_->put_request(r); !s) return s;
  return ring_->push_requests(*evtchn_);
}

Result<blkif_response> Frontend::wait_response(int timeout_ms) {
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::milliseconds(timeout_ms);
  for (;;) {
    if (!ring_) return Error{ENOTCONN, "not connected"};
    std::optional<blkif_response> got;
    auto n = ring_->consume(1, [&](const blkif_response& r) { got = r; });
    if (!n) return n.error();
    if (got) return *got;
    auto more = ring_->final_check_for_responses();
    if (!more) return more.error();
    if (*more) continue;
    const auto left = std::chrono::duration_cast<std::chrono::milliseconds>(deadline - std::chrono::steady_clock::now());
    if (left.count() <= 0) return Error{ETIMEDOUT, "no response from the backend"};
    pollfd p{evtchn_->fd(), POLLIN, 0};
    if (::poll(&p, 1, static_cast<int>(std::min<long>(left.count(), 200))) > 0) (void)evtchn_->consume();
  }
}

Result<std::int16_t> Frontend::rw(std::uint8_t op, std::uint64_t sector, std::size_t first_page, std::size_t pages) {
  if (first_page + pages > opts_.data_pages || pages == 0) return Error{EINVAL, "pages out of the data area"};
  blkif_request r{};
  r.id = next_id_++;
  if (pages <= BLKIF_MAX_SEGMENTS_PER_REQUEST) {
    r.operation = op;
    r.nr_segments = static_cast<std::uint8_t>(pages);
    r.sector_number = sector;
    for (std::size_t i = 0; i < pages; ++i) r.seg[i] = {data_ref(first_page + i), 0, 7};
  } else {
    if (pages > max_indirect_ || pages > xen::kPageSize / sizeof(blkif_request_segment)) return Error{EINVAL, "too many pages for one request"};
    blkif_request_indirect ind{};
    ind.operation = BLKIF_OP_INDIRECT;
    ind.indirect_op = op;
    ind.nr_segments = static_cast<std::uint16_t>(pages);
    ind.id = r.id;
    ind.sector_number = sector;
    ind.indirect_grefs[0] = indirect_.refs()[0];
    auto* segs = reinterpret_cast<blkif_request_segment*>(indirect_.data());
    for (std::size_t i = 0; i < pages; ++i) segs[i] = {data_ref(first_page + i), 0, 7};
    std::memcpy(&r, &ind, sizeof ind);
  }
  if (auto s = submit(r); !s) return s.error();
  auto rsp = wait_response(opts_.timeout_ms);
  if (!rsp) return rsp.error();
  if (rsp->id != r.id) return Error{EPROTO, "response id differs"};
  return rsp->status;
}

Result<std::int16_t> Frontend::flush() {
  blkif_request r{};
  r.operation = BLKIF_OP_FLUSH_DISKCACHE;
  r.id = next_id_++;
  if (auto s = submit(r); !s) return s.error();
  auto rsp = wait_response(opts_.timeout_ms);
  if (!rsp) return rsp.error();
  return rsp->status;
}

bool Frontend::wait_closed_by_backend(int timeout_ms) {
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::milliseconds(timeout_ms);
  while (std::chrono::steady_clock::now() < deadline) {
    auto st = store_.read(driver_->be_path() + "/state");
    if (!st || *st != std::to_string(static_cast<int>(XenbusStateConnected))) return true;
    pump_store(100);
  }
  return false;
}

std::string Frontend::backend_error() {
  auto e = store_.read(driver_->be_path() + "/error");
  return e ? *e : "";
}

}  // namespace gears::blkfront
