#include "strand/serialize.hpp"

#include <gtest/gtest.h>

#include <map>
#include <optional>
#include <stdexcept>
#include <string>
#include <vector>

namespace geo {
struct Point {
  int x = 0;
  int y = 0;
  friend bool operator==(const Point&, const Point&) = default;
};
NLOHMANN_DEFINE_TYPE_NON_INTRUSIVE(Point, x, y)
}  // namespace geo

namespace {

using strand::Format;

struct NoJson {
  int x;
};
static_assert(strand::Serializable<int>);
static_assert(strand::Serializable<std::string>);
static_assert(strand::Serializable<std::vector<std::map<std::string, double>>>);
static_assert(strand::Serializable<std::optional<geo::Point>>);
static_assert(!strand::Serializable<NoJson>, "a type without to_json/from_json does not cross");

class FormatTest : public ::testing::TestWithParam<Format> {};

TEST_P(FormatTest, StandardTypesRoundTrip) {
  const Format f = GetParam();
  EXPECT_EQ(strand::decode<int>(strand::encode(42, f), f), 42);
  EXPECT_EQ(strand::decode<std::string>(strand::encode(std::string("héllo"), f), f), "héllo");
  const std::vector<double> v{1.5, -2.25, 1e300};
  EXPECT_EQ(strand::decode<std::vector<double>>(strand::encode(v, f), f), v);
  const std::map<std::string, std::vector<int>> m{{"a", {1, 2}}, {"b", {}}};
  EXPECT_EQ((strand::decode<std::map<std::string, std::vector<int>>>(strand::encode(m, f), f)), m);
  const std::optional<int> none;
  EXPECT_EQ(strand::decode<std::optional<int>>(strand::encode(none, f), f), none);
}

TEST_P(FormatTest, UserTypesWithToJsonRoundTrip) {
  const Format f = GetParam();
  const std::vector<geo::Point> points{{1, 2}, {-3, 4}};
  EXPECT_EQ(strand::decode<std::vector<geo::Point>>(strand::encode(points, f), f), points);
}

TEST_P(FormatTest, APayloadOfAnotherTypeIsADecodeErrorNamingTheType) {
  const Format f = GetParam();
  try {
    (void)strand::decode<int>(strand::encode(std::string("seven"), f), f);
    FAIL() << "expected DecodeError";
  } catch (const strand::DecodeError& e) {
    const std::string prefix = "strand: cannot decode a value of type int from a " +
                               std::string(strand::to_string(f)) + " payload: ";
    EXPECT_EQ(std::string(e.what()).substr(0, prefix.size()), prefix) << e.what();
  }
}

INSTANTIATE_TEST_SUITE_P(BothFormats, FormatTest, ::testing::Values(Format::json, Format::msgpack),
                         [](const auto& info) {
                           return std::string(strand::to_string(info.param));
                         });

TEST(Serialize, MalformedBytesAreADecodeErrorNamingTheType) {
  EXPECT_THROW((void)strand::decode<geo::Point>("{not json", Format::json), strand::DecodeError);
  try {
    (void)strand::decode<geo::Point>(std::string("\xc1", 1), Format::msgpack);
    FAIL() << "expected DecodeError";
  } catch (const strand::DecodeError& e) {
    EXPECT_NE(std::string(e.what()).find("cannot decode a value of type geo::Point from a msgpack"),
              std::string::npos)
        << e.what();
  }
}

TEST(Serialize, MissingFieldIsADecodeError) {
  try {
    (void)strand::decode<geo::Point>(R"({"x": 1})", Format::json);
    FAIL() << "expected DecodeError";
  } catch (const strand::DecodeError& e) {
    EXPECT_NE(std::string(e.what()).find("key 'y' not found"), std::string::npos) << e.what();
  }
}

TEST(Serialize, JsonIsReadableText) {
  EXPECT_EQ(strand::encode(geo::Point{1, 2}, Format::json), R"({"x":1,"y":2})");
}

TEST(Serialize, FormatsHaveNames) {
  EXPECT_EQ(strand::parse_format("json"), Format::json);
  EXPECT_EQ(strand::parse_format("msgpack"), Format::msgpack);
  try {
    (void)strand::parse_format("pickle");
    FAIL() << "expected std::invalid_argument";
  } catch (const std::invalid_argument& e) {
    EXPECT_STREQ(
        e.what(),
        "strand: unknown serialization format \"pickle\"; valid formats are: json, msgpack");
  }
}

struct ParseFailure : std::runtime_error {
  using std::runtime_error::runtime_error;
};

template <class E>
strand::ErrorInfo info_of(E e) {
  return strand::error_info(std::make_exception_ptr(std::move(e)));
}

TEST(ErrorInfo, KeepsTheTypeNameAndMessage) {
  EXPECT_EQ(info_of(std::out_of_range("index 7")),
            (strand::ErrorInfo{"std::out_of_range", "index 7"}));
  EXPECT_EQ(info_of(ParseFailure("line 3")),
            (strand::ErrorInfo{"(anonymous namespace)::ParseFailure", "line 3"}));
  EXPECT_EQ(info_of(strand::RemoteError("app::Oops", "far away")),
            (strand::ErrorInfo{"app::Oops", "far away"}));
  EXPECT_EQ(info_of(42),
            (strand::ErrorInfo{"unknown exception", "an exception that is not a std::exception"}));
}

TEST(ErrorInfo, CrossesBothFormats) {
  const strand::ErrorInfo info{"std::invalid_argument", "bad n"};
  for (Format f : {Format::json, Format::msgpack}) {
    EXPECT_EQ(strand::decode<strand::ErrorInfo>(strand::encode(info, f), f), info);
  }
}

TEST(ErrorInfo, StandardTypesComeBackAsThemselves) {
  EXPECT_THROW(std::rethrow_exception(strand::to_exception({"std::out_of_range", "i"})),
               std::out_of_range);
  EXPECT_THROW(std::rethrow_exception(strand::to_exception({"std::invalid_argument", "i"})),
               std::invalid_argument);
  EXPECT_THROW(std::rethrow_exception(strand::to_exception({"std::logic_error", "i"})),
               std::logic_error);
  EXPECT_THROW(std::rethrow_exception(strand::to_exception({"strand::Timeout", "i"})),
               strand::Timeout);
  try {
    std::rethrow_exception(strand::to_exception({"std::runtime_error", "disk full"}));
  } catch (const std::runtime_error& e) {
    EXPECT_STREQ(e.what(), "disk full");
    EXPECT_EQ(typeid(e), typeid(std::runtime_error));
  }
}

TEST(ErrorInfo, OtherTypesComeBackAsRemoteErrorKeepingTheName) {
  try {
    std::rethrow_exception(strand::to_exception({"app::ParseFailure", "line 3"}));
    FAIL() << "expected RemoteError";
  } catch (const strand::RemoteError& e) {
    EXPECT_EQ(e.type_name(), "app::ParseFailure");
    EXPECT_EQ(e.message(), "line 3");
    EXPECT_STREQ(e.what(), "app::ParseFailure: line 3");
  }
}

}  // namespace
