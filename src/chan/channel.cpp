#include "strand/channel.hpp"

#include <stdexcept>
#include <string>

namespace strand {

ChannelClosed::ChannelClosed() : Error("strand: put on a closed channel") {}

ChannelClosed ChannelClosed::destroyed() {
  return ChannelClosed("strand: the channel was destroyed while waiting on it");
}

namespace detail {

void throw_no_scheduler(const char* what) {
  throw std::logic_error(std::string("strand: ") + what +
                         " must wait, but this coroutine is not running on an EventLoop or a "
                         "pool (start it with EventLoop::spawn/run or strand::spawn_on)");
}

void throw_negative_capacity(std::ptrdiff_t capacity) {
  throw std::invalid_argument("strand: a channel's capacity cannot be negative (got " +
                              std::to_string(capacity) + ")");
}

}  // namespace detail
}  // namespace strand
