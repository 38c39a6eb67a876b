// Prometheus text exposition format (version 0.0.4): collected as structured samples, rendered once.
#pragma once

#include <cstddef>
#include <string>
#include <string_view>
#include <vector>

namespace gears::daemon {

enum class MetricType { counter, gauge };

struct Label {
  std::string name;
  std::string value;
};

// Samples grouped by family. A family's HELP/TYPE come from its first add(); every sample of a family is
// rendered contiguously, as the format requires. Invalid characters in metric and label names become '_'.
class MetricSet {
 public:
  void add(std::string_view family, MetricType type, std::string_view help, double value,
           std::vector<Label> labels = {});
  // Moves `other`'s samples in, prepending `extra` labels to each (e.g. dom/dev/kind for a device's samples).
  void merge(MetricSet&& other, const std::vector<Label>& extra = {});
  [[nodiscard]] std::string render() const;
  [[nodiscard]] std::size_t sample_count() const;

 private:
  struct Sample {
    std::vector<Label> labels;
    double value = 0;
  };
  struct Family {
    std::string name;
    MetricType type = MetricType::gauge;
    std::string help;
    std::vector<Sample> samples;
  };
  Family& family(std::string_view name, MetricType type, std::string_view help);
  std::vector<Family> families_;  // insertion order; few families, so linear lookup
};

// Escapes a label value: backslash, double quote and newline.
std::string escape_label_value(std::string_view v);
// Formats a sample value: integers exactly, NaN and +Inf/-Inf as the format spells them.
std::string format_metric_value(double v);

inline constexpr std::string_view kPrometheusContentType = "text/plain; version=0.0.4; charset=utf-8";

}  // namespace gears::daemon
