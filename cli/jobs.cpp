#include "jobs.hpp"

#include <unistd.h>

#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <ctime>
#include <filesystem>
#include <iomanip>
#include <ostream>
#include <sstream>
#include <strand/computation.hpp>
#include <strand/store.hpp>

namespace strand::cli {
namespace {

std::shared_ptr<Store> open(const JobsOptions& options) {
  return open_store(options.store.empty() ? default_store_url() : options.store);
}

std::string local_time(Record::time_point t) {
  if (t == Record::time_point{}) return "-";
  const std::time_t tt = std::chrono::system_clock::to_time_t(t);
  std::tm tm{};
  localtime_r(&tt, &tm);
  char buf[32];
  std::strftime(buf, sizeof buf, "%Y-%m-%d %H:%M:%S", &tm);
  return buf;
}

std::string duration_of(const Record& r) {
  if (!r.started) return "-";
  const auto end = r.completed ? *r.completed : std::chrono::system_clock::now();
  std::ostringstream out;
  out << std::fixed << std::setprecision(3)
      << std::chrono::duration<double>(end - *r.started).count() << "s";
  return out.str();
}

// Runs `body` and turns a strand error into exit code 3 with its message.
template <class Body>
int guarded(std::ostream& err, Body body) {
  try {
    return body();
  } catch (const std::exception& e) {
    err << e.what() << "\n";
    return 3;
  }
}

}  // namespace

std::string default_store_url() {
  if (const char* env = std::getenv("STRAND_STORE"); env != nullptr && *env != '\0') return env;
  std::filesystem::path dir;
  if (const char* xdg = std::getenv("XDG_DATA_HOME"); xdg != nullptr && *xdg != '\0') {
    dir = std::filesystem::path(xdg) / "strand";
  } else if (const char* home = std::getenv("HOME"); home != nullptr && *home != '\0') {
    dir = std::filesystem::path(home) / ".local" / "share" / "strand";
  } else {
    dir = std::filesystem::temp_directory_path() / "strand";
  }
  std::error_code ec;
  std::filesystem::create_directories(dir, ec);
  return "sqlite://" + (dir / "strand.db").string();
}

std::string progress_bar(double fraction, const std::string& message, int width) {
  fraction = std::clamp(fraction, 0.0, 1.0);
  const int filled = static_cast<int>(fraction * width + 0.5);
  std::ostringstream out;
  out << "[" << std::string(static_cast<std::size_t>(filled), '#')
      << std::string(static_cast<std::size_t>(width - filled), '.') << "] " << std::setw(3)
      << static_cast<int>(fraction * 100 + 0.5) << "%";
  if (!message.empty()) out << "  " << message;
  return out.str();
}

int jobs_ls(const JobsOptions& options, std::ostream& out, std::ostream& err) {
  return guarded(err, [&] {
    auto store = open(options);
    std::vector<Record> records;
    for (const auto& key : options.keys.empty() ? store->keys() : options.keys) {
      if (auto r = store->find(key)) records.push_back(std::move(*r));
    }
    std::sort(records.begin(), records.end(),
              [](const Record& a, const Record& b) { return a.created < b.created; });
    out << std::left << std::setw(34) << "KEY" << std::setw(11) << "STATUS" << std::setw(16)
        << "FUNCTION" << std::setw(10) << "PROGRESS" << std::setw(21) << "CREATED"
        << "DURATION\n";
    for (const auto& r : records) {
      std::string function = "-";
      if (r.job) {
        function = r.job->function;
      } else if (r.metadata.is_object() && r.metadata.contains("function") &&
                 r.metadata["function"].is_string()) {
        function = r.metadata["function"].get<std::string>();
      }
      std::ostringstream progress;
      progress << static_cast<int>(r.progress * 100 + 0.5) << "%";
      out << std::setw(34) << r.key << std::setw(11) << to_string(r.status) << std::setw(16)
          << function << std::setw(10) << progress.str() << std::setw(21) << local_time(r.created)
          << duration_of(r) << "\n";
    }
    out << records.size() << (records.size() == 1 ? " job" : " jobs") << " in " << store->url()
        << "\n";
    return 0;
  });
}

int jobs_show(const JobsOptions& options, std::ostream& out, std::ostream& err) {
  return guarded(err, [&] {
    auto store = open(options);
    int code = 0;
    for (const auto& key : options.keys) {
      validate_key(key);
      auto r = store->find(key);
      if (!r) {
        err << "strand: no job " << key << " in " << store->url() << "\n";
        code = 1;
        continue;
      }
      out << nlohmann::json(*r).dump(2) << "\n";
    }
    return code;
  });
}

int jobs_wait(const JobsOptions& options, std::ostream& out, std::ostream& err) {
  return guarded(err, [&] {
    auto store = open(options);
    const bool tty = ::isatty(STDOUT_FILENO) != 0;
    const auto deadline = options.timeout_seconds > 0
                              ? std::chrono::steady_clock::now() +
                                    std::chrono::duration_cast<std::chrono::steady_clock::duration>(
                                        std::chrono::duration<double>(options.timeout_seconds))
                              : std::chrono::steady_clock::time_point::max();
    int code = 0;
    for (const auto& key : options.keys) {
      validate_key(key);
      std::string last;
      for (;;) {
        // Wakes at once when the job ends; otherwise every 100 ms, to redraw the bar.
        const auto step =
            std::min(deadline, std::chrono::steady_clock::now() + std::chrono::milliseconds(100));
        const Record r = store->wait_terminal(key, step);
        const std::string bar = key + " " + progress_bar(r.progress, r.progress_message);
        if (bar != last) {
          if (tty) {
            out << "\r\033[K" << bar << std::flush;
          } else {
            out << bar << "\n";
          }
          last = bar;
        }
        if (is_terminal(r.status)) {
          if (tty) out << "\n";
          out << key << " " << to_string(r.status);
          if (r.error) out << ": " << r.error->type << ": " << r.error->message;
          out << "\n";
          if (r.status != Status::completed) code = std::max(code, 1);
          break;
        }
        if (std::chrono::steady_clock::now() >= deadline) {
          if (tty) out << "\n";
          out << key << " still " << to_string(r.status) << " after " << options.timeout_seconds
              << "s\n";
          return 2;
        }
      }
    }
    return code;
  });
}

int jobs_cancel(const JobsOptions& options, std::ostream& out, std::ostream& err) {
  return guarded(err, [&] {
    auto store = open(options);
    int code = 0;
    for (const auto& key : options.keys) {
      validate_key(key);
      const bool cancelled = detail::cancel_computation(*store, key, {});
      out << key
          << (cancelled ? " cancelled"
                        : " already finished: " + std::string(to_string(store->get(key).status)))
          << "\n";
      if (!cancelled) code = 1;
    }
    return code;
  });
}

int jobs_rm(const JobsOptions& options, std::ostream& out, std::ostream& err) {
  return guarded(err, [&] {
    auto store = open(options);
    int code = 0;
    for (const auto& key : options.keys) {
      validate_key(key);
      if (store->erase(key)) {
        out << "removed " << key << "\n";
      } else {
        err << "strand: no job " << key << " in " << store->url() << "\n";
        code = 1;
      }
    }
    return code;
  });
}

int jobs_cleanup(const JobsOptions& options, std::ostream& out, std::ostream& err) {
  return guarded(err, [&] {
    auto store = open(options);
    const std::size_t removed = store->cleanup_expired();
    out << "removed " << removed << " expired " << (removed == 1 ? "job" : "jobs") << "\n";
    return 0;
  });
}

}  // namespace strand::cli
