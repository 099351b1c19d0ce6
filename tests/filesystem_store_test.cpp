// FileSystemStore: its files, and the bad inputs (keys that would leave the directory, corrupt and
// truncated records, directories that cannot be written, several processes at once).
#include "strand/filesystem_store.hpp"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <gtest/gtest.h>

#include <chrono>
#include <fstream>
#include <string>
#include <vector>

#include "store_support.hpp"

namespace {

using namespace std::chrono_literals;
using strand::FileSystemStore;
using strand::Format;
using strand::Record;
using strand::Status;
using strand::testing::TempDir;
using strand::testing::tree;

void write_file(const std::filesystem::path& path, std::string_view bytes) {
  std::ofstream out(path, std::ios::binary | std::ios::trunc);
  out.write(bytes.data(), static_cast<std::streamsize>(bytes.size()));
}

std::string read_file(const std::filesystem::path& path) {
  std::ifstream in(path, std::ios::binary);
  return {std::istreambuf_iterator<char>(in), {}};
}

TEST(FileSystemStore, EachRecordIsOneFileNamedAfterItsKey) {
  TempDir tmp;
  auto store = FileSystemStore::open(tmp.path() / "s");
  EXPECT_EQ(store->suffix(), ".json");
  store->set({.key = "report-7", .status = Status::completed, .value = 42});
  EXPECT_EQ(store->path_of("report-7"), tmp.path() / "s" / "report-7.json");
  const auto doc = nlohmann::json::parse(read_file(store->path_of("report-7")));
  EXPECT_EQ(doc["status"], "completed");
  EXPECT_EQ(doc["value"], 42);
  EXPECT_EQ(tree(tmp.path() / "s"),
            (std::vector<std::string>{".strand-store-lock", "report-7.json"}));

  auto packed = FileSystemStore::open(tmp.path() / "p", {.format = Format::msgpack});
  EXPECT_EQ(packed->suffix(), ".msgpack");
  packed->set({.key = "k", .value = "v"});
  EXPECT_EQ(nlohmann::json::from_msgpack(read_file(packed->path_of("k")))["value"], "v");

  auto custom = FileSystemStore::open(tmp.path() / "c", {}, ".rec");
  custom->set({.key = "k"});
  EXPECT_TRUE(std::filesystem::exists(tmp.path() / "c" / "k.rec"));
  EXPECT_EQ(custom->keys(), std::vector<std::string>{"k"});
}

TEST(FileSystemStore, KeysThatWouldLeaveTheDirectoryAreRefusedAndNothingIsWritten) {
  TempDir tmp;
  auto store = FileSystemStore::open(tmp.path() / "s");
  const auto before = tree(tmp.path());
  const std::pair<std::string, std::string> cases[] = {
      {"a/b", R"(strand: invalid store key "a/b": it contains a path separator)"},
      {"../escape", R"(strand: invalid store key "../escape": it contains a path separator)"},
      {"..", R"(strand: invalid store key "..": it names a directory)"},
      {std::string("a\0b", 3), R"(strand: invalid store key "a\x00b": it contains a NUL byte)"},
  };
  for (const auto& [key, message] : cases) {
    try {
      store->set({.key = key, .status = Status::completed});
      ADD_FAILURE() << "expected InvalidKey for " << key;
    } catch (const strand::InvalidKey& e) {
      EXPECT_EQ(e.what(), message);
    }
    EXPECT_THROW(store->update(key, [](std::optional<Record>) { return Record{}; }),
                 strand::InvalidKey);
    EXPECT_THROW((void)store->get(key), strand::InvalidKey);
    EXPECT_THROW(store->erase(key), strand::InvalidKey);
  }
  EXPECT_EQ(tree(tmp.path()), before) << "nothing written in the directory or beside it";
  EXPECT_EQ(tree(tmp.path() / "s"), std::vector<std::string>{".strand-store-lock"});
}

TEST(FileSystemStore, CorruptAndTruncatedRecordsReadAsFailedAndOtherKeysStillWork) {
  TempDir tmp;
  for (const Format format : {Format::json, Format::msgpack}) {
    auto store = FileSystemStore::open(tmp.path() / std::string(strand::to_string(format)),
                                       {.format = format});
    store->set({.key = "good", .status = Status::completed, .value = 1});
    store->set({.key = "cut", .status = Status::completed, .value = std::string(100, 'x')});
    const std::string whole = read_file(store->path_of("cut"));
    write_file(store->path_of("cut"), whole.substr(0, whole.size() / 2));
    write_file(store->path_of("bad"), "\x01 this is not a record \xff");
    write_file(store->path_of("empty"), "");

    for (const char* key : {"cut", "bad", "empty"}) {
      const Record r = store->get(key);
      EXPECT_EQ(r.key, key);
      EXPECT_EQ(r.status, Status::failed);
      ASSERT_TRUE(r.error.has_value());
      EXPECT_EQ(r.error->type, "strand::DecodeError");
      const std::string prefix = "strand: the record of key \"" + std::string(key) + "\" in " +
                                 store->path_of(key).string() + " does not decode: ";
      EXPECT_EQ(r.error->message.substr(0, prefix.size()), prefix) << r.error->message;
    }
    EXPECT_EQ(store->get("good").value, 1);
    EXPECT_EQ(store->keys(), (std::vector<std::string>{"bad", "cut", "empty", "good"}));
    store->set({.key = "bad", .status = Status::completed, .value = 2});  // a write repairs it
    EXPECT_EQ(store->get("bad").value, 2);
    EXPECT_TRUE(store->erase("cut"));
    store->set({.key = "new", .value = 3});
    EXPECT_EQ(store->get("new").value, 3);
  }
}

TEST(FileSystemStore, ADirectoryThatCannotBeCreatedOrWrittenIsAStoreErrorAtOpen) {
  TempDir tmp;
  write_file(tmp.path() / "plain-file", "x");
  const auto under_file = tmp.path() / "plain-file" / "store";
  try {
    (void)FileSystemStore::open(under_file);
    ADD_FAILURE() << "expected StoreError";
  } catch (const strand::StoreError& e) {
    EXPECT_EQ(std::string(e.what()), "strand: cannot open the filesystem store \"" +
                                         under_file.string() + "\": Not a directory");
  }
  // /proc refuses new entries even to root.
  try {
    (void)FileSystemStore::open("/proc/strand-store");
    ADD_FAILURE() << "expected StoreError";
  } catch (const strand::StoreError& e) {
    const std::string prefix = "strand: cannot open the filesystem store \"/proc/strand-store\": ";
    EXPECT_EQ(std::string(e.what()).substr(0, prefix.size()), prefix) << e.what();
  }
  // A directory that exists but where no file can be created: /proc/self.
  try {
    (void)FileSystemStore::open("/proc/self");
    ADD_FAILURE() << "expected StoreError";
  } catch (const strand::StoreError& e) {
    const std::string prefix = "strand: cannot open the filesystem store \"/proc/self\": ";
    EXPECT_EQ(std::string(e.what()).substr(0, prefix.size()), prefix) << e.what();
  }
  EXPECT_THROW((void)FileSystemStore::open(tmp.path() / "s", {}, "json"), strand::StoreError);
  EXPECT_THROW((void)FileSystemStore::open(tmp.path() / "s", {}, ".a/b"), strand::StoreError);
  EXPECT_THROW((void)FileSystemStore::open(tmp.path() / "s", {}, ".tmp"), strand::StoreError);
}

TEST(FileSystemStore, TemporaryAndForeignFilesAreNeverListed) {
  TempDir tmp;
  auto store = FileSystemStore::open(tmp.path());
  store->set({.key = "real"});
  write_file(tmp.path() / "half.json.tmp", "{\"key\":");  // a write interrupted before its rename
  write_file(tmp.path() / "notes.txt", "hello");
  std::filesystem::create_directory(tmp.path() / "sub.json");
  EXPECT_EQ(store->keys(), (std::vector<std::string>{"real", "sub"}));
  EXPECT_EQ(store->get("half").status, Status::pending);
}

TEST(FileSystemStore, TwoProcessesWritingAtOnceLoseNoWrite) {
  TempDir tmp;
  auto store = FileSystemStore::open(tmp.path());
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

TEST(FileSystemStore, WaitTerminalWakesForAnotherProcesssWrite) {
  TempDir tmp;
  auto store = FileSystemStore::open(tmp.path());
  store->set({.key = "job", .status = Status::running});
  int go[2];
  ASSERT_EQ(::pipe(go), 0);
  const pid_t pid = ::fork();
  if (pid == 0) {
    char c;
    (void)!::read(go[0], &c, 1);
    auto other = FileSystemStore::open(tmp.path());  // the child's own store object
    other->set({.key = "unrelated", .status = Status::completed});
    other->set({.key = "job", .status = Status::completed, .value = "from the child"});
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
  EXPECT_EQ(r.status, Status::completed);
  EXPECT_EQ(r.value, "from the child");
  EXPECT_LT(waited, 2s);
}

}  // namespace
