#include "store_detail.hpp"

#include <pthread.h>

#include <unistd.h>

#include <cstdint>
#include <exception>
#include <unordered_map>
#include <utility>

namespace strand::detail {

void stamp(Record& record, const Record* previous) {
  record.version = previous != nullptr ? previous->version + 1 : 1;
  if (record.created == Record::time_point{}) {
    record.created = previous != nullptr && previous->created != Record::time_point{}
                         ? previous->created
                         : std::chrono::time_point_cast<std::chrono::milliseconds>(
                               std::chrono::system_clock::now());
  }
}

std::string encode_record(const Record& record, Format format) {
  return encode_json(nlohmann::json(record), format);
}

Record decode_record(std::string_view bytes, std::string_view key, std::string_view where,
                     Format format) {
  const Format actual = !bytes.empty() && bytes.front() == '{' ? Format::json
                        : bytes.empty()                        ? format
                                                               : Format::msgpack;
  Record record;
  try {
    if (bytes.empty()) throw std::runtime_error("the record is empty");
    decode_json(bytes, actual, "strand::Record").get_to(record);
  } catch (const std::exception& e) {
    record = Record{};
    record.status = Status::failed;
    record.error = ErrorInfo{"strand::DecodeError",
                             "strand: the record of key \"" + std::string(key) + "\" in " +
                                 std::string(where) + " does not decode: " + e.what()};
  }
  record.key = std::string(key);
  return record;
}

namespace {

// Every location's notifier in this process. Around fork() its lock is held, and a child starts
// with an empty registry: a parent's notifier may have been locked by a thread that the child does
// not have, so a store a child opens must get notifiers of its own.
struct NotifierRegistry {
  std::mutex mutex;
  std::unordered_map<std::string, std::weak_ptr<Notifier>> entries;
};

NotifierRegistry& notifier_registry() {
  static auto* registry = new NotifierRegistry;  // never destroyed: stores may outlive statics
  static std::once_flag fork_handlers;
  std::call_once(fork_handlers, [] {
    pthread_atfork([] { notifier_registry().mutex.lock(); },
                   [] { notifier_registry().mutex.unlock(); },
                   [] {
                     auto& r = notifier_registry();
                     r.entries.clear();
                     r.mutex.unlock();
                   });
  });
  return *registry;
}

}  // namespace

std::shared_ptr<Notifier> Notifier::at(const std::string& location) {
  auto& registry = notifier_registry();
  std::lock_guard lock(registry.mutex);
  auto& slot = registry.entries[location];
  auto notifier = slot.lock();
  if (!notifier) {
    std::erase_if(registry.entries, [](const auto& entry) { return entry.second.expired(); });
    notifier = std::make_shared<Notifier>();
    registry.entries[location] = notifier;
  }
  return notifier;
}

void Notifier::notify(std::string_view key) {
  {
    std::lock_guard lock(mutex_);
    ++generation_;
    const auto [first, last] = subscribers_.equal_range(key);
    for (auto it = first; it != last; ++it) {
      const std::uint64_t one = 1;
      (void)!::write(it->second, &one, sizeof one);
    }
  }
  changed_.notify_all();
}

std::uint64_t Notifier::generation() {
  std::lock_guard lock(mutex_);
  return generation_;
}

bool Notifier::wait_for_change(std::uint64_t seen, clock::time_point until) {
  std::unique_lock lock(mutex_);
  return changed_.wait_until(lock, until, [&] { return generation_ != seen; });
}

Notifier::Subscription::Subscription(std::shared_ptr<Notifier> notifier, std::string key,
                                     int eventfd)
    : notifier_(std::move(notifier)) {
  std::lock_guard lock(notifier_->mutex_);
  it_ = notifier_->subscribers_.emplace(std::move(key), eventfd);
}

Notifier::Subscription::~Subscription() {
  std::lock_guard lock(notifier_->mutex_);
  notifier_->subscribers_.erase(it_);
}

}  // namespace strand::detail
