#pragma once
// Writes one response to a client connection, either whole (send) or as a stream
// of pieces (begin_stream / write_chunk / end_stream), each write under its own
// deadline so a client that stops reading cannot pin a session.
#include <string>
#include <string_view>

#include "proxy/config.hpp"
#include "proxy/error.hpp"
#include "proxy/net.hpp"

namespace reprise {

class ResponseWriter {
 public:
  ResponseWriter(beast::tcp_stream& stream, Millis write_timeout, unsigned version, bool keep_alive)
      : stream_(stream), write_timeout_(write_timeout), version_(version), keep_alive_(keep_alive) {}

  // A complete response; Content-Length is set here.
  awaitable<void> send(http::response<http::string_body> res);
  awaitable<void> send_json(unsigned status, std::string body, const http::fields& extra);
  awaitable<void> send_json(unsigned status, std::string body);
  // The OpenAI-shaped error for `error`, with its status. (Pass named objects:
  // GCC 12 mishandles non-trivial temporaries inside co_await expressions.)
  awaitable<void> send_error(const Error& error, const http::fields& extra);
  awaitable<void> send_error(const Error& error);

  // Streaming: the head goes out with chunked framing (close-delimited for
  // HTTP/1.0 clients), then each piece as soon as it is written. Each returns false
  // once the client is gone.
  awaitable<bool> begin_stream(http::response_header<> head);
  awaitable<bool> write_chunk(std::string_view data);
  awaitable<bool> end_stream();
  // Ends a started stream as broken: the connection closes without the final chunk,
  // so the client sees a truncated response rather than a complete-looking one.
  void abort();

  // Watches the connection while the response waits for something to send: true
  // once the client has closed it (EOF) or reset it, false when that cannot be told,
  // because bytes arrived (HTTP pipelining: the next request, left unread for the
  // session) or the wait was cancelled. A client that half-closes (shuts down its
  // sending side) and still reads is taken as gone: HTTP clients do not do that.
  // Peeks only: it never consumes a byte, and runs beside writes (not other reads).
  awaitable<bool> client_closed();

  bool started() const { return started_; }
  bool finished() const { return finished_; }
  bool keep_alive() const { return keep_alive_ && !failed_; }
  unsigned status() const { return status_; }
  uint64_t bytes_written() const { return bytes_; }

 private:
  template <class Op>
  awaitable<bool> timed_write(Op op);

  beast::tcp_stream& stream_;
  Millis write_timeout_;
  unsigned version_;
  bool keep_alive_;
  bool started_ = false;
  bool finished_ = false;
  bool failed_ = false;
  bool chunked_ = false;
  unsigned status_ = 0;
  uint64_t bytes_ = 0;
};

}  // namespace reprise
