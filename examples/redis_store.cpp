// RedisStore: records in a real redis-server (started here with run_process on a free port), a
// waiter woken by pub/sub, TTL as Redis expiry, and the error for a server that is not there.
#include <netinet/in.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <iostream>
#include <string>
#include <thread>

#include "strand/redis_store.hpp"
#include "strand/run_process.hpp"

namespace {

// A loopback port nobody listens on now.
int free_port() {
  const int fd = ::socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  socklen_t len = sizeof addr;
  ::bind(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr);
  ::getsockname(fd, reinterpret_cast<sockaddr*>(&addr), &len);
  ::close(fd);
  return ntohs(addr.sin_port);
}

}  // namespace

int main() {
  using namespace std::chrono_literals;
  const int port = free_port();
  const std::string url = "redis://127.0.0.1:" + std::to_string(port) + "/0";
  auto server =
      strand::run_process({"redis-server", "--port", std::to_string(port), "--bind", "127.0.0.1",
                           "--save", "", "--appendonly", "no", "--logfile", "/dev/null"},
                          {.name = "redis-server", .is_ready = std::function<bool()>([&] {
                                                     try {
                                                       (void)strand::open_store(url);
                                                       return true;
                                                     } catch (const strand::StoreError&) {
                                                       return false;
                                                     }
                                                   })});

  auto store = strand::open_store(url, {.ttl = 1h});
  const std::string key = store->create_key();
  store->set({.key = key, .status = strand::Status::running});
  store->update(key, [](std::optional<strand::Record> r) {  // WATCH/MULTI/EXEC: may run again
    r->progress = 0.5;
    return r;
  });
  // Another thread finishes the work; the waiter is subscribed to the key's channel.
  std::jthread worker([&] {
    store->set({.key = key,
                .status = strand::Status::completed,
                .value = 42,
                .completed = std::chrono::system_clock::now()});
  });
  const strand::Record done = store->wait_terminal(key, std::chrono::steady_clock::now() + 5s);
  std::cout << "redis: " << done.status << " " << done.value << ", version " << done.version
            << ", woken by pub/sub\n";
  worker.join();

  // The TTL is Redis's own expiry (PEXPIREAT), counted from `completed`.
  store->set({.key = "old",
              .status = strand::Status::completed,
              .completed = std::chrono::system_clock::now() - 2h});
  std::cout << "ttl: a record completed 2 h ago is gone: " << (store->find("old") ? "no" : "yes")
            << ", cleanup_expired() has nothing to do: " << store->cleanup_expired() << "\n";

  // Any process that reaches the server sees the record.
  std::cout.flush();  // so the child does not print this process's buffered lines again
  if (const pid_t pid = ::fork(); pid == 0) {
    const strand::Record seen = strand::open_store(url)->get(key);
    std::cout << "another process sees: " << seen.status << " " << seen.value << std::endl;
    ::_exit(0);
  } else {
    ::waitpid(pid, nullptr, 0);
  }

  try {
    (void)strand::open_store("redis://127.0.0.1:1/0");
  } catch (const strand::StoreError& e) {
    std::cout << e.what() << "\n";
  }
}
