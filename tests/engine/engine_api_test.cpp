// The engine's narrow API (engine/engine.hpp): jobs of n samples on the engine thread,
// per-sample determinism, streaming, stop strings, limits and errors; and the UTF-8
// assembly of streamed pieces (engine/utf8_stream.hpp).
#include <doctest/doctest.h>

#include <atomic>
#include <chrono>
#include <future>
#include <map>
#include <set>
#include <thread>

#include "engine/engine.hpp"
#include "engine/utf8_stream.hpp"
#include "tests/engine/tiny_engine.hpp"

using namespace reprise::engine;

namespace {

// A tiny model with the built-in vocabulary, written once per test run.
const std::string& model_path() {
    static const test::TinyEngine t = test::TinyEngine::make(test::tiny_shape(2, 256, 7, "engine-api"));
    return t.path;
}

std::unique_ptr<Engine> load(int context = 0, int max_queued = 8) {
    EngineOptions o;
    o.model_path = model_path();
    o.threads = 2;
    o.context = context;
    o.max_queued = max_queued;
    auto e = Engine::load(o);
    REQUIRE_MESSAGE(e.ok(), e.error());
    return std::move(e.value());
}

struct Outcome {
    bool ok = false;
    EngineError error;
    Completion completion;
    std::map<int, std::string> streamed;
    int on_done_calls = 0;
};

// Submits and waits for on_done.
Outcome run(Engine& e, Submission s) {
    auto out = std::make_shared<Outcome>();
    auto done = std::make_shared<std::promise<void>>();
    Callbacks cb;
    cb.on_text = [out](int i, std::string_view text) { out->streamed[i] += text; };
    cb.on_done = [out, done](const Completion* c, const EngineError* err) {
        ++out->on_done_calls;
        if (c) {
            out->ok = true;
            out->completion = *c;
        } else {
            out->error = *err;
        }
        done->set_value();
    };
    if (auto refused = e.submit(std::move(s), std::move(cb))) {
        out->error = *refused;
        return *out;
    }
    REQUIRE(done->get_future().wait_for(std::chrono::seconds(60)) == std::future_status::ready);
    return *out;
}

Submission text_job(const std::string& text, int n, int max_tokens, uint64_t first = 0, float temperature = 1.0f) {
    Submission s;
    s.text = text;
    s.n = n;
    s.max_tokens = max_tokens;
    s.sampler.temperature = temperature;
    s.key_hash = 0x1234'5678'9abc'def0ull;
    s.first_index = [first] { return first; };
    return s;
}

}  // namespace

TEST_CASE("engine api: sample i is the same text alone or among n, and samples differ") {
    auto e = load();
    auto four = run(*e, text_job("The cache keeps", 4, 12));
    REQUIRE(four.ok);
    REQUIRE(four.completion.samples.size() == 4);
    CHECK(four.completion.prompt_tokens > 0);
    for (int i = 0; i < 4; ++i) {
        // Alone, as index i: the shared prefill and the copied KV rows change nothing.
        auto alone = run(*e, text_job("The cache keeps", 1, 12, uint64_t(i)));
        REQUIRE(alone.ok);
        CHECK(alone.completion.samples[0].text == four.completion.samples[size_t(i)].text);
        CHECK(alone.completion.samples[0].completion_tokens == four.completion.samples[size_t(i)].completion_tokens);
        // What was streamed is what was returned.
        CHECK(four.streamed[i] == four.completion.samples[size_t(i)].text);
    }
    std::set<std::string> distinct;
    for (auto& s : four.completion.samples) distinct.insert(s.text);
    CHECK(distinct.size() == 4);
    // Another request hash: other samples.
    auto other = text_job("The cache keeps", 1, 12);
    other.key_hash ^= 1;
    auto o = run(*e, other);
    REQUIRE(o.ok);
    CHECK(o.completion.samples[0].text != four.completion.samples[0].text);
}

TEST_CASE("engine api: max_tokens and the context end a sample with length - stop strings with stop") {
    auto e = load(/*context=*/64);
    auto r = run(*e, text_job("Hello", 1, 10, 0, 0.0f));
    REQUIRE(r.ok);
    const SampleResult& greedy = r.completion.samples[0];
    CHECK(greedy.finish == Finish::length);
    CHECK(greedy.completion_tokens == 10);
    REQUIRE(greedy.text.size() >= 4);

    // Greedy again with a stop string taken from the middle of that text: the text
    // before its first occurrence, never the stop string itself, also not streamed.
    const std::string stop = greedy.text.substr(greedy.text.size() / 2, 2);
    auto with_stop = text_job("Hello", 1, 10, 0, 0.0f);
    with_stop.stop = {stop, "never-in-the-text"};
    auto s = run(*e, with_stop);
    REQUIRE(s.ok);
    CHECK(s.completion.samples[0].finish == Finish::stop);
    CHECK(s.completion.samples[0].text == greedy.text.substr(0, greedy.text.find(stop)));
    CHECK(s.streamed[0] == s.completion.samples[0].text);

    // No max_tokens: the context (64) is the limit.
    auto unbounded = run(*e, text_job("Hello", 1, -1, 0, 0.0f));
    REQUIRE(unbounded.ok);
    CHECK(unbounded.completion.samples[0].finish == Finish::length);
    CHECK(unbounded.completion.prompt_tokens + unbounded.completion.samples[0].completion_tokens == 64);
}

