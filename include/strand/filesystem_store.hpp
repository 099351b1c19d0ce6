// strand/filesystem_store.hpp — a store that is a directory: one file per key.
//
//   auto store = strand::FileSystemStore::open("/var/lib/app/results", {.ttl = 1h});
//   store->set({.key = "report-7", .status = strand::Status::completed, .value = 42});
//   // /var/lib/app/results/report-7.json now holds the whole record
//
// Each record is one file `<dir>/<key><suffix>` holding the whole Record in the store's Format
// (".json" or ".msgpack" by default). A write goes to `<key><suffix>.tmp` in the same directory and
// is then rename()d into place, so a reader, in any process, sees the old record or the new one,
// never half of one. Writes (set, update, erase) hold an flock on the store's lock file
// `<dir>/.strand-store-lock`, which makes `update` atomic across threads and processes.
//
// What a write costs: open+flock of the lock file, one read of the previous record (for its
// version and created time), then open/write/close of the temporary file and one rename: one new
// file per write (the disk's slowest operation). A get is open, read, close. Nothing is fsync'd by
// default: a record survives its process but not necessarily a power cut. `StoreOptions::durable`
// fsyncs the file before the rename and the directory after it.
//
// wait_terminal wakes at once for writes made by this process (a notifier shared by every
// FileSystemStore on the same directory) and through inotify for writes of other processes (with a
// back-off from 1 ms to 50 ms if inotify is unavailable).
//
// A file that does not decode reads as a FAILED record whose error is a strand::DecodeError naming
// the key; every other key works as before. Keys are checked by validate_key, so no key names a
// path outside the directory; temporary and lock files are never listed by keys().
#pragma once

#include <filesystem>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "strand/job_queue.hpp"
#include "strand/store.hpp"

namespace strand {

class FileSystemStore final : public Store, public JobQueue {
 public:
  using clock = Store::clock;  // the same steady clock as JobQueue::clock

  // Opens (creating it and its parents if needed) the directory `dir`. `suffix` defaults to
  // ".json" or ".msgpack" after `options.format`; it must start with '.', hold no '/' and be at
  // most 40 bytes. Throws StoreError naming the directory if it cannot be created or written.
  static std::shared_ptr<FileSystemStore> open(const std::filesystem::path& dir,
                                               StoreOptions options = {},
                                               std::optional<std::string> suffix = std::nullopt);

  ~FileSystemStore() override;
  FileSystemStore(const FileSystemStore&) = delete;
  FileSystemStore& operator=(const FileSystemStore&) = delete;

  // The canonical directory.
  [[nodiscard]] const std::filesystem::path& directory() const noexcept;
  [[nodiscard]] const std::string& suffix() const noexcept;
  // The file that holds `key` (validated).
  [[nodiscard]] std::filesystem::path path_of(std::string_view key) const;

  [[nodiscard]] Format format() const noexcept override { return options().format; }
  // "file:///canonical/dir".
  [[nodiscard]] std::string url() const override;
  [[nodiscard]] std::optional<Record> find(std::string_view key) override;
  Record set(Record record) override;
  std::optional<Record> update(std::string_view key, const UpdateFn& f) override;
  bool erase(std::string_view key) override;
  [[nodiscard]] std::vector<std::string> keys() override;
  [[nodiscard]] std::size_t size() override;
  std::size_t cleanup_expired() override;
  Record wait_terminal(std::string_view key, clock::time_point deadline) override;

  // The job queue (see strand/job_queue.hpp). Its clock is this machine's system clock (a
  // directory is shared by the processes of one machine). A claim reads every record to find the
  // claimable ones: fine for thousands of jobs; use SQLite or Redis beyond.
  [[nodiscard]] Record::time_point now() override;
  std::vector<std::string> enqueue_many(std::span<const JobRequest> requests) override;
  std::vector<Lease> claim(std::span<const std::string> queues, std::string_view worker,
                           std::chrono::milliseconds lease, std::size_t max = 1) override;
  LeaseState heartbeat(std::string_view id, std::uint64_t token,
                       std::chrono::milliseconds lease) override;
  bool complete(std::string_view id, std::uint64_t token, const nlohmann::json& value) override;
  bool fail(std::string_view id, std::uint64_t token, const ErrorInfo& error,
            bool retryable = true) override;
  bool release(std::string_view id, std::uint64_t token) override;
  bool cancel_job(std::string_view id) override;
  // Wakes on inotify (any record written), on `stop`, or when the next delayed job comes due.
  void wait_for_jobs(std::span<const std::string> queues, JobQueue::clock::time_point deadline,
                     std::stop_token stop) override;

 private:
  struct Impl;
  FileSystemStore(StoreOptions options, std::unique_ptr<Impl> impl);
  std::unique_ptr<Impl> impl_;
};

}  // namespace strand
