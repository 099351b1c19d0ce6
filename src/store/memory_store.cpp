#include <condition_variable>
#include <map>
#include <mutex>

#include "strand/store.hpp"

namespace strand {

struct MemoryStore::Impl {
  std::mutex mutex;
  std::condition_variable changed;  // any write: waiters re-check their key
  std::map<std::string, Record, std::less<>> records;
};

std::shared_ptr<MemoryStore> MemoryStore::open(StoreOptions options) {
  return std::make_shared<MemoryStore>(options);
}

MemoryStore::MemoryStore(StoreOptions options) : Store(options), impl_(std::make_unique<Impl>()) {}

MemoryStore::~MemoryStore() = default;

std::optional<Record> MemoryStore::find(std::string_view key) {
  validate_key(key);
  maybe_cleanup();
  std::lock_guard lock(impl_->mutex);
  const auto it = impl_->records.find(key);
  if (it == impl_->records.end() || is_expired(it->second)) return std::nullopt;
  return it->second;
}

namespace {
// Stamps what the store owns on a record about to be written over `previous`.
void stamp(Record& r, const Record* previous) {
  r.version = previous != nullptr ? previous->version + 1 : 1;
  if (r.created == Record::time_point{}) {
    r.created = previous != nullptr && previous->created != Record::time_point{}
                    ? previous->created
                    : std::chrono::system_clock::now();
  }
}
}  // namespace

Record MemoryStore::set(Record record) {
  validate_key(record.key);
  maybe_cleanup();
  {
    std::lock_guard lock(impl_->mutex);
    auto& slot = impl_->records[record.key];
    stamp(record, slot.version != 0 ? &slot : nullptr);
    slot = record;
  }
  impl_->changed.notify_all();
  return record;
}

std::optional<Record> MemoryStore::update(std::string_view key, const UpdateFn& f) {
  validate_key(key);
  std::optional<Record> result;
  {
    std::lock_guard lock(impl_->mutex);
    const auto it = impl_->records.find(key);
    std::optional<Record> current;
    if (it != impl_->records.end() && !is_expired(it->second)) current = it->second;
    std::optional<Record> next = f(current);
    if (!next) return current;
    next->key = std::string(key);
    stamp(*next, current ? &*current : nullptr);
    impl_->records.insert_or_assign(std::string(key), *next);
    result = std::move(next);
  }
  impl_->changed.notify_all();
  return result;
}

bool MemoryStore::erase(std::string_view key) {
  validate_key(key);
  std::lock_guard lock(impl_->mutex);
  const auto it = impl_->records.find(key);
  if (it == impl_->records.end()) return false;
  impl_->records.erase(it);
  return true;
}

std::vector<std::string> MemoryStore::keys() {
  std::lock_guard lock(impl_->mutex);
  std::vector<std::string> out;
  out.reserve(impl_->records.size());
  for (const auto& [key, record] : impl_->records) {
    if (!is_expired(record)) out.push_back(key);
  }
  return out;
}

std::size_t MemoryStore::size() {
  return keys().size();
}

std::size_t MemoryStore::cleanup_expired() {
  std::lock_guard lock(impl_->mutex);
  return std::erase_if(impl_->records, [&](const auto& entry) { return is_expired(entry.second); });
}

Record MemoryStore::wait_terminal(std::string_view key, clock::time_point deadline) {
  validate_key(key);
  std::unique_lock lock(impl_->mutex);
  const auto current = [&] {
    const auto it = impl_->records.find(key);
    if (it != impl_->records.end()) return it->second;
    Record r;
    r.key = std::string(key);
    return r;
  };
  Record r = current();
  while (!is_terminal(r.status)) {
    if (impl_->changed.wait_until(lock, deadline) == std::cv_status::timeout) return current();
    r = current();
  }
  return r;
}

}  // namespace strand
