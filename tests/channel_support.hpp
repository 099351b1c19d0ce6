// Shared by the channel and select tests: waiting until a thread is surely blocked on a channel.
#pragma once

#include <mutex>
#include <thread>

#include "strand/channel.hpp"

namespace strand::testing {

// Returns once someone waits in `queue` of the channel `core` (a thread blocked in put or get is
// surely blocked then). The lock is not held while yielding.
template <class T>
void wait_until_queued(detail::ChannelCore<T>* core,
                       detail::WaitQueue detail::ChannelCore<T>::*queue) {
  for (;;) {
    {
      std::lock_guard lock(core->lock);
      if (!(core->*queue).empty()) return;
    }
    std::this_thread::yield();
  }
}

}  // namespace strand::testing
