// The OS-aware layer over a synthetic Linux guest built in the fake hypervisor's guest memory: page tables,
// init_task and a task list, with a made-up layout (the real one comes from BTF + System.map).
#include "services/proctrack/linux.hpp"
#include "services/proctrack/process_table.hpp"
#include "tests/fake/fake.hpp"

#include <gtest/gtest.h>

#include <algorithm>
#include <cstring>
#include <fstream>

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
  SynthGuest() {
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
    const LinuxLayout l = layout();
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
  // Links tasks (by region page) into a circular list starting at init_task (page 0).
  void link(std::vector<std::uint64_t> pages) {
    const LinuxLayout l = layout();
    pages.insert(pages.begin(), 0);
    for (std::size_t i = 0; i < pages.size(); ++i)
      put_va64(va(pages[i]) + l.task_tasks + l.list_next, va(pages[(i + 1) % pages.size()]) + l.task_tasks);
  }
  static std::uint64_t pgd_phys(std::uint64_t mm_page) { return (16 + mm_page) * kPage; }

 private:
  std::span<std::byte> mem_;
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
  g.task(1, 1, 100, "init", 10);
  g.task(2, 2, 150, "kthreadd", 0);
  g.task(3, 77, 900, "sh", 11);
  g.link({1, 2, 3});
  xen::ForeignMemory fm;
  ForeignGuestMemory mem(fm, kDom);
  LinuxIntrospector li(layout(), mem);
  auto w = li.walk(SynthGuest::kCr3, kEntrySym + kSlide);
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
  g.task(1, 1, 100, "init", 10);
  g.task(2, 5, 100, "loop", 11);
  g.link({1, 2});
  const LinuxLayout l = layout();
  g.put_va64(SynthGuest::va(2) + l.task_tasks, SynthGuest::va(1) + l.task_tasks);  // 2 -> 1: a cycle without the head
  xen::ForeignMemory fm;
  ForeignGuestMemory mem(fm, kDom);
  LinuxIntrospector li(l, mem);
  auto w = li.walk(SynthGuest::kCr3, kEntrySym + kSlide);
  ASSERT_TRUE(w.ok());
  EXPECT_FALSE(w->complete);
  EXPECT_EQ(w->tasks.size(), 2U);
  g.put_va64(SynthGuest::va(2) + l.task_tasks, 0x1234);  // a user-space pointer
  w = li.walk(SynthGuest::kCr3, kEntrySym + kSlide);
  ASSERT_TRUE(w.ok());
  EXPECT_FALSE(w->complete);
  g.put_va64(SynthGuest::va(2) + l.task_tasks, SynthGuest::va(30));  // an unmapped kernel page
  w = li.walk(SynthGuest::kCr3, kEntrySym + kSlide);
  ASSERT_TRUE(w.ok());
  EXPECT_FALSE(w->complete);
}

TEST_F(LinuxTest, WrongSlideOrWrongKernelIsAnError) {
  SynthGuest g;
  g.link({});
  xen::ForeignMemory fm;
  ForeignGuestMemory mem(fm, kDom);
  LinuxIntrospector li(layout(), mem);
  EXPECT_EQ(li.walk(SynthGuest::kCr3, kEntrySym + kSlide + 0x40).error().code, EINVAL) << "slide not 2 MiB aligned";
  EXPECT_EQ(li.walk(SynthGuest::kCr3, 0x7fff0000).error().code, EINVAL) << "LSTAR not a kernel address";
  EXPECT_EQ(li.walk(SynthGuest::kCr3, kEntrySym + kSlide + 0x200000).error().code, EFAULT) << "init_task unmapped";
  g.task(0, 0, 0, "notswapper", 0);
  EXPECT_EQ(li.walk(SynthGuest::kCr3, kEntrySym + kSlide).error().code, EINVAL) << "layout of another kernel";
  auto ok = LinuxIntrospector(layout(), mem).walk(SynthGuest::kCr3, kEntrySym + kSlide);
  EXPECT_FALSE(ok.ok());
}

