#include "strand/dot.hpp"

#include <fcntl.h>
#include <spawn.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <mutex>
#include <sstream>
#include <string>

#include "runtime.hpp"

extern char** environ;

namespace strand {
namespace {

using Runtime = detail::TaskRuntime;

std::string escaped(std::string_view text) {
  std::string out;
  for (char c : text) {
    if (c == '"' || c == '\\') out += '\\';
    if (c == '\n') {
      out += "\\n";
      continue;
    }
    out += c;
  }
  return out;
}

bool executable(const std::string& path) {
  struct stat st {};
  return ::stat(path.c_str(), &st) == 0 && S_ISREG(st.st_mode) && ::access(path.c_str(), X_OK) == 0;
}

// The program as execve wants it, or empty if it cannot be found.
std::string find_program(const std::string& program) {
  if (program.find('/') != std::string::npos) return executable(program) ? program : "";
  const char* path = std::getenv("PATH");
  std::stringstream dirs(path != nullptr ? path : "");
  std::string dir;
  while (std::getline(dirs, dir, ':')) {
    const std::string candidate = (dir.empty() ? "." : dir) + "/" + program;
    if (executable(candidate)) return candidate;
  }
  return "";
}

// A file in the temporary directory, removed when this goes.
class TempFile {
 public:
  explicit TempFile(const char* stem) {
    const char* tmp = std::getenv("TMPDIR");
    path_ = std::string(tmp != nullptr && *tmp != '\0' ? tmp : "/tmp") + "/" + stem + "XXXXXX";
    const int fd = ::mkstemp(path_.data());
    if (fd < 0) throw Error("strand: to_svg cannot make a temporary file: " + errno_text());
    ::close(fd);
  }
  ~TempFile() { ::unlink(path_.c_str()); }
  TempFile(const TempFile&) = delete;
  TempFile& operator=(const TempFile&) = delete;
  [[nodiscard]] const std::string& path() const noexcept { return path_; }
  [[nodiscard]] std::string read() const {
    std::ifstream in(path_);
    return {std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>()};
  }
  static std::string errno_text() { return std::strerror(errno); }

 private:
  std::string path_;
};

}  // namespace

std::string_view dot_colour(TaskState state) noexcept {
  switch (state) {
    case TaskState::pending:
      return "white";
    case TaskState::queued:
      return "lightblue";
    case TaskState::running:
      return "gold";
    case TaskState::done:
      return "palegreen";
    case TaskState::failed:
      return "salmon";
    case TaskState::cancelled:
      return "lightgrey";
  }
  return "white";
}

std::string to_dot(const std::vector<TaskPtr>& tasks) {
  std::ostringstream out;
  out << "digraph tasks {\n"
      << "  node [shape=box, style=\"rounded,filled\", fontname=\"Helvetica\"];\n";
  std::lock_guard lock(Runtime::graph_mutex());
  const auto mark = Runtime::next_mark();
  std::vector<Task*> order;
  std::vector<Task*> stack;
  for (auto it = tasks.rbegin(); it != tasks.rend(); ++it) {
    if (!*it) continue;
    Runtime::make_reachable(**it);  // its prerequisites_ change only under the mutex from now on
    stack.push_back(it->get());
  }
  while (!stack.empty()) {
    Task* t = stack.back();
    stack.pop_back();
    if (Runtime::mark(*t) == mark) continue;
    Runtime::mark(*t) = mark;
    Runtime::index(*t) = static_cast<std::uint32_t>(order.size());
    order.push_back(t);
    auto& prerequisites = Runtime::prerequisites(*t);
    for (std::size_t k = prerequisites.size(); k-- > 0;) {
      if (Runtime::mark(*prerequisites[k]) != mark) stack.push_back(prerequisites[k].get());
    }
  }
  for (std::size_t i = 0; i < order.size(); ++i) {
    const auto state = order[i]->state();
    out << "  n" << i << " [label=\"" << escaped(order[i]->name()) << "\\n"
        << to_string(state) << "\", fillcolor=\"" << dot_colour(state) << "\"];\n";
  }
  for (std::size_t i = 0; i < order.size(); ++i) {
    const auto& prerequisites = Runtime::prerequisites(*order[i]);
    for (std::size_t k = 0; k < prerequisites.size(); ++k) {
      out << "  n" << Runtime::index(*prerequisites[k]) << " -> n" << i << ";\n";
    }
  }
  out << "}\n";
  return out.str();
}

std::string to_svg(const std::vector<TaskPtr>& tasks, const SvgOptions& options) {
  const std::string program = find_program(options.dot_program);
  if (program.empty()) {
    throw Error("strand: to_svg needs Graphviz's \"" + options.dot_program +
                "\" program, which is not on PATH (Debian: apt-get install graphviz)");
  }
  TempFile input("strand-dot-");
  TempFile output("strand-svg-");
  TempFile errors("strand-dot-err-");
  {
    std::ofstream out(input.path());
    out << to_dot(tasks);
    if (!out.flush()) throw Error("strand: to_svg cannot write " + input.path());
  }
  posix_spawn_file_actions_t actions;
  posix_spawn_file_actions_init(&actions);
  posix_spawn_file_actions_addopen(&actions, STDIN_FILENO, input.path().c_str(), O_RDONLY, 0);
  posix_spawn_file_actions_addopen(&actions, STDOUT_FILENO, output.path().c_str(),
                                   O_WRONLY | O_TRUNC, 0);
  posix_spawn_file_actions_addopen(&actions, STDERR_FILENO, errors.path().c_str(),
                                   O_WRONLY | O_TRUNC, 0);
  std::string arg0 = program;
  std::string arg1 = "-Tsvg";
  char* argv[] = {arg0.data(), arg1.data(), nullptr};
  pid_t pid = 0;
  const int spawned = posix_spawn(&pid, program.c_str(), &actions, nullptr, argv, environ);
  posix_spawn_file_actions_destroy(&actions);
  if (spawned != 0) {
    throw Error("strand: to_svg cannot run " + program + ": " + std::strerror(spawned));
  }
  int status = 0;
  while (::waitpid(pid, &status, 0) < 0 && errno == EINTR) {
  }
  if (!WIFEXITED(status) || WEXITSTATUS(status) != 0) {
    throw Error("strand: " + program + " -Tsvg failed: " + errors.read());
  }
  return output.read();
}

}  // namespace strand
