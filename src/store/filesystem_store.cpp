#include "strand/filesystem_store.hpp"

#include <dirent.h>
#include <fcntl.h>
#include <poll.h>
#include <sys/eventfd.h>
#include <sys/file.h>
#include <sys/inotify.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <array>
#include <cerrno>
#include <cstring>
#include <system_error>
#include <utility>

#include "../core/fork_hooks.hpp"
#include "job_logic.hpp"
#include "store_detail.hpp"

namespace strand {
namespace {

constexpr const char* kLockName = ".strand-store-lock";
constexpr const char* kTempTail = ".tmp";

std::string errno_text(int error) {
  return std::generic_category().message(error);
}

// A file descriptor closed at scope exit.
class Fd {
 public:
  explicit Fd(int fd = -1) noexcept : fd_(fd) {}
  Fd(Fd&& other) noexcept : fd_(std::exchange(other.fd_, -1)) {}
  Fd& operator=(Fd&& other) noexcept {
    if (this != &other) {
      reset();
      fd_ = std::exchange(other.fd_, -1);
    }
    return *this;
  }
  ~Fd() { reset(); }
  void reset() noexcept {
    if (fd_ >= 0) ::close(fd_);
    fd_ = -1;
  }
  [[nodiscard]] int get() const noexcept { return fd_; }
  explicit operator bool() const noexcept { return fd_ >= 0; }

 private:
  int fd_;
};

bool ends_with(std::string_view s, std::string_view tail) {
  return s.size() >= tail.size() && s.substr(s.size() - tail.size()) == tail;
}

}  // namespace

struct FileSystemStore::Impl {
  std::filesystem::path dir;
  std::string suffix;
  Fd dirfd;  // every file operation is relative to it: no path lookups of the directory
  std::shared_ptr<detail::Notifier> notifier;

  [[noreturn]] void fail(std::string_view what, std::string_view name, int error) const {
    throw StoreError("strand: filesystem store \"" + dir.string() + "\": cannot " +
                     std::string(what) + " \"" + std::string(name) + "\": " + errno_text(error));
  }

  [[nodiscard]] std::string file_of(std::string_view key) const {
    return std::string(key) + suffix;
  }

  // The flock on the store's lock file, held for one write. Each holder opens the file itself: an
  // flock belongs to an open file description, so a shared descriptor would not exclude threads
  // (nor a forked child from its parent).
  [[nodiscard]] Fd lock() const {
    Fd fd(::openat(dirfd.get(), kLockName, O_RDWR | O_CREAT | O_CLOEXEC, 0644));
    if (!fd) fail("open the lock file", kLockName, errno);
    while (::flock(fd.get(), LOCK_EX) != 0) {
      if (errno != EINTR) fail("lock", kLockName, errno);
    }
    return fd;  // closing it releases the lock
  }

  // The bytes of `name`, or nullopt if there is no such file.
  [[nodiscard]] std::optional<std::string> read_file(const std::string& name) const {
    Fd fd(::openat(dirfd.get(), name.c_str(), O_RDONLY | O_CLOEXEC));
    if (!fd) {
      if (errno == ENOENT) return std::nullopt;
      fail("open", name, errno);
    }
    std::string bytes;
    std::size_t used = 0;
    bytes.resize(16384);
    for (;;) {
      const ssize_t n = ::read(fd.get(), bytes.data() + used, bytes.size() - used);
      if (n < 0) {
        if (errno == EINTR) continue;
        fail("read", name, errno);
      }
      used += static_cast<std::size_t>(n);
      // A regular file's read is short only at its end: one read for a record that fits.
      if (n == 0 || used < bytes.size()) break;
      bytes.resize(bytes.size() * 2);
    }
    bytes.resize(used);
    return bytes;
  }

  [[nodiscard]] std::optional<Record> read_record(std::string_view key) const {
    const std::string name = file_of(key);
    const auto bytes = read_file(name);
    if (!bytes) return std::nullopt;
    return detail::decode_record(*bytes, key, (dir / name).string(), Format::json);
  }

