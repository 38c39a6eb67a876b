// Replays the checked-in seed corpus (tests/fuzz/corpus/<target>/) through the fuzz entry points,
// so they run under `make test` (ASan+UBSan, GCC) even where libFuzzer is not built.
#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>
#include <iterator>
#include <vector>

#include "tests/fuzz/fuzz_entries.hpp"

namespace gears::fuzz {
namespace {

std::size_t replay(const char* target, int (*entry)(const std::uint8_t*, std::size_t)) {
  const std::filesystem::path dir = std::filesystem::path(GEARS_FUZZ_CORPUS_DIR) / target;
  std::size_t n = 0;
  for (const auto& f : std::filesystem::directory_iterator(dir)) {
    std::ifstream in(f.path(), std::ios::binary);
    const std::vector<char> bytes{std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>()};
    EXPECT_EQ(entry(reinterpret_cast<const std::uint8_t*>(bytes.data()), bytes.size()), 0) << f.path();
    ++n;
  }
  return n;
}

TEST(FuzzReplay, HintsDecodeCorpus) { EXPECT_GT(replay("hints_decode", hints_decode), 10U); }
TEST(FuzzReplay, HintsTextCorpus) { EXPECT_GT(replay("hints_text", hints_text), 10U); }
TEST(FuzzReplay, StreamConsumerCorpus) { EXPECT_GT(replay("stream_consumer", stream_consumer), 10U); }
TEST(FuzzReplay, EmptyInputs) {
  EXPECT_EQ(hints_decode(nullptr, 0), 0);
  EXPECT_EQ(hints_text(nullptr, 0), 0);
  EXPECT_EQ(stream_consumer(nullptr, 0), 0);
}

}  // namespace
}  // namespace gears::fuzz
