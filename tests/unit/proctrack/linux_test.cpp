// The OS-aware layer over a synthetic Linux guest built in the fake hypervisor's guest memory: page tables,
// init_task and a task list, with a made-up layout (the real one comes from BTF + System.map); and
// LinuxLayout::load over a synthetic BTF written with libbpf.
#include "dom0/gearsd/reactor.hpp"
#include "services/proctrack/linux.hpp"
#include "services/proctrack/process_table.hpp"
#include "services/proctrack/proctrack_device.hpp"
#include "tests/fake/fake.hpp"
#include "tests/unit/proctrack/cr3_request.hpp"

#include <gtest/gtest.h>

#include <bpf/btf.h>
#include <unistd.h>

#include <algorithm>
#include <array>
#include <cstdio>
#include <cstring>
#include <fstream>
#include <initializer_list>
#include <memory>
#include <string_view>
#include <vector>

namespace gears::proctrack {
namespace {

constexpr domid_t kDom = 11;
constexpr std::uint64_t kPage = 4096;
constexpr std::uint64_t kSlide = 0x600000;                     // KASLR: a 2 MiB multiple
constexpr std::uint64_t kEntrySym = 0xffffffff81a00000ULL;     // System.map entry_SYSCALL_64
constexpr std::uint64_t kInitSym = 0xffffffff82000000ULL;      // System.map init_task
constexpr std::uint64_t kBase = kInitSym + kSlide;             // runtime init_task: page 0 of our region

LinuxLayout layout() {
  LinuxLayout l;
  l.task_tasks = 0x100, l.task_pid = 0x200, l.task_tgid = 0x204, l.task_comm = 0x300, l.task_mm = 0x400;
  l.task_start_time = 0x408, l.mm_pgd = 0x50, l.list_next = 0;
  l.sym_init_task = kInitSym, l.sym_entry_syscall = kEntrySym;
  return l;
}

// Guest frames: 1 = PML4 (the CR3), 2 = PDPT, 3 = PD, 4 = PT, 16.. = the region's pages, 40.. = PGD pages.
class SynthGuest {
 public:
  static constexpr std::uint64_t kCr3 = 1 * kPage;
  explicit SynthGuest(LinuxLayout l = layout()) : l_(l) {
    fake::set_guest_memory(kDom, 64);
    mem_ = fake::guest_memory(kDom);
    put(1 * kPage + idx(kBase, 39) * 8, 2 * kPage | 0x63);
    put(2 * kPage + idx(kBase, 30) * 8, 3 * kPage | 0x63);
    put(3 * kPage + idx(kBase, 21) * 8, 4 * kPage | 0x63);
    for (std::uint64_t i = 0; i < 20; ++i) put(4 * kPage + (idx(kBase, 12) + i) * 8, ((16 + i) * kPage) | 0x63 | (1ULL << 63));
    task(0, 0, 0, "swapper/0", 0);
  }
  static std::uint64_t idx(std::uint64_t va, unsigned shift) { return (va >> shift) & 511; }
  static std::uint64_t va(std::uint64_t page) { return kBase + page * kPage; }
  void put(std::uint64_t gpa, std::uint64_t v) { std::memcpy(mem_.data() + gpa, &v, sizeof v); }
  void put_va(std::uint64_t a, const void* p, std::size_t n) {
    const std::uint64_t page = (a - kBase) / kPage;
    std::memcpy(mem_.data() + (16 + page) * kPage + (a - kBase) % kPage, p, n);
  }
  void put_va64(std::uint64_t a, std::uint64_t v) { put_va(a, &v, sizeof v); }
  // Task i lives in region page i; its mm (if mm_page != 0) in region page mm_page.
  void task(std::uint64_t i, std::int32_t pid, std::uint64_t start, const char* comm, std::uint64_t mm_page) {
    const LinuxLayout& l = l_;
    const std::uint64_t t = va(i);
    put_va(t + l.task_pid, &pid, 4);
    put_va(t + l.task_tgid, &pid, 4);
    put_va64(t + l.task_start_time, start);
    char c[16] = {};
    std::strncpy(c, comm, sizeof c - 1);
    put_va(t + l.task_comm, c, sizeof c);
    put_va64(t + l.task_mm, mm_page != 0 ? va(mm_page) : 0);
    if (mm_page != 0) put_va64(va(mm_page) + l.mm_pgd, va(mm_page));  // the "pgd" is the mm's own page
  }
  struct Task {
    std::uint64_t page;
    std::int32_t pid;
    std::uint64_t start;
    const char* comm;
    std::uint64_t mm_page;
  };
  // Writes each task, then links them in this order after init_task.
  void tasks(std::initializer_list<Task> ts) {
    std::vector<std::uint64_t> pages;
    for (const Task& t : ts) {
      task(t.page, t.pid, t.start, t.comm, t.mm_page);
      pages.push_back(t.page);
    }
    link(std::move(pages));
  }
  // Links tasks (by region page) into a circular list starting at init_task (page 0).
  void link(std::vector<std::uint64_t> pages) {
    const LinuxLayout& l = l_;
    pages.insert(pages.begin(), 0);
    for (std::size_t i = 0; i < pages.size(); ++i)
      put_va64(va(pages[i]) + l.task_tasks + l.list_next, va(pages[(i + 1) % pages.size()]) + l.task_tasks);
  }
  static std::uint64_t pgd_phys(std::uint64_t mm_page) { return (16 + mm_page) * kPage; }
  // Makes an mm's page a top-level page table too (as every Linux PGD maps the kernel): a CR3 that loads it can
  // translate the kernel's addresses.
  void kernel_half(std::uint64_t mm_page) { put(pgd_phys(mm_page) + idx(kBase, 39) * 8, 2 * kPage | 0x63); }

