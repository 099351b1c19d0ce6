// open_store(url): the URL forms, and the exact error for each bad URL.
#include <gtest/gtest.h>

#include <memory>
#include <string>

#include "redis_support.hpp"
#include "store_support.hpp"
#include "strand/filesystem_store.hpp"
#include "strand/memory_store.hpp"
#include "strand/redis_store.hpp"
#include "strand/sqlite_store.hpp"
#include "strand/store.hpp"

namespace {

using strand::testing::TempDir;

TEST(OpenStore, MemoryIsANewMemoryStore) {
  auto a = strand::open_store("memory:");
  auto b = strand::open_store("memory:", {.format = strand::Format::msgpack});
  EXPECT_NE(std::dynamic_pointer_cast<strand::MemoryStore>(a), nullptr);
  EXPECT_EQ(a->url(), "memory:");
  EXPECT_EQ(b->format(), strand::Format::msgpack);
  a->set({.key = "k"});
  EXPECT_EQ(b->size(), 0u) << "each memory: store is its own";
}

TEST(OpenStore, FileOpensADirectoryAndItsUrlRoundTrips) {
  TempDir dir;
  const std::string url = "file://" + (dir.path() / "results").string();
  auto store = strand::open_store(url);
  auto fs = std::dynamic_pointer_cast<strand::FileSystemStore>(store);
  ASSERT_NE(fs, nullptr);
  EXPECT_EQ(store->url(), url);
  EXPECT_EQ(fs->directory(), dir.path() / "results");
  EXPECT_TRUE(std::filesystem::is_directory(dir.path() / "results"));
  store->set({.key = "k", .status = strand::Status::completed});
  EXPECT_EQ(strand::open_store(store->url())->get("k").status, strand::Status::completed);
}

TEST(OpenStore, SqliteOpensADatabaseFileAndItsUrlRoundTrips) {
  TempDir dir;
  const std::string url = "sqlite://" + (dir.path() / "jobs.db").string();
  auto store = strand::open_store(url, {.format = strand::Format::msgpack});
  ASSERT_NE(std::dynamic_pointer_cast<strand::SqliteStore>(store), nullptr);
  EXPECT_EQ(store->url(), url);
  EXPECT_EQ(store->format(), strand::Format::msgpack);
  store->set({.key = "k", .status = strand::Status::failed});
  EXPECT_EQ(strand::open_store(store->url())->get("k").status, strand::Status::failed);
}

TEST(OpenStore, RedisConnectsAndItsUrlRoundTrips) {
  strand::testing::RedisServer server;
  const std::string port = std::to_string(server.port());
  auto store = strand::open_store("redis://127.0.0.1:" + port, {.format = strand::Format::msgpack});
  auto redis = std::dynamic_pointer_cast<strand::RedisStore>(store);
  ASSERT_NE(redis, nullptr);
  EXPECT_EQ(redis->host(), "127.0.0.1");
  EXPECT_EQ(redis->port(), server.port());
  EXPECT_EQ(redis->db(), 0);
  EXPECT_EQ(store->url(), "redis://127.0.0.1:" + port + "/0");
  EXPECT_EQ(store->format(), strand::Format::msgpack);
  store->set({.key = "k", .status = strand::Status::completed});
  EXPECT_EQ(strand::open_store(store->url())->get("k").status, strand::Status::completed);
  auto db2 = strand::open_store("redis://127.0.0.1:" + port + "/2?prefix=app:");
  EXPECT_EQ(db2->url(), "redis://127.0.0.1:" + port + "/2?prefix=app:");
  EXPECT_EQ(std::dynamic_pointer_cast<strand::RedisStore>(db2)->redis_options().prefix, "app:");
  EXPECT_EQ(db2->size(), 0u);
}

std::string open_error(const std::string& url) {
  try {
    (void)strand::open_store(url);
  } catch (const strand::StoreError& e) {
    return e.what();
  }
  return "no error";
}

std::string expected(const std::string& url, const std::string& reason) {
  return "strand: cannot open store \"" + url + "\": " + reason +
         "; valid URLs are memory:, file:///path, sqlite:///path.db, redis://host:port/db";
}

TEST(OpenStore, AnUnknownSchemeIsAStoreErrorNamingItAndTheValidOnes) {
  EXPECT_EQ(open_error("rediss://127.0.0.1:6379"),
            expected("rediss://127.0.0.1:6379", "unknown scheme \"rediss\""));
  EXPECT_EQ(open_error("postgres:///db"),
            expected("postgres:///db", "unknown scheme \"postgres\""));
  EXPECT_EQ(open_error("FILE:///tmp/x"), expected("FILE:///tmp/x", "unknown scheme \"FILE\""));
}

TEST(OpenStore, AUrlWithoutAPathIsAStoreError) {
  EXPECT_EQ(open_error("file://"), expected("file://", "missing path"));
  EXPECT_EQ(open_error("file:"), expected("file:", "missing path"));
  EXPECT_EQ(open_error("sqlite://"), expected("sqlite://", "missing path"));
  EXPECT_EQ(open_error("sqlite:"), expected("sqlite:", "missing path"));
}

TEST(OpenStore, OtherMalformedUrlsAreStoreErrors) {
  EXPECT_EQ(open_error(""), expected("", "missing scheme"));
  EXPECT_EQ(open_error("/tmp/results"), expected("/tmp/results", "missing scheme"));
  EXPECT_EQ(
      open_error("file://relative/dir"),
      expected("file://relative/dir", "the path must be absolute (three slashes: file:///path)"));
  EXPECT_EQ(open_error("memory:/x"), expected("memory:/x", "memory: takes no path"));
}

TEST(OpenStore, AMalformedRedisUrlIsAStoreError) {
  EXPECT_EQ(open_error("redis:"), expected("redis:", "missing host (redis://host:port/db)"));
  EXPECT_EQ(open_error("redis://"), expected("redis://", "missing host (redis://host:port/db)"));
  EXPECT_EQ(open_error("redis://:6379/0"),
            expected("redis://:6379/0", "missing host (redis://host:port/db)"));
  EXPECT_EQ(open_error("redis://localhost:http/0"),
            expected("redis://localhost:http/0",
                     "the port must be a number from 1 to 65535, not \"http\""));
  EXPECT_EQ(open_error("redis://localhost:70000"),
            expected("redis://localhost:70000",
                     "the port must be a number from 1 to 65535, not \"70000\""));
  EXPECT_EQ(
      open_error("redis://localhost:/0"),
      expected("redis://localhost:/0", "the port must be a number from 1 to 65535, not \"\""));
  EXPECT_EQ(open_error("redis://localhost:6379/one"),
            expected("redis://localhost:6379/one", "the database must be a number, not \"one\""));
  EXPECT_EQ(open_error("redis://localhost:6379/-1"),
            expected("redis://localhost:6379/-1", "the database must be a number, not \"-1\""));
  EXPECT_EQ(
      open_error("redis://localhost/0?db=1"),
      expected("redis://localhost/0?db=1", "the only query parameter is a non-empty prefix=..."));
}

TEST(OpenStore, AnUnreachableRedisIsAStoreErrorSayingWhy) {
  EXPECT_EQ(open_error("redis://127.0.0.1:1/0"),
            "strand: cannot reach Redis at 127.0.0.1:1: Connection refused");
}

}  // namespace
