// Malformed TX traffic a hostile frontend can put on a netif tx ring, as named cases. Shared by the unit tests
// and gears-netfront-hostile (the lab's crafted frontend).
#pragma once

#include <string>
#include <vector>

#include "domU-frontends/netfront-test/netfront.hpp"

namespace gears::netfront {

struct HostileCase {
  std::string name;
  bool fatal;         // true: the backend must close the vif; false: drop the packet and answer an error
  std::string why;    // the backend's log text for a fatal case
};

[[nodiscard]] const std::vector<HostileCase>& hostile_cases();
// Puts case `name` on the ring of a connected frontend. Returns false for an unknown name.
[[nodiscard]] bool run_hostile_case(TestNetfront& f, const std::string& name);

}  // namespace gears::netfront
