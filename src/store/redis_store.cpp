#include "strand/redis_store.hpp"

#include <hiredis/hiredis.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <sys/eventfd.h>
#include <sys/time.h>
#include <unistd.h>

#include <algorithm>
#include <array>
#include <cerrno>
#include <mutex>
#include <thread>
#include <utility>

#include "../core/fork_hooks.hpp"
#include "../proc/fd.hpp"
#include "job_logic.hpp"
#include "store_detail.hpp"

namespace strand {
namespace {

using namespace std::chrono_literals;
using Args = std::vector<std::string>;

struct ReplyDeleter {
  void operator()(redisReply* r) const noexcept { freeReplyObject(r); }
};
using Reply = std::unique_ptr<redisReply, ReplyDeleter>;

struct ContextDeleter {
  void operator()(redisContext* c) const noexcept { redisFree(c); }
};
using Context = std::unique_ptr<redisContext, ContextDeleter>;

timeval to_timeval(std::chrono::milliseconds d) {
  const auto ms = std::max<std::int64_t>(d.count(), 1);
  return timeval{.tv_sec = static_cast<time_t>(ms / 1000),
                 .tv_usec = static_cast<suseconds_t>((ms % 1000) * 1000)};
}

std::string text(const redisReply* r) {
  if (r == nullptr || r->str == nullptr) return {};
  return std::string(r->str, r->len);
}

// hiredis writes with write(2): a peer that went away would raise SIGPIPE, whose default action
// ends the process. While this guard lives, SIGPIPE is blocked in this thread, and one it raised is
// taken off the pending set before the mask is restored (the error arrives as EPIPE instead).
class SigpipeGuard {
 public:
  SigpipeGuard() noexcept {
    sigset_t pending;
    sigemptyset(&pending);
    sigpending(&pending);
    was_pending_ = sigismember(&pending, SIGPIPE) == 1;
    sigset_t block;
    sigemptyset(&block);
    sigaddset(&block, SIGPIPE);
    blocked_ = pthread_sigmask(SIG_BLOCK, &block, &old_) == 0;
  }
  ~SigpipeGuard() {
    if (!blocked_) return;
    if (!was_pending_) {
      sigset_t pending;
      sigemptyset(&pending);
      sigpending(&pending);
      if (sigismember(&pending, SIGPIPE) == 1) {
        sigset_t pipe;
        sigemptyset(&pipe);
        sigaddset(&pipe, SIGPIPE);
        const timespec zero{};
        while (sigtimedwait(&pipe, nullptr, &zero) == -1 && errno == EINTR) {
        }
      }
    }
    pthread_sigmask(SIG_SETMASK, &old_, nullptr);
  }
  SigpipeGuard(const SigpipeGuard&) = delete;
  SigpipeGuard& operator=(const SigpipeGuard&) = delete;

 private:
  sigset_t old_{};
  bool was_pending_ = false;
  bool blocked_ = false;
};

// The connection went away and was opened again; what was sent on it is in an unknown state.
// Thrown only to callers that asked not to have their commands sent again (update's MULTI/EXEC).
struct Reconnected {};

// set(): one round trip that stamps the version and created time the way the other stores do,
// writes the record, sets (or clears) its expiry and wakes wait_terminal.
//   KEYS[1] the record's hash, KEYS[2] its channel
//   A key of another type under the record's name (damage done behind the store's back) is
//   replaced. ARGV: record bytes, status, created ms ('' = keep the stored one, or now), now ms,
//         completed ms (''), ttl ms ('' = no expiry), '1' if terminal
constexpr const char* kSetScript = R"lua(
if redis.call('TYPE', KEYS[1]).ok ~= 'hash' then redis.call('DEL', KEYS[1]) end
local version = redis.call('HINCRBY', KEYS[1], 'version', 1)
local created = ARGV[3]
if created == '' then
  created = redis.call('HGET', KEYS[1], 'created') or ARGV[4]
end
redis.call('HSET', KEYS[1], 'record', ARGV[1], 'status', ARGV[2], 'created', created)
if ARGV[6] ~= '' then
  local since = created
  if ARGV[5] ~= '' then since = ARGV[5] end
  redis.call('PEXPIREAT', KEYS[1], tonumber(since) + tonumber(ARGV[6]))
else
  redis.call('PERSIST', KEYS[1])
end
if ARGV[7] == '1' then redis.call('PUBLISH', KEYS[2], version) end
return {version, created}
)lua";

// A glob pattern matching `s` literally.
std::string glob_escape(std::string_view s) {
  std::string out;
  for (const char c : s) {
    if (c == '*' || c == '?' || c == '[' || c == ']' || c == '\\') out += '\\';
    out += c;
  }
  return out;
}

std::int64_t now_ms() {
  return detail::to_unix_ms(std::chrono::system_clock::now());
}

}  // namespace

