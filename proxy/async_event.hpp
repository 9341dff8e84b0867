#pragma once
// A wake-up call for one coroutine that any thread may ring: notify() is thread-safe
// and coalesces (many notifications before a wait wake it once), so a waiter always
// re-checks the state it waits for after waking. Built on Asio's concurrent_channel
// with room for one message, so notify() never blocks and never loses the last ring.
#include <memory>

#include <boost/asio/experimental/concurrent_channel.hpp>

#include "proxy/net.hpp"

namespace reprise {

class AsyncEvent {
 public:
  explicit AsyncEvent(asio::any_io_executor executor) : channel_(executor, 1) {}
  void notify() { channel_.try_send(boost::system::error_code{}); }
  awaitable<void> wait() { co_await channel_.async_receive(use_nothrow); }

 private:
  asio::experimental::concurrent_channel<void(boost::system::error_code)> channel_;
};

}  // namespace reprise
