// gears-sndfront-tone <hz> <seconds> [rate] [channels] [amplitude 0..1] > out.wav
// A 16-bit PCM WAV of a sine tone, for `aplay` in a guest (busybox has no tone generator).
// gears-sndfront-tone --alsa-conf > alsa.conf: a minimal alsa-lib configuration (hw PCM/ctl only), for guests
// without /usr/share/alsa (use with ALSA_CONFIG_PATH=alsa.conf aplay -D hw:0,0 ...).
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <numbers>
#include <string>
#include <vector>

namespace {
void put32(std::vector<unsigned char>& b, std::uint32_t v) {
  for (int i = 0; i < 4; ++i) b.push_back(static_cast<unsigned char>(v >> (8 * i)));
}
void put16(std::vector<unsigned char>& b, std::uint16_t v) {
  b.push_back(static_cast<unsigned char>(v));
  b.push_back(static_cast<unsigned char>(v >> 8));
}
bool parse(const char* s, double lo, double hi, double& out) {
  char* end = nullptr;
  out = std::strtod(s, &end);
  return end && *end == '\0' && out >= lo && out <= hi;
}
}  // namespace

constexpr const char* kAlsaConf = R"(pcm.hw {
  @args [ CARD DEV SUBDEV ]
  @args.CARD { type string default "0" }
  @args.DEV { type integer default 0 }
  @args.SUBDEV { type integer default -1 }
  type hw
  card $CARD
  device $DEV
  subdevice $SUBDEV
}
ctl.hw {
  @args [ CARD ]
  @args.CARD { type string default "0" }
  type hw
  card $CARD
}
pcm.!default { type hw card 0 device 0 }
ctl.!default { type hw card 0 }
)";

int main(int argc, char** argv) {
  if (argc == 2 && std::strcmp(argv[1], "--alsa-conf") == 0) return std::fputs(kAlsaConf, stdout) >= 0 ? 0 : 1;
  double hz = 0, secs = 0, rate = 44100, ch = 2, amp = 0.5;
  if (argc < 3 || !parse(argv[1], 1, 20000, hz) || !parse(argv[2], 0.01, 600, secs) ||
      (argc > 3 && !parse(argv[3], 8000, 192000, rate)) || (argc > 4 && !parse(argv[4], 1, 2, ch)) ||
      (argc > 5 && !parse(argv[5], 0, 1, amp))) {
    std::fprintf(stderr, "usage: gears-sndfront-tone <hz 1..20000> <seconds> [rate] [channels 1|2] [amplitude 0..1]\n");
    return 2;
  }
  const auto r = static_cast<std::uint32_t>(rate);
  const auto c = static_cast<std::uint16_t>(ch);
  const auto frames = static_cast<std::uint32_t>(secs * rate);
  const std::uint32_t data = frames * c * 2;
  std::vector<unsigned char> b;
  b.reserve(44 + data);
  b.insert(b.end(), {'R', 'I', 'F', 'F'});
  put32(b, 36 + data);
  b.insert(b.end(), {'W', 'A', 'V', 'E', 'f', 'm', 't', ' '});
  put32(b, 16);
  put16(b, 1);
  put16(b, c);
  put32(b, r);
  put32(b, r * c * 2);
  put16(b, static_cast<std::uint16_t>(c * 2));
  put16(b, 16);
  b.insert(b.end(), {'d', 'a', 't', 'a'});
  put32(b, data);
  for (std::uint32_t i = 0; i < frames; ++i) {
    const double v = amp * std::sin(2.0 * std::numbers::pi * hz * static_cast<double>(i) / rate);
    const auto s = static_cast<std::int16_t>(std::lround(v * 32767.0));
    for (std::uint16_t k = 0; k < c; ++k) put16(b, static_cast<std::uint16_t>(s));
  }
  return std::fwrite(b.data(), 1, b.size(), stdout) == b.size() ? 0 : 1;
}