TEST_CASE("engine api: chat prompts use the model's template - bad input is an error, not a crash") {
    auto e = load(/*context=*/32);
    CHECK(e->info().chat_family == "chatml");
    CHECK(e->info().device == "cpu");
    CHECK(e->info().n_ctx == 32);

    Submission chat;
    chat.chat = true;
    chat.messages = {{"system", "Be brief."}, {"user", "Hi"}};
    chat.max_tokens = 4;
    auto ok = run(*e, chat);
    REQUIRE(ok.ok);
    // <|im_start|>system\nBe brief.<|im_end|>\n<|im_start|>user\nHi<|im_end|>\n<|im_start|>assistant\n
    auto expected = e->tokenizer().encode("<|im_start|>system\nBe brief.<|im_end|>\n<|im_start|>user\nHi<|im_end|>\n<|im_start|>assistant\n", true, true);
    CHECK(ok.completion.prompt_tokens == int(expected.size()));

    Submission bad_roles = chat;
    bad_roles.messages = {{"user", "a"}, {"user", "b"}};
    auto r1 = run(*e, bad_roles);
    CHECK_FALSE(r1.ok);
    CHECK(r1.error.code == EngineErrc::invalid_request);

    Submission long_prompt;
    long_prompt.text = std::string(400, 'x') + " and more words to be sure it is long";
    auto r2 = run(*e, long_prompt);
    CHECK_FALSE(r2.ok);
    CHECK(r2.error.code == EngineErrc::context_exceeded);
    CHECK(r2.error.message.find("context holds 32") != std::string::npos);

    Submission ids;
    ids.use_tokens = true;
    ids.tokens = {1, 2, 1 << 20};
    auto r3 = run(*e, ids);
    CHECK_FALSE(r3.ok);
    CHECK(r3.error.message.find("outside the vocabulary") != std::string::npos);

    Submission zero = text_job("x", 1, 0);
    CHECK(e->submit(zero, {}).has_value());
    // Every failure was reported exactly once and the engine still works.
    CHECK(r1.on_done_calls == 1);
    CHECK(run(*e, text_job("x", 2, 3)).ok);
}

TEST_CASE("engine api: a full queue refuses at once - shutting down fails what waits, once each") {
    auto e = load(/*context=*/0, /*max_queued=*/1);
    std::atomic<int> done_calls{0};
    std::atomic<int> shut{0};
    Callbacks counting;
    counting.on_done = [&](const Completion*, const EngineError* err) {
        ++done_calls;
        if (err && err->code == EngineErrc::shutting_down) ++shut;
    };
    // A long job runs; wait until the engine has taken it.
    REQUIRE_FALSE(e->submit(text_job("long", 8, 240), counting).has_value());
    for (int i = 0; i < 2000 && !e->stats().running; ++i) std::this_thread::sleep_for(std::chrono::milliseconds(1));
    REQUIRE(e->stats().running);
    REQUIRE_FALSE(e->submit(text_job("queued", 1, 200), counting).has_value());  // the one queue slot
    auto refused = e->submit(text_job("refused", 1, 5), counting);
    REQUIRE(refused.has_value());
    CHECK(refused->code == EngineErrc::overloaded);
    CHECK(e->stats().queued == 1);
    e.reset();  // stops the running job at its next token and fails the queued one
    CHECK(done_calls == 2);
    CHECK(shut == 2);
}

TEST_CASE("engine api: a missing or broken model file is a clear error") {
    EngineOptions o;
    o.model_path = "/nonexistent/model.gguf";
    auto e = Engine::load(o);
    REQUIRE_FALSE(e.ok());
    CHECK(e.error().find("/nonexistent/model.gguf") != std::string::npos);
}

TEST_CASE("utf8 stream: whole characters only, split anywhere - malformed bytes become U+FFFD") {
    const std::string text = "a\xC3\xA9" "b\xE2\x82\xAC" "c\xF0\x9F\x98\x80" "d";  // aébc€c😀d
    for (size_t cut = 0; cut <= text.size(); ++cut) {
        Utf8Stream s;
        std::string out = s.feed(text.substr(0, cut));
        out += s.feed(text.substr(cut));
        out += s.flush();
        CHECK(out == text);
    }
    Utf8Stream s;
    CHECK(s.feed("x\xE2\x82") == "x");  // held: the euro sign is incomplete
    CHECK(s.feed("\xAC") == "\xE2\x82\xAC");
    const std::string fffd = "\xEF\xBF\xBD";
    CHECK(s.feed("\x80") == fffd);                 // a lone continuation byte
    CHECK(s.feed("\xC0\xAF") == fffd + fffd);      // overlong '/'
    CHECK(s.feed("\xED\xA0\x80") == fffd + fffd + fffd);  // a UTF-16 surrogate
    CHECK(s.feed("\xF5") == fffd);                 // above U+10FFFF
    CHECK(s.feed("\xE2\x82" "A") == fffd + fffd + "A");  // cut short by an ASCII byte
    CHECK(s.feed("\xF0\x9F") == "");
    CHECK(s.flush() == fffd);  // the text ended inside a character
}
