#include "proxy/upstream_client.hpp"

#include <openssl/ssl.h>
#include <openssl/x509v3.h>

#include <deque>
#include <mutex>
#include <random>

#include "proxy/log.hpp"

namespace reprise {

namespace ssl = asio::ssl;
using Clock = std::chrono::steady_clock;

// A kept-alive connection to the upstream. It owns a strand: Beast's tcp_stream
// runs its timeout handler on the stream's executor, and a pooled connection serves
// requests from many sessions (many strands) over its life, so every operation on it
// is spawned onto its own strand (see on_strand) and never races the timer.
struct UpstreamConnection {
  explicit UpstreamConnection(asio::strand<asio::any_io_executor> s) : strand(std::move(s)) {}

  asio::strand<asio::any_io_executor> strand;
  std::optional<beast::tcp_stream> plain;
  std::optional<beast::ssl_stream<beast::tcp_stream>> tls;
  beast::flat_buffer buffer;  // bytes read past the current message
  std::optional<http::response_parser<http::buffer_body>> parser;
  Clock::time_point idle_since;
  char body[16 * 1024];

  beast::tcp_stream& tcp() { return tls ? beast::get_lowest_layer(*tls) : *plain; }

  // Runs the awaitable made by make(stream) on this connection's strand.
  template <class Make>
  auto on_strand(Make make) {
    return asio::co_spawn(strand, tls ? make(*tls) : make(*plain), asio::use_awaitable);
  }
};

// Idle connections, newest first out: the most recently used connection is the least
// likely to have been closed by the server's own keep-alive timeout.
class UpstreamPool {
 public:
  explicit UpstreamPool(size_t max_idle) : max_idle_(max_idle) {}

  std::unique_ptr<UpstreamConnection> take() {
    std::lock_guard lock(mu_);
    while (!idle_.empty()) {
      auto conn = std::move(idle_.back());
      idle_.pop_back();
      if (Clock::now() - conn->idle_since < kMaxIdleAge) return conn;
    }
    return nullptr;
  }

  void put(std::unique_ptr<UpstreamConnection> conn) {
    conn->idle_since = Clock::now();
    std::lock_guard lock(mu_);
    if (max_idle_ == 0) return;
    if (idle_.size() >= max_idle_) idle_.pop_front();
    idle_.push_back(std::move(conn));
  }

 private:
  // Servers drop idle keep-alive connections after a while (nginx: 75 s, many
  // cloud load balancers: 60 s). Reusing one just before that races the close, so
  // connections idle for longer than this are closed rather than reused.
  static constexpr auto kMaxIdleAge = std::chrono::seconds(30);

