#include "common/util/result.hpp"

#include <gtest/gtest.h>

#include <string>

namespace gears {
namespace {

Result<int> parse_digit(char c) {
  if (c < '0' || c > '9') return Error{EINVAL, "not a digit"};
  return c - '0';
}

TEST(Result, CarriesValueOrError) {
  auto good = parse_digit('7');
  ASSERT_TRUE(good.ok());
  EXPECT_EQ(good.value(), 7);
  auto bad = parse_digit('x');
  ASSERT_FALSE(bad.ok());
  EXPECT_EQ(bad.error().code, EINVAL);
  EXPECT_EQ(bad.error().what, "not a digit");
}

TEST(Result, StatusDefaultsToOk) {
  Status s;
  EXPECT_TRUE(s.ok());
  Status f = Error{EPROTO, "bad"};
  EXPECT_FALSE(f.ok());
  EXPECT_EQ(f.error().code, EPROTO);
}

}  // namespace
}  // namespace gears
