#include "domU-frontends/netfront-test/hostile_cases.hpp"

#include <cstring>

namespace gears::netfront {
namespace {

netif_tx_request_t req(grant_ref_t gref, std::uint16_t off, std::uint16_t flags, std::uint16_t id, std::uint16_t size) {
  netif_tx_request_t r{};
  r.gref = gref;
  r.offset = off;
  r.flags = flags;
  r.id = id;
  r.size = size;
  return r;
}

netif_tx_request_t extra(std::uint8_t type, std::uint8_t flags, std::uint16_t gso_size = 1448, std::uint8_t gso_type = 1) {
  netif_extra_info_t x{};
  x.type = type;
  x.flags = flags;
  if (type == XEN_NETIF_EXTRA_TYPE_GSO) {
    x.u.gso.size = gso_size;
    x.u.gso.type = gso_type;
  }
  netif_tx_request_t r{};
  std::memcpy(&r, &x, sizeof x);
  return r;
}

}  // namespace

const std::vector<HostileCase>& hostile_cases() {
  static const std::vector<HostileCase> cases = {
      {"short", false, "packet shorter than an Ethernet header"},
      {"frag-overrun", false, "fragments exceed the packet's total length"},
      {"bad-gref", false, "grant copy failed"},
      {"offset", true, "slot offset beyond its page"},
      {"cross-page", true, "first slot crosses its page"},
      {"frag-cross", true, "fragment crosses its page"},
      {"slots", true, "more than 18 data slots in one packet"},
      {"extra-none", true, "unknown extra-info type"},
      {"extra-max", true, "unknown extra-info type"},
      {"extra-repeat", true, "extra-info type repeated"},
      {"extra-chain", true, "extra-info chain longer than 4"},
      {"gso-zero", true, "GSO size is zero"},
      {"gso-type", true, "GSO type unknown"},
      {"req-prod", true, "frontend request producer index out of range"},
  };
  return cases;
}

bool run_hostile_case(TestNetfront& f, const std::string& name) {
  constexpr std::uint16_t kMore = NETTXF_more_data, kExtra = NETTXF_extra_info, kCsum = NETTXF_csum_blank;
  const grant_ref_t g = f.tx_ref(0);
  std::vector<netif_tx_request_t> s;
  if (name == "short") {
    s = {req(g, 0, 0, 0, 10)};
  } else if (name == "frag-overrun") {
    s = {req(g, 0, kMore, 0, 100), req(f.tx_ref(1), 0, 0, 1, 300)};
  } else if (name == "bad-gref") {
    s = {req(g + 100000, 0, 0, 0, 60)};
  } else if (name == "offset") {
    s = {req(g, 4096, 0, 0, 60)};
  } else if (name == "cross-page") {
    s = {req(g, 4000, 0, 0, 1000)};
  } else if (name == "frag-cross") {
    s = {req(g, 0, kMore, 0, 3000), req(f.tx_ref(1), 2048, 0, 1, 2500)};
  } else if (name == "slots") {
    s = {req(g, 0, kMore, 0, 60000)};
    for (std::uint16_t i = 1; i < 19; ++i) s.push_back(req(f.tx_ref(i), 0, kMore, i, 100));
  } else if (name == "extra-none") {
    s = {req(g, 0, kExtra, 0, 60), extra(XEN_NETIF_EXTRA_TYPE_NONE, 0)};
  } else if (name == "extra-max") {
    s = {req(g, 0, kExtra, 0, 60), extra(77, 0)};
  } else if (name == "extra-repeat") {
    s = {req(g, 0, kExtra | kCsum, 0, 3000), extra(XEN_NETIF_EXTRA_TYPE_GSO, XEN_NETIF_EXTRA_FLAG_MORE),
         extra(XEN_NETIF_EXTRA_TYPE_GSO, 0)};
  } else if (name == "extra-chain") {
    s = {req(g, 0, kExtra | kCsum, 0, 3000)};
    for (int t : {1, 2, 3, 4, 1}) s.push_back(extra(static_cast<std::uint8_t>(t), XEN_NETIF_EXTRA_FLAG_MORE));
  } else if (name == "gso-zero") {
    s = {req(g, 0, kExtra | kCsum, 0, 3000), extra(XEN_NETIF_EXTRA_TYPE_GSO, 0, 0)};
  } else if (name == "gso-type") {
    s = {req(g, 0, kExtra | kCsum, 0, 3000), extra(XEN_NETIF_EXTRA_TYPE_GSO, 0, 1448, 9)};
  } else if (name == "req-prod") {
    f.set_req_prod(100000);
    return true;
  } else {
    return false;
  }
  return static_cast<bool>(f.push_raw(s));
}

}  // namespace gears::netfront
