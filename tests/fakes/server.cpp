#include "server.hpp"

#include <array>
#include <chrono>
#include <csignal>
#include <iostream>
#include <optional>
#include <thread>
#include <vector>

#include <boost/asio.hpp>
#include <boost/asio/ssl.hpp>
#include <boost/beast/core.hpp>
#include <boost/beast/http.hpp>
#include <boost/beast/ssl.hpp>

#include "app.hpp"

namespace reprise::fake {

namespace {

namespace asio = boost::asio;
namespace beast = boost::beast;
namespace ssl = asio::ssl;
using tcp = asio::ip::tcp;
using namespace std::chrono_literals;

// Every asynchronous operation reports its error as a value: nothing throws across Asio.
constexpr auto kTok = asio::as_tuple(asio::use_awaitable);

constexpr std::uint32_t kHeaderLimit = 64 * 1024;
constexpr std::uint64_t kBodyLimit = 64ull << 20;
constexpr auto kIdle = 60s;  // per connection, and the longest a stall holds

// The status to answer a request that failed to parse with, if any: none when the peer
// simply went away (or timed out) mid-request.
std::optional<unsigned> parse_error_status(beast::error_code ec) {
  if (ec.category() != http::make_error_code(http::error::bad_target).category()) return std::nullopt;
  if (ec == http::error::end_of_stream || ec == http::error::partial_message) return std::nullopt;
  if (ec == http::error::body_limit) return 413;
  if (ec == http::error::header_limit) return 431;
  return 400;
}

// Closes the socket at once with SO_LINGER 0, so the peer sees a TCP RST.
void reset_connection(beast::tcp_stream& tcp) {
  beast::error_code ec;
  tcp.socket().set_option(asio::socket_base::linger(true, 0), ec);
  tcp.socket().close(ec);
}

// Holds a stalled stream open, dropping whatever arrives, until the peer closes it or
// the idle timeout (which also closes the socket) passes.
asio::awaitable<void> hold(beast::tcp_stream& tcp) {
  std::array<char, 4096> sink;
  tcp.expires_after(kIdle);
  for (;;) {
    auto [ec, n] = co_await tcp.async_read_some(asio::buffer(sink), kTok);
    if (ec) break;
  }
  beast::error_code ec;
  tcp.socket().close(ec);
}

// Sends an SSE stream as a chunked body, one event per write, honouring chunk_delay_ms,
// stall_after_chunks and reset_after_chunks. True when it all went out and the
// connection can serve another request.
template <class Stream>
asio::awaitable<bool> send_stream(Stream& stream, Outcome& out, State& state) {
  ++state.active_streams;
  struct Active {
    std::atomic<int64_t>& n;
    ~Active() { --n; }
  } active{state.active_streams};

  auto& tcp = beast::get_lowest_layer(stream);
  const Settings& k = out.knobs;
  http::response_serializer<http::string_body> sr{out.res};
  tcp.expires_after(kIdle);
  if (auto [ec, n] = co_await http::async_write_header(stream, sr, kTok); ec) co_return false;

  asio::steady_timer timer{co_await asio::this_coro::executor};
  for (size_t i = 0;; ++i) {
    if (int64_t(i) == k.reset_after_chunks) {
      reset_connection(tcp);
      co_return false;
    }
    if (int64_t(i) == k.stall_after_chunks) {
      co_await hold(tcp);
      co_return false;
    }
    if (i == out.events.size()) break;
    int64_t delay_ms = i > 0 ? k.chunk_delay_ms : out.first_token_ms;
    if (i < out.paced.size() && out.paced[i]) delay_ms += out.token_ms;
    if (delay_ms > 0) {
      timer.expires_after(std::chrono::milliseconds(delay_ms));
      co_await timer.async_wait(kTok);
    }
    tcp.expires_after(kIdle);
    auto [ec, n] = co_await asio::async_write(stream, http::make_chunk(asio::buffer(out.events[i])), kTok);
    if (ec) co_return false;  // the client went away: stop
  }
  tcp.expires_after(kIdle);
  if (auto [ec, n] = co_await asio::async_write(stream, http::make_chunk_last(), kTok); ec) co_return false;
  ++state.completed_streams;
  co_return true;
}

// Serves HTTP/1.1 requests on one connection until it closes. True when the caller
// should close it gracefully; false when it is already closed, reset or timed out.
template <class Stream>
asio::awaitable<bool> session(Stream& stream, App& app) {
  auto& tcp = beast::get_lowest_layer(stream);
  beast::flat_buffer buffer;
  for (;;) {
    http::request_parser<http::string_body> parser;
    parser.header_limit(kHeaderLimit);
    parser.body_limit(kBodyLimit);
    tcp.expires_after(kIdle);
    auto [ec, n] = co_await http::async_read_header(stream, buffer, parser, kTok);
    if (!ec && parser.get()[http::field::expect] == "100-continue") {  // curl, for big bodies
      http::response<http::empty_body> go_on{http::status::continue_, 11};
      std::tie(ec, n) = co_await http::async_write(stream, go_on, kTok);
    }
    if (!ec && !parser.is_done()) std::tie(ec, n) = co_await http::async_read(stream, buffer, parser, kTok);
    if (ec == http::error::end_of_stream) co_return true;
    if (ec) {
      auto status = parse_error_status(ec);
      if (!status) co_return false;
      auto res = json_response(11, false, *status,
                               error_reply(*status, "invalid_request_error", "Bad request: " + ec.message()).body);
      tcp.expires_after(kIdle);
      auto [wec, wn] = co_await http::async_write(stream, res, kTok);
      co_return !wec;
    }

    Request req = parser.release();
    const auto received = std::chrono::steady_clock::now();
    Outcome out = app.handle(req);
    if (out.v1) {
      if (const int64_t wait_ms = out.knobs.latency_ms + out.generation_ms; wait_ms > 0) {
        asio::steady_timer timer{co_await asio::this_coro::executor, std::chrono::milliseconds(wait_ms)};
        co_await timer.async_wait(kTok);
      }
      auto took = std::chrono::duration_cast<std::chrono::milliseconds>(std::chrono::steady_clock::now() - received);
      out.res.set("openai-processing-ms", std::to_string(took.count()));
    }
    const bool keep_alive = out.res.keep_alive();
    if (out.stream) {
      if (!co_await send_stream(stream, out, app.state)) co_return false;
    } else {
      tcp.expires_after(kIdle);
      if (auto [wec, wn] = co_await http::async_write(stream, out.res, kTok); wec) co_return false;
    }
    if (!keep_alive) co_return true;
  }
}

asio::awaitable<void> serve_plain(tcp::socket socket, App& app) {
  beast::tcp_stream stream{std::move(socket)};
  if (co_await session(stream, app)) {
    beast::error_code ec;
    stream.socket().shutdown(tcp::socket::shutdown_send, ec);
  }
}

asio::awaitable<void> serve_tls(tcp::socket socket, ssl::context& ctx, App& app) {
  ssl::stream<beast::tcp_stream> stream{std::move(socket), ctx};
  beast::get_lowest_layer(stream).expires_after(10s);
  if (auto [ec] = co_await stream.async_handshake(ssl::stream_base::server, kTok); ec) co_return;
  if (co_await session(stream, app)) {
    beast::get_lowest_layer(stream).expires_after(5s);
    co_await stream.async_shutdown(kTok);  // the peer may just close: errors don't matter
  }
}

void log_exception(std::exception_ptr e) {
  if (!e) return;
  try {
    std::rethrow_exception(e);
  } catch (const std::exception& x) {
    std::cerr << "fake_openai: " << x.what() << '\n';
  } catch (...) {
    std::cerr << "fake_openai: unknown exception\n";
  }
}

// Accepts connections, each onto its own strand, until the acceptor closes.
asio::awaitable<void> accept_loop(tcp::acceptor& acceptor, App& app, ssl::context* tls) {
  for (;;) {
    auto [ec, socket] = co_await acceptor.async_accept(asio::make_strand(acceptor.get_executor()), kTok);
    if (ec == asio::error::operation_aborted) co_return;
    if (ec) {  // e.g. out of file descriptors: back off instead of spinning
      std::cerr << "fake_openai: accept: " << ec.message() << '\n';
      asio::steady_timer timer{acceptor.get_executor(), 100ms};
      co_await timer.async_wait(kTok);
      continue;
    }
    ++app.state.connections;
    beast::error_code ignored;
    socket.set_option(tcp::no_delay(true), ignored);
    auto ex = socket.get_executor();
    if (tls) asio::co_spawn(ex, serve_tls(std::move(socket), *tls, app), log_exception);
    else asio::co_spawn(ex, serve_plain(std::move(socket), app), log_exception);
  }
}

std::optional<ssl::context> make_tls(const Options& opt) {
  ssl::context ctx{ssl::context::tls_server};
  ctx.set_options(ssl::context::default_workarounds | ssl::context::no_sslv2 | ssl::context::no_sslv3 |
                  ssl::context::no_tlsv1 | ssl::context::no_tlsv1_1 | ssl::context::single_dh_use);
  SSL_CTX_set_min_proto_version(ctx.native_handle(), TLS1_2_VERSION);
  beast::error_code ec;
  ctx.use_certificate_chain_file(opt.tls_cert, ec);
  if (!ec) ctx.use_private_key_file(opt.tls_key, ssl::context::pem, ec);
  if (ec) {
    std::cerr << "fake_openai: TLS setup (" << opt.tls_cert << ", " << opt.tls_key << "): " << ec.message() << '\n';
    return std::nullopt;
  }
  return ctx;
}

}  // namespace

int serve(const Options& opt) {
  std::optional<ssl::context> tls;
  if (!opt.tls_cert.empty() && !(tls = make_tls(opt))) return 2;

  Settings defaults;
  defaults.latency_ms = opt.latency_ms;
  defaults.chunk_delay_ms = opt.chunk_delay_ms;
  defaults.simulate_game24 = opt.simulate_game24;
  defaults.sim_first_token_ms = opt.sim_first_token_ms;
  defaults.sim_ms_per_token = opt.sim_ms_per_token;
  App app{defaults, opt.seed, opt.require_key};  // outlives the io_context and its sessions

  asio::io_context ioc{opt.threads};
  beast::error_code ec;
  auto endpoints = tcp::resolver{ioc}.resolve(opt.host, opt.port, tcp::resolver::passive, ec);
  if (ec || endpoints.empty()) {
    std::cerr << "fake_openai: cannot resolve " << opt.host << ':' << opt.port << ": " << ec.message() << '\n';
    return 2;
  }
  tcp::endpoint endpoint = endpoints.begin()->endpoint();
  tcp::acceptor acceptor{ioc};
  acceptor.open(endpoint.protocol(), ec);
  if (!ec) acceptor.set_option(tcp::acceptor::reuse_address(true), ec);
  if (!ec) acceptor.bind(endpoint, ec);
  if (!ec) acceptor.listen(asio::socket_base::max_listen_connections, ec);
  if (!ec) endpoint = acceptor.local_endpoint(ec);
  if (ec) {
    std::cerr << "fake_openai: cannot listen on " << opt.host << ':' << opt.port << ": " << ec.message() << '\n';
    return 2;
  }
  auto address = endpoint.address().to_string();
  if (endpoint.address().is_v6()) address = '[' + address + ']';
  std::cout << "listening " << address << ':' << endpoint.port() << std::endl;

  std::signal(SIGPIPE, SIG_IGN);
  asio::signal_set signals{ioc, SIGINT, SIGTERM};
  signals.async_wait([&](beast::error_code, int) { ioc.stop(); });
  asio::co_spawn(ioc, accept_loop(acceptor, app, tls ? &*tls : nullptr), log_exception);

  std::vector<std::jthread> pool;
  for (int i = 1; i < opt.threads; ++i) pool.emplace_back([&] { ioc.run(); });
  ioc.run();
  return 0;  // the pool joins first, then the io_context drops what is still pending
}

}  // namespace reprise::fake
