#include <charconv>
#include <optional>
#include <string>
#include <string_view>
#include <system_error>
#include <utility>

#include "strand/filesystem_store.hpp"
#include "strand/memory_store.hpp"
#include "strand/redis_store.hpp"
#include "strand/sqlite_store.hpp"
#include "strand/store.hpp"

namespace strand {
namespace {

[[noreturn]] void bad_url(std::string_view url, const std::string& reason) {
  throw StoreError(
      "strand: cannot open store \"" + std::string(url) + "\": " + reason +
      "; valid URLs are memory:, file:///path, sqlite:///path.db, redis://host:port/db");
}

// The absolute path after "scheme://", or a StoreError.
std::string path_of(std::string_view url, std::string_view rest) {
  if (!rest.starts_with("//")) bad_url(url, "missing path");
  rest.remove_prefix(2);
  if (rest.empty()) bad_url(url, "missing path");
  if (rest.front() != '/') bad_url(url, "the path must be absolute (three slashes: file:///path)");
  return std::string(rest);
}

// A decimal number in [low, high], or nullopt.
std::optional<int> number_in(std::string_view digits, int low, int high) {
  int n = 0;
  const auto [end, error] = std::from_chars(digits.data(), digits.data() + digits.size(), n);
  if (digits.empty() || error != std::errc() || end != digits.data() + digits.size() || n < low ||
      n > high) {
    return std::nullopt;
  }
  return n;
}

// redis://host[:port][/db][?prefix=p]: port 6379 and database 0 when left out.
std::shared_ptr<Store> open_redis(std::string_view url, std::string_view rest,
                                  StoreOptions options) {
  if (!rest.starts_with("//")) bad_url(url, "missing host (redis://host:port/db)");
  rest.remove_prefix(2);
  RedisOptions redis;
  if (const auto q = rest.find('?'); q != std::string_view::npos) {
    const std::string_view query = rest.substr(q + 1);
    rest = rest.substr(0, q);
    if (!query.starts_with("prefix=") || query.size() == 7) {
      bad_url(url, "the only query parameter is a non-empty prefix=...");
    }
    redis.prefix = std::string(query.substr(7));
  }
  int db = 0;
  if (const auto slash = rest.find('/'); slash != std::string_view::npos) {
    const std::string_view digits = rest.substr(slash + 1);
    rest = rest.substr(0, slash);
    if (!digits.empty()) {
      const auto n = number_in(digits, 0, 1'000'000);
      if (!n) bad_url(url, "the database must be a number, not \"" + std::string(digits) + "\"");
      db = *n;
    }
  }
  int port = 6379;
  if (const auto colon = rest.rfind(':'); colon != std::string_view::npos) {
    const std::string_view digits = rest.substr(colon + 1);
    rest = rest.substr(0, colon);
    const auto n = number_in(digits, 1, 65535);
    if (!n) {
      bad_url(url,
              "the port must be a number from 1 to 65535, not \"" + std::string(digits) + "\"");
    }
    port = *n;
  }
  if (rest.empty()) bad_url(url, "missing host (redis://host:port/db)");
  return RedisStore::open(std::string(rest), port, db, options, std::move(redis));
}

}  // namespace

std::shared_ptr<Store> open_store(std::string_view url, StoreOptions options) {
  const auto colon = url.find(':');
  if (colon == std::string_view::npos || colon == 0) bad_url(url, "missing scheme");
  const std::string_view scheme = url.substr(0, colon);
  const std::string_view rest = url.substr(colon + 1);
  if (scheme == "memory") {
    if (!rest.empty()) bad_url(url, "memory: takes no path");
    return MemoryStore::open(options);
  }
  if (scheme == "file") return FileSystemStore::open(path_of(url, rest), options);
  if (scheme == "sqlite") return SqliteStore::open(path_of(url, rest), options);
  if (scheme == "redis") return open_redis(url, rest, options);
  bad_url(url, "unknown scheme \"" + std::string(scheme) + "\"");
}

}  // namespace strand
