#pragma once
// The fake's other dialects, beside openai.cpp's Chat Completions: each samples like
// the real API of its dialect (fresh text per call, tool calls when tools are given,
// usage, its own SSE event sequence and its own error shape). One file each.
#include <string_view>

#include "openai.hpp"

namespace reprise::fake {

// POST /v1/responses (responses.cpp).
Reply responses_create(const json& req, const CallContext& ctx);
// POST /v1/messages (anthropic.cpp).
Reply anthropic_messages(const json& req, const CallContext& ctx);
// POST /v1/messages/count_tokens (anthropic.cpp).
Reply anthropic_count_tokens(const json& req);
// Any error reply of a /v1/messages path in Anthropic's shape (anthropic.cpp).
Reply as_anthropic_error(Reply r);
// POST /v1beta/models/{model}:generateContent, :streamGenerateContent (gemini.cpp).
Reply gemini_generate(const json& req, std::string_view model, bool stream, const CallContext& ctx);
// Any error reply of a /v1beta path in Gemini's shape (gemini.cpp).
Reply as_gemini_error(Reply r);

}  // namespace reprise::fake
