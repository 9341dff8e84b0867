#pragma once
// An HTTP/1.1 listener on Asio coroutines, after Boost.Beast's examples: one
// coroutine per connection on its own strand, a fresh parser and a deadline for
// every read, keep-alive, a connection cap and a graceful drain.
//
// What each deadline defends against:
//   idle_timeout      a keep-alive connection that never sends its next request;
//   header_timeout    slowloris: headers trickled in one byte at a time;
//   body_gap_timeout  a body that stalls;
//   request_timeout   a body trickled just fast enough to beat the gap timeout;
//   write_timeout     a client that stops reading its response.
#include <atomic>
#include <functional>
#include <memory>
#include <mutex>
#include <string>
#include <unordered_map>

#include "proxy/config.hpp"
#include "proxy/net.hpp"
#include "proxy/response_writer.hpp"

namespace reprise {

class HttpServer {
 public:
  // Handles one request. It must answer through the writer; one that does not gets a
  // 500. It must not throw (a throw ends the connection and is logged as a bug).
  using Handler = std::function<awaitable<void>(Request&, ResponseWriter&)>;

  HttpServer(asio::io_context& ioc, std::string name, const ServerConfig& limits, bool access_log,
             Handler handler);

  // Binds and listens; returns the bound endpoint (port 0 picks a free one).
  Result<tcp::endpoint> bind(const HostPort& where);
  void start();
  // Stops accepting, closes idle keep-alive connections and lets requests in
  // flight finish; their connections close after the response. Thread-safe.
  void drain();
  size_t connections() const { return active_.load(); }

 private:
  struct Connection;
  awaitable<void> accept_loop();
  asio::any_io_executor session_executor();
  awaitable<void> session(tcp::socket socket);
  awaitable<void> refuse_connection(tcp::socket socket);
  // Answers with the error and leaves the connection to be closed.
  awaitable<void> refuse(beast::tcp_stream& stream, const Error& error);
  void log_access(const Request& req, const ResponseWriter& writer,
                  std::chrono::steady_clock::time_point start) const;

  asio::io_context& ioc_;
  std::string name_;
  ServerConfig limits_;
  bool access_log_;
  Handler handler_;
  tcp::acceptor acceptor_;
  std::atomic<size_t> active_{0};
  std::atomic<bool> draining_{false};

  // Live connections, so drain() can close the idle ones.
  std::mutex live_mu_;
  uint64_t next_id_ = 0;
  std::unordered_map<uint64_t, std::weak_ptr<Connection>> live_;
};

}  // namespace reprise
