#include "dom0/gearsd/metrics.hpp"

#include <fmt/format.h>

#include <cmath>

namespace gears::daemon {

namespace {

std::string sanitize_name(std::string_view n, bool allow_colon) {
  std::string out(n.empty() ? std::string_view("_") : n);
  for (std::size_t i = 0; i < out.size(); ++i) {
    const char c = out[i];
    const bool alpha = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || c == '_' || (allow_colon && c == ':');
    const bool digit = c >= '0' && c <= '9';
    if (!(alpha || (digit && i > 0))) out[i] = '_';
  }
  return out;
}

std::string escape_help(std::string_view v) {
  std::string out;
  for (char c : v) {
    if (c == '\\') out += "\\\\";
    else if (c == '\n') out += "\\n";
    else out += c;
  }
  return out;
}

}  // namespace

std::string escape_label_value(std::string_view v) {
  std::string out;
  out.reserve(v.size());
  for (char c : v) {
    if (c == '\\') out += "\\\\";
    else if (c == '"') out += "\\\"";
    else if (c == '\n') out += "\\n";
    else out += c;
  }
  return out;
}

std::string format_metric_value(double v) {
  if (std::isnan(v)) return "NaN";
  if (std::isinf(v)) return v > 0 ? "+Inf" : "-Inf";
  constexpr double kExact = 9007199254740992.0;  // 2^53: integers below it are exact in a double
  if (v == std::trunc(v) && std::fabs(v) < kExact) return fmt::format("{}", static_cast<long long>(v));
  return fmt::format("{}", v);
}

MetricSet::Family& MetricSet::family(std::string_view name, MetricType type, std::string_view help) {
  std::string n = sanitize_name(name, true);
  for (auto& f : families_)
    if (f.name == n) return f;
  families_.push_back(Family{std::move(n), type, std::string(help), {}});
  return families_.back();
}

void MetricSet::add(std::string_view fam, MetricType type, std::string_view help, double value,
                    std::vector<Label> labels) {
  for (auto& l : labels) l.name = sanitize_name(l.name, false);
  family(fam, type, help).samples.push_back(Sample{std::move(labels), value});
}

void MetricSet::merge(MetricSet&& other, const std::vector<Label>& extra) {
  for (auto& of : other.families_) {
    Family& f = family(of.name, of.type, of.help);
    for (auto& s : of.samples) {
      std::vector<Label> labels = extra;
      for (auto& l : labels) l.name = sanitize_name(l.name, false);
      labels.insert(labels.end(), std::make_move_iterator(s.labels.begin()), std::make_move_iterator(s.labels.end()));
      f.samples.push_back(Sample{std::move(labels), s.value});
    }
  }
  other.families_.clear();
}

std::size_t MetricSet::sample_count() const {
  std::size_t n = 0;
  for (const auto& f : families_) n += f.samples.size();
  return n;
}

std::string MetricSet::render() const {
  std::string out;
  for (const auto& f : families_) {
    if (!f.help.empty()) out += fmt::format("# HELP {} {}\n", f.name, escape_help(f.help));
    out += fmt::format("# TYPE {} {}\n", f.name, f.type == MetricType::counter ? "counter" : "gauge");
    for (const auto& s : f.samples) {
      out += f.name;
      if (!s.labels.empty()) {
        out += '{';
        for (std::size_t i = 0; i < s.labels.size(); ++i) {
          if (i) out += ',';
          out += fmt::format("{}=\"{}\"", s.labels[i].name, escape_label_value(s.labels[i].value));
        }
        out += '}';
      }
      out += ' ';
      out += format_metric_value(s.value);
      out += '\n';
    }
  }
  return out;
}

}  // namespace gears::daemon
