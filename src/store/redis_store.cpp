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
#include <atomic>
#include <cerrno>
#include <mutex>
#include <thread>
#include <unordered_map>
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

// The job queue's writes: records written by compare-and-set on their version, each with its job
// indexes and notifications, all in one round trip.
//   KEYS, per record: its hash, its queue's ready set, its queue's lease set
//   ARGV[1] the number of ARGV fields per record (kWriteFields); then per record:
//     1 the version it must have now ('0': none, or not a hash), 2 record bytes, 3 status,
//     4 new version, 5 created ms, 6 expire-at ms ('' = no expiry), 7 index ('ready', 'lease' or
//     'none'), 8 the index score, 9 the index member (the record's key), 10 a channel to publish
//     the new version on ('' = none: the record is not terminal), 11 the queue's channel to wake
//     wait_for_jobs on ('' = none)
//   Returns 1 or 0 per record (written, or its version was another), then the server's TIME.
constexpr std::size_t kWriteFields = 11;
constexpr const char* kWriteJobsScript = R"lua(
local n = tonumber(ARGV[1])
local out = {}
for i = 0, #KEYS / 3 - 1 do
  local h, ready, lease = KEYS[3 * i + 1], KEYS[3 * i + 2], KEYS[3 * i + 3]
  local a = 1 + n * i
  local kind = redis.call('TYPE', h).ok
  local version = '0'
  if kind == 'hash' then version = redis.call('HGET', h, 'version') or '0' end
  if version == ARGV[a + 1] then
    if kind ~= 'hash' and kind ~= 'none' then redis.call('DEL', h) end
    redis.call('HSET', h, 'record', ARGV[a + 2], 'status', ARGV[a + 3], 'version', ARGV[a + 4],
               'created', ARGV[a + 5])
    if ARGV[a + 6] ~= '' then
      redis.call('PEXPIREAT', h, ARGV[a + 6])
    else
      redis.call('PERSIST', h)
    end
    local index, score, member = ARGV[a + 7], ARGV[a + 8], ARGV[a + 9]
    if index == 'ready' then
      redis.call('ZADD', ready, score, member)
      redis.call('ZREM', lease, member)
    elseif index == 'lease' then
      redis.call('ZADD', lease, score, member)
      redis.call('ZREM', ready, member)
    else
      redis.call('ZREM', ready, member)
      redis.call('ZREM', lease, member)
    end
    if ARGV[a + 10] ~= '' then redis.call('PUBLISH', ARGV[a + 10], ARGV[a + 4]) end
    if ARGV[a + 11] ~= '' then redis.call('PUBLISH', ARGV[a + 11], '1') end
    out[#out + 1] = 1
  else
    out[#out + 1] = 0
  end
end
local t = redis.call('TIME')
out[#out + 1] = t[1]
out[#out + 1] = t[2]
return out
)lua";

// A claim's look: the server's TIME, then the due members of each sorted set (expired leases and
// due ready jobs), at most ARGV[1] of each, with their records. Members whose record is gone
// (expired, erased) or is not a hash (damaged behind the store's back) leave the index here.
//   KEYS the sorted sets; ARGV[1] the limit per set, ARGV[2] the record key prefix
//   Returns seconds, microseconds, then per member: member, record bytes, version, created ms.
constexpr const char* kClaimLookScript = R"lua(
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local out = {t[1], t[2]}
local seen = {}
for i = 1, #KEYS do
  local members = redis.call('ZRANGEBYSCORE', KEYS[i], '-inf', now, 'LIMIT', 0, tonumber(ARGV[1]))
  for _, m in ipairs(members) do
    if not seen[m] then
      seen[m] = true
      local h = ARGV[2] .. m
      local f = false
      if redis.call('TYPE', h).ok == 'hash' then
        f = redis.call('HMGET', h, 'record', 'version', 'created')
      end
      if f and f[1] then
        out[#out + 1] = m
        out[#out + 1] = f[1]
        out[#out + 1] = f[2] or '0'
        out[#out + 1] = f[3] or '0'
      else
        redis.call('ZREM', KEYS[i], m)
      end
    end
  end
end
return out
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
  std::string write_jobs_sha;
  std::string claim_look_sha;

  // One connection to the server, used by one thread at a time.
  struct Connection {
    pid_t pid = 0;  // the process `ctx` was opened in
    redisContext* ctx = nullptr;
    Connection() = default;
    Connection(const Connection&) = delete;
    Connection& operator=(const Connection&) = delete;
    ~Connection() {
      if (ctx != nullptr) redisFree(ctx);  // in a forked child this closes only the child's copy
    }
  };
  // Connections not in use. Each thread that talks to the server borrows one (opening a new one
  // when none is idle), so threads of one process (a worker's claimer, its job threads, its
  // heartbeat) wait for the server side by side instead of one after another; at most kIdleKept
  // stay open between uses.
  static constexpr std::size_t kIdleKept = 8;
  std::mutex mutex;  // guards `idle`
  std::vector<std::unique_ptr<Connection>> idle;
  class Session;  // a borrowed connection (below)

  detail::HeldJobs held;  // see job_logic.hpp
  // The server's clock minus this machine's, in microseconds, as last seen with a TIME reply: the
  // time of a change made from a held record (its completion time, its retry's run_at). Lease
  // expiries always come from a TIME read in the same round trip.
  std::atomic<std::int64_t> clock_offset_us{0};

  void saw_server_time(Record::time_point server) {
    clock_offset_us.store(std::chrono::duration_cast<std::chrono::microseconds>(
                              server - std::chrono::system_clock::now())
                              .count(),
                          std::memory_order_relaxed);
  }
  [[nodiscard]] Record::time_point estimated_server_time() const {
    return std::chrono::time_point_cast<Record::time_point::duration>(
        std::chrono::system_clock::now() +
        std::chrono::microseconds(clock_offset_us.load(std::memory_order_relaxed)));
  }

  std::unique_ptr<Connection> borrow() {
    {
      const std::lock_guard lock(mutex);
      if (!idle.empty()) {
        auto c = std::move(idle.back());
        idle.pop_back();
        return c;
      }
    }
    return std::make_unique<Connection>();  // connects on first use
  }
  void give_back(std::unique_ptr<Connection> c) {
    const std::lock_guard lock(mutex);
    if (idle.size() < kIdleKept) idle.push_back(std::move(c));
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

  // Makes `c` a connection of this process. A forked child drops its copy of the parent's
  // (closing only the child's descriptor) and opens its own.
  void ensure_connected(Connection& c, std::string_view what) const {
    if (c.ctx != nullptr && c.pid == ::getpid()) return;
    drop(c);
    c.ctx = connect_with_backoff(std::chrono::steady_clock::now() + redis.reconnect_timeout, what)
                .release();
    c.pid = ::getpid();
  }

  static void drop(Connection& c) noexcept {
    if (c.ctx != nullptr) redisFree(c.ctx);
    c.ctx = nullptr;
  }

  // With the mutex held: sends every command in one write and reads each reply. A connection lost
  // on the way is reopened with back-off and the commands are sent again, unless `resend` is false:
  // then Reconnected is thrown once the connection is back. Error replies are returned as they are.
  std::vector<Reply> run(Connection& c, const std::vector<Args>& commands, std::string_view what,
                         bool resend = true) const {
    // A server still loading its data set (restarted with an append-only file or a snapshot)
    // accepts connections but answers every command LOADING and runs none of them: wait with
    // back-off and send them again, for as long as a lost connection is retried.
    auto loading_backoff = std::chrono::milliseconds(10);
    const auto give_up = std::chrono::steady_clock::now() + redis.reconnect_timeout;
    for (;;) {
      ensure_connected(c, what);
      redisContext* ctx = c.ctx;
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
      if (!lost) {
        const bool loading = std::all_of(replies.begin(), replies.end(), [](const Reply& r) {
          return r->type == REDIS_REPLY_ERROR && text(r.get()).starts_with("LOADING");
        });
        if (!loading || std::chrono::steady_clock::now() + loading_backoff > give_up) {
          return replies;
        }
        std::this_thread::sleep_for(loading_backoff);
        loading_backoff = std::min(loading_backoff * 2, std::chrono::milliseconds(1000));
        continue;
      }
      drop(c);  // the next ensure_connected reconnects with back-off
      if (!resend) {
        ensure_connected(c, what);
        throw Reconnected{};
      }
    }
  }

  Reply run_one(Connection& c, Args args, std::string_view what) const {
    std::vector<Args> commands{std::move(args)};
    return std::move(run(c, commands, what).front());
  }

  void check(const Reply& r, std::string_view what) const {
    if (r->type == REDIS_REPLY_ERROR) fail(what, text(r.get()));
  }

  // EVALSHA, loading the script when the server does not know it (a restarted server forgets).
  Reply eval(Connection& c, const char* script, const std::string& sha, Args keys_and_args,
             std::size_t num_keys, std::string_view what) const {
    Args args{"EVALSHA", sha, std::to_string(num_keys)};
    args.insert(args.end(), std::make_move_iterator(keys_and_args.begin()),
                std::make_move_iterator(keys_and_args.end()));
    Reply r = run_one(c, args, what);
    if (r->type == REDIS_REPLY_ERROR && text(r.get()).starts_with("NOSCRIPT")) {
      args[0] = "EVAL";
      args[1] = script;
      r = run_one(c, std::move(args), what);
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

// A borrowed connection for one exchange with the server. ForkQuiet first: a thread that holds a
// connection (or the pool's mutex) always holds a ForkQuiet, so a fork never copies the mutex
// locked, nor a half-sent command.
class RedisStore::Impl::Session {
 public:
  explicit Session(RedisStore::Impl& impl) : impl_(impl), connection_(impl.borrow()) {}
  ~Session() { impl_.give_back(std::move(connection_)); }
  Session(const Session&) = delete;
  Session& operator=(const Session&) = delete;

  std::vector<Reply> run(const std::vector<Args>& commands, std::string_view what,
                         bool resend = true) {
    return impl_.run(*connection_, commands, what, resend);
  }
  Reply run_one(Args args, std::string_view what) {
    return impl_.run_one(*connection_, std::move(args), what);
  }
  Reply eval(const char* script, const std::string& sha, Args keys_and_args, std::size_t num_keys,
             std::string_view what) {
    return impl_.eval(*connection_, script, sha, std::move(keys_and_args), num_keys, what);
  }

 private:
  detail::ForkQuiet quiet_;  // constructed before a connection is borrowed
  RedisStore::Impl& impl_;
  std::unique_ptr<RedisStore::Impl::Connection> connection_;
};

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
    auto first = std::make_unique<Impl::Connection>();
    first->ctx = c.release();
    first->pid = ::getpid();
    const auto load = [&](const char* script) {
      Reply sha = impl->run_one(*first, {"SCRIPT", "LOAD", script}, "cannot load a script");
      impl->check(sha, "cannot load a script");
      return text(sha.get());
    };
    impl->set_sha = load(kSetScript);
    impl->write_jobs_sha = load(kWriteJobsScript);
    impl->claim_look_sha = load(kClaimLookScript);
    impl->give_back(std::move(first));
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
    Impl::Session session(*impl_);
    const Reply r = session.run_one(
        {"HMGET", impl_->record_key(key), "record", "version", "created"}, "cannot read a record");
    record = impl_->decode(r, key, format());
  }
  if (record && is_expired(*record)) return std::nullopt;
  return record;
}

std::vector<std::optional<Record>> RedisStore::find_many(std::span<const std::string> keys) {
  for (const std::string& key : keys) validate_key(key);
  maybe_cleanup();
  std::vector<Args> commands;
  commands.reserve(keys.size());
  for (const std::string& key : keys) {
    commands.push_back({"HMGET", impl_->record_key(key), "record", "version", "created"});
  }
  std::vector<Reply> replies;
  if (!commands.empty()) {
    Impl::Session session(*impl_);
    replies = session.run(commands, "cannot read a record");
  }
  std::vector<std::optional<Record>> records;
  records.reserve(keys.size());
  for (std::size_t i = 0; i < keys.size(); ++i) {
    std::optional<Record> record = impl_->decode(replies[i], keys[i], format());
    if (record && is_expired(*record)) record.reset();
    records.push_back(std::move(record));
  }
  return records;
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
  Impl::Session session(*impl_);
  const Reply r =
      session.eval(kSetScript, impl_->set_sha, std::move(args), 2, "cannot write a record");
  if (r->type != REDIS_REPLY_ARRAY || r->elements != 2) {
    impl_->fail("cannot write a record", "unexpected reply from the script");
  }
  record.version = static_cast<std::uint64_t>(r->element[0]->integer);
  record.created = Record::time_point(std::chrono::milliseconds(std::stoll(text(r->element[1]))));
  std::vector<Args> index;
  impl_->index(record, index);
  if (!index.empty()) {
    for (const Reply& reply : session.run(index, "cannot index a job")) {
      impl_->check(reply, "cannot index a job");
    }
  }
  return record;
}

std::optional<Record> RedisStore::update(std::string_view key, const UpdateFn& f) {
  validate_key(key);
  const std::string rkey = impl_->record_key(key);
  Impl::Session session(*impl_);
  for (;;) {
    auto read = session.run({{"WATCH", rkey}, {"HMGET", rkey, "record", "version", "created"}},
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
      (void)session.run_one({"UNWATCH"}, "cannot unwatch");
      throw;
    }
    if (!next) {
      (void)session.run_one({"UNWATCH"}, "cannot unwatch");
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
      replies = session.run(commands, "cannot write a record", /*resend=*/false);
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
  Impl::Session session(*impl_);
  const Reply r = session.run_one({"DEL", impl_->record_key(key)}, "cannot erase a record");
  impl_->check(r, "cannot erase a record");
  return r->integer > 0;
}

std::vector<std::string> RedisStore::keys() {
  const std::string pattern = glob_escape(impl_->redis.prefix + "r:") + "*";
  const std::size_t strip = impl_->redis.prefix.size() + 2;
  std::vector<std::string> out;
  Impl::Session session(*impl_);
  std::string cursor = "0";
  do {
    const Reply r = session.run_one({"SCAN", cursor, "MATCH", pattern, "COUNT", "1000"},
                                    "cannot list the keys");
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
  // Most waits find the result there already: one read, no subscription.
  if (Record r = get(key); is_terminal(r.status) || clock::now() >= deadline) return r;
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

namespace {

Record::time_point server_time(const redisReply* seconds, const redisReply* micros) {
  return Record::time_point(std::chrono::duration_cast<Record::time_point::duration>(
      std::chrono::seconds(std::stoll(text(seconds))) +
      std::chrono::microseconds(std::stoll(text(micros)))));
}

// Records of the same script go out in chunks, so one enqueue of many jobs does not hold the
// server (single-threaded) for long; the chunks still share one round trip.
constexpr std::size_t kRecordsPerScript = 256;

}  // namespace

// A record to write by compare-and-set, and what it must be now.
struct RedisStore::JobWrite {
  const Record* record;
  std::uint64_t expected_version;  // 0: no record yet
  bool wake_workers;               // PUBLISH on the queue's channel when it is queued
};

// Writes `writes` in one round trip; true for each one written (its version was the expected one).
std::vector<bool> RedisStore::write_jobs(std::span<const JobWrite> writes) {
  std::vector<Args> commands;
  for (std::size_t first = 0; first < writes.size(); first += kRecordsPerScript) {
    const auto chunk = writes.subspan(first, std::min(kRecordsPerScript, writes.size() - first));
    Args keys;
    Args args{std::to_string(kWriteFields)};
    for (const JobWrite& w : chunk) {
      const Record& r = *w.record;
      const Job& job = *r.job;
      keys.push_back(impl_->record_key(r.key));
      keys.push_back(impl_->ready_set(job.queue));
      keys.push_back(impl_->lease_set(job.queue));
      std::string expire_at;
      if (options().ttl) {
        const auto since = r.completed ? *r.completed : r.created;
        expire_at = std::to_string(
            detail::to_unix_ms(since) +
            std::chrono::duration_cast<std::chrono::milliseconds>(*options().ttl).count());
      }
      std::string index = "none";
      std::string score = "0";
      if (r.status == Status::queued) {
        index = "ready";
        score = std::to_string(detail::to_unix_ms(job.run_at));
      } else if (r.status == Status::running && job.lease_expires) {
        index = "lease";
        score = std::to_string(detail::to_unix_ms(*job.lease_expires));
      }
      args.insert(
          args.end(),
          {std::to_string(w.expected_version), detail::encode_record(r, format()),
           std::string(to_string(r.status)), std::to_string(r.version),
           std::to_string(detail::to_unix_ms(r.created)), std::move(expire_at), std::move(index),
           std::move(score), r.key, is_terminal(r.status) ? impl_->channel(r.key) : std::string(),
           w.wake_workers && r.status == Status::queued ? impl_->jobs_channel(job.queue)
                                                        : std::string()});
    }
    Args command{"EVALSHA", impl_->write_jobs_sha, std::to_string(keys.size())};
    command.insert(command.end(), std::make_move_iterator(keys.begin()),
                   std::make_move_iterator(keys.end()));
    command.insert(command.end(), std::make_move_iterator(args.begin()),
                   std::make_move_iterator(args.end()));
    commands.push_back(std::move(command));
  }
  std::vector<bool> written;
  written.reserve(writes.size());
  Impl::Session session(*impl_);
  std::vector<Reply> replies = session.run(commands, "cannot write a job");
  for (std::size_t i = 0; i < replies.size(); ++i) {
    if (replies[i]->type == REDIS_REPLY_ERROR && text(replies[i].get()).starts_with("NOSCRIPT")) {
      // A restarted server forgets its scripts: send the script itself.
      commands[i][0] = "EVAL";
      commands[i][1] = kWriteJobsScript;
      replies[i] = session.run_one(commands[i], "cannot write a job");
    }
    impl_->check(replies[i], "cannot write a job");
    const redisReply* r = replies[i].get();
    if (r->type != REDIS_REPLY_ARRAY || r->elements < 2) {
      impl_->fail("cannot write a job", "unexpected reply from the script");
    }
    for (std::size_t j = 0; j + 2 < r->elements; ++j)
      written.push_back(r->element[j]->integer == 1);
    impl_->saw_server_time(server_time(r->element[r->elements - 2], r->element[r->elements - 1]));
  }
  return written;
}

// Reads the job under `id` and the server's clock in one round trip, changes it with
// `change(record, now)` and writes it back by compare-and-set, again until no other client wrote
// it in between. False if there is no such job or `change` refused.
template <class Change>
bool RedisStore::change_job(std::string_view id, std::optional<std::uint64_t> held_token,
                            Change&& change) {
  validate_key(id);
  const std::string rkey = impl_->record_key(id);
  std::optional<Record> held = held_token ? impl_->held.recall(id, *held_token) : std::nullopt;
  for (;;) {
    std::optional<Record> current;
    Record::time_point at;
    if (held) {
      current = std::move(held);
      held.reset();
      at = impl_->estimated_server_time();
    } else {
      Impl::Session session(*impl_);
      const auto replies = session.run({{"HMGET", rkey, "record", "version", "created"}, {"TIME"}},
                                       "cannot read a job");
      current = impl_->decode(replies[0], id, format());
      impl_->check(replies[1], "cannot read the server's clock");
      if (replies[1]->type != REDIS_REPLY_ARRAY || replies[1]->elements != 2) {
        impl_->fail("cannot read the server's clock", "unexpected reply to TIME");
      }
      at = server_time(replies[1]->element[0], replies[1]->element[1]);
      impl_->saw_server_time(at);
    }
    if (!current || !current->job || is_expired(*current)) {
      impl_->held.forget(id);
      return false;
    }
    Record next = *current;
    if (!change(next, at)) {
      impl_->held.forget(id);
      return false;
    }
    next.version = current->version + 1;
    const JobWrite write{&next, current->version, true};
    if (write_jobs(std::span(&write, 1)).front()) {
      if (next.status == Status::running) {
        impl_->held.remember(next);
      } else {
        impl_->held.forget(id);
      }
      return true;
    }
    impl_->held.forget(id);  // changed meanwhile: read it
  }
}

Record::time_point RedisStore::now() {
  Impl::Session session(*impl_);
  const Reply r = session.run_one({"TIME"}, "cannot read the server's clock");
  impl_->check(r, "cannot read the server's clock");
  if (r->type != REDIS_REPLY_ARRAY || r->elements != 2) {
    impl_->fail("cannot read the server's clock", "unexpected reply to TIME");
  }
  return server_time(r->element[0], r->element[1]);
}

std::vector<std::string> RedisStore::enqueue_many(std::span<const JobRequest> requests) {
  std::vector<Record> records;  // all checked before any is written
  records.reserve(requests.size());
  const auto at = requests.empty() ? Record::time_point{} : now();
  for (const JobRequest& request : requests) {
    records.push_back(detail::new_job_record(detail::job_id(*this, request), request, at));
    records.back().version = 1;
  }
  // An idempotency key's first job stays: a write expecting no record is refused when there is one.
  // Each queue's workers are woken once, by the last of its jobs.
  std::vector<JobWrite> writes;
  writes.reserve(records.size());
  for (std::size_t i = 0; i < records.size(); ++i) {
    const std::string& queue = records[i].job->queue;
    const bool last_of_queue =
        std::none_of(records.begin() + static_cast<std::ptrdiff_t>(i) + 1, records.end(),
                     [&](const Record& r) { return r.job->queue == queue; });
    writes.push_back({&records[i], 0, last_of_queue});
  }
  (void)write_jobs(writes);
  std::vector<std::string> ids;
  ids.reserve(records.size());
  for (Record& r : records) ids.push_back(std::move(r.key));
  return ids;
}

std::vector<Lease> RedisStore::claim(std::span<const std::string> queues, std::string_view worker,
                                     std::chrono::milliseconds lease, std::size_t max) {
  std::vector<Lease> leases;
  if (queues.empty() || max == 0) return leases;
  Args look;
  for (const std::string& queue : queues) {
    look.push_back(impl_->lease_set(queue));
    look.push_back(impl_->ready_set(queue));
  }
  const std::size_t keys = look.size();
  look.push_back(std::to_string(max + 2));
  look.push_back(impl_->record_key(""));
  // Workers that look at the same time see the same jobs; the one that loses a compare-and-set
  // looks again (the winner's jobs are then leased, not due), so every round claims something.
  for (int round = 0; round < 32 && leases.size() < max; ++round) {
    std::vector<Record> candidates;
    std::vector<std::string> not_jobs;
    Record::time_point at;
    {
      Impl::Session session(*impl_);
      const Reply r =
          session.eval(kClaimLookScript, impl_->claim_look_sha, look, keys, "cannot look for jobs");
      if (r->type != REDIS_REPLY_ARRAY || r->elements < 2 || (r->elements - 2) % 4 != 0) {
        impl_->fail("cannot look for jobs", "unexpected reply from the script");
      }
      at = server_time(r->element[0], r->element[1]);
      impl_->saw_server_time(at);
      for (std::size_t i = 2; i < r->elements; i += 4) {
        const std::string key = text(r->element[i]);
        Record record =
            detail::decode_record(text(r->element[i + 1]), key, impl_->location(), format());
        try {
          record.version = std::stoull(text(r->element[i + 2]));
          record.created =
              Record::time_point(std::chrono::milliseconds(std::stoll(text(r->element[i + 3]))));
        } catch (const std::exception&) {
          continue;  // fields damaged behind the store's back: not a job to run
        }
        if (!record.job) {
          not_jobs.push_back(key);  // damaged (it does not decode): out of the indexes
          continue;
        }
        if (!is_expired(record) && detail::is_claimable(record, at) &&
            std::find(queues.begin(), queues.end(), record.job->queue) != queues.end()) {
          candidates.push_back(std::move(record));
        }
      }
    }
    if (!not_jobs.empty()) {
      std::vector<Args> unindex;
      for (const std::string& key : not_jobs) {
        for (std::size_t k = 0; k < keys; ++k) unindex.push_back({"ZREM", look[k], key});
      }
      Impl::Session session(*impl_);
      for (const Reply& reply : session.run(unindex, "cannot clean a job index")) {
        impl_->check(reply, "cannot clean a job index");
      }
    }
    if (candidates.empty()) break;
    std::sort(candidates.begin(), candidates.end(), detail::claims_before);
    candidates.resize(std::min(candidates.size(), max - leases.size()));
    std::vector<JobWrite> writes;
    for (Record& r : candidates) {
      const std::uint64_t was = r.version;
      detail::claim_job(r, worker, at, lease);
      r.version = was + 1;
      writes.push_back({&r, was, false});
    }
    const std::vector<bool> written = write_jobs(writes);
    for (std::size_t i = 0; i < candidates.size(); ++i) {
      if (!written[i]) continue;  // another worker was first
      Record& r = candidates[i];
      impl_->held.remember(r);
      const std::uint64_t token = r.job->token;
      const auto expires = *r.job->lease_expires;
      std::string id = r.key;
      leases.push_back(
          {.id = std::move(id), .token = token, .record = std::move(r), .expires = expires});
    }
  }
  return leases;
}

LeaseState RedisStore::heartbeat(std::string_view id, std::uint64_t token,
                                 std::chrono::milliseconds lease) {
  LeaseState state = LeaseState::lost;
  change_job(id, std::nullopt, [&](Record& r, Record::time_point at) {
    state = detail::heartbeat_job(r, token, at, lease);
    return state == LeaseState::held;
  });
  return state;
}

bool RedisStore::complete(std::string_view id, std::uint64_t token, const nlohmann::json& value) {
  return change_job(id, token, [&](Record& r, Record::time_point at) {
    return detail::complete_job(r, token, value, at);
  });
}

std::vector<bool> RedisStore::complete_many(std::span<const Completion> completions) {
  // Jobs this object claimed are changed from the records their claims wrote and written in one
  // round trip, each a compare-and-set on its version; the rest (not held here, or changed
  // meanwhile) go through complete() one by one.
  std::vector<bool> recorded(completions.size(), false);
  std::vector<std::size_t> alone;  // indexes for complete()
  std::vector<std::size_t> indexes;
  std::vector<Record> records;
  const auto at = impl_->estimated_server_time();
  for (std::size_t i = 0; i < completions.size(); ++i) {
    const Completion& c = completions[i];
    validate_key(c.id);
    std::optional<Record> r = impl_->held.recall(c.id, c.token);
    if (!r || !r->job || is_expired(*r)) {
      alone.push_back(i);
      continue;
    }
    const std::uint64_t was = r->version;
    Record next = std::move(*r);  // recall gave a copy of its own: no second copy
    if (!detail::complete_job(next, c.token, *c.value, at)) {
      impl_->held.forget(c.id);
      continue;  // refused, as complete() would refuse it: false
    }
    next.version = was + 1;
    indexes.push_back(i);
    records.push_back(std::move(next));
  }
  if (!records.empty()) {
    std::vector<JobWrite> writes;
    writes.reserve(records.size());
    // The expected version is the one before this change.
    for (const Record& r : records) writes.push_back({&r, r.version - 1, true});
    const std::vector<bool> written = write_jobs(writes);
    for (std::size_t k = 0; k < indexes.size(); ++k) {
      const std::size_t i = indexes[k];
      impl_->held.forget(completions[i].id);
      if (written[k]) {
        recorded[i] = true;
      } else {
        alone.push_back(i);  // changed meanwhile: read it
      }
    }
  }
  for (const std::size_t i : alone) {
    recorded[i] = complete(completions[i].id, completions[i].token, *completions[i].value);
  }
  return recorded;
}

bool RedisStore::fail(std::string_view id, std::uint64_t token, const ErrorInfo& error,
                      bool retryable) {
  return change_job(id, token, [&](Record& r, Record::time_point at) {
    return detail::fail_job(r, token, error, retryable, at);
  });
}

bool RedisStore::release(std::string_view id, std::uint64_t token) {
  return change_job(id, token, [&](Record& r, Record::time_point at) {
    return detail::release_job(r, token, at);
  });
}

bool RedisStore::cancel_job(std::string_view id) {
  return change_job(id, std::nullopt,
                    [&](Record& r, Record::time_point at) { return detail::cancel_job(r, at); });
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
    Impl::Session session(*impl_);
    for (const Reply& r : session.run(firsts, "cannot look for jobs")) {
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
