// RedisStore against a real redis-server: its layout in Redis, TTL as Redis expiry, the optimistic
// update, wait_terminal woken through pub/sub (from this process and another), a server restarted
// mid-use, and the bad inputs (an unreachable server, corrupt records, several processes at once).
// The Store contract itself runs for Redis in store_test.cpp.
#include "strand/redis_store.hpp"

#include <hiredis/hiredis.h>
#include <sys/wait.h>
#include <unistd.h>

#include <gtest/gtest.h>

#include <atomic>
#include <chrono>
#include <string>
#include <thread>

#include "redis_support.hpp"
#include "store_support.hpp"

namespace {

using namespace std::chrono_literals;
using strand::Format;
using strand::Record;
using strand::RedisStore;
using strand::Status;
using strand::testing::RedisServer;

// A raw connection, to look at or damage what the store wrote behind its back.
class Raw {
 public:
  explicit Raw(int port) : ctx_(redisConnect("127.0.0.1", port)) {
    if (ctx_ == nullptr || ctx_->err != 0) throw std::runtime_error("cannot connect to Redis");
  }
  ~Raw() { redisFree(ctx_); }
  Raw(const Raw&) = delete;
  Raw& operator=(const Raw&) = delete;

  // The reply as text: a string, an integer, "(nil)" or "ERR ...".
  std::string command(const std::vector<std::string>& args) {
    std::vector<const char*> argv;
    std::vector<std::size_t> lengths;
    for (const auto& a : args) {
      argv.push_back(a.data());
      lengths.push_back(a.size());
    }
    auto* r = static_cast<redisReply*>(
        redisCommandArgv(ctx_, static_cast<int>(argv.size()), argv.data(), lengths.data()));
    if (r == nullptr) throw std::runtime_error("the connection is lost");
    std::string out;
    if (r->type == REDIS_REPLY_INTEGER) {
      out = std::to_string(r->integer);
    } else if (r->type == REDIS_REPLY_NIL) {
      out = "(nil)";
    } else if (r->str != nullptr) {
      out = std::string(r->str, r->len);
    }
    freeReplyObject(r);
    return out;
  }

