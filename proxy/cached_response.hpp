#pragma once
// Serves what the Cacher assigned to one request, in the request's dialect: as one
// JSON body once every sample is there, or as SSE, with stored samples replayed as
// the dialect's event sequence and generations in flight relayed live, each client
// seeing only its own choices, re-indexed from 0. Both come from the same samples, so
// a sample made by a streamed call answers a JSON request and the reverse.
#include <functional>
#include <string>
#include <vector>

#include "cache/cache_request.hpp"
#include "proxy/dialect.hpp"
#include "proxy/net.hpp"
#include "proxy/response_writer.hpp"

namespace reprise {

struct ServeOptions {
  const Dialect* dialect = nullptr;  // how samples and errors are written (the request's)
  RenderOptions render;
  std::string outcome;               // X-Reprise-Cache; "" = from the assignment
  // Called once with whether every sample was there to serve, just before the
  // response's last bytes are written (so a client that has its answer finds it
  // accounted), or once the generations end if the client left first.
  std::function<void(bool served)> on_done;
};

// `headers` are added to the response (X-Reprise-Namespace); X-Reprise-Cache and
// X-Reprise-Samples are set here. True when every sample was there to serve (every
// generation among them completed), false when one failed (the client got its error).
awaitable<bool> serve_assignment(const cache::Assignment& assignment, const ServeOptions& options,
                                 const http::fields& headers, ResponseWriter& writer);

// "hit" when every slot was stored, "miss" when none was, else "partial".
std::string_view cache_outcome(const cache::Assignment& assignment);

// The indices served as ranges, e.g. "0-2" or "0-1,5-5".
std::string samples_header(const std::vector<cache::Slot>& slots);

}  // namespace reprise
