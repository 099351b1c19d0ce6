// Stores: the same record kept in memory, in a directory and in an SQLite file.
#include <unistd.h>

#include <chrono>
#include <cstdio>
#include <filesystem>
#include <iostream>
#include <thread>

#include "strand/filesystem_store.hpp"
#include "strand/sqlite_store.hpp"
#include "strand/store.hpp"

int main() {
  using namespace std::chrono_literals;
  const auto dir = std::filesystem::temp_directory_path() /
                   ("strand-stores-example-" + std::to_string(::getpid()));

  for (const std::string& url : {std::string("memory:"), "file://" + (dir / "results").string(),
                                 "sqlite://" + (dir / "jobs.db").string()}) {
    auto store = strand::open_store(url, {.ttl = 24h});
    const std::string key = store->create_key();
    store->set({.key = key, .status = strand::Status::running});

    // update() is an atomic read-modify-write (a transaction, or a lock file across processes).
    store->update(key, [](std::optional<strand::Record> r) {
      r->progress = 0.5;
      return r;
    });
    // Another thread finishes the work; wait_terminal wakes as soon as it writes.
    std::jthread worker([&] {
      store->set({.key = key,
                  .status = strand::Status::completed,
                  .value = 42,
                  .completed = std::chrono::system_clock::now()});
    });
    const strand::Record done = store->wait_terminal(key, std::chrono::steady_clock::now() + 5s);

    const std::string scheme = url.substr(0, url.find(':'));
    std::cout << scheme << ": " << done.status << " " << done.value << ", version " << done.version
              << ", " << store->size() << " record(s)\n";
  }

  // Bad input is a typed error, never a path outside the store.
  auto files = strand::FileSystemStore::open(dir / "results");
  try {
    files->set({.key = "../../etc/passwd"});
  } catch (const strand::InvalidKey& e) {
    std::cout << e.what() << "\n";
  }
  try {
    (void)strand::open_store("postgres://localhost/jobs");
  } catch (const strand::StoreError& e) {
    std::cout << e.what() << "\n";
  }
  std::filesystem::remove_all(dir);
}
