#include "strand/status.hpp"

#include <gtest/gtest.h>

#include <sstream>

namespace strand {
namespace {

TEST(Status, EveryStatusHasItsWord) {
  EXPECT_EQ(to_string(Status::pending), "pending");
  EXPECT_EQ(to_string(Status::queued), "queued");
  EXPECT_EQ(to_string(Status::running), "running");
  EXPECT_EQ(to_string(Status::completed), "completed");
  EXPECT_EQ(to_string(Status::failed), "failed");
  EXPECT_EQ(to_string(Status::cancelled), "cancelled");
}

TEST(Status, WordsReadBack) {
  for (auto s : {Status::pending, Status::queued, Status::running, Status::completed,
                 Status::failed, Status::cancelled}) {
    EXPECT_EQ(status_from_string(to_string(s)), s);
  }
  EXPECT_EQ(status_from_string("done"), std::nullopt);
  EXPECT_EQ(status_from_string(""), std::nullopt);
}

TEST(Status, OnlyFinishedStatesAreTerminal) {
  EXPECT_FALSE(is_terminal(Status::pending));
  EXPECT_FALSE(is_terminal(Status::queued));
  EXPECT_FALSE(is_terminal(Status::running));
  EXPECT_TRUE(is_terminal(Status::completed));
  EXPECT_TRUE(is_terminal(Status::failed));
  EXPECT_TRUE(is_terminal(Status::cancelled));
}

TEST(Status, StreamsAsItsWord) {
  std::ostringstream out;
  out << Status::running << "/" << Status::failed;
  EXPECT_EQ(out.str(), "running/failed");
}

}  // namespace
}  // namespace strand
