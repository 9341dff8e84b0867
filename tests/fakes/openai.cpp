#include "openai.hpp"

#include <algorithm>
#include <array>
#include <bit>
#include <cmath>
#include <utility>

#include "game24.hpp"
#include "rng.hpp"
#include "tokens.hpp"

namespace reprise::fake {

int64_t count_words(std::string_view s) {
  int64_t n = 0;
  bool in_word = false;
  for (char c : s) {
    bool space = c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '\f' || c == '\v';
    if (!space && !in_word) ++n;
    in_word = !space;
  }
  return n;
}

std::vector<std::string> word_pieces(const std::string& text) {
  std::vector<std::string> pieces;
  size_t start = 0;
  for (size_t i = 1; i < text.size(); ++i)
    if (text[i] == ' ' && text[i - 1] != ' ') {
      pieces.push_back(text.substr(start, i - start));
      start = i;
    }
  if (start < text.size()) pieces.push_back(text.substr(start));
  return pieces;
}

namespace {

// The vocabulary: one word is one token.
constexpr std::array<std::string_view, 64> kWords = {
    "the",   "a",     "of",    "to",    "and",   "in",    "is",    "it",    "that",  "for",
    "on",    "with",  "as",    "was",   "at",    "by",    "we",    "you",   "they",  "this",
    "from",  "or",    "one",   "all",   "can",   "but",   "not",   "what",  "there", "when",
    "up",    "out",   "so",    "time",  "way",   "day",   "man",   "new",   "sun",   "sea",
    "cat",   "dog",   "tree",  "road",  "blue",  "red",   "green", "light", "dark",  "cold",
    "warm",  "fast",  "slow",  "small", "large", "river", "stone", "cloud", "rain",  "wind",
    "fire",  "bird",  "song",  "home"};

constexpr std::array<std::string_view, 3> kModels = {"gpt-4o-mini", "fake-chat",
                                                     "text-embedding-3-small"};

uint64_t fnv1a(std::string_view s, uint64_t h = 0xcbf29ce484222325) {
  for (unsigned char c : s) h = (h ^ c) * 0x100000001b3;
  return h;
}

Reply invalid(std::string_view message, std::string_view param, std::string_view code = {}) {
  return error_reply(400, "invalid_request_error", message, param, code);
}

// Reads an optional integer field into out; an error reply when it is there, not null,
// and not an integer in [lo, hi].
std::optional<Reply> opt_int(const json& req, const char* key, int64_t lo, int64_t hi,
                             std::optional<int64_t>& out) {
  auto it = req.find(key);
  if (it == req.end() || it->is_null()) return std::nullopt;
  if (!it->is_number_integer() || (it->is_number_unsigned() && it->get<uint64_t>() > uint64_t(hi)) ||
      it->get<int64_t>() < lo || it->get<int64_t>() > hi)
    return invalid(std::string(key) + " must be an integer between " + std::to_string(lo) +
                       " and " + std::to_string(hi),
                   key, "invalid_value");
  out = it->get<int64_t>();
  return std::nullopt;
}

std::optional<Reply> require_model(const json& req, std::string& model) {
  auto it = req.find("model");
  if (it == req.end() || it->is_null()) return invalid("you must provide a model parameter", "model");
  if (!it->is_string()) return invalid("model must be a string", "model", "invalid_type");
  model = it->get<std::string>();
  return std::nullopt;
}

// Prompts (completions) and inputs (embeddings): a string, an array of strings or of
// token arrays, or one token array. Each item comes with its token count: words, or
// the GPT-like estimate with gpt_tokens.
struct Item {
  const json* value;
  int64_t tokens;
};
std::optional<std::vector<Item>> parse_items(const json& v, bool gpt_tokens = false) {
  auto count = [gpt_tokens](const std::string& s) { return gpt_tokens ? count_tokens(s) : count_words(s); };
  auto token_array = [](const json& a) {
    return a.is_array() && std::all_of(a.begin(), a.end(), [](const json& t) { return t.is_number_integer(); });
  };
  if (v.is_string()) return std::vector<Item>{{&v, count(v.get_ref<const std::string&>())}};
  if (!v.is_array() || v.empty()) return std::nullopt;
  if (token_array(v)) return std::vector<Item>{{&v, int64_t(v.size())}};
  std::vector<Item> items;
  for (const json& e : v) {
    if (e.is_string()) items.push_back({&e, count(e.get_ref<const std::string&>())});
    else if (token_array(e) && !e.empty()) items.push_back({&e, int64_t(e.size())});
    else return std::nullopt;
  }
  return items;
}

// The fields chat and completions share.
struct GenRequest {
  std::string model;
  int64_t n = 1;
  std::optional<int64_t> max_tokens;
  bool stream = false;
  bool include_usage = false;
  std::optional<uint64_t> seed_hash;  // set when the request carries an integer seed
};

std::optional<Reply> parse_gen(const json& req, GenRequest& g) {
  if (auto err = require_model(req, g.model)) return err;
  std::optional<int64_t> n, max_tokens, max_completion_tokens;
  if (auto err = opt_int(req, "n", 1, 128, n)) return err;
  if (auto err = opt_int(req, "max_tokens", 1, INT32_MAX, max_tokens)) return err;
  if (auto err = opt_int(req, "max_completion_tokens", 1, INT32_MAX, max_completion_tokens)) return err;
  g.n = n.value_or(1);
  if (max_tokens && max_completion_tokens) g.max_tokens = std::min(*max_tokens, *max_completion_tokens);
  else g.max_tokens = max_tokens ? max_tokens : max_completion_tokens;

  if (auto it = req.find("stream"); it != req.end() && !it->is_null()) {
    if (!it->is_boolean()) return invalid("stream must be a boolean", "stream", "invalid_type");
    g.stream = it->get<bool>();
  }
  if (auto it = req.find("stream_options"); it != req.end() && !it->is_null()) {
    if (!it->is_object()) return invalid("stream_options must be an object", "stream_options");
    if (auto u = it->find("include_usage"); u != it->end() && !u->is_null()) {
      if (!u->is_boolean()) return invalid("include_usage must be a boolean", "stream_options.include_usage");
      g.include_usage = u->get<bool>();
    }
  }
  if (auto it = req.find("seed"); it != req.end() && !it->is_null()) {
    if (!it->is_number_integer()) return invalid("seed must be an integer", "seed", "invalid_type");
    // Seeded calls depend on the body alone, less what only shapes the delivery.
    json canon = req;
    canon.erase("stream");
    canon.erase("stream_options");
    canon.erase("n");
    g.seed_hash = fnv1a(canon.dump(-1, ' ', false, json::error_handler_t::replace));
  }
  return std::nullopt;
}

// A choice's text and where each of its tokens ends: token k is text[ends[k-1], ends[k])
// with the blank before it, so a stream sends " word" after "word".
struct Choice {
  std::string text;
  std::vector<uint32_t> ends;
  bool truncated = false;  // cut by max_tokens
  std::string_view piece(size_t k) const {
    size_t start = k ? ends[k - 1] : 0;
    return std::string_view(text).substr(start, ends[k] - start);
  }
};

// Words from the fixed list, one token each.
Choice sample_words(SplitMix64& rng, const CallContext& ctx) {
  Choice c;
  auto span = uint64_t(ctx.max_words - ctx.min_words + 1);
  int64_t len = ctx.min_words + int64_t(rng.next() % span);
  c.ends.reserve(size_t(len));
  for (int64_t w = 0; w < len; ++w) {
    if (w) c.text += ' ';
    c.text += kWords[rng.next() % kWords.size()];
    c.ends.push_back(uint32_t(c.text.size()));
  }
  return c;
}

// Samples choices [0, tasks.size() * n), choice i answering tasks[i / n]: from the body
// hash when seeded, else from the global RNG. A Game of 24 task gets the simulated
// model, anything else the word list.
std::vector<Choice> sample(const GenRequest& g, const std::vector<game24::Task>& tasks, const CallContext& ctx) {
  const size_t count = tasks.size() * size_t(g.n);
  std::vector<Choice> choices;
  choices.reserve(count);
  for (size_t i = 0; i < count; ++i) {
    uint64_t seed = g.seed_hash ? SplitMix64{*g.seed_hash ^ (i * 0xff51afd7ed558ccd)}.next()
                                : ctx.sampler.draw();
    SplitMix64 rng{seed};
    const game24::Task& task = tasks[i / size_t(g.n)];
    if (task.kind == game24::Kind::other) {
      choices.push_back(sample_words(rng, ctx));
    } else {
      Choice c;
      c.text = game24::answer(task, rng);
      c.ends = token_ends(c.text);
      choices.push_back(std::move(c));
    }
    Choice& c = choices.back();
    if (g.max_tokens && int64_t(c.ends.size()) > *g.max_tokens) {
      c.ends.resize(size_t(*g.max_tokens));
      c.text.resize(c.ends.back());
      c.truncated = true;
    }
  }
  return choices;
}

enum class Kind { chat, text };

std::string base64(const std::string& bytes);

// What a chat choice says besides its text under the answer-shape knobs: its tool
// calls (content null) and the rich fields, each whole (the JSON form) and as the
// stream's pieces.
struct ChatExtras {
  ojson tool_calls = ojson::array();           // whole
  std::vector<ojson> tool_deltas;              // the stream's tool_calls deltas, in order
  std::string reasoning;                       // rich: reasoning_content
  ojson annotations, audio;                    // rich
  int64_t tokens = 0;                          // completion tokens beyond the text
};

ChatExtras chat_extras(const Choice& c, size_t i, const CallContext& ctx) {
  ChatExtras x;
  // Ids from the text and the choice, not the call: a seeded request gets the same answer.
  const uint64_t h = fnv1a(c.text, 0xcbf29ce484222325 ^ i);
  const std::string tag = std::to_string(h % 1000000) + "_" + std::to_string(i);
  auto add_call = [&](ojson call, const char* kind, const char* field, const std::string& text) {
    const size_t index = x.tool_calls.size();
    ojson head = call;
    head[kind][field] = "";
    head["index"] = index;  // OpenAI's order: index first; kept simple here
    x.tool_deltas.push_back(ojson::array({head}));
    for (auto& piece : word_pieces(text)) {
      ojson delta;
      delta["index"] = index;
      delta[kind][field] = piece;
      x.tool_deltas.push_back(ojson::array({delta}));
      ++x.tokens;
    }
    call[kind][field] = text;
    x.tool_calls.push_back(std::move(call));
  };
  if (ctx.tool_calls == "function" || ctx.tool_calls == "both") {
    ojson call;
    call["id"] = "call_fake_" + tag + "_f";
    call["type"] = "function";
    call["function"]["name"] = "lookup";
    add_call(call, "function", "arguments", "{\"query\": \"" + c.text + "\"}");
  }
  if (ctx.tool_calls == "custom" || ctx.tool_calls == "both") {
    ojson call;
    call["id"] = "call_fake_" + tag + "_c";
    call["type"] = "custom";
    call["custom"]["name"] = "run_code";
    add_call(call, "custom", "input", "print(\"" + c.text + "\")");
  }
  if (ctx.rich) {
    x.reasoning = "Considering " + std::to_string(c.ends.size()) + " words first.";
    x.tokens += int64_t(word_pieces(x.reasoning).size());
    ojson citation;
    citation["type"] = "url_citation";
    citation["url_citation"] = {{"url", "https://example.com/" + tag}, {"title", "Fake source " + tag},
                                {"start_index", 0}, {"end_index", int64_t(c.text.size())}};
    x.annotations = ojson::array({citation});
    x.audio = {{"id", "audio_fake_" + tag}, {"data", base64(c.text)}, {"expires_at", int64_t(1700000000 + h % 100000)},
               {"transcript", c.text}};
  }
  return x;
}

// Builds the reply of chat or completions from sampled choices.
Reply generate(Kind kind, const GenRequest& g, const std::vector<Choice>& choices,
               int64_t prompt_tokens, const CallContext& ctx) {
  const bool chat = kind == Kind::chat;
  const bool tools = chat && ctx.tool_calls != "off";
  const bool rich = chat && ctx.rich;
  std::vector<ChatExtras> extras;
  if (chat)
    for (size_t i = 0; i < choices.size(); ++i) extras.push_back(chat_extras(choices[i], i, ctx));
  int64_t completion_tokens = 0, longest = 0, reasoning_tokens = 0;
  for (size_t i = 0; i < choices.size(); ++i) {
    const Choice& c = choices[i];
    int64_t own = tools ? 0 : int64_t(c.ends.size());
    if (chat) own += extras[i].tokens;
    if (rich) reasoning_tokens += int64_t(word_pieces(extras[i].reasoning).size());
    completion_tokens += own;
    longest = std::max(longest, own);
  }
  ojson usage;
  usage["prompt_tokens"] = prompt_tokens;
  usage["completion_tokens"] = completion_tokens;
  usage["total_tokens"] = prompt_tokens + completion_tokens;
  if (rich) {  // as OpenAI reports them
    usage["prompt_tokens_details"] = {{"cached_tokens", prompt_tokens / 2}, {"audio_tokens", 0}};
    usage["completion_tokens_details"] = {{"reasoning_tokens", reasoning_tokens}, {"audio_tokens", 0},
                                          {"accepted_prediction_tokens", 0}, {"rejected_prediction_tokens", 0}};
  }
  auto finish = [&](size_t i) -> std::string {
    if (ctx.finish_reason && (ctx.finish_reason_choice < 0 || size_t(ctx.finish_reason_choice) == i))
      return *ctx.finish_reason;
    if (tools) return "tool_calls";
    return choices[i].truncated ? "length" : "stop";
  };

  Reply r;
  r.samples = choices.size();
  r.prompt_tokens = prompt_tokens;
  r.completion_tokens = completion_tokens;
  r.longest_choice = longest;
  ojson head;  // the fields every body or chunk starts with
  head["id"] = (chat ? "chatcmpl-fake-" : "cmpl-fake-") + std::to_string(ctx.id);
  head["object"] = chat ? (g.stream ? "chat.completion.chunk" : "chat.completion") : "text_completion";
  head["created"] = ctx.created;
  head["model"] = g.model;
  if (rich) head["service_tier"] = "default";
  head["system_fingerprint"] = "fp_fake";
  if (rich) head["provider"] = "fake-provider";  // a field no client library knows

  if (!g.stream) {
    r.body = head;
    ojson& out = r.body["choices"] = ojson::array();
    for (size_t i = 0; i < choices.size(); ++i) {
      ojson c;
      if (chat) {
        c["index"] = i;
        ojson& m = c["message"] = {{"role", "assistant"}};
        m["content"] = tools ? ojson(nullptr) : ojson(choices[i].text);
        m["refusal"] = nullptr;
        if (tools) m["tool_calls"] = extras[i].tool_calls;
        if (rich) {
          m["reasoning_content"] = extras[i].reasoning;
          m["annotations"] = extras[i].annotations;
          m["audio"] = extras[i].audio;
        }
      } else {
        c["text"] = choices[i].text;
        c["index"] = i;
      }
      c["logprobs"] = nullptr;
      c["finish_reason"] = finish(i);
      if (rich) c["native_finish_reason"] = finish(i);
      out.push_back(std::move(c));
    }
    r.body["usage"] = std::move(usage);
    return r;
  }

  // Streaming: one event per chunk, each chunk carrying one choice's piece.
  r.stream = true;
  bool next_paced = false;  // the next event starts a round of tokens
  auto emit = [&](ojson choices_field, ojson usage_field) {
    ojson chunk = head;
    chunk["choices"] = std::move(choices_field);
    if (g.include_usage) chunk["usage"] = std::move(usage_field);
    // OpenAI pads every chunk with random characters (stream_options.include_obfuscation).
    if (rich) chunk["obfuscation"] = std::string(1 + r.events.size() % 7, char('a' + r.events.size() % 26));
    r.events.push_back("data: " + chunk.dump() + "\n\n");
    r.paced.push_back(std::exchange(next_paced, false));
  };
  auto send = [&](size_t i, ojson delta, ojson finish_reason) {
    ojson c;
    c["index"] = i;
    c["delta"] = std::move(delta);
    c["logprobs"] = nullptr;
    c["finish_reason"] = std::move(finish_reason);
    if (rich) c["native_finish_reason"] = c["finish_reason"];
    emit(ojson::array({std::move(c)}), nullptr);
  };
  auto piece = [&](size_t i, std::string text, ojson finish_reason) {
    if (chat) {
      ojson delta = ojson::object();
      if (!text.empty()) delta["content"] = std::move(text);
      return send(i, std::move(delta), std::move(finish_reason));
    }
    ojson c;
    c["text"] = std::move(text);
    c["index"] = i;
    c["logprobs"] = nullptr;
    c["finish_reason"] = std::move(finish_reason);
    emit(ojson::array({std::move(c)}), nullptr);
  };

  if (chat)  // the role first, as OpenAI does
    for (size_t i = 0; i < choices.size(); ++i) {
      ojson delta = {{"role", "assistant"}, {"content", tools ? ojson(nullptr) : ojson("")}};
      if (tools || rich) delta["refusal"] = nullptr;
      send(i, std::move(delta), nullptr);
    }
  if (rich)  // reasoning before the answer, as reasoning models stream it
    for (size_t i = 0; i < choices.size(); ++i)
      for (auto& p : word_pieces(extras[i].reasoning)) send(i, {{"reasoning_content", p}}, nullptr);
  if (tools) {
    for (size_t i = 0; i < choices.size(); ++i)
      for (auto& d : extras[i].tool_deltas) send(i, {{"tool_calls", d}}, nullptr);
  } else {
    size_t rounds = 0;
    for (const auto& c : choices) rounds = std::max(rounds, c.ends.size());
    for (size_t w = 0; w < rounds; ++w) {  // round-robin over the choices
      next_paced = w > 0;  // the choices are generated side by side, a token each per round
      for (size_t i = 0; i < choices.size(); ++i)
        if (w < choices[i].ends.size()) piece(i, std::string(choices[i].piece(w)), nullptr);
    }
  }
  if (rich)  // OpenAI streams annotations and audio whole or in a few pieces, after the text
    for (size_t i = 0; i < choices.size(); ++i) {
      send(i, {{"annotations", extras[i].annotations}}, nullptr);
      const ojson& audio = extras[i].audio;
      send(i, {{"audio", {{"id", audio["id"]}, {"transcript", audio["transcript"]}}}}, nullptr);
      send(i, {{"audio", {{"data", audio["data"]}}}}, nullptr);
      send(i, {{"audio", {{"expires_at", audio["expires_at"]}}}}, nullptr);
    }
  for (size_t i = 0; i < choices.size(); ++i) piece(i, "", finish(i));
  if (g.include_usage) emit(ojson::array(), std::move(usage));
  r.events.push_back("data: [DONE]\n\n");
  return r;
}

std::string base64(const std::string& bytes) {
  static constexpr char kAlphabet[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
  std::string out;
  out.reserve((bytes.size() + 2) / 3 * 4);
  for (size_t i = 0; i < bytes.size(); i += 3) {
    uint32_t v = uint32_t(uint8_t(bytes[i])) << 16;
    if (i + 1 < bytes.size()) v |= uint32_t(uint8_t(bytes[i + 1])) << 8;
    if (i + 2 < bytes.size()) v |= uint8_t(bytes[i + 2]);
    out += kAlphabet[(v >> 18) & 63];
    out += kAlphabet[(v >> 12) & 63];
    out += i + 1 < bytes.size() ? kAlphabet[(v >> 6) & 63] : '=';
    out += i + 2 < bytes.size() ? kAlphabet[v & 63] : '=';
  }
  return out;
}

ojson model_object(std::string_view id) {
  ojson m;
  m["id"] = id;
  m["object"] = "model";
  m["created"] = 1700000000;
  m["owned_by"] = "reprise-fake";
  return m;
}

}  // namespace

Reply error_reply(unsigned status, std::string_view type, std::string_view message,
                  std::string_view param, std::string_view code) {
  Reply r;
  r.status = status;
  ojson& e = r.body["error"];
  e["message"] = message;
  e["type"] = type;
  e["param"] = param.empty() ? ojson(nullptr) : ojson(param);
  e["code"] = code.empty() ? ojson(nullptr) : ojson(code);
  return r;
}

std::string sample_text(const CallContext& ctx) {
  SplitMix64 rng{ctx.sampler.draw()};
  return sample_words(rng, ctx).text;
}

Reply chat_completions(const json& req, const CallContext& ctx) {
  GenRequest g;
  if (auto err = parse_gen(req, g)) return std::move(*err);
  auto messages = req.find("messages");
  if (messages == req.end() || messages->is_null())
    return invalid("Missing required parameter: 'messages'.", "messages");
  if (!messages->is_array() || messages->empty())
    return invalid("messages must be a non-empty array", "messages", "invalid_type");

  auto count = [&](const std::string& s) { return ctx.simulate ? count_tokens(s) : count_words(s); };
  int64_t prompt_tokens = 0;
  std::string last_user;  // what the simulated model answers
  for (const json& m : *messages) {
    if (!m.is_object()) return invalid("each message must be an object", "messages", "invalid_type");
    prompt_tokens += 3;
    auto content = m.find("content");
    if (content == m.end()) continue;
    const bool keep = ctx.simulate && m.value("role", json()) == "user";
    if (keep) last_user.clear();
    if (content->is_string()) {
      prompt_tokens += count(content->get_ref<const std::string&>());
      if (keep) last_user = content->get_ref<const std::string&>();
    }
    if (content->is_array())
      for (const json& part : *content)
        if (part.is_object() && part.value("type", json()) == "text" && part.contains("text") &&
            part["text"].is_string()) {
          prompt_tokens += count(part["text"].get_ref<const std::string&>());
          if (keep) last_user += part["text"].get_ref<const std::string&>();
        }
  }
  std::vector<game24::Task> tasks(1);
  if (ctx.simulate) tasks[0] = game24::classify(last_user);
  Reply r = generate(Kind::chat, g, sample(g, tasks, ctx), prompt_tokens, ctx);
  if (ctx.simulate) ++r.kinds[size_t(tasks[0].kind)];
  return r;
}

Reply completions(const json& req, const CallContext& ctx) {
  GenRequest g;
  if (auto err = parse_gen(req, g)) return std::move(*err);
  auto prompt = req.find("prompt");
  if (prompt == req.end() || prompt->is_null())
    return invalid("Missing required parameter: 'prompt'.", "prompt");
  auto prompts = parse_items(*prompt, ctx.simulate);
  if (!prompts)
    return invalid("prompt must be a string, an array of strings, or token arrays", "prompt", "invalid_type");
  if (prompts->size() * size_t(g.n) > 4096)  // keeps a stream's events in bounds
    return invalid("at most 4096 choices (prompts times n) per request", "prompt", "invalid_value");
  int64_t prompt_tokens = 0;
  std::vector<game24::Task> tasks(prompts->size());
  for (size_t i = 0; i < prompts->size(); ++i) {
    const Item& p = (*prompts)[i];
    prompt_tokens += p.tokens;
    if (ctx.simulate && p.value->is_string()) tasks[i] = game24::classify(p.value->get_ref<const std::string&>());
  }
  // Choice index = prompt_index * n + j, so sampling all of them in order fits.
  Reply r = generate(Kind::text, g, sample(g, tasks, ctx), prompt_tokens, ctx);
  if (ctx.simulate)
    for (const auto& t : tasks) ++r.kinds[size_t(t.kind)];
  return r;
}

Reply embeddings(const json& req) {
  std::string model;
  if (auto err = require_model(req, model)) return std::move(*err);
  auto input = req.find("input");
  if (input == req.end() || input->is_null())
    return invalid("Missing required parameter: 'input'.", "input");
  auto items = parse_items(*input);
  if (!items)
    return invalid("input must be a string, an array of strings, or token arrays", "input", "invalid_type");
  std::optional<int64_t> dims;
  if (auto err = opt_int(req, "dimensions", 1, 8192, dims)) return std::move(*err);
  bool as_base64 = false;
  if (auto it = req.find("encoding_format"); it != req.end() && !it->is_null()) {
    if (*it != "float" && *it != "base64")
      return invalid("encoding_format must be 'float' or 'base64'", "encoding_format", "invalid_value");
    as_base64 = *it == "base64";
  }

  Reply r;
  r.body["object"] = "list";
  ojson& data = r.body["data"] = ojson::array();
  int64_t tokens = 0;
  std::vector<double> v(size_t(dims.value_or(64)));
  for (size_t i = 0; i < items->size(); ++i) {
    const Item& item = (*items)[i];
    tokens += item.tokens;
    // A unit vector that depends on (model, input) only.
    SplitMix64 rng{fnv1a(item.value->dump(-1, ' ', false, json::error_handler_t::replace),
                         fnv1a(model) ^ 0x5bd1e995)};
    double norm = 0;
    for (double& x : v) {
      x = double(rng.next() >> 11) * 0x1p-52 - 1.0;  // uniform in [-1, 1)
      norm += x * x;
    }
    norm = norm > 0 ? std::sqrt(norm) : 1;
    ojson e;
    e["object"] = "embedding";
    e["index"] = i;
    if (as_base64) {
      std::string bytes;
      bytes.reserve(v.size() * 4);
      for (double x : v) {
        auto u = std::bit_cast<uint32_t>(float(x / norm));
        for (int b = 0; b < 4; ++b) bytes += char((u >> (8 * b)) & 0xff);  // little-endian
      }
      e["embedding"] = base64(bytes);
    } else {
      ojson& vec = e["embedding"] = ojson::array();
      for (double x : v) vec.push_back(float(x / norm));
    }
    data.push_back(std::move(e));
  }
  r.body["model"] = model;
  r.body["usage"] = {{"prompt_tokens", tokens}, {"total_tokens", tokens}};
  r.prompt_tokens = tokens;
  return r;
}

Reply list_models() {
  Reply r;
  r.body["object"] = "list";
  r.body["data"] = ojson::array();
  for (auto id : kModels) r.body["data"].push_back(model_object(id));
  return r;
}

Reply get_model(std::string_view id) {
  if (std::find(kModels.begin(), kModels.end(), id) == kModels.end())
    return error_reply(404, "invalid_request_error",
                       "The model '" + std::string(id) + "' does not exist or you do not have access to it.",
                       "model", "model_not_found");
  Reply r;
  r.body = model_object(id);
  return r;
}

SampledText sample_text(const CallContext& ctx, std::optional<int64_t> max_tokens) {
  GenRequest g;
  g.max_tokens = max_tokens;
  std::vector<Choice> choices = sample(g, std::vector<game24::Task>(1), ctx);
  SampledText out;
  out.text = std::move(choices[0].text);
  out.truncated = choices[0].truncated;
  out.pieces = word_pieces(out.text);
  return out;
}

ojson required_strings(const json& schema, const std::function<std::string()>& value) {
  ojson args = ojson::object();
  const json required = schema.is_object() ? schema.value("required", json()) : json();
  if (required.is_array())
    for (const json& name : required)
      if (name.is_string()) args[name.get<std::string>()] = value();
  return args;
}

std::vector<std::string> malformed_events() {
  return {"data: {\"id\": broken\n\n", "data: [DONE]\n\n"};
}

}  // namespace reprise::fake