  std::mutex mu_;
  size_t max_idle_;
  std::deque<std::unique_ptr<UpstreamConnection>> idle_;
};

namespace {

bool is_ip_literal(const std::string& host) {
  beast::error_code ec;
  asio::ip::make_address(host, ec);
  return !ec;
}

// Why one attempt failed, and whether another attempt is safe: only when the
// request cannot have reached the upstream's application.
struct AttemptError {
  Error error;
  bool retryable = false;
};

Error transport_error(const beast::error_code& ec, const UpstreamConfig& up, std::string_view during) {
  bool timeout = ec == beast::error::timeout;
  return Error{timeout ? ErrorKind::upstream_timeout : ErrorKind::upstream_unreachable,
               "upstream \"" + up.name + "\": " + std::string(during) + (timeout ? " timed out" : " failed: " + ec.message()),
               {}};
}

bool is_stale_close(const beast::error_code& ec) {
  return ec == http::error::end_of_stream || ec == asio::error::eof || ec == asio::error::connection_reset ||
         ec == asio::error::broken_pipe || ec == ssl::error::stream_truncated;
}

std::string host_header(const UpstreamConfig& up) {
  std::string host = up.host.find(':') != std::string::npos ? "[" + up.host + "]" : up.host;
  bool default_port = up.port == (up.tls ? 443 : 80);
  return default_port ? host : host + ":" + std::to_string(up.port);
}

Millis backoff_delay(const UpstreamConfig& up, int attempt) {
  // Exponential backoff with "equal jitter": half fixed, half random, so that many
  // clients failing together do not come back together.
  thread_local std::mt19937_64 rng{std::random_device{}()};
  auto ceiling = std::min<int64_t>(up.retry_backoff_max.count(), up.retry_backoff.count() << std::min(attempt, 20));
  std::uniform_int_distribution<int64_t> jitter(0, ceiling / 2);
  return Millis(ceiling / 2 + jitter(rng));
}

}  // namespace

std::optional<Millis> parse_retry_after(const http::fields& headers, std::chrono::system_clock::time_point now) {
  auto to_int = [](std::string_view s) -> std::optional<int64_t> {
    while (!s.empty() && s.front() == ' ') s.remove_prefix(1);
    while (!s.empty() && s.back() == ' ') s.remove_suffix(1);
    if (s.empty() || s.size() > 12) return std::nullopt;
    int64_t v = 0;
    for (char c : s) {
      if (c < '0' || c > '9') return std::nullopt;
      v = v * 10 + (c - '0');
    }
    return v;
  };
  if (auto it = headers.find("retry-after-ms"); it != headers.end())
    if (auto ms = to_int(it->value())) return Millis(*ms);
  auto it = headers.find(http::field::retry_after);
  if (it == headers.end()) return std::nullopt;
  if (auto seconds = to_int(it->value())) return Millis(*seconds * 1000);
  std::tm tm{};
  std::string value(it->value());
  if (!strptime(value.c_str(), "%a, %d %b %Y %H:%M:%S GMT", &tm)) return std::nullopt;
  auto when = std::chrono::system_clock::from_time_t(timegm(&tm));
  auto wait = std::chrono::duration_cast<Millis>(when - now);
  return wait.count() > 0 ? wait : Millis(0);
}

// ---------------------------------------------------------------- UpstreamResponse

UpstreamResponse::UpstreamResponse(std::unique_ptr<UpstreamConnection> conn, std::shared_ptr<UpstreamPool> pool,
                                   Clock::time_point deadline, Millis idle_timeout)
    : conn_(std::move(conn)), pool_(std::move(pool)), deadline_(deadline), idle_timeout_(idle_timeout) {}

UpstreamResponse::~UpstreamResponse() = default;  // an unfinished body closes the connection

unsigned UpstreamResponse::status() const { return conn_ ? conn_->parser->get().result_int() : 0; }

const http::fields& UpstreamResponse::headers() const {
  static const http::fields none;
  return conn_ ? conn_->parser->get().base() : none;
}

bool UpstreamResponse::is_event_stream() const {
  auto type = headers()[http::field::content_type];
  return type.size() >= 17 && beast::iequals(type.substr(0, 17), "text/event-stream");
}

void UpstreamResponse::release() {
  if (conn_ && conn_->parser->keep_alive() && conn_->buffer.size() == 0) pool_->put(std::move(conn_));
  conn_.reset();
}

awaitable<Result<std::optional<std::string_view>>> UpstreamResponse::read_some() {
  while (!done_) {
    auto& parser = *conn_->parser;
    if (parser.is_done()) {
      done_ = true;
      release();
      break;
    }
    auto now = Clock::now();
    if (now >= deadline_) {
      conn_.reset();
      done_ = true;
      co_return Error{ErrorKind::upstream_timeout, "upstream response exceeded total_timeout_ms", {}};
    }
    parser.get().body().data = conn_->body;
    parser.get().body().size = sizeof conn_->body;
    conn_->tcp().expires_at(std::min(now + idle_timeout_, deadline_));
    auto* conn = conn_.get();
    auto [ec, n] = co_await conn->on_strand(
        [&](auto& stream) { return http::async_read_some(stream, conn->buffer, parser, use_nothrow); });
    if (ec == http::error::need_buffer) ec = {};
    if (ec) {
      Error error{ec == beast::error::timeout ? ErrorKind::upstream_timeout : ErrorKind::upstream_unreachable,
                  ec == beast::error::timeout ? "upstream stalled mid-response" : "upstream connection lost mid-response: " + ec.message(),
                  {}};
      conn_.reset();
      done_ = true;
      co_return error;
    }
    size_t got = sizeof conn_->body - parser.get().body().size;
    if (got > 0) co_return std::optional<std::string_view>(std::string_view(conn_->body, got));
  }
  co_return std::optional<std::string_view>{};
}

awaitable<Result<std::string>> UpstreamResponse::read_all(uint64_t limit) {
  std::string body;
  if (auto length = conn_ ? conn_->parser->content_length() : boost::none; length && *length <= limit)
    body.reserve(*length);
  for (;;) {
    auto piece = co_await read_some();
    if (!piece) co_return piece.error();
    if (!*piece) break;
    if (body.size() + (*piece)->size() > limit) {
      conn_.reset();
      done_ = true;
      co_return Error{ErrorKind::upstream_bad_response, "upstream response exceeds max_response_bytes", {}};
    }
    body.append(**piece);
  }
  co_return body;
}

// ------------------------------------------------------------------ UpstreamClient

Result<std::unique_ptr<UpstreamClient>> UpstreamClient::create(asio::any_io_executor executor,
                                                               const UpstreamConfig& config) {
  std::shared_ptr<ssl::context> tls;
  if (config.tls) {
    tls = std::make_shared<ssl::context>(ssl::context::tls_client);
    beast::error_code ec;
    tls->set_options(ssl::context::default_workarounds | ssl::context::no_sslv2 | ssl::context::no_sslv3 |
                     ssl::context::no_tlsv1 | ssl::context::no_tlsv1_1);
    tls->set_default_verify_paths(ec);
    if (ec) return Error{ErrorKind::internal, "upstream \"" + config.name + "\": cannot load the system CA store: " + ec.message(), {}};
    if (!config.ca_file.empty()) {
      tls->load_verify_file(config.ca_file, ec);
      if (ec) return Error{ErrorKind::internal, "upstream \"" + config.name + "\": cannot load ca_file " + config.ca_file + ": " + ec.message(), {}};
    }
    tls->set_verify_mode(ssl::verify_peer);
  }
  return std::unique_ptr<UpstreamClient>(new UpstreamClient(std::move(executor), config, std::move(tls)));
}

UpstreamClient::UpstreamClient(asio::any_io_executor executor, const UpstreamConfig& config,
                               std::shared_ptr<ssl::context> tls)
    : executor_(std::move(executor)),
      config_(config),
      tls_(std::move(tls)),
      pool_(std::make_shared<UpstreamPool>(static_cast<size_t>(config.max_idle_connections))) {}

awaitable<Result<std::unique_ptr<UpstreamConnection>>> UpstreamClient::connect(Clock::time_point deadline) {
  auto conn = std::make_unique<UpstreamConnection>(asio::make_strand(executor_));
  auto connect_deadline = std::min(Clock::now() + config_.connect_timeout, deadline);

  // getaddrinfo cannot be interrupted, so the lookup races a timer instead.
  tcp::resolver resolver(conn->strand);
  asio::steady_timer timer(conn->strand, connect_deadline);
  using namespace asio::experimental::awaitable_operators;
  auto raced = co_await asio::co_spawn(
      conn->strand,
      resolver.async_resolve(config_.host, std::to_string(config_.port), use_nothrow) || timer.async_wait(use_nothrow),
      asio::use_awaitable);
  if (raced.index() == 1)
    co_return Error{ErrorKind::upstream_timeout, "upstream \"" + config_.name + "\": DNS lookup of " + config_.host + " timed out", {}};
  auto [rec, endpoints] = std::get<0>(std::move(raced));
  if (rec) co_return transport_error(rec, config_, "DNS lookup of " + config_.host);

  if (tls_) conn->tls.emplace(conn->strand, *tls_);
  else conn->plain.emplace(conn->strand);
  auto& tcp = conn->tcp();
  tcp.expires_at(connect_deadline);
  auto [cec, endpoint] = co_await asio::co_spawn(conn->strand, tcp.async_connect(endpoints, use_nothrow), asio::use_awaitable);
  if (cec) co_return transport_error(cec, config_, "connect to " + config_.host + ":" + std::to_string(config_.port));
  beast::error_code ignored;
  tcp.socket().set_option(tcp::no_delay(true), ignored);

  if (tls_) {
    SSL* ssl = conn->tls->native_handle();
    // Verify the certificate against the host name (or IP), and send SNI for names.
    if (is_ip_literal(config_.host)) {
      X509_VERIFY_PARAM_set1_ip_asc(SSL_get0_param(ssl), config_.host.c_str());
    } else {
      SSL_set_tlsext_host_name(ssl, config_.host.c_str());
      SSL_set1_host(ssl, config_.host.c_str());
    }
    auto [hec] = co_await asio::co_spawn(
        conn->strand, conn->tls->async_handshake(ssl::stream_base::client, use_nothrow), asio::use_awaitable);
    if (hec) co_return transport_error(hec, config_, "TLS handshake with " + config_.host);
  }
  ++stats_.connects;
  co_return conn;
}

awaitable<Result<std::unique_ptr<UpstreamResponse>>> UpstreamClient::send(const UpstreamRequest& request) {
  ++stats_.requests;
  const auto deadline = Clock::now() + config_.total_timeout;

  http::request<http::string_body> msg{request.method, config_.base_path + request.target, 11};
  for (auto& field : request.headers) msg.insert(field.name_string(), field.value());
  msg.set(http::field::host, host_header(config_));
  msg.keep_alive(true);
  msg.body() = request.body;
  msg.prepare_payload();

  // One attempt: a pooled connection (or a fresh one), the request, the head.
  auto attempt = [&]() -> awaitable<std::variant<std::unique_ptr<UpstreamResponse>, AttemptError>> {
    for (;;) {
      auto conn = pool_->take();
      bool reused = conn != nullptr;
      if (!conn) {
        auto fresh = co_await connect(deadline);
        if (!fresh) co_return AttemptError{fresh.error(), true};  // nothing was sent yet
        conn = std::move(fresh.value());
      } else {
        ++stats_.reused;
      }
      ++stats_.attempts;
      conn->tcp().expires_at(std::min(Clock::now() + config_.first_byte_timeout, deadline));
      auto [wec, wn] = co_await conn->on_strand([&](auto& stream) { return http::async_write(stream, msg, use_nothrow); });
      if (wec) {
        if (reused && is_stale_close(wec)) continue;  // the server had closed it while pooled
        // An incompletely written request cannot have been acted on: safe to retry.
        co_return AttemptError{transport_error(wec, config_, "sending the request"), wec != beast::error::timeout};
      }
      conn->parser.emplace();
      conn->parser->header_limit(64 * 1024);
      conn->parser->body_limit(boost::none);
      auto* c = conn.get();
      auto [hec, hn] = co_await conn->on_strand(
          [&](auto& stream) { return http::async_read_header(stream, c->buffer, *c->parser, use_nothrow); });
      if (hec) {
        if (reused && hn == 0 && is_stale_close(hec)) continue;
        Error error = transport_error(hec, config_, "waiting for the response");
        if (hec == beast::error::timeout) error.message = "upstream \"" + config_.name + "\": no response within first_byte_timeout_ms";
        else if (hec.category() == http::make_error_code(http::error::bad_target).category() && !is_stale_close(hec))
          error = {ErrorKind::upstream_bad_response, "upstream \"" + config_.name + "\": malformed HTTP response: " + hec.message(), {}};
        co_return AttemptError{error, false};
      }
      co_return std::make_unique<UpstreamResponse>(std::move(conn), pool_, deadline, config_.read_idle_timeout);
    }
  };

  for (int tries = 0;; ++tries) {
    auto outcome = co_await attempt();
    std::optional<Millis> wait;
    std::string why;
    if (auto* failed = std::get_if<AttemptError>(&outcome)) {
      if (!failed->retryable || tries >= config_.max_retries) co_return std::move(failed->error);
      why = failed->error.message;
    } else {
      auto& response = std::get<0>(outcome);
      unsigned status = response->status();
      if ((status != 429 && status < 500) || tries >= config_.max_retries) co_return std::move(response);
      if (auto after = parse_retry_after(response->headers(), std::chrono::system_clock::now())) {
        if (*after > config_.max_retry_after) co_return std::move(response);  // relay, don't wait that long
        wait = *after;
      }
      why = "HTTP " + std::to_string(status);
    }
    Millis delay = wait.value_or(backoff_delay(config_, tries));
    if (Clock::now() + delay >= deadline) {
      if (auto* failed = std::get_if<AttemptError>(&outcome)) co_return std::move(failed->error);
      co_return std::move(std::get<0>(outcome));
    }
    outcome = AttemptError{};  // close the failed response's connection now, not after the wait
    ++stats_.retries;
    log::warn("upstream \"" + config_.name + "\": " + why + "; retry " + std::to_string(tries + 1) + " of " +
              std::to_string(config_.max_retries) + " in " + std::to_string(delay.count()) + " ms");
    asio::steady_timer timer(co_await asio::this_coro::executor, delay);
    co_await timer.async_wait(use_nothrow);
  }
}

}  // namespace reprise