 private:
  redisContext* ctx_;
};

std::string open_error(const std::function<void()>& open) {
  try {
    open();
  } catch (const strand::StoreError& e) {
    return e.what();
  }
  return "no error";
}

Record::time_point ms_ago(std::chrono::milliseconds ago) {
  return std::chrono::time_point_cast<std::chrono::milliseconds>(std::chrono::system_clock::now()) -
         ago;
}

TEST(RedisStore, ARecordIsAHashWithReadableFields) {
  RedisServer server;
  auto store = RedisStore::open("127.0.0.1", server.port());
  EXPECT_EQ(store->url(), server.url());
  store->set({.key = "k", .status = Status::running, .created = Record::time_point(1234ms)});
  store->set({.key = "k", .status = Status::completed, .value = 5});
  Raw raw(server.port());
  EXPECT_EQ(raw.command({"HGET", "strand:r:k", "status"}), "completed");
  EXPECT_EQ(raw.command({"HGET", "strand:r:k", "version"}), "2");
  EXPECT_EQ(raw.command({"HGET", "strand:r:k", "created"}), "1234");
  EXPECT_EQ(raw.command({"PTTL", "strand:r:k"}), "-1") << "no TTL, no expiry";
  const Record r = store->get("k");
  EXPECT_EQ(r.version, 2u);
  EXPECT_EQ(r.created, Record::time_point(1234ms));
  EXPECT_EQ(r.value, 5);
}

TEST(RedisStore, APrefixAndADatabaseKeepStoresApart) {
  RedisServer server;
  auto a = RedisStore::open("127.0.0.1", server.port());
  auto b = RedisStore::open("127.0.0.1", server.port(), 0, {}, {.prefix = "other:"});
  auto c = strand::open_store(server.url(3));
  a->set({.key = "k", .value = "a"});
  b->set({.key = "k", .value = "b"});
  c->set({.key = "k", .value = "c"});
  EXPECT_EQ(a->get("k").value, "a");
  EXPECT_EQ(b->get("k").value, "b");
  EXPECT_EQ(c->get("k").value, "c");
  EXPECT_EQ(b->url(), server.url() + "?prefix=other:");
  EXPECT_EQ(c->url(), server.url(3));
  EXPECT_EQ(strand::open_store(b->url())->get("k").value, "b");
  EXPECT_EQ(Raw(server.port()).command({"HGET", "other:r:k", "status"}), "pending");
}

TEST(RedisStore, TtlIsRedisExpiryFromCompletedOrCreated) {
  RedisServer server;
  auto store = RedisStore::open("127.0.0.1", server.port(), 0, {.ttl = 60s});
  store->set({.key = "done", .status = Status::completed, .completed = ms_ago(10s)});
  store->set({.key = "young", .status = Status::running, .created = ms_ago(20s)});
  Raw raw(server.port());
  const auto pttl = [&](const std::string& key) {
    return std::stoll(raw.command({"PTTL", "strand:r:" + key}));
  };
  EXPECT_GT(pttl("done"), 45'000);
  EXPECT_LE(pttl("done"), 50'000);
  EXPECT_GT(pttl("young"), 35'000);
  EXPECT_LE(pttl("young"), 40'000);
  // Records past their TTL are gone at once; Redis removes them, so there is nothing to clean up.
  store->set({.key = "old", .status = Status::completed, .completed = ms_ago(2h)});
  EXPECT_FALSE(store->find("old").has_value());
  EXPECT_EQ(raw.command({"EXISTS", "strand:r:old"}), "0");
  EXPECT_EQ(store->cleanup_expired(), 0u);
  EXPECT_EQ(store->keys(), (std::vector<std::string>{"done", "young"}));
}

TEST(RedisStore, ARecordExpiresByItselfWhenItsTtlRunsOut) {
  RedisServer server;
  auto store = RedisStore::open("127.0.0.1", server.port(), 0, {.ttl = 1s});
  store->set({.key = "brief", .status = Status::completed, .completed = ms_ago(500ms)});
  // Half a second left: the first look below must come before that, even on a busy machine.
  EXPECT_TRUE(store->find("brief").has_value());
  // Redis's expiry has no notification to wait on: look until it is gone (well under 2 s). The
  // store reads a record as expired from the moment its TTL runs out, Redis from the next whole
  // millisecond, so the key may outlive find()'s answer by up to a millisecond: wait for both
  // (CI once looked in between).
  Raw raw(server.port());
  const auto gone = [&] {
    return !store->find("brief").has_value() && raw.command({"EXISTS", "strand:r:brief"}) == "0";
  };
  const auto give_up = std::chrono::steady_clock::now() + 2s;
  while (!gone() && std::chrono::steady_clock::now() < give_up) {
    std::this_thread::sleep_for(10ms);
  }
  EXPECT_FALSE(store->find("brief").has_value());
  EXPECT_EQ(raw.command({"EXISTS", "strand:r:brief"}), "0");
}

TEST(RedisStore, AnUpdateRacedByAnotherClientRunsAgainOnTheNewRecord) {
  RedisServer server;
  auto store = RedisStore::open("127.0.0.1", server.port());
  store->set({.key = "k", .metadata = {{"n", 1}}});
  Raw raw(server.port());
  int calls = 0;
  const auto out = store->update("k", [&](std::optional<Record> r) {
    if (++calls == 1) {  // another client writes between the read and the write
      raw.command({"HINCRBY", "strand:r:k", "version", "1"});
    }
    r->metadata["n"] = r->metadata["n"].get<int>() + 1;
    return r;
  });
  EXPECT_EQ(calls, 2) << "the first EXEC failed, so the function ran again";
  ASSERT_TRUE(out.has_value());
  EXPECT_EQ(out->version, 3u);
  EXPECT_EQ(store->get("k").version, 3u);
  EXPECT_EQ(store->get("k").metadata["n"], 2);
}

TEST(RedisStore, WaitTerminalWakesForAnotherProcesssWrite) {
  RedisServer server;
  auto store = RedisStore::open("127.0.0.1", server.port());
  store->set({.key = "job", .status = Status::running});
  int go[2];
  ASSERT_EQ(::pipe(go), 0);
  const pid_t pid = ::fork();
  if (pid == 0) {
    char c;
    (void)!::read(go[0], &c, 1);
    std::this_thread::sleep_for(50ms);  // let the parent subscribe first (either order works)
    // The inherited store object: it opens its own connection in the child.
    store->set({.key = "job", .status = Status::completed, .value = "from the child"});
    ::_exit(0);
  }
  const auto start = std::chrono::steady_clock::now();
  (void)!::write(go[1], "x", 1);
  const Record r = store->wait_terminal("job", start + 5s);
  const auto waited = std::chrono::steady_clock::now() - start;
  int status = 0;
  ::waitpid(pid, &status, 0);
  ::close(go[0]);
  ::close(go[1]);
  EXPECT_TRUE(WIFEXITED(status) && WEXITSTATUS(status) == 0);
  EXPECT_EQ(r.status, Status::completed);
  EXPECT_EQ(r.value, "from the child");
  EXPECT_LT(waited, 2s);
}

TEST(RedisStore, WaitTerminalWakesForAWriteOfAnotherClient) {
  RedisServer server;
  auto store = RedisStore::open("127.0.0.1", server.port());
  auto other = strand::open_store(server.url());
  store->set({.key = "job", .status = Status::running});
  const auto start = std::chrono::steady_clock::now();
  std::jthread writer([&] {
    std::this_thread::sleep_for(50ms);  // the waiter is (most likely) asleep in poll() by now
    other->update("job", [](std::optional<Record> r) {
      r->status = Status::cancelled;
      return r;
    });
  });
  const Record r = store->wait_terminal("job", start + 5s);
  EXPECT_EQ(r.status, Status::cancelled);
  EXPECT_LT(std::chrono::steady_clock::now() - start, 2s);
}

TEST(RedisStore, TwoProcessesWritingAtOnceLoseNoWrite) {
  RedisServer server;
  auto store = RedisStore::open("127.0.0.1", server.port());
  constexpr int kWrites = 100;
  const int ok = strand::testing::run_children(2, [&](int child) {
    for (int i = 0; i < kWrites; ++i) {
      store->update("counter", [](std::optional<Record> r) {
        if (!r) r = Record{.metadata = {{"count", 0}}};
        r->metadata["count"] = r->metadata["count"].get<int>() + 1;
        return r;
      });
      store->set({.key = "c" + std::to_string(child) + "-" + std::to_string(i)});
    }
    return true;
  });
  ASSERT_EQ(ok, 2);
  EXPECT_EQ(store->get("counter").metadata["count"], 2 * kWrites);
  EXPECT_EQ(store->get("counter").version, std::uint64_t{2 * kWrites});
  EXPECT_EQ(store->size(), std::size_t{2 * kWrites + 1});
}

TEST(RedisStore, ARestartedServerIsReconnectedToAndTheCallSucceeds) {
  RedisServer server;
  auto store = RedisStore::open("127.0.0.1", server.port());
  store->set({.key = "before", .status = Status::completed});
  server.restart();  // an empty server (nothing is saved) on the same port
  EXPECT_FALSE(store->find("before").has_value());
  store->set({.key = "after", .status = Status::completed, .value = 1});  // scripts reloaded
  EXPECT_EQ(store->get("after").value, 1);
  EXPECT_EQ(store->get("after").version, 1u);
  const strand::Store::UpdateFn count = [](std::optional<Record> r) {
    if (!r) r = Record{.metadata = {{"count", 0}}};
    r->metadata["count"] = r->metadata["count"].get<int>() + 1;
    return r;
  };
  store->update("counted", count);
  store->update("counted", count);
  EXPECT_EQ(store->get("counted").version, 2u);
  server.restart();
  store->update("again", count);  // WATCH and MULTI on the new connection
  EXPECT_EQ(store->get("again").version, 1u);
  EXPECT_EQ(store->get("again").metadata["count"], 1);
}

TEST(RedisStore, AServerDownLongerThanTheReconnectTimeoutIsAStoreErrorSayingSo) {
  RedisServer server;
  auto store = RedisStore::open("127.0.0.1", server.port(), 0, {}, {.reconnect_timeout = 100ms});
  store->set({.key = "k"});
  server.stop();
  const auto start = std::chrono::steady_clock::now();
  EXPECT_EQ(open_error([&] { (void)store->find("k"); }),
            "strand: lost the connection to Redis at 127.0.0.1:" + std::to_string(server.port()) +
                " (cannot read a record) and could not reconnect within 100 ms: Connection "
                "refused");
  EXPECT_LT(std::chrono::steady_clock::now() - start, 1s);
  server.start();
  EXPECT_EQ(store->get("k").status, Status::pending) << "usable again once the server is back";
}

TEST(RedisStore, AnUnreachableServerIsAStoreErrorAtOnce) {
  const auto start = std::chrono::steady_clock::now();
  EXPECT_EQ(open_error([] { (void)RedisStore::open("127.0.0.1", 1); }),
            "strand: cannot reach Redis at 127.0.0.1:1: Connection refused");
  EXPECT_EQ(open_error([] { (void)strand::open_store("redis://127.0.0.1:1/0"); }),
            "strand: cannot reach Redis at 127.0.0.1:1: Connection refused");
  EXPECT_LT(std::chrono::steady_clock::now() - start, 1s);
}

TEST(RedisStore, BadOptionsAreStoreErrors) {
  EXPECT_EQ(open_error([] { (void)RedisStore::open("127.0.0.1", 0); }),
            "strand: cannot open the Redis store at 127.0.0.1:0: the port must be from 1 to 65535");
  EXPECT_EQ(open_error([] { (void)RedisStore::open("", 6379); }),
            "strand: cannot open the Redis store at :6379: the host is empty");
  EXPECT_EQ(open_error([] { (void)RedisStore::open("127.0.0.1", 6379, 0, {}, {.prefix = ""}); }),
            "strand: cannot open the Redis store at 127.0.0.1:6379: the key prefix must not be "
            "empty");
}

TEST(RedisStore, ADatabaseTheServerRefusesIsAStoreError) {
  RedisServer server;  // 16 databases: 0 to 15
  EXPECT_EQ(open_error([&] { (void)RedisStore::open("127.0.0.1", server.port(), 16); }),
            "strand: Redis at 127.0.0.1:" + std::to_string(server.port()) +
                ": cannot select database 16: ERR DB index is out of range");
}

TEST(RedisStore, ACorruptRecordReadsAsFailedAndOtherKeysStillWork) {
  RedisServer server;
  auto store = RedisStore::open("127.0.0.1", server.port(), 0, {.format = Format::msgpack});
  store->set({.key = "good", .status = Status::completed, .value = 1});
  store->set({.key = "bad", .status = Status::completed, .value = 2});
  Raw raw(server.port());
  raw.command({"HSET", "strand:r:bad", "record", std::string("\x01\xff\x02", 3)});
  raw.command({"SET", "strand:r:plain", "not a hash"});
  const std::string where = " in " + server.url() + " does not decode: ";
  for (const char* key : {"bad", "plain"}) {
    const Record r = store->get(key);
    EXPECT_EQ(r.status, Status::failed);
    ASSERT_TRUE(r.error.has_value());
    EXPECT_EQ(r.error->type, "strand::DecodeError");
    const std::string prefix = "strand: the record of key \"" + std::string(key) + "\"" + where;
    EXPECT_EQ(r.error->message.substr(0, prefix.size()), prefix) << r.error->message;
  }
  EXPECT_EQ(store->get("plain").error->message, "strand: the record of key \"plain\"" + where +
                                                    "the record is empty (it is not a Redis hash)");
  EXPECT_EQ(store->get("good").value, 1);
  EXPECT_EQ(store->keys(), (std::vector<std::string>{"bad", "good", "plain"}));
  // Writing over either works again.
  store->set({.key = "bad", .status = Status::completed, .value = 3});
  EXPECT_EQ(store->get("bad").value, 3);
  const auto fixed = store->update("plain", [](std::optional<Record> r) {
    EXPECT_EQ(r->status, Status::failed);
    r.emplace();
    r->status = Status::completed;
    r->value = 4;
    return r;
  });
  EXPECT_EQ(fixed->version, 1u);
  EXPECT_EQ(store->get("plain").value, 4);
}

// A job whose record was damaged behind the store's back reads as FAILED with the reason, leaves
// the queue's index, and the claim goes on to the next job.
TEST(RedisStore, ACorruptJobFailsWithTheReasonAndTheNextJobIsClaimed) {
  RedisServer server;
  auto store = RedisStore::open("127.0.0.1", server.port());
  const std::vector<std::string> queues{"default"};
  const std::string bad = store->enqueue({.function = "f", .options = {.priority = 9}});
  const std::string good = store->enqueue({.function = "f"});
  Raw raw(server.port());
  raw.command({"HSET", "strand:r:" + bad, "record", std::string("\x01\xff\x02", 3)});
  const auto leases = store->claim(queues, "w1", 30s, 1);
  ASSERT_EQ(leases.size(), 1u);
  EXPECT_EQ(leases[0].id, good);
  const Record r = store->get(bad);
  EXPECT_EQ(r.status, Status::failed);
  ASSERT_TRUE(r.error);
  EXPECT_EQ(r.error->type, "strand::DecodeError");
  const std::string prefix =
      "strand: the record of key \"" + bad + "\" in " + server.url() + " does not decode: ";
  EXPECT_EQ(r.error->message.substr(0, prefix.size()), prefix) << r.error->message;
  EXPECT_EQ(raw.command({"ZSCORE", "strand:q:default:ready", bad}), "(nil)");  // out of the queue
  EXPECT_TRUE(store->claim(queues, "w1", 30s, 4).empty());                     // never claimed
  EXPECT_TRUE(store->complete(good, leases[0].token, 1));
  EXPECT_EQ(store->get(good).value, 1);
}

}  // namespace
