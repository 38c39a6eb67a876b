// The OS-aware layer (optional, Linux only): PID, comm and task lifetimes from the guest kernel's task list,
// read through foreign mappings. Kept apart from the OS-agnostic core (tracker.hpp): proctrack works without it.
//
// Nothing is hard-coded about the kernel:
//   - structure offsets (task_struct.{tasks,pid,tgid,comm,mm,start_time}, mm_struct.pgd, list_head.next) come
//     from the guest kernel's BTF (e.g. /sys/kernel/btf/vmlinux of a dom0 running the same kernel);
//   - symbol addresses (init_task, entry_SYSCALL_64) come from its System.map, or from /proc/kallsyms of a dom0
//     running the same kernel build (Debian ships a stub System.map); the KASLR slide is the guest's MSR_LSTAR
//     (which Linux points at entry_SYSCALL_64; every vm_event request carries it) minus that entry_SYSCALL_64.
// Guest memory is hostile: every read is bounded and checked, the list walk is bounded (kMaxTasks) and
// stops on a cycle, a non-canonical pointer or an unmapped page; an incomplete walk is reported as such
// and the caller must not infer exits from it.
#pragma once

#include <array>
#include <cstddef>
#include <cstdint>
#include <optional>
#include <span>
#include <string>
#include <unordered_map>
#include <vector>

#include "common/util/result.hpp"
#include "common/xen/foreign.hpp"

namespace gears::proctrack {

struct LinuxLayout {
  // Offsets in bytes.
  std::uint32_t task_tasks = 0, task_pid = 0, task_tgid = 0, task_comm = 0, task_mm = 0, task_start_time = 0;
  std::uint32_t mm_pgd = 0, list_next = 0;
  // Unrelocated (System.map) addresses.
  std::uint64_t sym_init_task = 0, sym_entry_syscall = 0;

  // `symbols`: ':'-separated candidates (System.map or kallsyms format), the first with both symbols wins.
  // Throws std::runtime_error naming the files and the missing item.
  static LinuxLayout load(const std::string& btf_path, const std::string& symbols);
};

// Reads guest-physical memory. Implementations bound every read to what the guest has.
class GuestMemory {
 public:
  virtual ~GuestMemory() = default;
  [[nodiscard]] virtual bool read_phys(std::uint64_t gpa, std::span<std::byte> dst) = 0;
};

// GuestMemory over xenforeignmemory, one cached read-only mapping per guest frame (at most `max_pages`,
// flushed wholesale when full). Mappings are live views, so the cache stays valid while the guest runs.
class ForeignGuestMemory final : public GuestMemory {
 public:
  ForeignGuestMemory(xen::ForeignMemory& fm, domid_t dom, std::size_t max_pages = 1024);
  [[nodiscard]] bool read_phys(std::uint64_t gpa, std::span<std::byte> dst) override;
  [[nodiscard]] std::uint64_t maps() const { return maps_; }
  [[nodiscard]] std::uint64_t map_failures() const { return map_failures_; }

 private:
  xen::ForeignMemory& fm_;
  domid_t dom_;
  std::size_t max_pages_;
  std::unordered_map<std::uint64_t, xen::ForeignMapping> pages_;
  std::uint64_t maps_ = 0, map_failures_ = 0;
};

// x86-64 4-level page walk (2 MiB and 1 GiB pages included) through GuestMemory.
[[nodiscard]] std::optional<std::uint64_t> translate(GuestMemory& mem, std::uint64_t cr3, std::uint64_t va);
// Reads `dst.size()` bytes at guest-virtual `va` (may cross pages). False if any page is not mapped.
[[nodiscard]] bool read_virt(GuestMemory& mem, std::uint64_t cr3, std::uint64_t va, std::span<std::byte> dst);

struct TaskInfo {
  std::int32_t pid = 0;
  std::int32_t tgid = 0;
  std::uint64_t start_time = 0;  // ns since boot (task_struct.start_time): (pid, start_time) names a process
  std::string comm;
  std::uint64_t pgd = 0;  // physical address of mm->pgd; 0 for a task without an mm (kernel thread, zombie)
  std::uint64_t task = 0; // guest-virtual address of the task_struct (for probe())
};

class LinuxIntrospector {
 public:
  static constexpr std::size_t kMaxTasks = 32768;

  LinuxIntrospector(LinuxLayout layout, GuestMemory& mem) : l_(layout), mem_(mem) {}

  struct Walk {
    std::vector<TaskInfo> tasks;
    bool complete = false;  // came back to init_task's list head
  };
  // Walks init_task.tasks. `kernel_cr3`: any CR3 whose kernel half maps the kernel (a kernel PGD);
  // `lstar`: the guest's MSR_LSTAR (for the KASLR slide). Errors: EINVAL (bad slide), EFAULT (unmapped).
  [[nodiscard]] Result<Walk> walk(std::uint64_t kernel_cr3, std::uint64_t lstar);
  // Re-reads one task_struct (from an earlier walk) without walking the list: cheap confirmation that a known
  // process still owns its address space. nullopt if unreadable. The caller checks (pid, start_time).
  [[nodiscard]] std::optional<TaskInfo> probe(std::uint64_t kernel_cr3, std::uint64_t task);
  [[nodiscard]] const LinuxLayout& layout() const { return l_; }

 private:
  [[nodiscard]] bool u64(std::uint64_t cr3, std::uint64_t va, std::uint64_t& out);
  [[nodiscard]] bool read_task(std::uint64_t cr3, std::uint64_t task, TaskInfo& t);
  // Reads through a per-walk translation cache (virtual page -> physical page).
  [[nodiscard]] bool read(std::uint64_t cr3, std::uint64_t va, std::span<std::byte> dst);

  LinuxLayout l_;
  GuestMemory& mem_;
  std::unordered_map<std::uint64_t, std::uint64_t> tlb_;  // cleared at the start of every walk
};

}  // namespace gears::proctrack
