#pragma once
// The dialects' constructors, one file each in this folder (proxy/dialect.hpp says
// what a dialect is). A fourth dialect is one more file, a line here and a line in
// proxy/dialect.cpp.
#include <memory>

#include "proxy/dialect.hpp"

namespace reprise::dialects {

// OpenAI Chat Completions, Completions and Embeddings (openai.cpp): one per endpoint.
std::unique_ptr<Dialect> make_openai(cache::Endpoint endpoint);
// OpenAI Responses API: POST /v1/responses (responses.cpp).
std::unique_ptr<Dialect> make_responses();
// Anthropic Messages: POST /v1/messages (anthropic.cpp).
std::unique_ptr<Dialect> make_anthropic();
// Google Gemini: POST /v1beta/models/{model}:generateContent / :streamGenerateContent (gemini.cpp).
std::unique_ptr<Dialect> make_gemini();

}  // namespace reprise::dialects
