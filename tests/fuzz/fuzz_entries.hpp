// Fuzz entry points, shared by the libFuzzer binaries (clang, -DGEARS_FUZZ=ON) and the corpus
// replay unit test (GCC, always built). Each returns 0; a violated invariant aborts.
#pragma once

#include <cstddef>
#include <cstdint>

namespace gears::fuzz {

// hints::decode on arbitrary bytes; anything accepted must re-encode, decode back equal, and
// survive to_string -> parse_text unchanged.
int hints_decode(const std::uint8_t* data, std::size_t size);
// hints::parse_text on arbitrary text; anything accepted must encode and decode back equal.
int hints_text(const std::uint8_t* data, std::size_t size);
// A StreamConsumer facing a hostile producer: the input scripts the shared header and data
// (indices, lengths, torn frames) between consumer operations.
int stream_consumer(const std::uint8_t* data, std::size_t size);

}  // namespace gears::fuzz