struct RedisStore::Impl {
  std::string host;
  int port = 6379;
  int db = 0;
  RedisOptions redis;
  std::string where;  // "host:port", for messages
  std::string set_sha;

  std::mutex mutex;  // guards what follows: one connection, used by one thread at a time
  pid_t pid = 0;     // the process `ctx` was opened in
  redisContext* ctx = nullptr;

  ~Impl() {
    if (ctx != nullptr) redisFree(ctx);  // in a forked child this closes only the child's copy
  }

  [[nodiscard]] std::string record_key(std::string_view key) const {
    return redis.prefix + "r:" + std::string(key);
  }
  [[nodiscard]] std::string channel(std::string_view key) const {
    return redis.prefix + "w:" + std::string(key);
  }

  // Where a record lives, for DecodeError messages.
  [[nodiscard]] std::string location() const {
    return "redis://" + where + "/" + std::to_string(db);
  }

  [[noreturn]] void fail(std::string_view what, std::string_view why) const {
    throw StoreError("strand: Redis at " + where + ": " + std::string(what) + ": " +
                     std::string(why));
  }

  // One attempt to connect and select the database: the context, or null with `why` set.
  Context try_connect(std::string& why) const {
    Context c(redisConnectWithTimeout(host.c_str(), port, to_timeval(redis.connect_timeout)));
    if (!c) {
      why = "out of memory";
      return nullptr;
    }
    if (c->err != 0) {
      why = c->errstr;
      return nullptr;
    }
    redisSetTimeout(c.get(), to_timeval(redis.command_timeout));
    if (db != 0) {
      const SigpipeGuard guard;
      Reply r(static_cast<redisReply*>(redisCommand(c.get(), "SELECT %d", db)));
      if (!r) {
        why = c->errstr;
        return nullptr;
      }
      if (r->type == REDIS_REPLY_ERROR)
        fail("cannot select database " + std::to_string(db), text(r.get()));
    }
    return c;
  }

  // Connects with back-off (10 ms doubling to 1 s) until `give_up`; throws StoreError after.
  Context connect_with_backoff(std::chrono::steady_clock::time_point give_up,
                               std::string_view what) const {
    auto backoff = std::chrono::milliseconds(10);
    for (;;) {
      std::string why;
      if (Context c = try_connect(why)) return c;
      if (std::chrono::steady_clock::now() + backoff > give_up) {
        throw StoreError("strand: lost the connection to Redis at " + where + " (" +
                         std::string(what) + ") and could not reconnect within " +
                         std::to_string(redis.reconnect_timeout.count()) + " ms: " + why);
      }
      std::this_thread::sleep_for(backoff);
      backoff = std::min(backoff * 2, std::chrono::milliseconds(1000));
    }
  }

  // With the mutex held: a connection of this process. A forked child drops its copy of the
  // parent's (closing only the child's descriptor) and opens its own.
  void ensure_connected(std::string_view what) {
    if (ctx != nullptr && pid == ::getpid()) return;
    drop();
    ctx = connect_with_backoff(std::chrono::steady_clock::now() + redis.reconnect_timeout, what)
              .release();
    pid = ::getpid();
  }

  void drop() noexcept {
    if (ctx != nullptr) redisFree(ctx);
    ctx = nullptr;
  }

