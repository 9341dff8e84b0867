#pragma once
// Shorthands for Asio and Beast, shared by the proxy's I/O code.
#include <boost/asio.hpp>
#include <boost/asio/experimental/awaitable_operators.hpp>
#include <boost/beast/core.hpp>
#include <boost/beast/http.hpp>

namespace reprise {

namespace asio = boost::asio;
namespace beast = boost::beast;
namespace http = beast::http;
using tcp = asio::ip::tcp;

template <class T>
using awaitable = asio::awaitable<T>;

// Completion token for coroutines that never throws: every operation yields a tuple
// whose first element is the error_code (no exceptions across Asio boundaries).
inline constexpr auto use_nothrow = asio::as_tuple(asio::use_awaitable);

using Request = http::request<http::string_body>;

}  // namespace reprise
