#include <string>
#include <string_view>

#include "strand/filesystem_store.hpp"
#include "strand/memory_store.hpp"
#include "strand/sqlite_store.hpp"
#include "strand/store.hpp"

namespace strand {
namespace {

[[noreturn]] void bad_url(std::string_view url, const std::string& reason) {
  throw StoreError("strand: cannot open store \"" + std::string(url) + "\": " + reason +
                   "; valid URLs are memory:, file:///path, sqlite:///path.db");
}

// The absolute path after "scheme://", or a StoreError.
std::string path_of(std::string_view url, std::string_view rest) {
  if (!rest.starts_with("//")) bad_url(url, "missing path");
  rest.remove_prefix(2);
  if (rest.empty()) bad_url(url, "missing path");
  if (rest.front() != '/') bad_url(url, "the path must be absolute (three slashes: file:///path)");
  return std::string(rest);
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
  bad_url(url, "unknown scheme \"" + std::string(scheme) + "\"");
}

}  // namespace strand