  // With the mutex held: sends every command in one write and reads each reply. A connection lost
  // on the way is reopened with back-off and the commands are sent again, unless `resend` is false:
  // then Reconnected is thrown once the connection is back. Error replies are returned as they are.
  std::vector<Reply> run(const std::vector<Args>& commands, std::string_view what,
                         bool resend = true) {
    for (;;) {
      ensure_connected(what);
      std::vector<Reply> replies;
      replies.reserve(commands.size());
      bool lost = false;
      {
        const SigpipeGuard guard;
        std::vector<const char*> argv;
        std::vector<std::size_t> lengths;
        for (const Args& args : commands) {
          argv.clear();
          lengths.clear();
          for (const std::string& a : args) {
            argv.push_back(a.data());
            lengths.push_back(a.size());
          }
          if (redisAppendCommandArgv(ctx, static_cast<int>(argv.size()), argv.data(),
                                     lengths.data()) != REDIS_OK) {
            fail(what, ctx->errstr);
          }
        }
        for (std::size_t i = 0; i < commands.size(); ++i) {
          void* r = nullptr;
          if (redisGetReply(ctx, &r) != REDIS_OK || r == nullptr) {
            lost = true;
            break;
          }
          replies.emplace_back(static_cast<redisReply*>(r));
        }
      }
      if (!lost) return replies;
      drop();  // the next ensure_connected reconnects with back-off
      if (!resend) {
        ensure_connected(what);
        throw Reconnected{};
      }
    }
  }

  Reply run_one(Args args, std::string_view what) {
    std::vector<Args> commands{std::move(args)};
    return std::move(run(commands, what).front());
  }

  void check(const Reply& r, std::string_view what) const {
    if (r->type == REDIS_REPLY_ERROR) fail(what, text(r.get()));
  }

  // EVALSHA, loading the script when the server does not know it (a restarted server forgets).
  Reply eval(const char* script, const std::string& sha, Args keys_and_args, std::size_t num_keys,
             std::string_view what) {
    Args args{"EVALSHA", sha, std::to_string(num_keys)};
    args.insert(args.end(), std::make_move_iterator(keys_and_args.begin()),
                std::make_move_iterator(keys_and_args.end()));
    Reply r = run_one(args, what);
    if (r->type == REDIS_REPLY_ERROR && text(r.get()).starts_with("NOSCRIPT")) {
      args[0] = "EVAL";
      args[1] = script;
      r = run_one(std::move(args), what);
    }
    check(r, what);
    return r;
  }

  // The record from an HMGET record version created reply (nullopt when there is none).
  // A value of another type under the record's name (a reply WRONGTYPE) reads as a record that
  // does not decode.
  std::optional<Record> decode(const Reply& r, std::string_view key, Format format) const {
    if (r->type == REDIS_REPLY_ERROR && text(r.get()).starts_with("WRONGTYPE")) {
      Record out = detail::decode_record("", key, location(), format);
      out.error->message += " (it is not a Redis hash)";
      return out;
    }
    check(r, "cannot read a record");
    if (r->type != REDIS_REPLY_ARRAY || r->elements != 3) {
      fail("cannot read a record", "unexpected reply to HMGET");
    }
    const redisReply* bytes = r->element[0];
    if (bytes->type != REDIS_REPLY_STRING) return std::nullopt;
    Record out = detail::decode_record(text(bytes), key, location(), format);
    try {
      out.version = std::stoull(text(r->element[1]));
      out.created = Record::time_point(std::chrono::milliseconds(std::stoll(text(r->element[2]))));
    } catch (const std::exception&) {
      // Fields damaged behind the store's back: the record as it decoded.
    }
    return out;
  }

  // The arguments that write `record` (whose version and created time are final) into its hash.
  Args hset(const Record& record, Format format) const {
    return {"HSET",    record_key(record.key),
            "record",  detail::encode_record(record, format),
            "status",  std::string(to_string(record.status)),
            "version", std::to_string(record.version),
            "created", std::to_string(detail::to_unix_ms(record.created))};
  }

  [[nodiscard]] std::string ready_set(std::string_view queue) const {
    return redis.prefix + "q:" + std::string(queue) + ":ready";
  }
  [[nodiscard]] std::string lease_set(std::string_view queue) const {
    return redis.prefix + "q:" + std::string(queue) + ":lease";
  }
  [[nodiscard]] std::string jobs_channel(std::string_view queue) const {
    return redis.prefix + "jobs:" + std::string(queue);
  }