TEST_F(LinuxTest, ProcessTableFollowsWalks) {
  SynthGuest g;
  g.task(1, 1, 100, "init", 10);
  g.task(2, 2, 150, "kthreadd", 0);
  g.link({1, 2});
  xen::ForeignMemory fm;
  ForeignGuestMemory mem(fm, kDom);
  LinuxIntrospector li(layout(), mem);
  ProcessTable pt;
  std::vector<ProcEvent> ev;
  std::vector<std::uint64_t> live;
  ASSERT_TRUE(pt.apply(li.walk(SynthGuest::kCr3, kEntrySym + kSlide).value(), 1, false, ev, live));
  EXPECT_TRUE(ev.empty()) << "the first walk is a baseline";
  EXPECT_EQ(pt.size(), 1U) << "kernel threads are not processes";
  EXPECT_EQ(pt.rows()[0].preexisting, true);
  // fork: pid 9 (copy of init's mm in page 12), then exec (mm page 13, new comm), then exit.
  g.task(3, 9, 500, "init", 12);
  g.link({1, 2, 3});
  ASSERT_TRUE(pt.apply(li.walk(SynthGuest::kCr3, kEntrySym + kSlide).value(), 2, false, ev, live));
  ASSERT_EQ(ev.size(), 1U);
  EXPECT_EQ(ev[0].type, "birth");
  EXPECT_EQ(pt.owner(SynthGuest::pgd_phys(12))->pid, 9);
  g.task(3, 9, 500, "ptkchild", 13);
  ev.clear();
  live.clear();
  ASSERT_TRUE(pt.apply(li.walk(SynthGuest::kCr3, kEntrySym + kSlide).value(), 3, false, ev, live));
  ASSERT_EQ(ev.size(), 1U);
  EXPECT_EQ(ev[0].type, "exec");
  EXPECT_EQ(ev[0].comm, "ptkchild");
  EXPECT_EQ(std::count(live.begin(), live.end(), SynthGuest::pgd_phys(12)), 0) << "the forked copy died at exec";
  // PID reuse: pid 9 again with another start_time is a new process; the old one exited.
  g.task(3, 9, 777, "sh", 14);
  ev.clear();
  ASSERT_TRUE(pt.apply(li.walk(SynthGuest::kCr3, kEntrySym + kSlide).value(), 4, false, ev, live));
  ASSERT_EQ(ev.size(), 2U);
  EXPECT_EQ(ev[0].type, "birth");
  EXPECT_EQ(ev[1].type, "exit");
  EXPECT_EQ(ev[1].comm, "ptkchild");
  // An incomplete walk never infers exits.
  g.link({1});
  const LinuxLayout l = layout();
  g.put_va64(SynthGuest::va(1) + l.task_tasks, 0x1234);
  ev.clear();
  EXPECT_FALSE(pt.apply(li.walk(SynthGuest::kCr3, kEntrySym + kSlide).value(), 5, false, ev, live));
  EXPECT_TRUE(ev.empty());
  EXPECT_EQ(pt.counters().incomplete, 1U);
  g.link({1});
  ASSERT_TRUE(pt.apply(li.walk(SynthGuest::kCr3, kEntrySym + kSlide).value(), 6, false, ev, live));
  ASSERT_EQ(ev.size(), 1U);
  EXPECT_EQ(ev[0].type, "exit");
  EXPECT_EQ(pt.counters().births, 2U);
  EXPECT_EQ(pt.counters().exits, 2U);
}

TEST_F(LinuxTest, ProbeConfirmsAKnownTaskCheaply) {
  SynthGuest g;
  g.task(1, 1, 100, "init", 10);
  g.task(3, 9, 500, "sh", 12);
  g.link({1, 3});
  xen::ForeignMemory fm;
  ForeignGuestMemory mem(fm, kDom);
  LinuxIntrospector li(layout(), mem);
  ProcessTable pt;
  std::vector<ProcEvent> ev;
  std::vector<std::uint64_t> live;
  ASSERT_TRUE(pt.apply(li.walk(SynthGuest::kCr3, kEntrySym + kSlide).value(), 1, false, ev, live));
  const ProcRow* row = pt.owner_row(SynthGuest::pgd_phys(12));
  ASSERT_NE(row, nullptr);
  EXPECT_EQ(row->task, SynthGuest::va(3));
  g.task(3, 9, 500, "ptkchild", 12);  // renamed in place
  auto t = li.probe(SynthGuest::kCr3, row->task);
  ASSERT_TRUE(t);
  EXPECT_TRUE(pt.refresh(*row, *t));
  EXPECT_EQ(pt.owner(SynthGuest::pgd_phys(12))->comm, "ptkchild");
  g.task(3, 10, 900, "other", 12);  // the slab slot now holds another process
  t = li.probe(SynthGuest::kCr3, row->task);
  ASSERT_TRUE(t);
  EXPECT_FALSE(pt.refresh(*row, *t)) << "another (pid, start_time)";
  EXPECT_FALSE(li.probe(SynthGuest::kCr3, 0x1000)) << "not a kernel address";
  EXPECT_FALSE(li.probe(SynthGuest::kCr3, SynthGuest::va(30))) << "unmapped";
}

TEST(LinuxLayout, MissingFilesAreClearErrors) {
  try {
    (void)LinuxLayout::load("/nonexistent/btf", "/nonexistent/System.map");
    FAIL() << "no throw";
  } catch (const std::runtime_error& e) {
    EXPECT_NE(std::string(e.what()).find("/nonexistent/btf"), std::string::npos) << e.what();
  }
}

TEST(LinuxLayout, LoadsTheRunningKernelsBtf) {
  if (!std::ifstream("/sys/kernel/btf/vmlinux")) GTEST_SKIP() << "no /sys/kernel/btf/vmlinux here";
  const std::string map = ::testing::TempDir() + "/proctrack-System.map";
  std::ofstream(map) << "ffffffff81000000 T _text\nffffffff81a00000 T entry_SYSCALL_64\nffffffff82a0c940 D init_task\n";
  const LinuxLayout l = LinuxLayout::load("/sys/kernel/btf/vmlinux", map);
  EXPECT_EQ(l.sym_init_task, 0xffffffff82a0c940ULL);
  EXPECT_EQ(l.sym_entry_syscall, 0xffffffff81a00000ULL);
  EXPECT_EQ(l.list_next, 0U);
  EXPECT_NE(l.task_pid, l.task_tgid);
  EXPECT_GT(l.task_comm, l.task_pid);
  EXPECT_GT(l.mm_pgd, 0U) << "pgd sits inside mm_struct's anonymous struct, after other members";
  std::ofstream(map) << "ffffffff81000000 T _text\n";
  EXPECT_THROW((void)LinuxLayout::load("/sys/kernel/btf/vmlinux", map), std::runtime_error);
}

}  // namespace
}  // namespace gears::proctrack