  // Writes the whole record to the temporary file, then renames it over the record's file. Called
  // with the lock held, so one temporary name per key is enough.
  void write_record(const Record& record, Format format, bool durable) const {
    const std::string bytes = detail::encode_record(record, format);
    const std::string name = file_of(record.key);
    const std::string temp = name + kTempTail;
    {
      Fd fd(::openat(dirfd.get(), temp.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644));
      if (!fd) fail("create", temp, errno);
      std::size_t done = 0;
      while (done < bytes.size()) {
        const ssize_t n = ::write(fd.get(), bytes.data() + done, bytes.size() - done);
        if (n < 0) {
          if (errno == EINTR) continue;
          const int error = errno;
          ::unlinkat(dirfd.get(), temp.c_str(), 0);
          fail("write", temp, error);
        }
        done += static_cast<std::size_t>(n);
      }
      if (durable && ::fsync(fd.get()) != 0) fail("fsync", temp, errno);
    }
    if (::renameat(dirfd.get(), temp.c_str(), dirfd.get(), name.c_str()) != 0) {
      const int error = errno;
      ::unlinkat(dirfd.get(), temp.c_str(), 0);
      fail("rename into place", name, error);
    }
    if (durable && ::fsync(dirfd.get()) != 0) fail("fsync the directory", dir.string(), errno);
  }

  // The key a directory entry holds, or nullopt for anything else (temporary and lock files).
  [[nodiscard]] std::optional<std::string> key_of(std::string_view name) const {
    if (!ends_with(name, suffix) || name.size() == suffix.size()) return std::nullopt;
    std::string key(name.substr(0, name.size() - suffix.size()));
    try {
      validate_key(key);
    } catch (const InvalidKey&) {
      return std::nullopt;
    }
    return key;
  }

