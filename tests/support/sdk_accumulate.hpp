#pragma once
// Test support: how the official SDKs rebuild a message from a stream's deltas.
#include <doctest/doctest.h>

#include <algorithm>
#include <nlohmann/json.hpp>

namespace reprise::test {

// The openai Python SDK's accumulate_delta (lib/streaming/_deltas.py): how its
// ChatCompletionStreamState rebuilds a message from a stream's deltas. Strings
// concatenate, objects merge, lists of objects merge by their "index", and a field
// first sent as null takes the next value; so content "" and content null differ.
inline nlohmann::json sdk_accumulate(nlohmann::json acc, const nlohmann::json& delta) {
  for (auto& [key, value] : delta.items()) {
    if (!acc.contains(key) || acc[key].is_null()) {
      acc[key] = value;
      continue;
    }
    nlohmann::json& into = acc[key];
    if (key == "index" || key == "type") into = value;
    else if (into.is_string() && value.is_string()) into = into.get<std::string>() + value.get<std::string>();
    else if (into.is_number_integer() && value.is_number_integer()) into = into.get<int64_t>() + value.get<int64_t>();
    else if (into.is_object() && value.is_object()) into = sdk_accumulate(into, value);
    else if (into.is_array() && value.is_array()) {
      bool scalars = std::all_of(into.begin(), into.end(), [](const nlohmann::json& v) { return v.is_primitive(); });
      if (scalars) {
        into.insert(into.end(), value.begin(), value.end());
        continue;
      }
      for (const nlohmann::json& entry : value) {
        REQUIRE(entry.is_object());
        REQUIRE(entry.contains("index"));  // the SDK raises on a list entry without one
        size_t index = entry["index"].get<size_t>();
        if (index < into.size()) into[index] = sdk_accumulate(into[index], entry);
        else into.insert(into.begin() + std::ptrdiff_t(std::min(index, into.size())), entry);
      }
    }
  }
  return acc;
}

}  // namespace reprise::test
