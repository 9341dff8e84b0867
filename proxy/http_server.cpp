#include "proxy/http_server.hpp"

#include "proxy/framing.hpp"
#include "proxy/log.hpp"
#include "proxy/routes.hpp"

namespace reprise {

struct HttpServer::Connection {
  explicit Connection(tcp::socket socket) : stream(std::move(socket)) {}
  beast::tcp_stream stream;
  bool idle = false;  // waiting for the next request; touched only on the session's executor
};

namespace {

using Clock = std::chrono::steady_clock;

// Logs an exception that escaped a coroutine: always a bug, never the data path.
void log_escape(std::string_view where, std::exception_ptr e) {
  if (!e) return;
  try {
    std::rethrow_exception(e);
  } catch (const std::exception& x) {
    log::error(std::string(where) + ": unexpected exception: " + x.what());
  } catch (...) {
    log::error(std::string(where) + ": unexpected exception");
  }
}

using Parser = http::request_parser<http::string_body>;

// What http::async_read_header (until_header) or http::async_read_some would make of
// the bytes the buffer already holds, without going through Asio: the parser's
// verdict on them, or need_more when they are not enough (then the async read gets
// the rest). A request usually arrives whole in the first read, and the two composed
// operations, each completed through the scheduler, cost more than parsing it
// (callgrind, a cache hit).
beast::error_code parse_buffered(Parser& parser, beast::flat_buffer& buffer, bool until_header) {
  auto done = [&] { return until_header ? parser.is_header_done() : parser.is_done(); };
  beast::error_code ec;
  while (!done() && buffer.size() > 0) {
    const size_t used = parser.put(buffer.data(), ec);
    buffer.consume(used);
    if (ec) return ec;  // need_more included: the header is not all here
  }
  if (!done()) return http::error::need_more;
  return ec;
}

}  // namespace

HttpServer::HttpServer(asio::io_context& ioc, std::string name, const ServerConfig& limits,
                       bool access_log, Handler handler)
    : ioc_(ioc),
      name_(std::move(name)),
      limits_(limits),
      access_log_(access_log),
      handler_(std::move(handler)),
      acceptor_(asio::make_strand(ioc)) {}

Result<tcp::endpoint> HttpServer::bind(const HostPort& where) {
  beast::error_code ec;
  tcp::resolver resolver(ioc_);
  auto results = resolver.resolve(where.host, std::to_string(where.port),
                                  tcp::resolver::numeric_service | tcp::resolver::passive, ec);
  if (ec || results.empty())
    return Error{ErrorKind::internal, name_ + ": cannot resolve listen address " + where.host + ": " + ec.message(), {}};
  tcp::endpoint endpoint = results.begin()->endpoint();
  acceptor_.open(endpoint.protocol(), ec);
  if (!ec) acceptor_.set_option(asio::socket_base::reuse_address(true), ec);
  if (!ec) acceptor_.bind(endpoint, ec);
  if (!ec) acceptor_.listen(asio::socket_base::max_listen_connections, ec);
  if (ec) {
    return Error{ErrorKind::internal,
                 name_ + ": cannot listen on " + where.host + ":" + std::to_string(where.port) + ": " + ec.message(), {}};
  }
  return acceptor_.local_endpoint();
}

void HttpServer::start() {
  asio::co_spawn(acceptor_.get_executor(), accept_loop(),
                 [name = name_](std::exception_ptr e) { log_escape(name + " accept loop", e); });
}

void HttpServer::drain() {
  draining_ = true;
  asio::post(acceptor_.get_executor(), [this] {
    beast::error_code ignored;
    acceptor_.close(ignored);
  });
  std::lock_guard lock(live_mu_);
  for (auto& [id, weak] : live_) {
    if (auto conn = weak.lock()) {
      asio::post(conn->stream.get_executor(), [weak = weak] {
        if (auto c = weak.lock(); c && c->idle) c->stream.cancel();
      });
    }
  }
}

// A connection's handlers must never run at once: a strand each, when several
// threads run the io_context. With [server] threads = 1 only main() runs it
// (proxy/main.cpp), which serialises them already; the strand then only costs: every
// completion went through its queue as well as the scheduler's (callgrind, a cache
// hit: ~5k instructions).
asio::any_io_executor HttpServer::session_executor() {
  if (limits_.threads == 1) return ioc_.get_executor();
  return asio::make_strand(ioc_);
}

awaitable<void> HttpServer::accept_loop() {
  while (!draining_) {
    auto [ec, socket] = co_await acceptor_.async_accept(session_executor(), use_nothrow);
    if (ec) {
      if (!acceptor_.is_open() || ec == asio::error::operation_aborted) co_return;
      // Out of file descriptors and the like: back off instead of spinning.
      log::warn(name_ + ": accept failed: " + ec.message());
      asio::steady_timer pause(acceptor_.get_executor(), std::chrono::milliseconds(50));
      co_await pause.async_wait(use_nothrow);
      continue;
    }
    beast::error_code ignored;
    socket.set_option(tcp::no_delay(true), ignored);
    auto executor = socket.get_executor();
    if (active_.load() >= static_cast<size_t>(limits_.max_connections)) {
      asio::co_spawn(executor, refuse_connection(std::move(socket)), [](std::exception_ptr) {});
      continue;
    }
    ++active_;
    asio::co_spawn(executor, session(std::move(socket)), [this](std::exception_ptr e) {
      --active_;
      log_escape(name_ + " session", e);
    });
  }
}

// Over the connection cap: a short 503 and close, rather than an unexplained reset.
awaitable<void> HttpServer::refuse_connection(tcp::socket socket) {
  beast::tcp_stream stream(std::move(socket));
  Error error{ErrorKind::overloaded, "too many connections; retry later", {}};
  co_await refuse(stream, error);
  beast::error_code ignored;
  stream.socket().shutdown(tcp::socket::shutdown_send, ignored);
}

awaitable<void> HttpServer::refuse(beast::tcp_stream& stream, const Error& error) {
  ResponseWriter writer(stream, limits_.write_timeout, 11, false);
  co_await writer.send_error(error);
  if (access_log_) log::info(name_ + " refused: " + error.message);
}

awaitable<void> HttpServer::session(tcp::socket socket) {
  auto conn = std::make_shared<Connection>(std::move(socket));
  uint64_t id;
  {
    std::lock_guard lock(live_mu_);
    id = next_id_++;
    live_.emplace(id, conn);
  }
  beast::tcp_stream& stream = conn->stream;
  beast::flat_buffer buffer;

  for (;;) {
    // Wait for the first byte of the next request under the idle timeout; only
    // then does the (shorter) header timeout start.
    if (buffer.size() == 0) {
      if (draining_) break;
      conn->idle = true;
      stream.expires_after(limits_.idle_timeout);
      auto [ec, n] = co_await stream.async_read_some(buffer.prepare(4096), use_nothrow);
      conn->idle = false;
      if (ec) break;
      buffer.commit(n);
    }
    auto start = Clock::now();
    auto deadline = start + limits_.request_timeout;

    // A fresh parser per request: limits and state never leak between requests.
    Parser parser;
    parser.header_limit(static_cast<std::uint32_t>(limits_.max_header_bytes));
    parser.body_limit(limits_.max_body_bytes);

    // Refusals before the handler: the request stream is in an unknown state, so
    // the connection closes after the answer.
    std::optional<Error> refusal;

    stream.expires_after(std::min<Clock::duration>(limits_.header_timeout, limits_.request_timeout));
    // The whole header into the buffer first, so that its raw bytes can be checked
    // for folded lines, which the parser unfolds without a trace. Beyond the header
    // limit, the parser below reports it.
    auto raw = [&buffer] {
      auto bytes = buffer.data();
      return std::string_view(static_cast<const char*>(bytes.data()), bytes.size());
    };
    bool header_read = true;
    while (header_end(raw()) == std::string_view::npos && buffer.size() <= limits_.max_header_bytes) {
      auto [ec, n] = co_await stream.async_read_some(buffer.prepare(4096), use_nothrow);
      if (ec) { header_read = false; break; }  // timeouts, resets and EOF just close
      buffer.commit(n);
    }
    if (!header_read) break;
    if (auto why = check_obs_fold(raw())) {
      co_await refuse(stream, Error{ErrorKind::bad_request, *why, {}});
      break;
    }
    beast::error_code hec = parse_buffered(parser, buffer, true);
    if (hec == http::error::need_more) {
      auto [rec, rn] = co_await http::async_read_header(stream, buffer, parser, use_nothrow);
      hec = rec;
    }
    if (hec) {
      if (hec == http::error::header_limit)
        refusal = Error{ErrorKind::header_too_large, "request header exceeds " + std::to_string(limits_.max_header_bytes) + " bytes", {}};
      else if (hec == http::error::body_limit)
        refusal = Error{ErrorKind::payload_too_large, "request body exceeds " + std::to_string(limits_.max_body_bytes) + " bytes", {}};
      else if (hec.category() == http::make_error_code(http::error::bad_target).category() &&
               hec != http::error::end_of_stream && hec != http::error::partial_message)
        refusal = Error{ErrorKind::bad_request, "malformed HTTP request: " + hec.message(), {}};
      // Timeouts, resets and EOF just close.
    } else if (auto why = check_request_framing(parser.get().base())) {
      refusal = Error{ErrorKind::bad_request, *why, {}};
    }
    if (hec || refusal) {
      if (refusal) co_await refuse(stream, *refusal);
      break;
    }
    // curl and others wait for "100 Continue" before sending a large body.
    if (beast::iequals(parser.get()[http::field::expect], "100-continue")) {
      http::response<http::empty_body> cont{http::status::continue_, 11};
      stream.expires_after(limits_.write_timeout);
      auto [cec, cn] = co_await http::async_write(stream, cont, use_nothrow);
      if (cec) break;
    }
    bool body_ok = true;
    while (!parser.is_done()) {
      auto left = deadline - Clock::now();
      if (left <= Clock::duration::zero()) { body_ok = false; break; }
      beast::error_code bec = parse_buffered(parser, buffer, false);
      if (bec == http::error::need_more) {
        stream.expires_after(std::min<Clock::duration>(limits_.body_gap_timeout, left));
        auto [rec, rn] = co_await http::async_read_some(stream, buffer, parser, use_nothrow);
        bec = rec;
      }
      if (bec == http::error::body_limit)
        refusal = Error{ErrorKind::payload_too_large, "request body exceeds " + std::to_string(limits_.max_body_bytes) + " bytes", {}};
      else if (bec.category() == http::make_error_code(http::error::bad_chunk).category() &&
               bec != http::error::end_of_stream && bec != http::error::partial_message)
        // A malformed chunk ("0x5", "-1", "5zz", an overflowing size, more data than
        // the size said): answered, so the client learns why, then closed.
        refusal = Error{ErrorKind::bad_request, "malformed HTTP request body: " + bec.message(), {}};
      if (bec) { body_ok = false; break; }
    }
    if (refusal) co_await refuse(stream, *refusal);
    if (!body_ok) break;

    Request req = parser.release();
    // HTTP/1.0 has no chunked coding: a 1.0 request that says Transfer-Encoding may be
    // framed differently by another hop, so its connection closes after the answer
    // (RFC 9112 section 6.1).
    const bool te_in_1_0 = req.version() < 11 && req.count(http::field::transfer_encoding) > 0;
    ResponseWriter writer(stream, limits_.write_timeout, req.version(),
                          req.keep_alive() && !draining_ && !te_in_1_0);
    co_await handler_(req, writer);
    if (!writer.started()) {
      Error bug{ErrorKind::internal, "the handler produced no response", {}};
      co_await writer.send_error(bug);
    }
    if (access_log_) log_access(req, writer, start);
    if (!writer.keep_alive() || !writer.finished()) break;
  }

  beast::error_code ignored;
  stream.socket().shutdown(tcp::socket::shutdown_send, ignored);
  std::lock_guard lock(live_mu_);
  live_.erase(id);
}

void HttpServer::log_access(const Request& req, const ResponseWriter& writer, Clock::time_point start) const {
  auto us = std::chrono::duration_cast<std::chrono::microseconds>(Clock::now() - start).count();
  // A `key` query parameter is a credential: never in the log.
  std::string line = name_ + " " + std::string(req.method_string()) + " " + redacted_target(req.target()) + " " +
                     std::to_string(writer.status()) + " " + std::to_string(writer.bytes_written()) + "B " +
                     std::to_string(us / 1000) + "." + std::to_string(us % 1000 / 100) + "ms";
  if (!writer.finished()) line += " (incomplete)";
  log::info(line);
}

}  // namespace reprise
