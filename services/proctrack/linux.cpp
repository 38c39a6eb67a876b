#include "services/proctrack/linux.hpp"

#include <bpf/btf.h>
#include <bpf/libbpf.h>

#include <algorithm>
#include <cstring>
#include <fstream>
#include <memory>
#include <sstream>
#include <stdexcept>
#include <string_view>
#include <unordered_set>

namespace gears::proctrack {
namespace {

constexpr std::uint64_t kPage = 4096;
constexpr std::uint64_t kAddrMask = 0x000f'ffff'ffff'f000ULL;  // bits 12..51 of a page-table entry
constexpr std::uint64_t kPresent = 1, kLarge = 0x80;
constexpr std::uint64_t kKernelMin = 0xffff'8000'0000'0000ULL;  // lowest canonical kernel address
constexpr std::uint64_t kKaslrAlign = 0x20'0000;                // the kernel image moves in 2 MiB steps

struct BtfDeleter {
  void operator()(btf* b) const { btf__free(b); }
};

// Byte offset of member `name` in the struct/union `type_id`, looking through anonymous members.
std::optional<std::uint32_t> member_offset(const btf* b, std::uint32_t type_id, std::string_view name, int depth = 0) {
  if (depth > 8) return std::nullopt;
  const btf_type* t = btf__type_by_id(b, type_id);
  if (t == nullptr || !btf_is_composite(t)) return std::nullopt;
  const btf_member* m = btf_members(t);
  const auto n = btf_vlen(t);
  for (std::uint32_t i = 0; i < n; ++i) {
    const char* mname = btf__name_by_offset(b, m[i].name_off);
    const std::uint32_t bits = btf_member_bit_offset(t, i);
    if (mname != nullptr && *mname != '\0') {
      if (name == mname) return bits / 8;
      continue;
    }
    const int rid = btf__resolve_type(b, m[i].type);
    if (rid < 0) continue;
    if (auto inner = member_offset(b, static_cast<std::uint32_t>(rid), name, depth + 1)) return bits / 8 + *inner;
  }
  return std::nullopt;
}

std::uint32_t need_member(const btf* b, const char* type, const char* member, const std::string& path) {
  const int id = btf__find_by_name_kind(b, type, BTF_KIND_STRUCT);
  if (id < 0) throw std::runtime_error(path + ": no struct " + type + " in BTF");
  auto off = member_offset(b, static_cast<std::uint32_t>(id), member);
  if (!off) throw std::runtime_error(path + ": struct " + type + " has no member " + member);
  return *off;
}

std::uint64_t read_u64(std::span<const std::byte> b, std::size_t off) {
  std::uint64_t v = 0;
  std::memcpy(&v, b.data() + off, sizeof v);
  return v;
}

}  // namespace

LinuxLayout LinuxLayout::load(const std::string& btf_path, const std::string& system_map_path) {
  LinuxLayout l;
  std::unique_ptr<btf, BtfDeleter> b(btf__parse(btf_path.c_str(), nullptr));
  if (!b || libbpf_get_error(b.get()) != 0) {
    b.release();  // an error pointer, not an object
    throw std::runtime_error(btf_path + ": cannot parse BTF");
  }
  l.task_tasks = need_member(b.get(), "task_struct", "tasks", btf_path);
  l.task_pid = need_member(b.get(), "task_struct", "pid", btf_path);
  l.task_tgid = need_member(b.get(), "task_struct", "tgid", btf_path);
  l.task_comm = need_member(b.get(), "task_struct", "comm", btf_path);
  l.task_mm = need_member(b.get(), "task_struct", "mm", btf_path);
  l.task_start_time = need_member(b.get(), "task_struct", "start_time", btf_path);
  l.mm_pgd = need_member(b.get(), "mm_struct", "pgd", btf_path);
  l.list_next = need_member(b.get(), "list_head", "next", btf_path);

  // A System.map or /proc/kallsyms ("address type name [module]" lines). Only the two symbols' distance
  // matters (the slide comes from MSR_LSTAR), so the kallsyms of a dom0 running the same kernel build works too.
  std::string tried;
  for (std::string_view rest = system_map_path; !rest.empty();) {
    const auto colon = rest.find(':');
    const std::string path(rest.substr(0, colon));
    rest = colon == std::string_view::npos ? std::string_view{} : rest.substr(colon + 1);
    std::ifstream in(path);
    const bool opened = in.is_open();
    l.sym_init_task = l.sym_entry_syscall = 0;
    std::string line;
    while (in && std::getline(in, line) && (l.sym_init_task == 0 || l.sym_entry_syscall == 0)) {
      std::istringstream ls(line);
      std::string addr, type, name;
      if (!(ls >> addr >> type >> name)) continue;
      if (name != "init_task" && name != "entry_SYSCALL_64") continue;
      std::uint64_t v = 0;
      try {
        v = std::stoull(addr, nullptr, 16);
      } catch (const std::exception&) {
        v = 0;
      }
      (name == "init_task" ? l.sym_init_task : l.sym_entry_syscall) = v;
    }
    if (l.sym_init_task != 0 && l.sym_entry_syscall != 0) return l;
    tried += (tried.empty() ? "" : ", ") + path + (opened ? "" : " (cannot open)");
  }
  throw std::runtime_error("no non-zero init_task and entry_SYSCALL_64 in " + tried +
                           " (Debian's /boot/System.map is a stub; /proc/kallsyms needs root and kptr_restrict<2)");
  return l;
}

// ---- guest memory ----

ForeignGuestMemory::ForeignGuestMemory(xen::ForeignMemory& fm, domid_t dom, std::size_t max_pages)
    : fm_(fm), dom_(dom), max_pages_(std::max<std::size_t>(max_pages, 16)) {}

bool ForeignGuestMemory::read_phys(std::uint64_t gpa, std::span<std::byte> dst) {
  std::size_t done = 0;
  while (done < dst.size()) {
    const std::uint64_t a = gpa + done;
    if (a < gpa || (a >> 52) != 0) return false;  // wrapped or beyond any physical address
    const std::uint64_t gfn = a / kPage;
    auto it = pages_.find(gfn);
    if (it == pages_.end()) {
      if (pages_.size() >= max_pages_) pages_.clear();
      const xen_pfn_t f = gfn;
      auto m = fm_.map(dom_, std::span<const xen_pfn_t>(&f, 1), false);
      if (!m) {
        ++map_failures_;
        return false;
      }
      ++maps_;
      it = pages_.emplace(gfn, std::move(m.value())).first;
    }
    const std::size_t off = a % kPage;
    const std::size_t n = std::min<std::size_t>(kPage - off, dst.size() - done);
    std::memcpy(dst.data() + done, it->second.data() + off, n);
    done += n;
  }
  return true;
}

std::optional<std::uint64_t> translate(GuestMemory& mem, std::uint64_t cr3, std::uint64_t va) {
  std::uint64_t table = cr3 & kAddrMask;
  // Levels 4 (PML4), 3 (PDPT), 2 (PD), 1 (PT): index bits 39, 30, 21, 12.
  for (int level = 4; level >= 1; --level) {
    const unsigned shift = 12 + 9 * static_cast<unsigned>(level - 1);
    const std::uint64_t idx = (va >> shift) & 511;
    std::array<std::byte, 8> raw{};
    if (!mem.read_phys(table + idx * 8, raw)) return std::nullopt;
    const std::uint64_t e = read_u64(raw, 0);
    if ((e & kPresent) == 0) return std::nullopt;
    if ((level == 3 || level == 2) && (e & kLarge) != 0) {
      const std::uint64_t span = 1ULL << shift;
      return ((e & kAddrMask) & ~(span - 1)) | (va & (span - 1));
    }
    table = e & kAddrMask;
  }
  return table | (va & (kPage - 1));
}

bool read_virt(GuestMemory& mem, std::uint64_t cr3, std::uint64_t va, std::span<std::byte> dst) {
  std::size_t done = 0;
  while (done < dst.size()) {
    const std::uint64_t a = va + done;
    if (a < va) return false;
    auto pa = translate(mem, cr3, a);
    if (!pa) return false;
    const std::size_t n = std::min<std::size_t>(kPage - a % kPage, dst.size() - done);
    if (!mem.read_phys(*pa, dst.subspan(done, n))) return false;
    done += n;
  }
  return true;
}

// ---- the task list ----

bool LinuxIntrospector::read(std::uint64_t cr3, std::uint64_t va, std::span<std::byte> dst) {
  std::size_t done = 0;
  while (done < dst.size()) {
    const std::uint64_t a = va + done;
    if (a < va) return false;
    const std::uint64_t vpage = a & ~(kPage - 1);
    auto it = tlb_.find(vpage);
    if (it == tlb_.end()) {
      auto pa = translate(mem_, cr3, vpage);
      if (!pa) return false;
      it = tlb_.emplace(vpage, *pa).first;
    }
    const std::size_t n = std::min<std::size_t>(kPage - a % kPage, dst.size() - done);
    if (!mem_.read_phys(it->second + a % kPage, dst.subspan(done, n))) return false;
    done += n;
  }
  return true;
}

bool LinuxIntrospector::u64(std::uint64_t cr3, std::uint64_t va, std::uint64_t& out) {
  std::array<std::byte, 8> b{};
  if (!read(cr3, va, b)) return false;
  out = read_u64(b, 0);
  return true;
}

bool LinuxIntrospector::read_task(std::uint64_t cr3, std::uint64_t task, TaskInfo& t) {
  std::array<std::byte, 4> p{}, g{};
  std::array<std::byte, 16> c{};
  std::uint64_t mm = 0;
  if (task < kKernelMin || !read(cr3, task + l_.task_pid, p) || !read(cr3, task + l_.task_tgid, g) ||
      !u64(cr3, task + l_.task_start_time, t.start_time) || !read(cr3, task + l_.task_comm, c) ||
      !u64(cr3, task + l_.task_mm, mm))
    return false;
  std::memcpy(&t.pid, p.data(), sizeof t.pid);
  std::memcpy(&t.tgid, g.data(), sizeof t.tgid);
  const char* name = reinterpret_cast<const char*>(c.data());
  t.comm.assign(name, strnlen(name, c.size()));
  t.task = task;
  t.pgd = 0;
  if (mm != 0) {
    std::uint64_t pgd_va = 0;
    if (mm < kKernelMin || !u64(cr3, mm + l_.mm_pgd, pgd_va) || pgd_va < kKernelMin) return false;
    const std::uint64_t vpage = pgd_va & ~(kPage - 1);
    auto it = tlb_.find(vpage);
    if (it == tlb_.end()) {
      auto pa = translate(mem_, cr3, vpage);
      if (!pa) return false;
      it = tlb_.emplace(vpage, *pa).first;
    }
    t.pgd = it->second + pgd_va % kPage;
  }
  return true;
}

Result<LinuxIntrospector::Walk> LinuxIntrospector::walk(std::uint64_t kernel_cr3, std::uint64_t lstar) {
  const std::uint64_t slide = lstar - l_.sym_entry_syscall;
  if (lstar < kKernelMin || slide % kKaslrAlign != 0) return Error{EINVAL, "MSR_LSTAR is not System.map's entry_SYSCALL_64"};
  tlb_.clear();
  const std::uint64_t init = l_.sym_init_task + slide;
  // Sanity: the layout and symbols belong to this kernel iff init_task is "swapper...".
  std::array<std::byte, 16> c{};
  if (!read(kernel_cr3, init + l_.task_comm, c)) return Error{EFAULT, "init_task not mapped"};
  const char* init_comm = reinterpret_cast<const char*>(c.data());
  if (std::string_view(init_comm, strnlen(init_comm, c.size())).rfind("swapper", 0) != 0)
    return Error{EINVAL, "init_task's comm is not swapper: wrong BTF/System.map"};

  Walk w;
  const std::uint64_t head = init + l_.task_tasks;
  std::uint64_t node = 0;
  if (!u64(kernel_cr3, head + l_.list_next, node)) return Error{EFAULT, "init_task.tasks not mapped"};
  std::unordered_set<std::uint64_t> seen;
  while (node != head) {
    if (node < kKernelMin || w.tasks.size() >= kMaxTasks || !seen.insert(node).second) return w;  // incomplete
    TaskInfo t;
    if (!read_task(kernel_cr3, node - l_.task_tasks, t)) return w;
    w.tasks.push_back(std::move(t));
    if (!u64(kernel_cr3, node + l_.list_next, node)) return w;
  }
  w.complete = true;
  return w;
}

std::optional<TaskInfo> LinuxIntrospector::probe(std::uint64_t kernel_cr3, std::uint64_t task) {
  tlb_.clear();  // a single read: the guest may have changed its mappings since the last walk
  TaskInfo t;
  if (!read_task(kernel_cr3, task, t)) return std::nullopt;
  return t;
}

}  // namespace gears::proctrack
