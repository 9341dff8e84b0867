#pragma once
// Errors as values: the engine never lets an exception or a crash escape its API on
// bad input (a model file is untrusted). Status carries a message; Result<T> is a
// Status or a value (std::expected is C++23, we build as C++20).
#include <optional>
#include <string>
#include <utility>

namespace reprise::engine {

class Status {
public:
    Status() = default;  // ok
    static Status error(std::string msg) { Status s; s.err_ = std::move(msg); return s; }
    bool ok() const { return !err_.has_value(); }
    explicit operator bool() const { return ok(); }
    const std::string& message() const { static const std::string none; return err_ ? *err_ : none; }

private:
    std::optional<std::string> err_;
};

template <typename T>
class Result {
public:
    Result(T v) : v_(std::move(v)) {}
    Result(Status s) : s_(std::move(s)) {}  // must be an error
    bool ok() const { return v_.has_value(); }
    explicit operator bool() const { return ok(); }
    const Status& status() const { return s_; }
    const std::string& error() const { return s_.message(); }
    T& value() & { return *v_; }
    const T& value() const& { return *v_; }
    T&& value() && { return std::move(*v_); }
    T* operator->() { return &*v_; }
    const T* operator->() const { return &*v_; }
    T& operator*() { return *v_; }
    const T& operator*() const { return *v_; }

private:
    std::optional<T> v_;
    Status s_ = Status::error("empty result");
};

}  // namespace reprise::engine
