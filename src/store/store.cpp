#include "strand/store.hpp"

#include <cstdio>
#include <random>

#include "store_detail.hpp"

namespace strand {
namespace {

std::int64_t to_ms(Record::time_point t) {
  return std::chrono::duration_cast<std::chrono::milliseconds>(t.time_since_epoch()).count();
}
Record::time_point from_ms(std::int64_t ms) {
  return Record::time_point(std::chrono::milliseconds(ms));
}

template <class T>
void put_optional_time(nlohmann::json& out, const char* name, const std::optional<T>& t) {
  if (t) out[name] = to_ms(*t);
}

std::optional<Record::time_point> get_optional_time(const nlohmann::json& in, const char* name) {
  const auto it = in.find(name);
  if (it == in.end() || it->is_null()) return std::nullopt;
  return from_ms(it->get<std::int64_t>());
}

}  // namespace

void to_json(nlohmann::json& out, const Record& r) {
  out = nlohmann::json{{"key", r.key},
                       {"status", std::string(to_string(r.status))},
                       {"value", r.value},
                       {"created", to_ms(r.created)},
                       {"metadata", r.metadata},
                       {"progress", r.progress},
                       {"progress_message", r.progress_message},
                       {"version", r.version}};
  if (r.error) out["error"] = *r.error;
  put_optional_time(out, "started", r.started);
  put_optional_time(out, "completed", r.completed);
  if (r.job) out["job"] = *r.job;
}

void from_json(const nlohmann::json& in, Record& r) {
  in.at("key").get_to(r.key);
  const auto status = in.at("status").get<std::string>();
  const auto parsed = status_from_string(status);
  if (!parsed) throw std::invalid_argument("unknown status \"" + status + "\"");
  r.status = *parsed;
  r.value = in.value("value", nlohmann::json());
  r.error.reset();
  if (const auto it = in.find("error"); it != in.end() && !it->is_null()) {
    r.error = it->get<ErrorInfo>();
  }
  r.created = from_ms(in.value("created", std::int64_t{0}));
  r.started = get_optional_time(in, "started");
  r.completed = get_optional_time(in, "completed");
  r.metadata = in.value("metadata", nlohmann::json::object());
  r.progress = in.value("progress", 0.0);
  r.progress_message = in.value("progress_message", std::string());
  r.version = in.value("version", std::uint64_t{0});
  r.job.reset();
  if (const auto it = in.find("job"); it != in.end() && !it->is_null()) r.job = it->get<Job>();
}

void to_json(nlohmann::json& out, const JobAttempt& a) {
  out = nlohmann::json{{"token", a.token},
                       {"worker", a.worker},
                       {"started", to_ms(a.started)},
                       {"outcome", a.outcome}};
  put_optional_time(out, "ended", a.ended);
  if (a.error) out["error"] = *a.error;
}

void from_json(const nlohmann::json& in, JobAttempt& a) {
  in.at("token").get_to(a.token);
  in.at("worker").get_to(a.worker);
  a.started = from_ms(in.at("started").get<std::int64_t>());
  a.ended = get_optional_time(in, "ended");
  in.at("outcome").get_to(a.outcome);
  a.error.reset();
  if (const auto it = in.find("error"); it != in.end() && !it->is_null()) {
    a.error = it->get<ErrorInfo>();
  }
}

void to_json(nlohmann::json& out, const Job& j) {
  out = nlohmann::json{{"function", j.function},
                       {"args", j.args},
                       {"queue", j.queue},
                       {"priority", j.priority},
                       {"max_retries", j.max_retries},
                       {"retry_backoff_ms", j.retry_backoff.count()},
                       {"failures", j.failures},
                       {"run_at", to_ms(j.run_at)},
                       {"token", j.token},
                       {"worker", j.worker},
                       {"history", j.history}};
  if (j.timeout) out["timeout_ms"] = j.timeout->count();
  if (!j.idempotency_key.empty()) out["idempotency_key"] = j.idempotency_key;
  put_optional_time(out, "lease_expires", j.lease_expires);
}

void from_json(const nlohmann::json& in, Job& j) {
  in.at("function").get_to(j.function);
  j.args = in.value("args", nlohmann::json::array());
  if (!j.args.is_array()) throw std::invalid_argument("a job's args must be an array");
  j.queue = in.value("queue", std::string("default"));
  j.priority = in.value("priority", 0);
  j.max_retries = in.value("max_retries", 0);
  j.retry_backoff = std::chrono::milliseconds(in.value("retry_backoff_ms", std::int64_t{500}));
  j.failures = in.value("failures", 0);
  j.run_at = from_ms(in.value("run_at", std::int64_t{0}));
  j.token = in.value("token", std::uint64_t{0});
  j.worker = in.value("worker", std::string());
  j.history = in.value("history", std::vector<JobAttempt>{});
  j.timeout.reset();
  if (const auto it = in.find("timeout_ms"); it != in.end() && !it->is_null()) {
    j.timeout = std::chrono::milliseconds(it->get<std::int64_t>());
  }
  j.idempotency_key = in.value("idempotency_key", std::string());
  j.lease_expires = get_optional_time(in, "lease_expires");
}

InvalidKey::InvalidKey(std::string_view key, std::string_view why)
    : Error([&] {
        std::string shown;  // the key as printable text: control characters escaped
        for (const char c : key) {
          if (static_cast<unsigned char>(c) < 0x20 || c == 0x7f) {
            char buf[8];
            std::snprintf(buf, sizeof buf, "\\x%02x", static_cast<unsigned char>(c));
            shown += buf;
          } else {
            shown += c;
          }
        }
        return "strand: invalid store key \"" + shown + "\": " + std::string(why);
      }()) {}

void validate_key(std::string_view key) {
  if (key.empty()) throw InvalidKey(key, "it is empty");
  if (key.size() > 200) throw InvalidKey(key, "it is longer than 200 bytes");
  if (key == "." || key == "..") throw InvalidKey(key, "it names a directory");
  for (const char c : key) {
    if (c == '/' || c == '\\') throw InvalidKey(key, "it contains a path separator");
    if (c == '\0') throw InvalidKey(key, "it contains a NUL byte");
    if (static_cast<unsigned char>(c) < 0x20 || c == 0x7f) {
      throw InvalidKey(key, "it contains a control character");
    }
  }
}

std::string Store::create_key() {
  thread_local std::mt19937_64 random(std::random_device{}());
  char buf[33];
  std::snprintf(buf, sizeof buf, "%016llx%016llx", static_cast<unsigned long long>(random()),
                static_cast<unsigned long long>(random()));
  return buf;
}

std::vector<std::optional<Record>> Store::find_many(std::span<const std::string> keys) {
  std::vector<std::optional<Record>> out;
  out.reserve(keys.size());
  for (const std::string& key : keys) out.push_back(find(key));
  return out;
}

namespace detail {
void write_outcome(Record& r, const Outcome& outcome) {
  r.completed = outcome.completed;
  if (outcome.error != nullptr) {
    r.status = Status::failed;
    r.error = *outcome.error;
  } else {
    r.status = Status::completed;
    r.value = outcome.value != nullptr ? *outcome.value : nlohmann::json();
    r.progress = 1;
  }
}

bool apply_outcome(std::optional<Record>& r, const Outcome& outcome) {
  if (r && is_terminal(r->status)) return false;  // cancelled meanwhile: the result is dropped
  if (!r) r.emplace();
  write_outcome(*r, outcome);
  return true;
}
}  // namespace detail

std::vector<bool> Store::finish_many(std::span<const Outcome> outcomes) {
  std::vector<bool> written;
  written.reserve(outcomes.size());
  for (const Outcome& outcome : outcomes) {
    bool wrote = false;
    (void)update(outcome.key, [&](std::optional<Record> r) -> std::optional<Record> {
      wrote = detail::apply_outcome(r, outcome);
      return wrote ? std::move(r) : std::nullopt;
    });
    written.push_back(wrote);
  }
  return written;
}

std::vector<bool> Store::write_many(std::span<Record> records, std::span<const Outcome> outcomes) {
  for (Record& r : records) r = set(std::move(r));
  return finish_many(outcomes);
}

Record Store::get(std::string_view key) {
  if (auto found = find(key)) return std::move(*found);
  Record r;
  r.key = std::string(key);
  return r;
}

bool Store::is_expired(const Record& record) const {
  if (!options_.ttl) return false;
  const auto since = record.completed ? *record.completed : record.created;
  return std::chrono::system_clock::now() - since > *options_.ttl;
}

void Store::maybe_cleanup() {
  if (options_.cleanup_probability <= 0) return;
  thread_local std::mt19937 random(std::random_device{}());
  if (std::uniform_real_distribution<double>(0, 1)(random) < options_.cleanup_probability) {
    (void)cleanup_expired();
  }
}

}  // namespace strand
