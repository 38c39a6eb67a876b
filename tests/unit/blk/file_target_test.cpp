// The file target through the Target interface, as BlkDevice drives it (poll fd(), on_ready()), on a disk
// filesystem (io_uring) and on tmpfs (served inline: tmpfs cannot do non-blocking I/O on Linux 6.1).
#include <gtest/gtest.h>

#include <fcntl.h>
#include <poll.h>
#include <sys/uio.h>
#include <unistd.h>

#include <cstring>
#include <filesystem>
#include <map>
#include <vector>

#include "dom0/backends/blk/target.hpp"

namespace gears {
namespace {

using blk::IoKind;
using blk::Target;
using blk::TargetIo;
using Bytes = std::vector<std::byte>;

Bytes pattern(std::size_t n, unsigned seed) {
  Bytes b(n);
  for (std::size_t i = 0; i < n; ++i) b[i] = std::byte(static_cast<unsigned char>((i * 31 + seed * 7 + i / 4096) & 0xff));
  return b;
}

// Submits `ios`, then polls fd() and calls on_ready() until every tag completed; returns tag -> result.
std::map<std::uint64_t, int> run(Target& t, const std::vector<TargetIo>& ios) {
  std::map<std::uint64_t, int> got;
  for (const auto& io : ios) EXPECT_TRUE(static_cast<bool>(t.submit(io)));
  t.kick();
  for (int spins = 0; got.size() < ios.size() && spins < 1000; ++spins) {
    pollfd p{t.fd(), static_cast<short>(t.poll_events()), 0};
    if (::poll(&p, 1, 5000) <= 0) break;
    t.on_ready(static_cast<std::uint32_t>(p.revents), [&](std::uint64_t tag, int res) { got[tag] = res; });
  }
  EXPECT_EQ(t.in_flight(), 0U);
  return got;
}

class FileTargetTest : public ::testing::TestWithParam<const char*> {
 protected:
  void SetUp() override {
    const std::filesystem::path dir = GetParam();
    ASSERT_TRUE(std::filesystem::is_directory(dir)) << dir;
    path_ = (dir / ("gears-ft-" + std::to_string(::getpid()))).string();
    const int fd = ::open(path_.c_str(), O_CREAT | O_TRUNC | O_RDWR, 0600);
    ASSERT_GE(fd, 0);
    ASSERT_EQ(::ftruncate(fd, 8 << 20), 0);
    ::close(fd);
  }
  void TearDown() override {
    if (!path_.empty()) std::filesystem::remove(path_);
  }
  // Runs `body` on the file opened in each cache mode in turn; a fatal failure ends the test, as in a plain loop.
  template <class Body>
  void for_each_mode(std::uint32_t depth, Body body) {
    for (auto mode : {blk::CacheMode::writethrough, blk::CacheMode::writeback}) {
      blk::TargetOptions o;
      o.cache = mode;
      o.depth = depth;
      body(*blk::open_file_target(path_, o));
      if (HasFatalFailure()) return;
    }
  }
  std::string path_;
};

TEST_P(FileTargetTest, WritesReadBackFlushesAndDiscardsThroughThePolledInterface) {
  for_each_mode(8, [&](Target& t) {
    const bool in_memory = std::string(GetParam()) == "/dev/shm";
    EXPECT_EQ(t.inline_io(), in_memory) << t.describe();
    Bytes a = pattern(1 << 20, 1), b = pattern(64 << 10, 2);
    std::vector<TargetIo> w{{IoKind::write, 1, 4096, a, 0}, {IoKind::write, 2, 3 << 20, b, 0}};
    for (auto [tag, res] : run(t, w)) EXPECT_EQ(res, 0) << "write " << tag;
    auto f = run(t, {{IoKind::flush, 3, 0, {}, 0}});
    EXPECT_EQ(f[3], 0);
    Bytes ra(a.size()), rb(b.size());
    auto r = run(t, {{IoKind::read, 4, 4096, ra, 0}, {IoKind::read, 5, 3 << 20, rb, 0}});
    ASSERT_EQ(r.size(), 2U);
    EXPECT_EQ(r[4], 0);
    EXPECT_EQ(r[5], 0);
    EXPECT_EQ(ra, a);
    EXPECT_EQ(rb, b);
    auto d = run(t, {{IoKind::discard, 6, 8192, {}, 16384}});
    EXPECT_EQ(d[6], 0);
    Bytes z(16384);
    auto rz = run(t, {{IoKind::read, 7, 8192, z, 0}});
    EXPECT_EQ(rz[7], 0);
    EXPECT_EQ(z, Bytes(16384));
    // Beyond the end of the file: a read error, not a hang.
    Bytes past(4096);
    auto e = run(t, {{IoKind::read, 8, 8 << 20, past, 0}});
    ASSERT_EQ(e.size(), 1U);
    EXPECT_LT(e[8], 0);
  });
}

// Scatter-gather (zero-bounce): reads and writes through iovecs of odd sizes and places, byte-exact; a read that
// runs past the end of the file is a short transfer through the iovecs, then an error.
TEST_P(FileTargetTest, VectoredReadsAndWritesAreByteExact) {
  for_each_mode(4, [&](Target& t) {
    EXPECT_TRUE(t.vectored_io());
    // Four separate "pages", each used from a sector offset for a whole number of sectors.
    std::vector<Bytes> pages(4, Bytes(4096));
    const std::pair<std::size_t, std::size_t> parts[] = {{3 * 512, 5 * 512}, {0, 4096}, {1024, 512}, {512, 6 * 512}};
    Bytes flat;
    std::vector<iovec> w;
    for (std::size_t i = 0; i < 4; ++i) {
      pages[i] = pattern(4096, static_cast<unsigned>(10 + i));
      w.push_back({pages[i].data() + parts[i].first, parts[i].second});
      flat.insert(flat.end(), pages[i].begin() + static_cast<long>(parts[i].first),
                  pages[i].begin() + static_cast<long>(parts[i].first + parts[i].second));
    }
    TargetIo wio{IoKind::write, 1, 512 * 77, {}, 0, w};
    auto wr = run(t, {wio});
    EXPECT_EQ(wr[1], 0);
    Bytes check(flat.size());
    auto cr = run(t, {{IoKind::read, 2, 512 * 77, check, 0}});
    EXPECT_EQ(cr[2], 0);
    EXPECT_EQ(check, flat);

    // Read back into other pieces (sentinel around them).
    std::vector<Bytes> into(4, Bytes(4096, std::byte{0xee}));
    std::vector<iovec> r{{into[0].data() + 2048, 2048}, {into[1].data(), 4096}, {into[2].data() + 512, 3072},
                         {into[3].data(), 1024}};
    auto rr = run(t, {{IoKind::read, 3, 512 * 77, {}, 0, r}});
    EXPECT_EQ(rr[3], 0);
    Bytes got;
    for (const auto& v : std::vector<iovec>{{into[0].data() + 2048, 2048}, {into[1].data(), 4096},
                                            {into[2].data() + 512, 3072}, {into[3].data(), 1024}}) {
      const auto* p = static_cast<const std::byte*>(v.iov_base);
      got.insert(got.end(), p, p + v.iov_len);
    }
    EXPECT_EQ(got, flat);
    EXPECT_EQ(into[0][2047], std::byte{0xee});
    EXPECT_EQ(into[2][511], std::byte{0xee});
    EXPECT_EQ(into[2][512 + 3072], std::byte{0xee});
    EXPECT_EQ(into[3][1024], std::byte{0xee});

    // 4 KiB before the end, 8 KiB asked for: the first iovec is filled, then an error.
    Bytes a(4096), b(4096);
    std::vector<iovec> past{{a.data(), 4096}, {b.data(), 4096}};
    auto e = run(t, {{IoKind::read, 4, (8 << 20) - 4096, {}, 0, past}});
    ASSERT_EQ(e.size(), 1U);
    EXPECT_LT(e[4], 0);
  });
}

INSTANTIATE_TEST_SUITE_P(Filesystems, FileTargetTest, ::testing::Values("/dev/shm", "/var/tmp"));

// A file in memory is served inline: a caller that calls on_ready(0) right after submitting (BlkDevice does) needs
// no kick(). Everything is reported by that call, and fd() is left quiet: no wake-up follows for nothing.
class InlineTargetTest : public FileTargetTest {};
TEST_P(InlineTargetTest, ReportsAtTheDirectCallWithoutSignallingTheFd) {
  for_each_mode(8, [&](Target& t) {
    ASSERT_TRUE(t.inline_io()) << t.describe();
    Bytes data = pattern(3 * 4096, 5), back(3 * 4096);
    ASSERT_TRUE(static_cast<bool>(t.submit({IoKind::write, 1, 4096 * 9, data, 0})));
    ASSERT_TRUE(static_cast<bool>(t.submit({IoKind::read, 2, 4096 * 9, back, 0})));
    EXPECT_EQ(t.in_flight(), 2U);
    std::map<std::uint64_t, int> got;
    t.on_ready(0, [&](std::uint64_t tag, int res) { got[tag] = res; });
    EXPECT_EQ(got, (std::map<std::uint64_t, int>{{1, 0}, {2, 0}}));
    EXPECT_EQ(t.in_flight(), 0U);
    EXPECT_EQ(back, data);
    pollfd p{t.fd(), static_cast<short>(t.poll_events()), 0};
    EXPECT_EQ(::poll(&p, 1, 0), 0) << "the fd was signalled with nothing to report";
    // kick() still brings a poller back (CachedTarget and the polled loop rely on it).
    ASSERT_TRUE(static_cast<bool>(t.submit({IoKind::read, 3, 0, back, 0})));
    t.kick();
    EXPECT_EQ(::poll(&p, 1, 0), 1);
    got.clear();
    t.on_ready(static_cast<std::uint32_t>(p.revents), [&](std::uint64_t tag, int res) { got[tag] = res; });
    EXPECT_EQ(got, (std::map<std::uint64_t, int>{{3, 0}}));
    EXPECT_EQ(::poll(&p, 1, 0), 0);
  });
}
INSTANTIATE_TEST_SUITE_P(InMemory, InlineTargetTest, ::testing::Values("/dev/shm"));

}  // namespace
}  // namespace gears
