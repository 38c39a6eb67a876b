// media-wavcheck <file.wav> [--freq F]... [--duck MEDIA_HZ,VOICE_HZ] [--window S] [--threshold DB]
// Spectrum check for the media lab tests (host tool). Prints one JSON object:
//   duration_s, rate, channels,
//   peaks: the strongest spectral peaks (Goertzel scan 50..8000 Hz, 5 Hz steps, over the whole file),
//   tones[{hz, present_s, level_db}]: per tone, the time its level is above --threshold in --window windows
//     and its median level there (dBFS of the sine amplitude),
//   duck: {media_hz, voice_hz, before_db, during_db, after_db, attenuation_db, restored_db}: the media tone's
//     median level in windows before, during and after the voice tone (edges excluded).
#include <sndfile.h>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <numbers>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

namespace {

double goertzel_amp(const float* x, std::size_t n, double f, double rate) {
  const double w = 2.0 * std::numbers::pi * f / rate;
  const double c = 2.0 * std::cos(w);
  double s1 = 0, s2 = 0;
  for (std::size_t i = 0; i < n; ++i) {
    const double s0 = static_cast<double>(x[i]) + c * s1 - s2;
    s2 = s1;
    s1 = s0;
  }
  const double p = s1 * s1 + s2 * s2 - c * s1 * s2;
  return 2.0 * std::sqrt(std::max(p, 0.0)) / static_cast<double>(n);
}

double db(double a) { return 20.0 * std::log10(std::max(a, 1e-9)); }

double median(std::vector<double> v) {
  if (v.empty()) return -200.0;
  std::sort(v.begin(), v.end());
  return v[v.size() / 2];
}

}  // namespace

int main(int argc, char** argv) {
  if (argc < 2) {
    std::fprintf(stderr, "usage: media-wavcheck <file.wav> [--freq F]... [--duck M,V] [--window S] [--threshold DB]\n");
    return 2;
  }
  std::vector<double> freqs;
  double window = 0.1, threshold = -30.0, duck_m = 0, duck_v = 0;
  for (int i = 2; i < argc; ++i) {
    const std::string a = argv[i];
    if (a == "--freq" && i + 1 < argc) freqs.push_back(std::atof(argv[++i]));
    else if (a == "--window" && i + 1 < argc) window = std::atof(argv[++i]);
    else if (a == "--threshold" && i + 1 < argc) threshold = std::atof(argv[++i]);
    else if (a == "--duck" && i + 1 < argc && std::sscanf(argv[++i], "%lf,%lf", &duck_m, &duck_v) == 2) {
    } else {
      std::fprintf(stderr, "media-wavcheck: bad argument '%s'\n", a.c_str());
      return 2;
    }
  }
  SF_INFO info{};
  SNDFILE* f = sf_open(argv[1], SFM_READ, &info);
  if (!f) {
    std::fprintf(stderr, "media-wavcheck: %s: %s\n", argv[1], sf_strerror(nullptr));
    return 1;
  }
  std::vector<float> all(static_cast<std::size_t>(info.frames * info.channels));
  const sf_count_t got = sf_readf_float(f, all.data(), info.frames);
  sf_close(f);
  const auto frames = static_cast<std::size_t>(std::max<sf_count_t>(got, 0));
  const auto ch = static_cast<std::size_t>(info.channels);
  std::vector<float> x(frames);
  for (std::size_t i = 0; i < frames; ++i) {
    float s = 0;
    for (std::size_t c = 0; c < ch; ++c) s += all[i * ch + c];
    x[i] = s / static_cast<float>(ch);
  }
  const double rate = info.samplerate;
  nlohmann::json out = {{"file", argv[1]}, {"rate", info.samplerate}, {"channels", info.channels},
                        {"duration_s", static_cast<double>(frames) / rate}};
  // Peaks over (at most) the first 30 s.
  const std::size_t n = std::min<std::size_t>(frames, static_cast<std::size_t>(30 * rate));
  std::vector<std::pair<double, double>> spec;
  for (double fr = 50; fr <= 8000; fr += 5) spec.emplace_back(fr, n ? goertzel_amp(x.data(), n, fr, rate) : 0.0);
  std::vector<std::pair<double, double>> peaks;
  for (std::size_t i = 1; i + 1 < spec.size(); ++i)
    if (spec[i].second > spec[i - 1].second && spec[i].second >= spec[i + 1].second && db(spec[i].second) > -60)
      peaks.push_back(spec[i]);
  std::sort(peaks.begin(), peaks.end(), [](auto& a, auto& b) { return a.second > b.second; });
  nlohmann::json pj = nlohmann::json::array();
  for (std::size_t i = 0; i < std::min<std::size_t>(peaks.size(), 6); ++i)
    pj.push_back({{"hz", peaks[i].first}, {"level_db", db(peaks[i].second)}});
  out["peaks"] = pj;
  // Per-window tone levels.
  const auto wn = static_cast<std::size_t>(window * rate);
  const std::size_t nw = wn ? frames / wn : 0;
  auto levels = [&](double fr) {
    std::vector<double> l(nw);
    for (std::size_t w = 0; w < nw; ++w) l[w] = db(goertzel_amp(x.data() + w * wn, wn, fr, rate));
    return l;
  };
  nlohmann::json tones = nlohmann::json::array();
  for (double fr : freqs) {
    const auto l = levels(fr);
    std::vector<double> present;
    for (double v : l)
      if (v > threshold) present.push_back(v);
    tones.push_back({{"hz", fr}, {"present_s", static_cast<double>(present.size()) * window},
                     {"level_db", median(present)}});
  }
  out["tones"] = tones;
  if (duck_m > 0 && duck_v > 0) {
    const auto lm = levels(duck_m), lv = levels(duck_v);
    std::size_t first = nw, last = 0;
    for (std::size_t w = 0; w < nw; ++w)
      if (lv[w] > threshold) {
        first = std::min(first, w);
        last = w;
      }
    std::vector<double> before, during, after;
    const std::size_t edge = static_cast<std::size_t>(std::ceil(0.6 / window));  // ramps and hold excluded
    for (std::size_t w = 0; w < nw; ++w) {
      if (lm[w] < -90) continue;  // media absent (not started yet / ended)
      if (first < nw && w + edge < first) before.push_back(lm[w]);
      else if (first < nw && w > first + 2 && w + 2 < last && lv[w] > threshold) during.push_back(lm[w]);
      else if (first < nw && w > last + edge) after.push_back(lm[w]);
    }
    const double b = median(before), d = median(during), a = median(after);
    out["duck"] = {{"media_hz", duck_m}, {"voice_hz", duck_v}, {"voice_s", first < nw ? static_cast<double>(last - first + 1) * window : 0.0},
                   {"before_db", b}, {"during_db", d}, {"after_db", a},
                   {"windows", {before.size(), during.size(), after.size()}},
                   {"attenuation_db", b - d}, {"restored_db", a - b}};
  }
  std::printf("%s\n", out.dump().c_str());
  return 0;
}
