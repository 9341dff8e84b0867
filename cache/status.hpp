#pragma once
// RocksDB-style status for the cache layer: a code and a message, no exceptions.
#include <string>
#include <utility>

#include "cache/expected.hpp"

namespace reprise::cache {

class Status {
 public:
  enum class Code { ok, invalid_argument, not_found, corruption, io_error };

  Status() = default;
  static Status OK() { return {}; }
  static Status InvalidArgument(std::string m) { return {Code::invalid_argument, std::move(m)}; }
  static Status NotFound(std::string m) { return {Code::not_found, std::move(m)}; }
  static Status Corruption(std::string m) { return {Code::corruption, std::move(m)}; }
  static Status IOError(std::string m) { return {Code::io_error, std::move(m)}; }

  bool ok() const { return code_ == Code::ok; }
  Code code() const { return code_; }
  const std::string& message() const { return message_; }

 private:
  Status(Code code, std::string message) : code_(code), message_(std::move(message)) {}
  Code code_ = Code::ok;
  std::string message_;
};

template <class T>
using StatusOr = Expected<T, Status>;

}  // namespace reprise::cache