  // The commands that keep a job's queue indexes in step with `record` (none for a record that is
  // not a job): queued -> the ready set by run_at, running -> the lease set by lease expiry,
  // anything else -> neither. A job that becomes queued wakes wait_for_jobs.
  void index(const Record& record, std::vector<Args>& commands) const {
    if (!record.job) return;
    const Job& job = *record.job;
    const std::string member = record.key;
    if (record.status == Status::queued) {
      commands.push_back(
          {"ZADD", ready_set(job.queue), std::to_string(detail::to_unix_ms(job.run_at)), member});
      commands.push_back({"ZREM", lease_set(job.queue), member});
      commands.push_back({"PUBLISH", jobs_channel(job.queue), "1"});
    } else if (record.status == Status::running && job.lease_expires) {
      commands.push_back({"ZADD", lease_set(job.queue),
                          std::to_string(detail::to_unix_ms(*job.lease_expires)), member});
      commands.push_back({"ZREM", ready_set(job.queue), member});
    } else {
      commands.push_back({"ZREM", ready_set(job.queue), member});
      commands.push_back({"ZREM", lease_set(job.queue), member});
    }
  }

  // PEXPIREAT at (completed, else created) + ttl, or PERSIST without a TTL.
  Args expiry(const Record& record, const StoreOptions& options) const {
    if (!options.ttl) return {"PERSIST", record_key(record.key)};
    const auto since = record.completed ? *record.completed : record.created;
    const auto at = detail::to_unix_ms(since) +
                    std::chrono::duration_cast<std::chrono::milliseconds>(*options.ttl).count();
    return {"PEXPIREAT", record_key(record.key), std::to_string(at)};
  }
};

namespace {

// ForkQuiet first, then the store's mutex: a thread that holds the mutex always holds a ForkQuiet,
// so a fork never copies the mutex locked (nor a half-sent command).
struct Locked {
  explicit Locked(std::mutex& mutex) : lock(mutex) {}
  detail::ForkQuiet quiet;  // constructed before the lock is taken
  std::lock_guard<std::mutex> lock;
};

}  // namespace

std::shared_ptr<RedisStore> RedisStore::open(std::string host, int port, int db,
                                             StoreOptions options, RedisOptions redis) {
  const std::string where = host + ":" + std::to_string(port);
  const auto bad = [&](const std::string& why) {
    throw StoreError("strand: cannot open the Redis store at " + where + ": " + why);
  };
  if (host.empty()) bad("the host is empty");
  if (port < 1 || port > 65535) bad("the port must be from 1 to 65535");
  if (db < 0) bad("the database number must not be negative");
  if (redis.prefix.empty()) bad("the key prefix must not be empty");
  auto impl = std::make_unique<Impl>();
  impl->host = std::move(host);
  impl->port = port;
  impl->db = db;
  impl->redis = std::move(redis);
  impl->where = where;
  {
    const detail::ForkQuiet quiet;
    std::string why;
    Context c = impl->try_connect(why);
    if (!c) throw StoreError("strand: cannot reach Redis at " + where + ": " + why);
    impl->ctx = c.release();
    impl->pid = ::getpid();
    Reply sha = impl->run_one({"SCRIPT", "LOAD", kSetScript}, "cannot load a script");
    impl->check(sha, "cannot load a script");
    impl->set_sha = text(sha.get());
  }
  return std::shared_ptr<RedisStore>(new RedisStore(options, std::move(impl)));
}

RedisStore::RedisStore(StoreOptions options, std::unique_ptr<Impl> impl)
    : Store(options), impl_(std::move(impl)) {}

RedisStore::~RedisStore() = default;

const std::string& RedisStore::host() const noexcept {
  return impl_->host;
}
int RedisStore::port() const noexcept {
  return impl_->port;
}
int RedisStore::db() const noexcept {
  return impl_->db;
}
const RedisOptions& RedisStore::redis_options() const noexcept {
  return impl_->redis;
}

std::string RedisStore::url() const {
  std::string url = "redis://" + impl_->where + "/" + std::to_string(impl_->db);
  if (impl_->redis.prefix != RedisOptions{}.prefix) url += "?prefix=" + impl_->redis.prefix;
  return url;
}

std::optional<Record> RedisStore::find(std::string_view key) {
  validate_key(key);
  maybe_cleanup();
  std::optional<Record> record;
  {
    const Locked locked(impl_->mutex);
    const Reply r = impl_->run_one(
        {"HMGET", impl_->record_key(key), "record", "version", "created"}, "cannot read a record");
    record = impl_->decode(r, key, format());
  }
  if (record && is_expired(*record)) return std::nullopt;
  return record;
}

