// strand/when.hpp — combining handles: when_all, when_any, as_completed.
//
//   std::vector<strand::Handle<int>> hs = ...;
//   strand::Handle<std::vector<int>> all = strand::when_all(hs);   // values in input order
//   strand::Handle<std::size_t> first = strand::when_any(hs);      // index of the first to finish
//   for (strand::Handle<int> h : strand::as_completed(hs)) use(h.get());   // in finishing order
//
// None of these wait by polling: each input reports its completion through a continuation.
// Cancelling a combined handle does not cancel its inputs.
#pragma once

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstddef>
#include <deque>
#include <initializer_list>
#include <memory>
#include <mutex>
#include <optional>
#include <stdexcept>
#include <type_traits>
#include <vector>

#include "strand/errors.hpp"
#include "strand/generator.hpp"
#include "strand/handle.hpp"
#include "strand/promise.hpp"

namespace strand {

// A handle that completes once every input finished: with their values in input order, or, if any
// failed or was cancelled, failing like the first such input (in input order). An empty input
// completes at once.
template <class T>
auto when_all(std::vector<Handle<T>> handles) {
  using V = std::conditional_t<std::is_void_v<T>, void, std::vector<T>>;
  struct Shared {
    std::vector<Handle<T>> inputs;
    std::atomic<std::size_t> left;
    Promise<V> promise;
    void finish() {
      for (const auto& h : inputs) {
        if (h.status() != Status::completed) {
          promise.set_exception(h.exception());
          return;
        }
      }
      if constexpr (std::is_void_v<T>) {
        promise.set_value();
      } else {
        std::vector<T> values;
        values.reserve(inputs.size());
        for (const auto& h : inputs) values.push_back(h.get());
        promise.set_value(std::move(values));
      }
    }
  };
  for (const auto& h : handles) {
    if (!h.valid()) throw InvalidHandle();
  }
  auto shared = std::make_shared<Shared>();
  shared->inputs = std::move(handles);
  shared->left.store(shared->inputs.size());
  Handle<V> result = shared->promise.handle();
  if (shared->inputs.empty()) {
    shared->finish();
    return result;
  }
  for (const auto& h : shared->inputs) {
    h.on_complete([shared]() noexcept {
      if (shared->left.fetch_sub(1, std::memory_order_acq_rel) == 1) {
        try {
          shared->finish();
        } catch (...) {  // copying a value threw
          shared->promise.set_exception(std::current_exception());
        }
      }
    });
  }
  return result;
}

template <class T>
auto when_all(std::initializer_list<Handle<T>> handles) {
  return when_all(std::vector<Handle<T>>(handles));
}

// A handle for the index of the first input to finish (completed, failed or cancelled alike).
// Throws std::invalid_argument for an empty input: nothing would ever finish.
template <class T>
Handle<std::size_t> when_any(std::vector<Handle<T>> handles) {
  if (handles.empty()) throw std::invalid_argument("strand::when_any: no handles to wait for");
  for (const auto& h : handles) {
    if (!h.valid()) throw InvalidHandle();
  }
  struct Shared {
    std::atomic<bool> decided{false};
    Promise<std::size_t> promise;
  };
  auto shared = std::make_shared<Shared>();
  Handle<std::size_t> result = shared->promise.handle();
  for (std::size_t i = 0; i < handles.size(); ++i) {
    handles[i].on_complete([shared, i]() noexcept {
      if (!shared->decided.exchange(true, std::memory_order_acq_rel)) shared->promise.set_value(i);
    });
  }
  return result;
}

template <class T>
Handle<std::size_t> when_any(std::initializer_list<Handle<T>> handles) {
  return when_any(std::vector<Handle<T>>(handles));
}

// The inputs in the order they finish, as an input range; iterating blocks until the next one is
// done. Inputs already finished when the iteration starts come first, in input order. With a
// timeout, iterating throws strand::Timeout when no further input finishes within it.
template <class T>
Generator<Handle<T>> as_completed(std::vector<Handle<T>> handles,
                                  std::optional<std::chrono::nanoseconds> timeout = std::nullopt) {
  struct Shared {
    std::mutex mutex;
    std::condition_variable cv;
    std::deque<std::size_t> finished;
  };
  for (const auto& h : handles) {
    if (!h.valid()) throw InvalidHandle();
  }
  auto shared = std::make_shared<Shared>();
  for (std::size_t i = 0; i < handles.size(); ++i) {
    handles[i].on_complete([shared, i]() {
      {
        std::lock_guard lock(shared->mutex);
        shared->finished.push_back(i);
      }
      shared->cv.notify_one();
    });
  }
  for (std::size_t yielded = 0; yielded < handles.size(); ++yielded) {
    std::size_t next = 0;
    {
      std::unique_lock lock(shared->mutex);
      const auto ready = [&] {
        return !shared->finished.empty();
      };
      if (timeout) {
        if (!shared->cv.wait_for(lock, *timeout, ready)) throw Timeout(*timeout);
      } else {
        shared->cv.wait(lock, ready);
      }
      next = shared->finished.front();
      shared->finished.pop_front();
    }
    co_yield handles[next];
  }
}

}  // namespace strand
