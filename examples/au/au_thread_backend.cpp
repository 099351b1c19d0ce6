// au's thread backend, for I/O-bound work: many computations at once, each in a thread.
#include <chrono>
#include <cstdio>
#include <strand/strand.hpp>
#include <string>
#include <thread>
#include <vector>

using namespace std::chrono_literals;

int main() {
  auto temp = strand::temporary_async_compute({.backend = strand::Target::thread});
  auto fetch_data = temp([](std::string url) {
    std::this_thread::sleep_for(20ms);  // stands for the network
    return "<html>" + url + "</html>";
  });
  std::vector<strand::ComputationHandle<std::string>> handles;
  for (const char* url : {"a.example", "b.example", "c.example"})
    handles.push_back(fetch_data(url));
  for (auto& h : handles) std::printf("%s\n", h.get_result(5s).c_str());

  // Many at once: map() writes their records together (one transaction on SQLite), get_results()
  // reads the finished ones together.
  const std::vector<std::string> urls = {"d.example", "e.example"};
  for (const std::string& page : strand::get_results(fetch_data.map(urls), 5s)) {
    std::printf("%s\n", page.c_str());
  }
  return 0;
}