Record RedisStore::set(Record record) {
  validate_key(record.key);
  maybe_cleanup();
  const auto ms_or_empty = [](const std::optional<Record::time_point>& t) {
    return t ? std::to_string(detail::to_unix_ms(*t)) : std::string();
  };
  Args args{impl_->record_key(record.key),
            impl_->channel(record.key),
            detail::encode_record(record, format()),
            std::string(to_string(record.status)),
            record.created != Record::time_point{} ? ms_or_empty(record.created) : std::string(),
            std::to_string(now_ms()),
            ms_or_empty(record.completed),
            options().ttl
                ? std::to_string(
                      std::chrono::duration_cast<std::chrono::milliseconds>(*options().ttl).count())
                : std::string(),
            is_terminal(record.status) ? "1" : "0"};
  const Locked locked(impl_->mutex);
  const Reply r =
      impl_->eval(kSetScript, impl_->set_sha, std::move(args), 2, "cannot write a record");
  if (r->type != REDIS_REPLY_ARRAY || r->elements != 2) {
    impl_->fail("cannot write a record", "unexpected reply from the script");
  }
  record.version = static_cast<std::uint64_t>(r->element[0]->integer);
  record.created = Record::time_point(std::chrono::milliseconds(std::stoll(text(r->element[1]))));
  std::vector<Args> index;
  impl_->index(record, index);
  if (!index.empty()) {
    for (const Reply& reply : impl_->run(index, "cannot index a job")) {
      impl_->check(reply, "cannot index a job");
    }
  }
  return record;
}

std::optional<Record> RedisStore::update(std::string_view key, const UpdateFn& f) {
  validate_key(key);
  const std::string rkey = impl_->record_key(key);
  const Locked locked(impl_->mutex);
  for (;;) {
    auto read = impl_->run({{"WATCH", rkey}, {"HMGET", rkey, "record", "version", "created"}},
                           "cannot read a record");
    impl_->check(read[0], "cannot watch a record");
    const bool not_a_hash = read[1]->type == REDIS_REPLY_ERROR;  // decode() says what it is
    std::optional<Record> current = impl_->decode(read[1], key, format());
    const std::uint64_t stored_version = current ? current->version : 0;
    if (current && is_expired(*current)) current.reset();
    std::optional<Record> next;
    try {
      next = f(current);
    } catch (...) {
      (void)impl_->run_one({"UNWATCH"}, "cannot unwatch");
      throw;
    }
    if (!next) {
      (void)impl_->run_one({"UNWATCH"}, "cannot unwatch");
      return current;
    }
    next->key = std::string(key);
    next->version = stored_version + 1;
    if (next->created == Record::time_point{}) {
      next->created = current ? current->created
                              : std::chrono::time_point_cast<std::chrono::milliseconds>(
                                    std::chrono::system_clock::now());
    }
    std::vector<Args> commands{{"MULTI"}};
    if (not_a_hash) commands.push_back({"DEL", rkey});
    commands.push_back(impl_->hset(*next, format()));
    commands.push_back(impl_->expiry(*next, options()));
    impl_->index(*next, commands);
    if (is_terminal(next->status)) {
      commands.push_back({"PUBLISH", impl_->channel(key), std::to_string(next->version)});
    }
    commands.push_back({"EXEC"});
    std::vector<Reply> replies;
    try {
      replies = impl_->run(commands, "cannot write a record", /*resend=*/false);
    } catch (const Reconnected&) {
      continue;  // the WATCH went with the old connection: read again
    }
    for (const Reply& r : replies) impl_->check(r, "cannot write a record");
    if (replies.back()->type == REDIS_REPLY_NIL) continue;  // another client wrote it: again
    return next;
  }
}

bool RedisStore::erase(std::string_view key) {
  validate_key(key);
  const Locked locked(impl_->mutex);
  const Reply r = impl_->run_one({"DEL", impl_->record_key(key)}, "cannot erase a record");
  impl_->check(r, "cannot erase a record");
  return r->integer > 0;
}

