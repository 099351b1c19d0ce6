// A real redis-server for the tests: started with strand::run_process on a free loopback port in a
// temporary directory, stopped at scope exit. By default it saves nothing to disk (a restart starts
// empty); with RedisData::kept it keeps an append-only file there. If redis-server is not on PATH
// the test fails with a message saying how to install it (CI installs it; never a silent skip).
#pragma once

#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cstdlib>
#include <filesystem>
#include <memory>
#include <optional>
#include <sstream>
#include <stdexcept>
#include <string>
#include <vector>

#include "store_support.hpp"
#include "strand/run_process.hpp"

namespace strand::testing {

// A TCP connection to 127.0.0.1:port, or -1.
inline int connect_loopback(int port) {
  const int fd = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd < 0) return -1;
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_port = htons(static_cast<std::uint16_t>(port));
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  if (::connect(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr) != 0) {
    ::close(fd);
    return -1;
  }
  return fd;
}

// True once a server on the port answers PING (it accepts connections before it has loaded).
inline bool redis_answers(int port) {
  const int fd = connect_loopback(port);
  if (fd < 0) return false;
  const char ping[] = "PING\r\n";
  bool ok = ::write(fd, ping, sizeof ping - 1) == static_cast<ssize_t>(sizeof ping - 1);
  char reply[16] = {};
  ok = ok && ::read(fd, reply, sizeof reply - 1) > 0 && std::string(reply).starts_with("+PONG");
  ::close(fd);
  return ok;
}

// A loopback port nobody listens on now (the kernel's pick for an ephemeral bind).
inline int free_port() {
  const int fd = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  socklen_t len = sizeof addr;
  if (fd < 0 || ::bind(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr) != 0 ||
      ::getsockname(fd, reinterpret_cast<sockaddr*>(&addr), &len) != 0) {
    throw std::runtime_error("cannot find a free loopback port");
  }
  ::close(fd);
  return ntohs(addr.sin_port);
}

// The full path of `program` on PATH, or nothing.
inline std::optional<std::filesystem::path> on_path(const std::string& program) {
  const char* path = std::getenv("PATH");
  std::istringstream dirs(path != nullptr ? path : "/usr/bin:/bin");
  std::string dir;
  while (std::getline(dirs, dir, ':')) {
    const auto candidate = std::filesystem::path(dir.empty() ? "." : dir) / program;
    if (::access(candidate.c_str(), X_OK) == 0) return candidate;
  }
  return std::nullopt;
}

// What a restart of the server keeps.
enum class RedisData {
  forgotten,  // nothing is saved: a restarted server is empty
  // An append-only file written and fsynced before each reply (--appendfsync always): a server
  // killed with SIGKILL and started again has every write it acknowledged (and perhaps a last one
  // whose reply its client never read).
  kept,
};

class RedisServer {
 public:
  explicit RedisServer(RedisData data = RedisData::forgotten) : port_(free_port()), data_(data) {
    start();
  }

  [[nodiscard]] int port() const { return port_; }
  [[nodiscard]] std::string url(int db = 0) const {
    return "redis://127.0.0.1:" + std::to_string(port_) + "/" + std::to_string(db);
  }
  [[nodiscard]] bool alive() const { return process_.alive(); }

  // Stops the server at once (SIGKILL: what a crash looks like to its clients).
  void stop() { process_.stop(); }
  void start() {
    const auto program = on_path("redis-server");
    if (!program) {
      throw std::runtime_error(
          "redis-server is not on PATH: the Redis tests need a real server (Debian: apt-get "
          "install redis-server, as scripts/common.sh does)");
    }
    const int port = port_;
    std::vector<std::string> argv{program->string(), "--port", std::to_string(port), "--bind",
                                  "127.0.0.1"};
    argv.insert(argv.end(), {"--save", "", "--dir", dir_.path().string()});
    argv.insert(argv.end(), {"--logfile", "/dev/null", "--loglevel", "warning"});
    if (data_ == RedisData::kept) {
      argv.insert(argv.end(), {"--appendonly", "yes", "--appendfsync", "always"});
    } else {
      argv.insert(argv.end(), {"--appendonly", "no"});
    }
    // Ready once PING answers PONG: a server still loading its append-only file answers LOADING.
    process_ = strand::run_process(
        argv, {.name = "redis-server",
               .is_ready = std::function<bool()>([port] { return redis_answers(port); }),
               .ready_timeout = std::chrono::seconds(10),
               .force_kill = true});
  }
  // A new server on the same port: empty, or with RedisData::kept, with the data the old one
  // acknowledged.
  void restart() {
    stop();
    start();
  }

 private:
  TempDir dir_;
  int port_;
  RedisData data_;
  strand::RunningProcess process_;
};

// One server for the whole test program, started on first use (each ctest process runs one test).
inline RedisServer& shared_redis() {
  static RedisServer server;
  return server;
}

}  // namespace strand::testing
