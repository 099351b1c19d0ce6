// Tools for the store tests: a temporary directory removed at scope exit, and children forked to
// write the same store at once.
#pragma once

#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cstdlib>
#include <filesystem>
#include <functional>
#include <stdexcept>
#include <string>
#include <vector>

namespace strand::testing {

class TempDir {
 public:
  TempDir() {
    std::string pattern = (std::filesystem::temp_directory_path() / "strand-store-XXXXXX").string();
    if (::mkdtemp(pattern.data()) == nullptr) throw std::runtime_error("mkdtemp failed");
    path_ = pattern;
  }
  ~TempDir() {
    std::error_code ignored;
    std::filesystem::remove_all(path_, ignored);
  }
  TempDir(const TempDir&) = delete;
  TempDir& operator=(const TempDir&) = delete;
  [[nodiscard]] const std::filesystem::path& path() const { return path_; }

 private:
  std::filesystem::path path_;
};

// Every file and directory name under `dir`, recursively, sorted.
inline std::vector<std::string> tree(const std::filesystem::path& dir) {
  std::vector<std::string> out;
  for (const auto& entry : std::filesystem::recursive_directory_iterator(dir)) {
    out.push_back(std::filesystem::relative(entry.path(), dir).string());
  }
  std::sort(out.begin(), out.end());
  return out;
}

// Forks `n` children running body(i); each exits 0 if body returned true. Returns how many
// children succeeded.
inline int run_children(int n, const std::function<bool(int)>& body) {
  std::vector<pid_t> pids;
  for (int i = 0; i < n; ++i) {
    const pid_t pid = ::fork();
    if (pid == 0) {
      bool ok = false;
      try {
        ok = body(i);
      } catch (...) {
        ok = false;
      }
      ::_exit(ok ? 0 : 1);
    }
    pids.push_back(pid);
  }
  int succeeded = 0;
  for (const pid_t pid : pids) {
    int status = 0;
    ::waitpid(pid, &status, 0);
    if (WIFEXITED(status) && WEXITSTATUS(status) == 0) ++succeeded;
  }
  return succeeded;
}

}  // namespace strand::testing