std::vector<std::string> RedisStore::keys() {
  const std::string pattern = glob_escape(impl_->redis.prefix + "r:") + "*";
  const std::size_t strip = impl_->redis.prefix.size() + 2;
  std::vector<std::string> out;
  const Locked locked(impl_->mutex);
  std::string cursor = "0";
  do {
    const Reply r =
        impl_->run_one({"SCAN", cursor, "MATCH", pattern, "COUNT", "1000"}, "cannot list the keys");
    impl_->check(r, "cannot list the keys");
    if (r->type != REDIS_REPLY_ARRAY || r->elements != 2) {
      impl_->fail("cannot list the keys", "unexpected reply to SCAN");
    }
    cursor = text(r->element[0]);
    const redisReply* batch = r->element[1];
    for (std::size_t i = 0; i < batch->elements; ++i) {
      out.push_back(text(batch->element[i]).substr(strip));
    }
  } while (cursor != "0");
  // SCAN may return a key twice (when the table grows meanwhile).
  std::sort(out.begin(), out.end());
  out.erase(std::unique(out.begin(), out.end()), out.end());
  return out;
}

std::size_t RedisStore::size() {
  return keys().size();
}

std::size_t RedisStore::cleanup_expired() {
  return 0;
}

Record RedisStore::wait_terminal(std::string_view key, clock::time_point deadline) {
  validate_key(key);
  const std::string channel = impl_->channel(key);
  // A connection of this call's own, subscribed before each look at the record. A connection lost
  // while waiting is opened again (with back-off) and the record looked at again.
  Context sub;
  const auto subscribe = [&] {
    sub = impl_->connect_with_backoff(
        std::min(deadline, clock::now() + impl_->redis.reconnect_timeout), "subscribe");
    const SigpipeGuard guard;
    Reply r(static_cast<redisReply*>(
        redisCommand(sub.get(), "SUBSCRIBE %b", channel.data(), channel.size())));
    if (!r) {
      sub.reset();
      std::this_thread::sleep_for(10ms);  // the next attempt connects again
    }
  };
  for (;;) {
    if (!sub) {
      try {
        subscribe();
      } catch (const StoreError&) {
        if (clock::now() >= deadline) return get(key);
        throw;
      }
    }
    Record r = get(key);
    if (is_terminal(r.status) || clock::now() >= deadline) return r;
    if (!sub) continue;
    const auto left = std::chrono::ceil<std::chrono::milliseconds>(deadline - clock::now()).count();
    pollfd p{.fd = sub->fd, .events = POLLIN, .revents = 0};
    const int n = ::poll(&p, 1, static_cast<int>(std::clamp<std::int64_t>(left, 0, 1 << 30)));
    if (n <= 0) continue;  // the deadline (or a signal): look once more, then return
    const SigpipeGuard guard;
    if (redisBufferRead(sub.get()) != REDIS_OK) {
      sub.reset();  // lost: subscribe again, then look again
      continue;
    }
    void* message = nullptr;
    while (redisGetReplyFromReader(sub.get(), &message) == REDIS_OK && message != nullptr) {
      freeReplyObject(message);  // what it says does not matter: the record is read again
      message = nullptr;
    }
  }
}

Record::time_point RedisStore::now() {
  const Locked locked(impl_->mutex);
  const Reply r = impl_->run_one({"TIME"}, "cannot read the server's clock");
  impl_->check(r, "cannot read the server's clock");
  if (r->type != REDIS_REPLY_ARRAY || r->elements != 2) {
    impl_->fail("cannot read the server's clock", "unexpected reply to TIME");
  }
  const auto seconds = std::stoll(text(r->element[0]));
  const auto micros = std::stoll(text(r->element[1]));
  return Record::time_point(std::chrono::duration_cast<Record::time_point::duration>(
      std::chrono::seconds(seconds) + std::chrono::microseconds(micros)));
}

std::vector<std::string> RedisStore::enqueue_many(std::span<const JobRequest> requests) {
  return detail::UpdateJobQueue(*this).enqueue_many(requests, now());
}

std::vector<Lease> RedisStore::claim(std::span<const std::string> queues, std::string_view worker,
                                     std::chrono::milliseconds lease, std::size_t max) {
  const auto at = now();
  const std::string due = std::to_string(detail::to_unix_ms(at));
  const std::string limit = std::to_string(std::max<std::size_t>(max, 1) * 4);
  std::vector<Args> lookups;
  for (const std::string& queue : queues) {
    lookups.push_back({"ZRANGEBYSCORE", impl_->lease_set(queue), "-inf", due, "LIMIT", "0", limit});
    lookups.push_back({"ZRANGEBYSCORE", impl_->ready_set(queue), "-inf", due, "LIMIT", "0", limit});
  }
  std::vector<std::string> keys;
  {
    const Locked locked(impl_->mutex);
    for (const Reply& r : impl_->run(lookups, "cannot look for jobs")) {
      impl_->check(r, "cannot look for jobs");
      for (std::size_t i = 0; i < r->elements; ++i) keys.push_back(text(r->element[i]));
    }
  }
  std::vector<Record> candidates;
  for (const std::string& key : keys) {
    if (auto r = find(key); r && r->job) {
      candidates.push_back(std::move(*r));
    } else {
      // Gone, expired or no longer a job: take it out of the indexes.
      const Locked locked(impl_->mutex);
      for (const std::string& queue : queues) {
        (void)impl_->run(
            {{"ZREM", impl_->ready_set(queue), key}, {"ZREM", impl_->lease_set(queue), key}},
            "cannot clean a job index");
      }
    }
  }
  return detail::UpdateJobQueue(*this).claim(std::move(candidates), queues, worker, lease, max, at);
}

