// A synchronous CR3-write vm_event request as Xen queues it on the monitor ring (the vCPU paused until answered),
// for the proctrack tests. `lstar`: the guest's MSR_LSTAR carried with it (the Linux layer's KASLR anchor).
#pragma once

#include <cstdint>
#include <cstring>

#include "common/xen/monitor.hpp"

namespace gears::proctrack::test {

inline vm_event_request_t cr3_write(std::uint32_t vcpu, std::uint64_t old_v, std::uint64_t new_v,
                                    std::uint64_t lstar = 0) {
  vm_event_request_t r;
  std::memset(&r, 0, sizeof r);
  r.version = VM_EVENT_INTERFACE_VERSION;
  r.reason = VM_EVENT_REASON_WRITE_CTRLREG;
  r.vcpu_id = vcpu;
  r.flags = VM_EVENT_FLAG_VCPU_PAUSED;
  r.u.write_ctrlreg.index = VM_EVENT_X86_CR3;
  r.u.write_ctrlreg.old_value = old_v;
  r.u.write_ctrlreg.new_value = new_v;
  r.data.regs.x86.msr_lstar = lstar;
  return r;
}

}  // namespace gears::proctrack::test
