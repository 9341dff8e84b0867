#pragma once
// Test support: a blocking HTTP/1.1 client over plain POSIX sockets with poll()
// deadlines, so a test can never hang, and raw access for malformed requests.
// Responses are parsed by Beast's parser fed incrementally.
#include <arpa/inet.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <boost/beast/http.hpp>
#include <chrono>
#include <functional>
#include <nlohmann/json.hpp>
#include <optional>
#include <stdexcept>
#include <string>
#include <utility>
#include <vector>

namespace reprise::test {

namespace http = boost::beast::http;
using Clock = std::chrono::steady_clock;

class Conn {
 public:
  explicit Conn(uint16_t port) {
    fd_ = ::socket(AF_INET, SOCK_STREAM, 0);
    sockaddr_in addr{};
    addr.sin_family = AF_INET;
    addr.sin_port = htons(port);
    addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    if (::connect(fd_, reinterpret_cast<sockaddr*>(&addr), sizeof addr) != 0) {
      ::close(fd_);
      throw std::runtime_error("connect to port " + std::to_string(port) + " failed");
    }
    int one = 1;
    ::setsockopt(fd_, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
  }
  ~Conn() {
    if (fd_ >= 0) ::close(fd_);
  }
  Conn(const Conn&) = delete;
  Conn& operator=(const Conn&) = delete;

  // False when the peer has closed (EPIPE/ECONNRESET).
  bool send(std::string_view data) {
    while (!data.empty()) {
      ssize_t n = ::send(fd_, data.data(), data.size(), MSG_NOSIGNAL);
      if (n <= 0) return false;
      data.remove_prefix(static_cast<size_t>(n));
    }
    return true;
  }

  // Bytes that arrive within `timeout`: nullopt on timeout, "" on EOF or reset.
  // Bytes handed back by unread() come first.
  std::optional<std::string> recv_some(std::chrono::milliseconds timeout) {
    if (!unread_.empty()) return std::exchange(unread_, std::string());
    pollfd p{fd_, POLLIN, 0};
    int r = ::poll(&p, 1, static_cast<int>(timeout.count()));
    if (r == 0) return std::nullopt;
    char buf[65536];
    ssize_t n = ::recv(fd_, buf, sizeof buf, 0);
    if (n <= 0) return std::string();
    return std::string(buf, static_cast<size_t>(n));
  }

  // Everything until the peer closes; throws when it does not within `timeout`.
  std::string recv_until_close(std::chrono::milliseconds timeout) {
    std::string all;
    auto deadline = Clock::now() + timeout;
    for (;;) {
      auto left = std::chrono::duration_cast<std::chrono::milliseconds>(deadline - Clock::now());
      if (left.count() <= 0) throw std::runtime_error("peer did not close; got: " + all);
      auto piece = recv_some(left);
      if (!piece) continue;
      if (piece->empty()) return all;
      all += *piece;
    }
  }
  int fd() const { return fd_; }

  // Puts back bytes received but not used: one recv() can take a response and the
  // start of the next (pipelined answers), which belong to the next read.
  void unread(std::string bytes) { unread_ = std::move(bytes) + unread_; }

 private:
  int fd_ = -1;
  std::string unread_;
};

struct Response {
  unsigned status = 0;
  http::fields headers;
  std::string body;
  bool complete = false;  // the message ended properly (not cut short)
  std::string header(std::string_view name) const {
    auto it = headers.find(name);
    return it == headers.end() ? std::string() : std::string(it->value());
  }
  nlohmann::json json() const { return nlohmann::json::parse(body); }
};

// Reads one response from `conn`. `on_body` sees the body as it grows (for streams).
inline Response read_response(Conn& conn, std::chrono::milliseconds timeout,
                              const std::function<void(const std::string& body_so_far)>& on_body = {}) {
  http::response_parser<http::string_body> parser;
  parser.body_limit(boost::none);
  parser.eager(true);
  std::string pending;
  Response out;
  auto deadline = Clock::now() + timeout;
  while (!parser.is_done()) {
    auto left = std::chrono::duration_cast<std::chrono::milliseconds>(deadline - Clock::now());
    if (left.count() <= 0) throw std::runtime_error("response timed out; so far: " + pending + parser.get().body());
    auto piece = conn.recv_some(left);
    if (!piece) continue;
    if (piece->empty()) {  // EOF
      boost::beast::error_code ec;
      // Before any byte, Beast's put_eof would "complete" an empty message (its
      // assertion of got_some() is off in release builds): a peer that died is no 200.
      if (!parser.got_some()) throw std::runtime_error("connection closed before a response");
      parser.put_eof(ec);
      if (!parser.is_header_done()) throw std::runtime_error("connection closed before a response");
      break;
    }
    pending += *piece;
    for (;;) {
      boost::beast::error_code ec;
      size_t used = parser.put(boost::asio::buffer(pending), ec);
      pending.erase(0, used);
      if (ec == http::error::need_more) break;
      if (ec) throw std::runtime_error("bad response: " + ec.message());
      if (parser.is_done() || pending.empty()) break;
    }
    if (on_body && parser.is_header_done()) on_body(parser.get().body());
  }
  // What followed this response in the last recv() is the next response's.
  if (parser.is_done() && !pending.empty()) conn.unread(std::move(pending));
  out.complete = parser.is_done();
  out.status = parser.get().result_int();
  for (auto& f : parser.get()) out.headers.insert(f.name_string(), f.value());
  out.body = parser.get().body();
  return out;
}

inline std::string build_request(std::string_view method, std::string_view target, std::string_view body,
                                 const std::vector<std::pair<std::string, std::string>>& headers = {},
                                 bool keep_alive = false) {
  std::string req = std::string(method) + " " + std::string(target) + " HTTP/1.1\r\nHost: 127.0.0.1\r\n";
  bool has_type = false;
  for (auto& [k, v] : headers) {
    req += k + ": " + v + "\r\n";
    if (boost::beast::iequals(k, "content-type")) has_type = true;
  }
  if (!body.empty() && !has_type) req += "Content-Type: application/json\r\n";
  if (!body.empty() || method == "POST") req += "Content-Length: " + std::to_string(body.size()) + "\r\n";
  if (!keep_alive) req += "Connection: close\r\n";
  req += "\r\n";
  req += body;
  return req;
}

// One request on its own connection.
inline Response request(uint16_t port, std::string_view method, std::string_view target, std::string_view body = {},
                        const std::vector<std::pair<std::string, std::string>>& headers = {},
                        std::chrono::milliseconds timeout = std::chrono::seconds(20)) {
  Conn conn(port);
  conn.send(build_request(method, target, body, headers));
  return read_response(conn, timeout);
}

inline Response post_json(uint16_t port, std::string_view target, const nlohmann::json& body,
                          const std::vector<std::pair<std::string, std::string>>& headers = {}) {
  return request(port, "POST", target, body.dump(), headers);
}

// The JSON payloads of the "data: " events of an SSE body, without [DONE].
inline std::vector<nlohmann::json> sse_events(const std::string& body, bool* saw_done = nullptr) {
  std::vector<nlohmann::json> events;
  if (saw_done) *saw_done = false;
  size_t pos = 0;
  while ((pos = body.find("data: ", pos)) != std::string::npos) {
    size_t end = body.find("\n\n", pos);
    if (end == std::string::npos) break;
    std::string data = body.substr(pos + 6, end - pos - 6);
    if (data == "[DONE]") {
      if (saw_done) *saw_done = true;
    } else {
      events.push_back(nlohmann::json::parse(data, nullptr, false));
    }
    pos = end + 2;
  }
  return events;
}

}  // namespace reprise::test