LeaseState RedisStore::heartbeat(std::string_view id, std::uint64_t token,
                                 std::chrono::milliseconds lease) {
  return detail::UpdateJobQueue(*this).heartbeat(id, token, lease, now());
}

bool RedisStore::complete(std::string_view id, std::uint64_t token, const nlohmann::json& value) {
  return detail::UpdateJobQueue(*this).complete(id, token, value, now());
}

bool RedisStore::fail(std::string_view id, std::uint64_t token, const ErrorInfo& error,
                      bool retryable) {
  return detail::UpdateJobQueue(*this).fail(id, token, error, retryable, now());
}

bool RedisStore::release(std::string_view id, std::uint64_t token) {
  return detail::UpdateJobQueue(*this).release(id, token, now());
}

bool RedisStore::cancel_job(std::string_view id) {
  return detail::UpdateJobQueue(*this).cancel(id, now());
}

void RedisStore::wait_for_jobs(std::span<const std::string> queues,
                               JobQueue::clock::time_point deadline, std::stop_token stop) {
  // Subscribed before looking, so a job enqueued after the look still wakes us.
  Context sub = impl_->connect_with_backoff(
      std::min(deadline, JobQueue::clock::now() + impl_->redis.reconnect_timeout), "subscribe");
  {
    const SigpipeGuard guard;
    for (const std::string& queue : queues) {
      const std::string channel = impl_->jobs_channel(queue);
      Reply r(static_cast<redisReply*>(
          redisCommand(sub.get(), "SUBSCRIBE %b", channel.data(), channel.size())));
      if (!r) return;  // lost: the caller claims and waits again
    }
  }
  const detail::Fd wake(::eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK));
  if (!wake) impl_->fail("cannot wait for jobs", "no eventfd");
  const std::stop_callback on_stop(stop, [fd = wake.get()] {
    const std::uint64_t one = 1;
    (void)!::write(fd, &one, sizeof one);
  });
  // The next due time among the queues' ready and leased jobs.
  const auto at = now();
  std::vector<Args> firsts;
  for (const std::string& queue : queues) {
    firsts.push_back({"ZRANGE", impl_->ready_set(queue), "0", "0", "WITHSCORES"});
    firsts.push_back({"ZRANGE", impl_->lease_set(queue), "0", "0", "WITHSCORES"});
  }
  std::optional<std::int64_t> next_ms;
  {
    const Locked locked(impl_->mutex);
    for (const Reply& r : impl_->run(firsts, "cannot look for jobs")) {
      impl_->check(r, "cannot look for jobs");
      if (r->type == REDIS_REPLY_ARRAY && r->elements == 2) {
        const auto ms = static_cast<std::int64_t>(std::stod(text(r->element[1])));
        if (!next_ms || ms < *next_ms) next_ms = ms;
      }
    }
  }
  auto until = deadline;
  if (next_ms) {
    const auto left = std::chrono::milliseconds(*next_ms - detail::to_unix_ms(at));
    if (left.count() <= 0) return;
    until = std::min(until, JobQueue::clock::now() + left + std::chrono::milliseconds(1));
  }
  const auto left = std::chrono::ceil<std::chrono::milliseconds>(until - JobQueue::clock::now());
  if (left.count() <= 0 || stop.stop_requested()) return;
  std::array<pollfd, 2> fds{{{sub->fd, POLLIN, 0}, {wake.get(), POLLIN, 0}}};
  (void)::poll(fds.data(), 2, static_cast<int>(std::min<long long>(left.count(), 1 << 30)));
}

}  // namespace strand