 private:
  LinuxLayout l_;
  std::span<std::byte> mem_;
};

// The introspector over the synthetic guest, as proctrack builds one per domain.
struct Introspection {
  xen::ForeignMemory fm;
  ForeignGuestMemory mem{fm, kDom};
  LinuxIntrospector li{layout(), mem};
  Result<LinuxIntrospector::Walk> walk() { return li.walk(SynthGuest::kCr3, kEntrySym + kSlide); }
};

// ...feeding a ProcessTable, walk by walk.
struct Tracking : Introspection {
  ProcessTable pt;
  std::vector<ProcEvent> ev;
  std::vector<std::uint64_t> live;
  bool apply(std::int64_t now) { return pt.apply(walk().value(), now, false, ev, live); }
};

class LinuxTest : public ::testing::Test {
 protected:
  void SetUp() override { fake::reset(); }
  void TearDown() override {
    EXPECT_EQ(fake::counters().foreign_pages, 0U);
    EXPECT_EQ(fake::counters().foreign_handles, 0U);
  }
};

TEST_F(LinuxTest, TranslatesSmallAndLargePages) {
  SynthGuest g;
  xen::ForeignMemory fm;
  ForeignGuestMemory mem(fm, kDom);
  EXPECT_EQ(translate(mem, SynthGuest::kCr3, kBase + 0x123), 16 * kPage + 0x123);
  EXPECT_FALSE(translate(mem, SynthGuest::kCr3, 0x400000)) << "not mapped";
  // A 2 MiB page: PD entry 100 with PS set.
  const std::uint64_t big = (kBase & ~((1ULL << 30) - 1)) + 100 * (1ULL << 21);
  g.put(3 * kPage + SynthGuest::idx(big, 21) * 8, 0x20'0000 | 0x80 | 0x63);
  EXPECT_EQ(translate(mem, SynthGuest::kCr3, big + 0x1234), 0x20'0000U + 0x1234);
  std::array<std::byte, 4> b{};
  EXPECT_FALSE(read_virt(mem, SynthGuest::kCr3, kBase + 20 * kPage - 2, b)) << "crosses into an unmapped page";
  EXPECT_FALSE(mem.read_phys(64 * kPage, b)) << "beyond guest memory";
  EXPECT_GT(mem.map_failures(), 0U);
}

TEST_F(LinuxTest, WalksTheTaskList) {
  SynthGuest g;
  g.tasks({{1, 1, 100, "init", 10}, {2, 2, 150, "kthreadd", 0}, {3, 77, 900, "sh", 11}});
  Introspection x;
  auto w = x.walk();
  ASSERT_TRUE(w.ok()) << w.error().what;
  ASSERT_TRUE(w->complete);
  ASSERT_EQ(w->tasks.size(), 3U);
  EXPECT_EQ(w->tasks[0].comm, "init");
  EXPECT_EQ(w->tasks[0].pgd, SynthGuest::pgd_phys(10));
  EXPECT_EQ(w->tasks[1].pgd, 0U) << "kernel thread";
  EXPECT_EQ(w->tasks[2].pid, 77);
  EXPECT_EQ(w->tasks[2].start_time, 900U);
}

TEST_F(LinuxTest, HostileListsAreBoundedAndReportedIncomplete) {
  SynthGuest g;
  g.tasks({{1, 1, 100, "init", 10}, {2, 5, 100, "loop", 11}});
  const LinuxLayout l = layout();
  g.put_va64(SynthGuest::va(2) + l.task_tasks, SynthGuest::va(1) + l.task_tasks);  // 2 -> 1: a cycle without the head
  Introspection x;
  auto w = x.walk();
  ASSERT_TRUE(w.ok());
  EXPECT_FALSE(w->complete);
  EXPECT_EQ(w->tasks.size(), 2U);
  g.put_va64(SynthGuest::va(2) + l.task_tasks, 0x1234);  // a user-space pointer
  w = x.walk();
  ASSERT_TRUE(w.ok());
  EXPECT_FALSE(w->complete);
  g.put_va64(SynthGuest::va(2) + l.task_tasks, SynthGuest::va(30));  // an unmapped kernel page
  w = x.walk();
  ASSERT_TRUE(w.ok());
  EXPECT_FALSE(w->complete);
}

TEST_F(LinuxTest, WrongSlideOrWrongKernelIsAnError) {
  SynthGuest g;
  g.link({});
  Introspection x;
  EXPECT_EQ(x.li.walk(SynthGuest::kCr3, kEntrySym + kSlide + 0x40).error().code, EINVAL) << "slide not 2 MiB aligned";
  EXPECT_EQ(x.li.walk(SynthGuest::kCr3, 0x7fff0000).error().code, EINVAL) << "LSTAR not a kernel address";
  EXPECT_EQ(x.li.walk(SynthGuest::kCr3, kEntrySym + kSlide + 0x200000).error().code, EFAULT) << "init_task unmapped";
  g.task(0, 0, 0, "notswapper", 0);
  EXPECT_EQ(x.walk().error().code, EINVAL) << "layout of another kernel";
  auto ok = LinuxIntrospector(layout(), x.mem).walk(SynthGuest::kCr3, kEntrySym + kSlide);
  EXPECT_FALSE(ok.ok());
}

TEST_F(LinuxTest, ProcessTableFollowsWalks) {
  SynthGuest g;
  g.tasks({{1, 1, 100, "init", 10}, {2, 2, 150, "kthreadd", 0}});
  Tracking x;
  ASSERT_TRUE(x.apply(1));
  EXPECT_TRUE(x.ev.empty()) << "the first walk is a baseline";
  EXPECT_EQ(x.pt.size(), 1U) << "kernel threads are not processes";
  EXPECT_EQ(x.pt.rows()[0].preexisting, true);
  // fork: pid 9 (copy of init's mm in page 12), then exec (mm page 13, new comm), then exit.
  g.task(3, 9, 500, "init", 12);
  g.link({1, 2, 3});
  ASSERT_TRUE(x.apply(2));
  ASSERT_EQ(x.ev.size(), 1U);
  EXPECT_EQ(x.ev[0].type, "birth");
  EXPECT_EQ(x.pt.owner(SynthGuest::pgd_phys(12))->pid, 9);
  g.task(3, 9, 500, "ptkchild", 13);
  x.ev.clear();
  x.live.clear();
  ASSERT_TRUE(x.apply(3));
  ASSERT_EQ(x.ev.size(), 1U);
  EXPECT_EQ(x.ev[0].type, "exec");
  EXPECT_EQ(x.ev[0].comm, "ptkchild");
  EXPECT_EQ(std::count(x.live.begin(), x.live.end(), SynthGuest::pgd_phys(12)), 0) << "the forked copy died at exec";
  // PID reuse: pid 9 again with another start_time is a new process; the old one exited.
  g.task(3, 9, 777, "sh", 14);
  x.ev.clear();
  ASSERT_TRUE(x.apply(4));
  ASSERT_EQ(x.ev.size(), 2U);
  EXPECT_EQ(x.ev[0].type, "birth");
  EXPECT_EQ(x.ev[1].type, "exit");
  EXPECT_EQ(x.ev[1].comm, "ptkchild");
  // An incomplete walk never infers exits.
  g.link({1});
  const LinuxLayout l = layout();
  g.put_va64(SynthGuest::va(1) + l.task_tasks, 0x1234);
  x.ev.clear();
  EXPECT_FALSE(x.apply(5));
  EXPECT_TRUE(x.ev.empty());
  EXPECT_EQ(x.pt.counters().incomplete, 1U);
  g.link({1});
  ASSERT_TRUE(x.apply(6));
  ASSERT_EQ(x.ev.size(), 1U);
  EXPECT_EQ(x.ev[0].type, "exit");
  EXPECT_EQ(x.pt.counters().births, 2U);
  EXPECT_EQ(x.pt.counters().exits, 2U);
}

TEST_F(LinuxTest, ProbeConfirmsAKnownTaskCheaply) {
  SynthGuest g;
  g.tasks({{1, 1, 100, "init", 10}, {3, 9, 500, "sh", 12}});
  Tracking x;
  ASSERT_TRUE(x.apply(1));
  const ProcRow* row = x.pt.owner_row(SynthGuest::pgd_phys(12));
  ASSERT_NE(row, nullptr);
  EXPECT_EQ(row->task, SynthGuest::va(3));
  g.task(3, 9, 500, "ptkchild", 12);  // renamed in place
  auto t = x.li.probe(SynthGuest::kCr3, row->task);
  ASSERT_TRUE(t);
  EXPECT_TRUE(x.pt.refresh(*row, *t));
  EXPECT_EQ(x.pt.owner(SynthGuest::pgd_phys(12))->comm, "ptkchild");
  g.task(3, 10, 900, "other", 12);  // the slab slot now holds another process
  t = x.li.probe(SynthGuest::kCr3, row->task);
  ASSERT_TRUE(t);
  EXPECT_FALSE(x.pt.refresh(*row, *t)) << "another (pid, start_time)";
  EXPECT_FALSE(x.li.probe(SynthGuest::kCr3, 0x1000)) << "not a kernel address";
  EXPECT_FALSE(x.li.probe(SynthGuest::kCr3, SynthGuest::va(30))) << "unmapped";
}

TEST(LinuxLayout, MissingFilesAreClearErrors) {
  try {
    (void)LinuxLayout::load("/nonexistent/btf", "/nonexistent/System.map");
    FAIL() << "no throw";
  } catch (const std::runtime_error& e) {
    EXPECT_NE(std::string(e.what()).find("/nonexistent/btf"), std::string::npos) << e.what();
  }
}

// ---- LinuxLayout::load over a synthetic kernel BTF ----

// Where the synthetic BTF puts what load() resolves. None is at 0 (a default) and list_head.next follows prev
// (unlike Linux), so an offset load() did not read from the BTF cannot pass.
constexpr std::uint32_t kBtfListNext = 8;
constexpr std::uint32_t kBtfMm = 0x498, kBtfTasks = 0x4e8, kBtfPid = 0x5a0, kBtfTgid = 0x5a4;
constexpr std::uint32_t kBtfStartTime = 0x6b0, kBtfComm = 0x738;
// mm_struct.pgd sits in an anonymous union at 0x8 of an anonymous struct at 0x40 (Linux 6.x has one such level):
// load() must add up the levels.
constexpr std::uint32_t kBtfMmAnonStruct = 0x40, kBtfMmAnonUnion = 0x8, kBtfMmPgd = kBtfMmAnonStruct + kBtfMmAnonUnion;

// The members load() resolves, as "struct.member".
constexpr std::array<std::string_view, 8> kBtfRequired{
    "task_struct.tasks", "task_struct.pid",        "task_struct.tgid", "task_struct.comm",
    "task_struct.mm",    "task_struct.start_time", "mm_struct.pgd",    "list_head.next"};

struct BtfFree {
  void operator()(btf* b) const { btf__free(b); }
};

// A file removed with the test, named per process (ctest may run this binary's tests in parallel).
struct TempFile {
  std::string path;
  explicit TempFile(const std::string& name)
      : path(::testing::TempDir() + "/proctrack-" + std::to_string(::getpid()) + "-" + name) {}
  ~TempFile() { std::remove(path.c_str()); }
  TempFile(const TempFile&) = delete;
  TempFile& operator=(const TempFile&) = delete;
};

// Writes a raw BTF blob (as /sys/kernel/btf/vmlinux is) with the types load() reads at the offsets above, through
// libbpf's BTF writer. `omit` ("struct.member") is left out.
void write_btf(const std::string& path, std::string_view omit = {}) {
  std::unique_ptr<btf, BtfFree> owner(btf__new_empty());
  ASSERT_NE(owner, nullptr);
  btf* b = owner.get();
  // Writer calls return a type id (> 0), or 0 for a field; a negative errno on failure.
  const auto ok = [](int r) {
    EXPECT_GE(r, 0) << "libbpf BTF writer: " << r;
    return r;
  };
  const auto field = [&](const char* type, const char* member, int type_id, std::uint32_t byte_off) {
    if (omit != std::string(type) + "." + member) ok(btf__add_field(b, member, type_id, byte_off * 8, 0));
  };
  const int chr = ok(btf__add_int(b, "char", 1, BTF_INT_CHAR));
  const int s32 = ok(btf__add_int(b, "int", 4, BTF_INT_SIGNED));
  const int u64 = ok(btf__add_int(b, "long long unsigned int", 8, 0));
  const int comm = ok(btf__add_array(b, s32, chr, 16));

  // struct list_head { struct list_head *prev, *next; }: the pointer names the struct added next (BTF allows a
  // reference forward).
  const int list_ptr = ok(btf__add_ptr(b, static_cast<int>(btf__type_cnt(b)) + 1));
  const int list = ok(btf__add_struct(b, "list_head", 16));
  field("list_head", "prev", list_ptr, 0);
  field("list_head", "next", list_ptr, kBtfListNext);

  // "mm_struct.pgd" is what load() asks for, though the field is the union's.
  const int pgd_ptr = ok(btf__add_ptr(b, u64));
  const int mm_union = ok(btf__add_union(b, nullptr, 8));
  ok(btf__add_field(b, "pgd_spare", u64, 0, 0));
  field("mm_struct", "pgd", pgd_ptr, 0);
  const int mm_anon = ok(btf__add_struct(b, nullptr, 0x100));
  ok(btf__add_field(b, "mmap_base", u64, 0, 0));
  ok(btf__add_field(b, nullptr, mm_union, kBtfMmAnonUnion * 8, 0));
  const int mm = ok(btf__add_struct(b, "mm_struct", 0x400));
  ok(btf__add_field(b, "mm_count", s32, 0, 0));
  ok(btf__add_field(b, nullptr, mm_anon, kBtfMmAnonStruct * 8, 0));
  const int mm_ptr = ok(btf__add_ptr(b, mm));

  // A named member whose type has its own `pid`: load() looks inside anonymous members only.
  const int thread = ok(btf__add_struct(b, "thread_struct", 0x40));
  ok(btf__add_field(b, "pid", s32, 0, 0));
  ok(btf__add_struct(b, "task_struct", 0x1000));
  ok(btf__add_field(b, "thread", thread, 0x10 * 8, 0));
  field("task_struct", "mm", mm_ptr, kBtfMm);
  field("task_struct", "tasks", list, kBtfTasks);
  field("task_struct", "pid", s32, kBtfPid);
  field("task_struct", "tgid", s32, kBtfTgid);
  field("task_struct", "start_time", u64, kBtfStartTime);
  field("task_struct", "comm", comm, kBtfComm);

  std::uint32_t size = 0;
  const void* raw = btf__raw_data(b, &size);
  ASSERT_NE(raw, nullptr);
  std::ofstream out(path, std::ios::binary | std::ios::trunc);
  out.write(static_cast<const char*>(raw), size);
  ASSERT_TRUE(out.flush()) << path;
}

TEST(LinuxLayout, LoadsOffsetsFromBtfAndSymbolsFromSystemMap) {
  const TempFile btf_file("vmlinux.btf"), map("System.map");
  ASSERT_NO_FATAL_FAILURE(write_btf(btf_file.path));
  std::ofstream(map.path) << "ffffffff81000000 T _text\nffffffff81a00000 T entry_SYSCALL_64\n"
                             "ffffffff82a0c940 D init_task\n";
  const LinuxLayout l = LinuxLayout::load(btf_file.path, map.path);
  EXPECT_EQ(l.task_tasks, kBtfTasks);
  EXPECT_EQ(l.task_pid, kBtfPid) << "not thread_struct's pid";
  EXPECT_EQ(l.task_tgid, kBtfTgid);
  EXPECT_EQ(l.task_comm, kBtfComm);
  EXPECT_EQ(l.task_mm, kBtfMm);
  EXPECT_EQ(l.task_start_time, kBtfStartTime);
  EXPECT_EQ(l.mm_pgd, kBtfMmPgd);
  EXPECT_EQ(l.list_next, kBtfListNext);
  EXPECT_EQ(l.sym_init_task, 0xffffffff82a0c940ULL);
  EXPECT_EQ(l.sym_entry_syscall, 0xffffffff81a00000ULL);
  std::ofstream(map.path) << "ffffffff81000000 T _text\n";
  EXPECT_THROW((void)LinuxLayout::load(btf_file.path, map.path), std::runtime_error);
}

TEST(LinuxLayout, MissingBtfMemberIsAClearError) {
  const TempFile map("System.map");
  std::ofstream(map.path) << "ffffffff81a00000 T entry_SYSCALL_64\nffffffff82a0c940 D init_task\n";
  for (const std::string_view gone : kBtfRequired) {
    SCOPED_TRACE(gone);
    const TempFile btf_file("vmlinux.btf");
    ASSERT_NO_FATAL_FAILURE(write_btf(btf_file.path, gone));
    const auto dot = gone.find('.');
    const std::string want =
        "struct " + std::string(gone.substr(0, dot)) + " has no member " + std::string(gone.substr(dot + 1));
    try {
      (void)LinuxLayout::load(btf_file.path, map.path);
      ADD_FAILURE() << "no throw";
    } catch (const std::runtime_error& e) {
      const std::string what = e.what();
      EXPECT_NE(what.find(btf_file.path), std::string::npos) << what;
      EXPECT_NE(what.find(want), std::string::npos) << what;
    }
  }
}

// ---- The device over a synthetic guest with the OS-aware layer on ----

// layout()'s symbols at the synthetic BTF's offsets: what the device loads from the files written below.
LinuxLayout btf_layout() {
  LinuxLayout l = layout();
  l.task_tasks = kBtfTasks, l.task_pid = kBtfPid, l.task_tgid = kBtfTgid, l.task_comm = kBtfComm;
  l.task_mm = kBtfMm, l.task_start_time = kBtfStartTime, l.mm_pgd = kBtfMmPgd, l.list_next = kBtfListNext;
  return l;
}

// vCPU 0 loads new_v, with the synthetic kernel's MSR_LSTAR.
vm_event_request_t cr3_write(std::uint64_t old_v, std::uint64_t new_v) {
  return test::cr3_write(0, old_v, new_v, kEntrySym + kSlide);
}

// Linux loads an exec'ing process's new address space before it renames the process (exec_mmap, then
// __set_task_comm in the same execve): the walk at that CR3 write reads the old name. A process that then runs
// alone makes no further CR3 write, so the device reads its occupant's name again a few ms later; I/O attributed
// through who_ran() then carries the new name.
TEST_F(LinuxTest, DeviceRereadsTheNameOfAnOccupantThatJustExeced) {
  const TempFile btf_file("dev-vmlinux.btf"), map("dev-System.map");
  ASSERT_NO_FATAL_FAILURE(write_btf(btf_file.path));
  std::ofstream(map.path) << "ffffffff81000000 T _text\nffffffff81a00000 T entry_SYSCALL_64\nffffffff82000000 D init_task\n";
  SynthGuest g(btf_layout());
  for (const std::uint64_t mm : std::array<std::uint64_t, 3>{10, 12, 13}) g.kernel_half(mm);
  g.tasks({{1, 1, 100, "init", 10}, {3, 9, 500, "sh", 12}});
  Directory dir;
  daemon::Reactor loop;
  {
    ProcTrackDevice dev(daemon::DeviceSpec{daemon::DeviceKey{"proctrack", kDom, 0}, "",
                                           {{"btf", btf_file.path}, {"system_map", map.path}, {"rescan_ms", "60000"}}},
                        dir);
    ASSERT_TRUE(dev.start(loop).ok());
    auto feed = [&](const vm_event_request_t& r) {
      ASSERT_TRUE(fake::monitor_push_request(kDom, r));
      for (int i = 0; i < 20 && fake::monitor_pop_responses(kDom).empty(); ++i) (void)loop.run_once(50);
    };
    feed(cr3_write(SynthGuest::pgd_phys(10), SynthGuest::pgd_phys(12)));
    ASSERT_EQ(dir.who_ran(kDom, 0, now_ns())->comm, "sh") << dev.stats().dump();
    // execve: the new mm is loaded while the task still has its old name; the name changes afterwards.
    g.task(3, 9, 500, "sh", 13);
    feed(cr3_write(SynthGuest::pgd_phys(12), SynthGuest::pgd_phys(13)));
    EXPECT_EQ(dir.who_ran(kDom, 0, now_ns())->comm, "sh") << "what the walk at the CR3 write could see";
    EXPECT_EQ(dev.stats()["proc_execs"], 1);
    g.task(3, 9, 500, "busybox-hi", 13);
    const std::int64_t renamed_at = now_ns();
    for (int i = 0; i < 40 && dev.stats()["renames"] == 0; ++i) (void)loop.run_once(10);
    EXPECT_EQ(dev.stats()["renames"], 1);
    const auto now = dir.who_ran(kDom, 0, now_ns());
    ASSERT_TRUE(now);
    EXPECT_EQ(now->comm, "busybox-hi");
    EXPECT_EQ(now->pid, 9);
    EXPECT_EQ(dir.who_ran(kDom, 0, renamed_at)->comm, "sh") << "the timeline keeps what was true before";
    dev.stop();
  }
}

}  // namespace
}  // namespace gears::proctrack
