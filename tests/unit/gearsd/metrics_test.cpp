#include <gtest/gtest.h>

#include <cmath>
#include <limits>

#include "dom0/gearsd/metrics.hpp"

using namespace gears::daemon;

TEST(Metrics, RendersHelpTypeAndSamples) {
  MetricSet m;
  m.add("gears_ops_total", MetricType::counter, "Operations.", 42, {{"dom", "5"}, {"dev", "channel/0"}});
  m.add("gears_up", MetricType::gauge, "", 1);
  EXPECT_EQ(m.render(),
            "# HELP gears_ops_total Operations.\n"
            "# TYPE gears_ops_total counter\n"
            "gears_ops_total{dom=\"5\",dev=\"channel/0\"} 42\n"
            "# TYPE gears_up gauge\n"
            "gears_up 1\n");
}

TEST(Metrics, SamplesOfAFamilyStayContiguous) {
  MetricSet m;
  m.add("a", MetricType::gauge, "A.", 1, {{"x", "1"}});
  m.add("b", MetricType::gauge, "B.", 2);
  m.add("a", MetricType::gauge, "ignored: first HELP wins", 3, {{"x", "2"}});
  EXPECT_EQ(m.render(),
            "# HELP a A.\n# TYPE a gauge\na{x=\"1\"} 1\na{x=\"2\"} 3\n"
            "# HELP b B.\n# TYPE b gauge\nb 2\n");
  EXPECT_EQ(m.sample_count(), 3U);
}

TEST(Metrics, EscapesLabelValuesAndHelp) {
  EXPECT_EQ(escape_label_value("a\"b\\c\nd"), "a\\\"b\\\\c\\nd");
  MetricSet m;
  m.add("x", MetricType::gauge, "line1\nline2 \\", 1, {{"path", "C:\\dir \"q\""}});
  EXPECT_EQ(m.render(), "# HELP x line1\\nline2 \\\\\n# TYPE x gauge\nx{path=\"C:\\\\dir \\\"q\\\"\"} 1\n");
}

TEST(Metrics, SanitizesNames) {
  MetricSet m;
  m.add("9bad-name.x", MetricType::gauge, "", 1, {{"dev-id", "a"}, {"ok:no", "b"}});
  EXPECT_EQ(m.render(), "# TYPE _bad_name_x gauge\n_bad_name_x{dev_id=\"a\",ok_no=\"b\"} 1\n");
}

TEST(Metrics, FormatsValues) {
  EXPECT_EQ(format_metric_value(0), "0");
  EXPECT_EQ(format_metric_value(-7), "-7");
  EXPECT_EQ(format_metric_value(12345678901.0), "12345678901");
  EXPECT_EQ(format_metric_value(0.25), "0.25");
  EXPECT_EQ(format_metric_value(std::numeric_limits<double>::quiet_NaN()), "NaN");
  EXPECT_EQ(format_metric_value(std::numeric_limits<double>::infinity()), "+Inf");
  EXPECT_EQ(format_metric_value(-std::numeric_limits<double>::infinity()), "-Inf");
  EXPECT_EQ(format_metric_value(1e300), "1e+300");
}

TEST(Metrics, MergePrependsLabels) {
  MetricSet dev;
  dev.add("gears_bytes_total", MetricType::counter, "Bytes.", 10, {{"dir", "tx"}});
  MetricSet all;
  all.add("gears_up", MetricType::gauge, "Up.", 1);
  all.merge(std::move(dev), {{"dom", "3"}, {"dev", "vbd/0"}});
  EXPECT_EQ(all.render(),
            "# HELP gears_up Up.\n# TYPE gears_up gauge\ngears_up 1\n"
            "# HELP gears_bytes_total Bytes.\n# TYPE gears_bytes_total counter\n"
            "gears_bytes_total{dom=\"3\",dev=\"vbd/0\",dir=\"tx\"} 10\n");
}
