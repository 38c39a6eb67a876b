#include "domU-frontends/netfront-test/netfront.hpp"

#include <poll.h>

#include <cstring>
#include <thread>

#include "common/ring/shared_mem.hpp"

namespace gears::netfront {

TestNetfront::TestNetfront(xen::Store& store, std::string fe_path, NetfrontFeatures features)
    : store_(store),
      fe_path_(std::move(fe_path)),
      driver_(store, fe_path_, static_cast<xenbus::FrontendHooks&>(*this)),
      features_(features) {}

TestNetfront::~TestNetfront() { disconnect(); }

bool TestNetfront::closed_by_backend() const {
  auto s = store_.read(driver_.be_path() + "/state");
  return s && (*s == "5" || *s == "6");
}

bool TestNetfront::connect(std::chrono::milliseconds timeout) {
  if (!driver_.start()) return false;
  const auto deadline = std::chrono::steady_clock::now() + timeout;
  while (!connected()) {
    if (std::chrono::steady_clock::now() > deadline) return false;
    pollfd p{store_.fd(), POLLIN, 0};
    (void)::poll(&p, 1, 50);
    pump_store();
  }
  return true;
}

void TestNetfront::pump_store() {
  for (;;) {
    auto ev = store_.read_watch();
    if (!ev) break;
    (void)driver_.on_watch(*ev);
  }
}

Status TestNetfront::setup(xen::Store&, xen::StoreOps& t, const std::string& fe, const std::string&, domid_t be_dom) {
  try {
    tx_ring_page_ = xen::GrantShare(sharer_, be_dom, 1);
    rx_ring_page_ = xen::GrantShare(sharer_, be_dom, 1);
    tx_data_ = xen::GrantShare(sharer_, be_dom, kDataPages, false);
    rx_data_ = xen::GrantShare(sharer_, be_dom, kDataPages, true);
    tx_.emplace(tx_ring_page_.data(), 4096);
    rx_.emplace(rx_ring_page_.data(), 4096);
    ev_tx_ = xen::EventChannel::alloc_unbound(be_dom);
    ev_rx_ = xen::EventChannel::alloc_unbound(be_dom);
  } catch (const std::exception&) {
    return Error{EIO, "netfront: cannot share rings"};
  }
  rx_posted_.assign(kDataPages, false);
  rx_slot_page_.assign(rx_->size(), 0);
  auto b = [](bool v) { return std::string(v ? "1" : "0"); };
  const std::pair<std::string, std::string> keys[] = {
      {"tx-ring-ref", std::to_string(tx_ring_page_.refs()[0])},
      {"rx-ring-ref", std::to_string(rx_ring_page_.refs()[0])},
      {"event-channel-tx", std::to_string(ev_tx_->port())},
      {"event-channel-rx", std::to_string(ev_rx_->port())},
      {"request-rx-copy", "1"},
      {"feature-rx-notify", "1"},
      {"feature-sg", b(features_.sg)},
      {"feature-no-csum-offload", b(!features_.csum)},
      {"feature-ipv6-csum-offload", b(features_.ipv6_csum)},
      {"feature-gso-tcpv4", b(features_.gso4)},
      {"feature-gso-tcpv6", b(features_.gso6)},
  };
  for (const auto& [k, v] : keys)
    if (auto s = t.write(fe + "/" + k, v); !s) return s;
  return {};
}

Status TestNetfront::connected(xen::Store&, const std::string&) { return post_rx(features_.rx_initial); }

void TestNetfront::disconnect() {
  tx_.reset();
  rx_.reset();
  ev_tx_.reset();
  ev_rx_.reset();
  tx_data_.reset();
  rx_data_.reset();
  tx_ring_page_.reset();
  rx_ring_page_.reset();
}

Status TestNetfront::send(std::span<const std::byte> frame, std::uint16_t flags) {
  if (!tx_) return Error{ENOTCONN, "netfront: not connected"};
  std::vector<netif_tx_request_t> slots;
  std::size_t off = 0;
  do {
    const std::size_t n = std::min<std::size_t>(4096, frame.size() - off);
    const std::size_t page = next_tx_page_++ % kDataPages;
    std::memcpy(tx_page(page).data(), frame.data() + off, n);
    netif_tx_request_t r{};
    r.gref = tx_ref(page);
    r.offset = 0;
    r.id = static_cast<std::uint16_t>(page);
    r.size = static_cast<std::uint16_t>(off == 0 ? frame.size() : n);
    r.flags = static_cast<std::uint16_t>(off == 0 ? flags : 0);
    off += n;
    if (off < frame.size()) r.flags |= NETTXF_more_data;
    slots.push_back(r);
  } while (off < frame.size());
  return push_raw(slots);
}

Status TestNetfront::push_raw(std::span<const netif_tx_request_t> slots) {
  if (!tx_) return Error{ENOTCONN, "netfront: not connected"};
  for (const auto& s : slots) {
    while (tx_->full()) {
      if (reap_tx() == 0) std::this_thread::sleep_for(std::chrono::milliseconds(1));
    }
    if (auto st = tx_->put_request(s); !st) return st;
  }
  return tx_->push_requests(*ev_tx_);
}

void TestNetfront::set_req_prod(RING_IDX v) {
  auto* s = static_cast<netif_tx_sring*>(static_cast<void*>(tx_ring_page_.data()));
  ring::shm::store_release(s->req_prod, v);
  (void)ev_tx_->notify();
}

std::size_t TestNetfront::reap_tx(std::vector<netif_tx_response_t>* out) {
  if (!tx_) return 0;
  auto n = tx_->consume(SIZE_MAX, [&](const netif_tx_response_t& r) {
    if (out) out->push_back(r);
  });
  return n ? *n : 0;
}

Status TestNetfront::post_rx(std::size_t max) {
  if (!rx_) return Error{ENOTCONN, "netfront: not connected"};
  for (std::size_t i = 0; i < kDataPages && !rx_->full() && max > 0; ++i) {
    if (rx_posted_[i]) continue;
    netif_rx_request_t r{};
    r.id = static_cast<std::uint16_t>(i);
    r.gref = rx_data_.refs()[i];
    rx_slot_page_[rx_->req_prod_pvt() & (rx_->size() - 1)] = static_cast<std::uint16_t>(i);
    if (auto s = rx_->put_request(r); !s) return s;
    rx_posted_[i] = true;
    --max;
  }
  return rx_->push_requests(*ev_rx_);
}

std::optional<std::vector<std::byte>> TestNetfront::recv() {
  auto p = recv_packet();
  if (!p) return std::nullopt;
  if (p->error) p->bytes.clear();
  return std::move(p->bytes);
}

// As xen-netfront: the page behind a response is the one posted in that ring slot; an extra overlays the response
// in the slot after the packet's first one and gives its page back.
std::optional<RxPacket> TestNetfront::recv_packet() {
  if (!rx_) return std::nullopt;
  for (;;) {
    const RING_IDX slot = rx_->rsp_cons() & (rx_->size() - 1);
    std::optional<netif_rx_response_t> got;
    auto n = rx_->consume(1, [&](const netif_rx_response_t& r) { got = r; });
    if (!n || *n == 0 || !got) return std::nullopt;
    const std::size_t page = rx_slot_page_[slot];
    rx_posted_[page] = false;
    if (want_extra_) {
      netif_extra_info e{};
      std::memcpy(&e, &*got, sizeof e);
      if (e.type == XEN_NETIF_EXTRA_TYPE_GSO) partial_.gso = e;
      want_extra_ = (e.flags & XEN_NETIF_EXTRA_FLAG_MORE) != 0;
      if (want_extra_ || (partial_.flags & NETRXF_more_data) != 0) continue;
    } else {
      if (got->id != page) partial_.in_place = false;
      if (!in_packet_) {
        partial_.flags = got->flags;
        want_extra_ = (got->flags & NETRXF_extra_info) != 0;
      }
      in_packet_ = true;
      if (got->status < 0) partial_.error = true;
      if (got->status > 0 && got->offset + static_cast<std::size_t>(got->status) <= 4096) {
        auto src = rx_data_.bytes().subspan(page * 4096 + got->offset, static_cast<std::size_t>(got->status));
        partial_.bytes.insert(partial_.bytes.end(), src.begin(), src.end());
      }
      if (want_extra_ || (got->flags & NETRXF_more_data) != 0) continue;
    }
    RxPacket out = std::move(partial_);
    partial_ = RxPacket{};
    in_packet_ = false;
    return out;
  }
}

void TestNetfront::ack_events() {
  if (ev_tx_) (void)ev_tx_->consume();
  if (ev_rx_) (void)ev_rx_->consume();
}

}  // namespace gears::netfront
