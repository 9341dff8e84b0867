#pragma once
// Routing: turns one parsed HTTP request into what to send back, with no I/O. The
// session (server.cpp) then applies the delays and stream faults the Outcome carries.
#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include <boost/beast/http.hpp>

#include "openai.hpp"
#include "state.hpp"

namespace reprise::fake {

namespace http = boost::beast::http;
using Request = http::request<http::string_body>;
using Response = http::response<http::string_body>;

struct Outcome {
  Response res;  // the whole response, or only the header of a stream
  bool stream = false;
  std::vector<std::string> events;  // the SSE events of a stream
  bool v1 = false;                  // a /v1 request: latency and openai-processing-ms apply
  Settings knobs;                   // the settings the request runs under
  // Simulated generation time (simulate mode), on top of latency_ms and chunk_delay_ms:
  // a whole answer waits generation_ms before its headers; a stream waits
  // first_token_ms before its first event and token_ms before each `paced` one.
  int64_t generation_ms = 0;
  int64_t first_token_ms = 0;
  int64_t token_ms = 0;
  std::vector<bool> paced;
};

// A JSON response with its Content-Length set.
Response json_response(unsigned version, bool keep_alive, unsigned status, const ojson& body);

class App {
 public:
  App(Settings defaults, uint64_t seed, std::string require_key)
      : state(defaults), sampler_(seed), auth_(require_key.empty() ? "" : "Bearer " + require_key) {}

  Outcome handle(Request& req);  // never throws

  State state;

 private:
  Outcome handle_v1(Request& req, std::string_view path);
  Outcome handle_fake(const Request& req, std::string_view path);
  Reply route_v1(http::verb method, std::string_view path, const json& body, uint64_t id,
                 const Settings& knobs, const char*& allow);

  Sampler sampler_;
  std::string auth_;  // the expected Authorization value; empty: no check
};

}  // namespace reprise::fake
