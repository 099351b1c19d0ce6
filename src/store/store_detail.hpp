// What the stores share: how a record is stamped, encoded and decoded, and the in-process notifier
// that wakes wait_terminal at once for writes made by this process.
#pragma once

#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <string_view>

#include "strand/store.hpp"

namespace strand::detail {

[[nodiscard]] inline std::int64_t to_unix_ms(Record::time_point t) {
  return std::chrono::duration_cast<std::chrono::milliseconds>(t.time_since_epoch()).count();
}

// Fills in what the store owns on a record about to be written over `previous` (or nothing):
// the version, and the created time when the caller left it at the epoch.
void stamp(Record& record, const Record* previous);

// Writes `outcome`'s fields (status, value or error, progress, completed) over `r`.
void write_outcome(Record& r, const Outcome& outcome);
// Writes `outcome` over `r` (creating it when missing) unless `r` is finished: finish_many's rule
// for one record. False (and `r` untouched) if it was finished.
bool apply_outcome(std::optional<Record>& r, const Outcome& outcome);

// The record in `format`.
[[nodiscard]] std::string encode_record(const Record& record, Format format);
// The record stored under `key` from its bytes, whichever format they are in (a JSON document
// starts with '{', a MessagePack map never does). Bytes that do not decode give a FAILED record
// whose error is {"strand::DecodeError", message naming the key and `where`}.
[[nodiscard]] Record decode_record(std::string_view bytes, std::string_view key,
                                   std::string_view where, Format format);

// One per store location (canonical path) in this process, shared by every store object on it.
// Writers call notify(); waiters either wait on the condition variable for the generation to change
// or, to wait on file descriptors too, subscribe an eventfd for one key.
class Notifier {
 public:
  using clock = std::chrono::steady_clock;

  static std::shared_ptr<Notifier> at(const std::string& location);

  void notify(std::string_view key);
  [[nodiscard]] std::uint64_t generation();
  // Waits until the generation differs from `seen` or `until` passes; false on time-out.
  bool wait_for_change(std::uint64_t seen, clock::time_point until);

  // While it lives, each notify(key) writes to `eventfd`.
  class Subscription {
   public:
    Subscription(std::shared_ptr<Notifier> notifier, std::string key, int eventfd);
    ~Subscription();
    Subscription(const Subscription&) = delete;
    Subscription& operator=(const Subscription&) = delete;

   private:
    std::shared_ptr<Notifier> notifier_;
    std::multimap<std::string, int, std::less<>>::iterator it_;
  };

 private:
  std::mutex mutex_;
  std::condition_variable changed_;
  std::uint64_t generation_ = 0;
  std::multimap<std::string, int, std::less<>> subscribers_;
};

}  // namespace strand::detail
