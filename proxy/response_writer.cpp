#include "proxy/response_writer.hpp"

#include <sys/socket.h>

#include <array>
#include <cerrno>

namespace reprise {
namespace {

void append_status_line(std::string& out, unsigned version, unsigned status, std::string_view reason) {
  out += "HTTP/";
  out += static_cast<char>('0' + version / 10);
  out += '.';
  out += static_cast<char>('0' + version % 10);
  out += ' ';
  out += static_cast<char>('0' + status / 100 % 10);
  out += static_cast<char>('0' + status / 10 % 10);
  out += static_cast<char>('0' + status % 10);
  out += ' ';
  out += reason;
  out += "\r\n";
}

void append_field(std::string& out, std::string_view name, std::string_view value) {
  out += name;
  out += ": ";
  out += value;
  out += "\r\n";
}

// The head of a response, byte for byte as Beast's serializer writes it: the status
// line, each field as "Name: value\r\n" in order, an empty line. Beast's serializer
// walks nested buffer-sequence views over the same bytes, which cost more than
// everything else in a cache hit's answer (bench/peers.sh); a head is a few hundred
// bytes, cheaper to copy once than to describe.
std::string head_bytes(const http::response_header<>& head) {
  std::string out;
  out.reserve(256);
  append_status_line(out, head.version(), head.result_int(), head.reason());
  for (auto& field : head) append_field(out, field.name_string(), field.value());
  out += "\r\n";
  return out;
}

// Whether send_json may write `extra` as it is, without building a Beast message:
// when none of its fields is one that send() sets or edits (Content-Type, Server,
// Connection, Content-Length, Transfer-Encoding) and no name comes twice (setting
// it again would keep only the last), Beast's message holds exactly `extra` in order
// and then the fields send() adds. Every cache hit's headers qualify.
bool plain_extra(const http::fields& extra) {
  for (auto it = extra.begin(); it != extra.end(); ++it) {
    switch (it->name()) {
      case http::field::content_type:
      case http::field::server:
      case http::field::connection:
      case http::field::content_length:
      case http::field::transfer_encoding: return false;
      default: break;
    }
    for (auto later = std::next(it); later != extra.end(); ++later)
      if (beast::iequals(later->name_string(), it->name_string())) return false;
  }
  return true;
}

}  // namespace

template <class Op>
awaitable<bool> ResponseWriter::timed_write(Op op) {
  if (failed_) co_return false;
  stream_.expires_after(write_timeout_);
  auto [ec, n] = co_await op();
  if (ec) {
    failed_ = true;
    co_return false;
  }
  bytes_ += n;
  co_return true;
}

awaitable<void> ResponseWriter::send(http::response<http::string_body> res) {
  started_ = true;
  status_ = res.result_int();
  res.version(version_);
  res.keep_alive(keep_alive_);
  res.set(http::field::server, "reprise");
  res.prepare_payload();
  // Head and body in one gather write (one sendmsg), as http::async_write would.
  const std::string head = head_bytes(res.base());
  const std::array<asio::const_buffer, 2> pieces{asio::buffer(head), asio::buffer(res.body())};
  co_await timed_write([&] { return asio::async_write(stream_, pieces, use_nothrow); });
  finished_ = true;
}

awaitable<void> ResponseWriter::send_json(unsigned status, std::string body) {
  static const http::fields none;
  co_await send_json(status, std::move(body), none);
}

awaitable<void> ResponseWriter::send_json(unsigned status, std::string body, const http::fields& extra) {
  // 1xx, 204 and 304 take no body: Beast's checks answer those (below).
  const bool bodiless = status < 200 || status == 204 || status == 304;
  if (!bodiless && plain_extra(extra)) {
    // The head as send() would make it from a message built of `extra`, without the
    // message: a field copy per header was most of a hit's remaining answer cost.
    started_ = true;
    status_ = status;
    std::string head;
    head.reserve(256);
    append_status_line(head, version_, status, http::obsolete_reason(static_cast<http::status>(status)));
    for (auto& field : extra) append_field(head, field.name_string(), field.value());
    append_field(head, "Content-Type", "application/json");
    if (version_ < 11 && keep_alive_) append_field(head, "Connection", "keep-alive");
    if (version_ >= 11 && !keep_alive_) append_field(head, "Connection", "close");
    append_field(head, "Server", "reprise");
    append_field(head, "Content-Length", std::to_string(body.size()));
    head += "\r\n";
    const std::array<asio::const_buffer, 2> pieces{asio::buffer(head), asio::buffer(body)};
    co_await timed_write([&] { return asio::async_write(stream_, pieces, use_nothrow); });
    finished_ = true;
    co_return;
  }
  http::response<http::string_body> res{static_cast<http::status>(status), version_};
  for (auto& field : extra) res.set(field.name_string(), field.value());
  res.set(http::field::content_type, "application/json");
  res.body() = std::move(body);
  co_await send(std::move(res));
}

awaitable<void> ResponseWriter::send_error(const Error& error) {
  static const http::fields none;
  co_await send_error(error, none);
}

awaitable<void> ResponseWriter::send_error(const Error& error, const http::fields& extra) {
  std::string body = to_openai_json(error);
  co_await send_json(to_http_status(error), std::move(body), extra);
}

awaitable<bool> ResponseWriter::begin_stream(http::response_header<> head) {
  started_ = true;
  status_ = head.result_int();
  http::response<http::empty_body> res{std::move(head)};
  res.version(version_);
  res.set(http::field::server, "reprise");
  if (version_ >= 11) {
    chunked_ = true;
    res.keep_alive(keep_alive_);
    res.chunked(true);
  } else {
    keep_alive_ = false;  // HTTP/1.0: the end of the body is the end of the connection
    res.keep_alive(false);
  }
  http::response_serializer<http::empty_body> serializer{res};
  co_return co_await timed_write([&] { return http::async_write_header(stream_, serializer, use_nothrow); });
}

awaitable<bool> ResponseWriter::write_chunk(std::string_view data) {
  if (data.empty()) co_return !failed_;
  if (chunked_)
    co_return co_await timed_write([&] {
      return asio::async_write(stream_, http::make_chunk(asio::buffer(data)), use_nothrow);
    });
  co_return co_await timed_write([&] { return asio::async_write(stream_, asio::buffer(data), use_nothrow); });
}

awaitable<bool> ResponseWriter::end_stream() {
  bool ok = !chunked_ || co_await timed_write([&] {
    return asio::async_write(stream_, http::make_chunk_last(), use_nothrow);
  });
  finished_ = ok;
  co_return ok;
}

awaitable<bool> ResponseWriter::client_closed() {
  auto& socket = stream_.socket();
  for (;;) {
    auto [ec] = co_await socket.async_wait(tcp::socket::wait_read, use_nothrow);
    if (ec == asio::error::operation_aborted) co_return false;
    if (ec) co_return true;  // the descriptor is unusable: nobody can be answered
    char byte;
    const ssize_t n = ::recv(socket.native_handle(), &byte, 1, MSG_PEEK | MSG_DONTWAIT);
    if (n > 0) co_return false;  // a pipelined request: readable, but not gone
    if (n == 0) co_return true;  // the client closed the connection
    if (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR) continue;  // spurious wake-up
    co_return true;  // ECONNRESET and the like
  }
}

void ResponseWriter::abort() {
  failed_ = true;
  beast::error_code ignored;
  stream_.socket().shutdown(tcp::socket::shutdown_both, ignored);
}

}  // namespace reprise
