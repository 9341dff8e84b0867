#pragma once
// The HTTP(S) client for one [[upstreams]] entry: a pool of kept-alive connections,
// TLS with peer and host-name verification, connect / first-byte / idle / total
// deadlines, and retries with jittered exponential backoff.
//
// Retries happen only inside send(), that is before the caller has seen any byte of
// the response, so nothing is ever retried after bytes reached a client. They cover
// connect failures, 429 (after Retry-After / retry-after-ms when given) and 5xx.
// A timeout after the request was sent is not retried: the upstream may still be
// working on it, and paying for it.
#include <atomic>
#include <memory>
#include <optional>
#include <string>

#include <boost/asio/ssl.hpp>
#include <boost/beast/ssl.hpp>

#include "proxy/config.hpp"
#include "proxy/error.hpp"
#include "proxy/net.hpp"

namespace reprise {

struct UpstreamRequest {
  http::verb method = http::verb::post;
  std::string target;   // path and query under the upstream's base path, e.g. "/chat/completions"
  http::fields headers; // end-to-end headers; Host and Content-Length are set by the client
  std::string body;
};

struct UpstreamStats {
  std::atomic<uint64_t> requests{0};     // send() calls
  std::atomic<uint64_t> attempts{0};     // requests written, retries included
  std::atomic<uint64_t> retries{0};
  std::atomic<uint64_t> connects{0};     // new connections
  std::atomic<uint64_t> reused{0};       // requests on a pooled connection
};

class UpstreamPool;
struct UpstreamConnection;

// A response whose head has arrived; its body is read on demand. Owns the connection:
// it goes back to the pool once the body was read to its end, and is closed otherwise.
class UpstreamResponse {
 public:
  UpstreamResponse(std::unique_ptr<UpstreamConnection> conn, std::shared_ptr<UpstreamPool> pool,
                   std::chrono::steady_clock::time_point deadline, Millis idle_timeout);
  ~UpstreamResponse();
  UpstreamResponse(const UpstreamResponse&) = delete;
  UpstreamResponse& operator=(const UpstreamResponse&) = delete;

  unsigned status() const;
  const http::fields& headers() const;
  bool is_event_stream() const;

  // The next piece of the body as it arrives; an empty optional at its end. The view
  // is valid until the next call.
  awaitable<Result<std::optional<std::string_view>>> read_some();
  // The whole body, refusing more than `limit` bytes.
  awaitable<Result<std::string>> read_all(uint64_t limit);

 private:
  void release();

  std::unique_ptr<UpstreamConnection> conn_;
  std::shared_ptr<UpstreamPool> pool_;
  std::chrono::steady_clock::time_point deadline_;
  Millis idle_timeout_;
  bool done_ = false;
};

class UpstreamClient {
 public:
  // Fails when the TLS context cannot be set up (e.g. an unreadable ca_file).
  static Result<std::unique_ptr<UpstreamClient>> create(asio::any_io_executor executor,
                                                        const UpstreamConfig& config);

  // Sends the request, retrying as described above, and returns once the response
  // head has arrived. An error means no response at all (502/504 material).
  awaitable<Result<std::unique_ptr<UpstreamResponse>>> send(const UpstreamRequest& request);

  const UpstreamConfig& config() const { return config_; }
  const UpstreamStats& stats() const { return stats_; }

 private:
  UpstreamClient(asio::any_io_executor executor, const UpstreamConfig& config,
                 std::shared_ptr<asio::ssl::context> tls);
  awaitable<Result<std::unique_ptr<UpstreamConnection>>> connect(std::chrono::steady_clock::time_point deadline);

  asio::any_io_executor executor_;
  UpstreamConfig config_;
  std::shared_ptr<asio::ssl::context> tls_;
  std::shared_ptr<UpstreamPool> pool_;
  UpstreamStats stats_;
};

// Milliseconds to wait before retrying, from Retry-After (seconds or an HTTP date)
// or OpenAI's retry-after-ms; nullopt when neither is present or parseable.
std::optional<Millis> parse_retry_after(const http::fields& headers,
                                        std::chrono::system_clock::time_point now);

}  // namespace reprise
