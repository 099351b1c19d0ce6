// Registry: functions by name, arguments decoded into their parameter types, and a clear reason
// for every job that does not fit.
#include "strand/registry.hpp"

#include <gtest/gtest.h>

#include <string>
#include <vector>

namespace {

int add(int a, int b) {
  return a + b;
}

strand::Registry sample() {
  strand::Registry registry;
  registry.add("add", add);
  registry.add("greet", [](const std::string& who) { return "hello " + who; });
  registry.add("nothing", [] {});
  registry.add("sum", [](std::vector<double> xs) {
    double total = 0;
    for (double x : xs) total += x;
    return total;
  });
  registry.add("stoppable",
               [](std::stop_token stop, int n) { return stop.stop_requested() ? -n : n; });
  return registry;
}

// The message of what `f` throws, checking its type.
template <class E, class F>
std::string message_of(F&& f) {
  try {
    f();
  } catch (const E& e) {
    return e.what();
  }
  return "no exception";
}

TEST(Registry, CallsByNameWithDecodedArguments) {
  const auto registry = sample();
  EXPECT_EQ(registry.call("add", {2, 3}), 5);
  EXPECT_EQ(registry.call("greet", {"ada"}), "hello ada");
  EXPECT_EQ(registry.call("nothing", nlohmann::json::array()), nullptr);
  EXPECT_EQ(registry.call("sum", {{1.5, 2.5}}), 4.0);
}

TEST(Registry, PassesTheStopTokenToFunctionsThatTakeOne) {
  const auto registry = sample();
  std::stop_source stop;
  EXPECT_EQ(registry.call("stoppable", {4}, stop.get_token()), 4);
  stop.request_stop();
  EXPECT_EQ(registry.call("stoppable", {4}, stop.get_token()), -4);
  EXPECT_EQ(registry.signature("stoppable"), "stoppable(int)");  // the token is not an argument
}

TEST(Registry, ListsNamesAndSignatures) {
  const auto registry = sample();
  EXPECT_EQ(registry.names(),
            (std::vector<std::string>{"add", "greet", "nothing", "stoppable", "sum"}));
  EXPECT_TRUE(registry.contains("add"));
  EXPECT_FALSE(registry.contains("ad"));
  EXPECT_EQ(registry.signature("add"), "add(int, int)");
  EXPECT_EQ(registry.signature("nothing"), "nothing()");
}

TEST(Registry, UnknownNameSaysWhatIsRegistered) {
  const auto registry = sample();
  EXPECT_EQ(message_of<strand::UnknownFunction>([&] { (void)registry.call("resize", {1}); }),
            "strand: no function \"resize\" is registered (registered: add, greet, nothing, "
            "stoppable, sum)");
  EXPECT_EQ(message_of<strand::UnknownFunction>([] { (void)strand::Registry().call("f", {}); }),
            "strand: no function \"f\" is registered (registered: none)");
}

TEST(Registry, WrongArgumentCountNamesTheFunctionAndItsParameters) {
  const auto registry = sample();
  EXPECT_EQ(message_of<strand::BadArguments>([&] {
              (void)registry.call("add", {1, 2, 3});
            }),
            "strand: function \"add\" takes 2 arguments (int, int); the job gives 3");
  EXPECT_EQ(
      message_of<strand::BadArguments>([&] { registry.check("greet", nlohmann::json::array()); }),
      "strand: function \"greet\" takes 1 argument (std::string); the job gives 0");
}

TEST(Registry, ArgumentOfTheWrongTypeNamesTheArgument) {
  const auto registry = sample();
  EXPECT_EQ(message_of<strand::BadArguments>([&] {
              (void)registry.call("add", {1, "two"});
            }),
            "strand: function \"add\": argument 2 of 2 (int) does not decode from \"two\": "
            "[json.exception.type_error.302] type must be number, but is string");
  EXPECT_EQ(message_of<strand::BadArguments>([&] {
              registry.check("sum", {{1, "x"}});
            }),
            "strand: function \"sum\": argument 1 of 1 (std::vector<double, "
            "std::allocator<double> >) does not decode from [1,\"x\"]: "
            "[json.exception.type_error.302] type must be number, but is string");
}

TEST(Registry, ArgumentsThatAreNotAnArrayAreRejected) {
  const auto registry = sample();
  EXPECT_EQ(message_of<strand::BadArguments>([&] {
              (void)registry.call("add", {{"a", 1}});
            }),
            "strand: the arguments of a job for function \"add\" are not a JSON array");
}

TEST(Registry, CheckDoesNotCallTheFunction) {
  strand::Registry registry;
  int calls = 0;
  registry.add("count", [&calls](int) { return ++calls; });
  registry.check("count", {1});
  EXPECT_EQ(calls, 0);
  EXPECT_EQ(registry.call("count", {1}), 1);
}

TEST(Registry, ExceptionsOfTheFunctionPassThrough) {
  strand::Registry registry;
  registry.add("boom", [](int n) -> int { throw std::out_of_range("index " + std::to_string(n)); });
  EXPECT_EQ(message_of<std::out_of_range>([&] { (void)registry.call("boom", {7}); }), "index 7");
}

TEST(Registry, NamesMustBeNewAndNonEmpty) {
  strand::Registry registry;
  registry.add("f", [] {});
  EXPECT_EQ(message_of<std::invalid_argument>([&] { registry.add("f", [] {}); }),
            "strand: a function named \"f\" is already registered");
  EXPECT_EQ(message_of<std::invalid_argument>([&] { registry.add("", [] {}); }),
            "strand: a registered function needs a name");
}

}  // namespace