  [[nodiscard]] std::vector<std::string> list() const {
    std::vector<std::string> out;
    const int fd = ::openat(dirfd.get(), ".", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (fd < 0) fail("list", dir.string(), errno);
    DIR* d = ::fdopendir(fd);
    if (d == nullptr) {
      const int error = errno;
      ::close(fd);
      fail("list", dir.string(), error);
    }
    while (const dirent* entry = ::readdir(d)) {
      if (auto key = key_of(entry->d_name)) out.push_back(std::move(*key));
    }
    ::closedir(d);
    std::sort(out.begin(), out.end());
    return out;
  }
};

std::shared_ptr<FileSystemStore> FileSystemStore::open(const std::filesystem::path& dir,
                                                       StoreOptions options,
                                                       std::optional<std::string> suffix) {
  const std::string shown = dir.string();
  const auto cannot = [&](const std::string& why) {
    return StoreError("strand: cannot open the filesystem store \"" + shown + "\": " + why);
  };
  std::string chosen;
  if (suffix) {
    chosen = *suffix;
  } else {
    chosen = ".";
    chosen += to_string(options.format);
  }
  if (chosen.size() < 2 || chosen.front() != '.' || chosen.size() > 40 ||
      chosen.find_first_of(std::string_view("/\\\0", 3)) != std::string::npos ||
      ends_with(chosen, kTempTail) || ends_with(kLockName, chosen)) {
    throw cannot("the suffix \"" + chosen +
                 "\" is not usable (it must start with '.', hold no '/', be at most 40 bytes and "
                 "not end in \".tmp\")");
  }
  if (dir.empty()) throw cannot("the path is empty");

  auto impl = std::make_unique<Impl>();
  std::error_code error;
  std::filesystem::create_directories(dir, error);
  if (error) throw cannot(error.message());
  impl->dir = std::filesystem::canonical(dir, error);
  if (error) throw cannot(error.message());
  impl->suffix = std::move(chosen);
  impl->dirfd = Fd(::open(impl->dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC));
  if (!impl->dirfd) throw cannot(errno_text(errno));
  // Creating the lock file proves the directory can be written (root ignores permission bits, so
  // access() would not say).
  Fd lock(::openat(impl->dirfd.get(), kLockName, O_RDWR | O_CREAT | O_CLOEXEC, 0644));
  if (!lock) throw cannot("it cannot be written: " + errno_text(errno));
  impl->notifier = detail::Notifier::at("file://" + impl->dir.string());
  return std::shared_ptr<FileSystemStore>(new FileSystemStore(options, std::move(impl)));
}

FileSystemStore::FileSystemStore(StoreOptions options, std::unique_ptr<Impl> impl)
    : Store(options), impl_(std::move(impl)) {}

FileSystemStore::~FileSystemStore() = default;

const std::filesystem::path& FileSystemStore::directory() const noexcept {
  return impl_->dir;
}

const std::string& FileSystemStore::suffix() const noexcept {
  return impl_->suffix;
}

std::filesystem::path FileSystemStore::path_of(std::string_view key) const {
  validate_key(key);
  return impl_->dir / impl_->file_of(key);
}

std::string FileSystemStore::url() const {
  return "file://" + impl_->dir.string();
}

std::optional<Record> FileSystemStore::find(std::string_view key) {
  validate_key(key);
  maybe_cleanup();
  auto record = impl_->read_record(key);
  if (record && is_expired(*record)) return std::nullopt;
  return record;
}

Record FileSystemStore::set(Record record) {
  validate_key(record.key);
  maybe_cleanup();
  {
    const detail::ForkQuiet quiet;  // no fork while this thread holds the flock
    const Fd lock = impl_->lock();
    const auto previous = impl_->read_record(record.key);
    detail::stamp(record, previous ? &*previous : nullptr);
    impl_->write_record(record, format(), options().durable);
  }
  impl_->notifier->notify(record.key);
  return record;
}

std::optional<Record> FileSystemStore::update(std::string_view key, const UpdateFn& f) {
  validate_key(key);
  std::optional<Record> next;
  {
    const detail::ForkQuiet quiet;  // no fork while this thread holds the flock
    const Fd lock = impl_->lock();
    std::optional<Record> current = impl_->read_record(key);
    const std::optional<Record> previous = current;
    if (current && is_expired(*current)) current.reset();
    next = f(current);
    if (!next) return current;
    next->key = std::string(key);
    detail::stamp(*next, current ? &*current : nullptr);
    // An expired record being replaced still had a version: keep counting from it.
    if (!current && previous) next->version = previous->version + 1;
    impl_->write_record(*next, format(), options().durable);
  }
  impl_->notifier->notify(key);
  return next;
}

bool FileSystemStore::erase(std::string_view key) {
  validate_key(key);
  const std::string name = impl_->file_of(key);
  const detail::ForkQuiet quiet;  // no fork while this thread holds the flock
  const Fd lock = impl_->lock();
  if (::unlinkat(impl_->dirfd.get(), name.c_str(), 0) == 0) return true;
  if (errno == ENOENT) return false;
  impl_->fail("remove", name, errno);
}

std::vector<std::string> FileSystemStore::keys() {
  auto keys = impl_->list();
  if (options().ttl) {
    std::erase_if(keys, [&](const std::string& key) {
      const auto record = impl_->read_record(key);
      return !record || is_expired(*record);
    });
  }
  return keys;
}

std::size_t FileSystemStore::size() {
  return keys().size();
}

std::size_t FileSystemStore::cleanup_expired() {
  if (!options().ttl) return 0;
  std::size_t removed = 0;
  for (const std::string& key : impl_->list()) {
    const auto record = impl_->read_record(key);
    if (!record || !is_expired(*record)) continue;
    const detail::ForkQuiet quiet;  // no fork while this thread holds the flock
    const Fd lock = impl_->lock();
    // Read again under the lock: it may have been rewritten since.
    const auto again = impl_->read_record(key);
    if (!again || !is_expired(*again)) continue;
    const std::string name = impl_->file_of(key);
    if (::unlinkat(impl_->dirfd.get(), name.c_str(), 0) == 0) ++removed;
  }
  return removed;
}

Record FileSystemStore::wait_terminal(std::string_view key, clock::time_point deadline) {
  validate_key(key);
  // Subscribe before the first look, so a write between the look and the wait still wakes us.
  const Fd wake(::eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK));
  if (!wake) impl_->fail("create an eventfd for", key, errno);
  const detail::Notifier::Subscription subscription(impl_->notifier, std::string(key), wake.get());
  Fd watch(::inotify_init1(IN_CLOEXEC | IN_NONBLOCK));
  if (watch && ::inotify_add_watch(watch.get(), impl_->dir.c_str(), IN_MOVED_TO | IN_DELETE) < 0) {
    watch.reset();
  }
  const std::string name = impl_->file_of(key);
  auto backoff = std::chrono::milliseconds(1);  // only without inotify
  for (;;) {
    Record r = get(key);
    if (is_terminal(r.status)) return r;
    const auto now = clock::now();
    if (now >= deadline) return r;
    auto until = deadline;
    if (!watch) {
      until = std::min(deadline, now + backoff);
      backoff = std::min(backoff * 2, std::chrono::milliseconds(50));
    }
    bool relevant = false;
    while (!relevant) {
      const auto left = std::chrono::ceil<std::chrono::milliseconds>(until - clock::now());
      if (left.count() <= 0) break;
      std::array<pollfd, 2> fds{{{wake.get(), POLLIN, 0}, {watch.get(), POLLIN, 0}}};
      const int n = ::poll(fds.data(), watch ? 2 : 1,
                           static_cast<int>(std::min<long long>(left.count(), 1'000'000'000)));
      if (n < 0 && errno != EINTR) impl_->fail("wait on", key, errno);
      if (fds[0].revents != 0) {
        std::uint64_t count = 0;
        (void)!::read(wake.get(), &count, sizeof count);
        relevant = true;
      }
      if (watch && fds[1].revents != 0) {
        // Only an event for this key's file is worth a read of the record.
        alignas(inotify_event) char buf[8192];
        ssize_t got;
        while ((got = ::read(watch.get(), buf, sizeof buf)) > 0) {
          for (char* p = buf; p < buf + got;) {
            const auto* event = reinterpret_cast<const inotify_event*>(p);
            if ((event->mask & IN_Q_OVERFLOW) != 0 || (event->len > 0 && name == event->name)) {
              relevant = true;
            }
            p += sizeof(inotify_event) + event->len;
          }
        }
      }
    }
  }
}

Record::time_point FileSystemStore::now() {
  return std::chrono::system_clock::now();
}

std::vector<std::string> FileSystemStore::enqueue_many(std::span<const JobRequest> requests) {
  return detail::UpdateJobQueue(*this).enqueue_many(requests, now());
}

std::vector<Lease> FileSystemStore::claim(std::span<const std::string> queues,
                                          std::string_view worker, std::chrono::milliseconds lease,
                                          std::size_t max) {
  detail::UpdateJobQueue queue(*this);
  return queue.claim(queue.all_records(), queues, worker, lease, max, now());
}

LeaseState FileSystemStore::heartbeat(std::string_view id, std::uint64_t token,
                                      std::chrono::milliseconds lease) {
  return detail::UpdateJobQueue(*this).heartbeat(id, token, lease, now());
}

bool FileSystemStore::complete(std::string_view id, std::uint64_t token,
                               const nlohmann::json& value) {
  return detail::UpdateJobQueue(*this).complete(id, token, value, now());
}

bool FileSystemStore::fail(std::string_view id, std::uint64_t token, const ErrorInfo& error,
                           bool retryable) {
  return detail::UpdateJobQueue(*this).fail(id, token, error, retryable, now());
}

bool FileSystemStore::release(std::string_view id, std::uint64_t token) {
  return detail::UpdateJobQueue(*this).release(id, token, now());
}

bool FileSystemStore::cancel_job(std::string_view id) {
  return detail::UpdateJobQueue(*this).cancel(id, now());
}

void FileSystemStore::wait_for_jobs(std::span<const std::string> queues,
                                    JobQueue::clock::time_point deadline, std::stop_token stop) {
  const Fd wake(::eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK));
  if (!wake) impl_->fail("create an eventfd for", "the job queue", errno);
  const std::stop_callback on_stop(stop, [fd = wake.get()] {
    const std::uint64_t one = 1;
    (void)!::write(fd, &one, sizeof one);
  });
  // Watch before looking, so a job written after the look still wakes us.
  Fd watch(::inotify_init1(IN_CLOEXEC | IN_NONBLOCK));
  if (watch && ::inotify_add_watch(watch.get(), impl_->dir.c_str(), IN_MOVED_TO | IN_DELETE) < 0) {
    watch.reset();
  }
  const auto wall = now();
  const auto steady = JobQueue::clock::now();
  auto until = deadline;
  if (const auto due =
          detail::next_due(detail::UpdateJobQueue(*this).all_records(), queues, wall)) {
    if (*due <= wall) return;
    until = std::min(until, steady + std::chrono::ceil<JobQueue::clock::duration>(*due - wall));
  }
  if (!watch) until = std::min(until, steady + std::chrono::milliseconds(50));
  const auto left = std::chrono::ceil<std::chrono::milliseconds>(until - JobQueue::clock::now());
  if (left.count() <= 0 || stop.stop_requested()) return;
  std::array<pollfd, 2> fds{{{wake.get(), POLLIN, 0}, {watch.get(), POLLIN, 0}}};
  const int n = ::poll(fds.data(), watch ? 2 : 1,
                       static_cast<int>(std::min<long long>(left.count(), 1'000'000'000)));
  if (n < 0 && errno != EINTR) impl_->fail("wait on", "the job queue", errno);
}

}  // namespace strand
