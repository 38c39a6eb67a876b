// gears-netfront-hostile: a crafted netif frontend for lab.semnet.hostile. In a domU whose xen-netfront module
// is unloaded, it connects to the Gears vif device/vif/<devid>, puts one malformed TX case on the ring and
// reports, as one JSON line, whether dom0 closed the vif (fatal cases) or answered the packet with an error
// (dropped cases).
//   gears-netfront-hostile [--devid N] [--timeout S] <case> | list
#include <poll.h>

#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>
#include <thread>

#include "domU-frontends/netfront-test/hostile_cases.hpp"

using namespace gears;

int main(int argc, char** argv) {
  unsigned devid = 1;
  int timeout_s = 30;
  std::string name;
  for (int i = 1; i < argc; ++i) {
    const std::string a = argv[i];
    if (a == "--devid" && i + 1 < argc) devid = static_cast<unsigned>(std::strtoul(argv[++i], nullptr, 10));
    else if (a == "--timeout" && i + 1 < argc) timeout_s = std::atoi(argv[++i]);
    else name = a;
  }
  if (name.empty() || name == "list") {
    for (const auto& c : netfront::hostile_cases()) std::printf("%s %s %s\n", c.name.c_str(), c.fatal ? "fatal" : "drop", c.why.c_str());
    return name.empty() ? 2 : 0;
  }
  const netfront::HostileCase* hc = nullptr;
  for (const auto& c : netfront::hostile_cases())
    if (c.name == name) hc = &c;
  if (!hc) {
    std::fprintf(stderr, "gears-netfront-hostile: unknown case '%s' (try: list)\n", name.c_str());
    return 2;
  }
  try {
    xen::Store store;
    const std::string fe = "device/vif/" + std::to_string(devid);
    // A backend left Closing/Closed by the previous case resets when it sees us go Closed -> Initialising.
    (void)store.write(fe + "/state", "6");
    std::this_thread::sleep_for(std::chrono::milliseconds(300));
    netfront::TestNetfront f(store, fe);
    if (!f.connect(std::chrono::seconds(timeout_s))) {
      std::printf("{\"case\":\"%s\",\"error\":\"backend did not connect\"}\n", name.c_str());
      return 1;
    }
    if (!netfront::run_hostile_case(f, name)) {
      std::printf("{\"case\":\"%s\",\"error\":\"could not queue the case\"}\n", name.c_str());
      return 1;
    }
    const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(timeout_s);
    bool closed = false, error_rsp = false;
    while (std::chrono::steady_clock::now() < deadline) {
      pollfd p{store.fd(), POLLIN, 0};
      (void)::poll(&p, 1, 50);
      f.pump_store();
      if (f.closed_by_backend()) {
        closed = true;
        break;
      }
      if (!hc->fatal && f.connected()) {
        std::vector<netif_tx_response_t> rsp;
        f.reap_tx(&rsp);
        for (const auto& r : rsp) error_rsp = error_rsp || r.status == NETIF_RSP_ERROR;
        if (error_rsp) {
          std::this_thread::sleep_for(std::chrono::milliseconds(500));  // and the vif must stay up
          f.pump_store();
          closed = f.closed_by_backend();
          break;
        }
      }
    }
    std::printf("{\"case\":\"%s\",\"fatal\":%s,\"closed_by_dom0\":%s,\"error_response\":%s,\"ok\":%s}\n", name.c_str(),
                hc->fatal ? "true" : "false", closed ? "true" : "false", error_rsp ? "true" : "false",
                (hc->fatal ? closed : (error_rsp && !closed)) ? "true" : "false");
    // Leave the device Closed so the next run starts clean.
    (void)store.write(fe + "/state", "6");
    return (hc->fatal ? closed : (error_rsp && !closed)) ? 0 : 1;
  } catch (const std::exception& e) {
    std::printf("{\"case\":\"%s\",\"error\":\"%s\"}\n", name.c_str(), e.what());
    return 1;
  }
}
