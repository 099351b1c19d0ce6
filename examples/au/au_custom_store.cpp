// au's custom storage backend: a Store of your own. This one keeps records in a std::map and
// prefixes its keys, as the seed's RedisStore does with "computation:".
#include <condition_variable>
#include <cstdio>
#include <map>
#include <mutex>
#include <strand/strand.hpp>

using namespace std::chrono_literals;

class MapStore final : public strand::Store {
 public:
  MapStore() : Store({.ttl = 1h}) {}

  strand::Format format() const noexcept override { return strand::Format::json; }
  std::string url() const override { return "map:"; }
  bool shared_across_processes() const noexcept override { return false; }
  std::string create_key() override { return "computation-" + Store::create_key(); }

  std::optional<strand::Record> find(std::string_view key) override {
    std::lock_guard lock(mutex_);
    const auto it = records_.find(std::string(key));
    if (it == records_.end()) return std::nullopt;
    return it->second;
  }
  strand::Record set(strand::Record record) override {
    std::lock_guard lock(mutex_);
    auto& slot = records_[record.key];
    record.version = slot.version + 1;
    slot = record;
    changed_.notify_all();
    return record;
  }
  std::optional<strand::Record> update(std::string_view key, const UpdateFn& f) override {
    std::lock_guard lock(mutex_);
    const auto it = records_.find(std::string(key));
    std::optional<strand::Record> current;
    if (it != records_.end()) current = it->second;
    auto next = f(current);
    if (!next) return current;
    next->key = std::string(key);
    next->version = current ? current->version + 1 : 1;
    records_[next->key] = *next;
    changed_.notify_all();
    return next;
  }
  bool erase(std::string_view key) override {
    std::lock_guard lock(mutex_);
    return records_.erase(std::string(key)) > 0;
  }
  std::vector<std::string> keys() override {
    std::lock_guard lock(mutex_);
    std::vector<std::string> out;
    for (const auto& [k, r] : records_) out.push_back(k);
    return out;
  }
  std::size_t size() override { return keys().size(); }
  std::size_t cleanup_expired() override {
    std::lock_guard lock(mutex_);
    return std::erase_if(records_, [&](const auto& e) { return is_expired(e.second); });
  }
  strand::Record wait_terminal(std::string_view key, clock::time_point deadline) override {
    std::unique_lock lock(mutex_);
    changed_.wait_until(lock, deadline, [&] {
      const auto it = records_.find(std::string(key));
      return it != records_.end() && strand::is_terminal(it->second.status);
    });
    const auto it = records_.find(std::string(key));
    if (it != records_.end()) return it->second;
    strand::Record r;
    r.key = std::string(key);
    return r;
  }

 private:
  std::mutex mutex_;
  std::condition_variable changed_;
  std::map<std::string, strand::Record> records_;
};

int main() {
  auto store = std::make_shared<MapStore>();
  auto distributed_computation = strand::async_compute(
      [](int x) { return x * 3; }, {.store = store, .backend = strand::Target::thread});
  auto h = distributed_computation(14);
  std::printf("key prefix: %s\n", h.key().substr(0, 12).c_str());
  std::printf("result: %d\n", h.get_result(5s));
  std::printf("records: %zu\n", store->size());
  return 0;
}
