// Registers proctrack with gearsd: the device kind "proctrack" and the control verbs
//   ps     {dom}                       -> Directory::ps (process table, who runs on each vCPU, counters)
//   events {dom, since=0, max=1000}    -> Directory::events (birth/exit/exec, as_birth/as_death, start/stop)
#pragma once

namespace gears::daemon {
class Daemon;
}

namespace gears::proctrack {

void register_service(daemon::Daemon& d);

}  // namespace gears::proctrack
