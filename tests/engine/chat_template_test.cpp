// Chat templates: family detection from real tokenizer.chat_template strings and the
// rendering of each family, checked against the strings llama.cpp's
// llm_chat_apply_template produces for the same conversation (its test-chat-template
// conversation: note the padded assistant reply, trimmed by llama3 and llama2-sys-strip).
#include <doctest/doctest.h>

#include "engine/chat_template.hpp"
#include "engine/gguf.hpp"
#include "fixtures.hpp"

using namespace reprise::engine;
using engine_test::vocab_path;

namespace {

const std::vector<ChatMessage> kConversation = {
    {"system", "You are a helpful assistant"},
    {"user", "Hello"},
    {"assistant", "Hi there"},
    {"user", "Who are you"},
    {"assistant", "   I am an assistant   "},
    {"user", "Another question"},
};

const std::vector<ChatMessage> kSystemUser = {
    {"system", "You are a helpful assistant"},
    {"user", "Hello"},
};

// meta-llama/Meta-Llama-3-8B-Instruct's tokenizer.chat_template.
const char* kLlama3Template =
    "{% set loop_messages = messages %}{% for message in loop_messages %}{% set content = '<|start_header_id|>' + "
    "message['role'] + '<|end_header_id|>\n\n'+ message['content'] | trim + '<|eot_id|>' %}{% if loop.index0 == 0 "
    "%}{% set content = bos_token + content %}{% endif %}{{ content }}{% endfor %}{% if add_generation_prompt %}{{ "
    "'<|start_header_id|>assistant<|end_header_id|>\n\n' }}{% endif %}";

// meta-llama/Llama-2-7b-chat-hf's tokenizer.chat_template.
const char* kLlama2ChatTemplate =
    "{% if messages[0]['role'] == 'system' %}{% set loop_messages = messages[1:] %}{% set system_message = "
    "messages[0]['content'] %}{% else %}{% set loop_messages = messages %}{% set system_message = false %}{% endif "
    "%}{% for message in loop_messages %}{% if (message['role'] == 'user') != (loop.index0 % 2 == 0) %}{{ "
    "raise_exception('Conversation roles must alternate user/assistant/user/assistant/...') }}{% endif %}{% if "
    "loop.index0 == 0 and system_message != false %}{% set content = '<<SYS>>\\n' + system_message + "
    "'\\n<</SYS>>\\n\\n' + message['content'] %}{% else %}{% set content = message['content'] %}{% endif %}{% if "
    "message['role'] == 'user' %}{{ bos_token + '[INST] ' + content.strip() + ' [/INST]' }}{% elif message['role'] "
    "== 'assistant' %}{{ ' '  + content.strip() + ' ' + eos_token }}{% endif %}{% endfor %}";

// A llama2 template without <<SYS>> (mistralai/Mistral-7B-Instruct-v0.1 style, no system).
const char* kLlama2PlainTemplate =
    "{{ bos_token }}{% for message in messages %}{% if (message['role'] == 'user') != (loop.index0 % 2 == 0) %}{{ "
    "raise_exception('Conversation roles must alternate user/assistant/user/assistant/...') }}{% endif %}{% if "
    "message['role'] == 'user' %}{{ '[INST] ' + message['content'] + ' [/INST]' }}{% elif message['role'] == "
    "'assistant' %}{{ message['content'] + eos_token}}{% else %}{{ raise_exception('Only user and assistant roles "
    "are supported!') }}{% endif %}{% endfor %}";

// google/gemma-7b-it's template (a family llama.cpp knows and we do not render).
const char* kGemmaTemplate =
    "{{ bos_token }}{% if messages[0]['role'] == 'system' %}{{ raise_exception('System role not supported') }}{% "
    "endif %}{% for message in messages %}{% if (message['role'] == 'assistant') %}{% set role = 'model' %}{% else "
    "%}{% set role = message['role'] %}{% endif %}{{ '<start_of_turn>' + role + '\n' + message['content'] | trim + "
    "'<end_of_turn>\n' }}{% endfor %}{% if add_generation_prompt %}{{'<start_of_turn>model\n'}}{% endif %}";

std::string render(std::string_view tmpl, const std::vector<ChatMessage>& msgs) {
    auto r = apply_chat_template(tmpl, msgs);
    REQUIRE_MESSAGE(r.ok(), r.error());
    return *r;
}

ChatFamily family(std::string_view tmpl) {
    auto r = detect_chat_family(tmpl);
    REQUIRE_MESSAGE(r.ok(), r.error());
    return *r;
}

}  // namespace

TEST_CASE("chat template: chatml renders as llama.cpp does") {
    CHECK(render("chatml", kSystemUser) ==
          "<|im_start|>system\nYou are a helpful assistant<|im_end|>\n"
          "<|im_start|>user\nHello<|im_end|>\n"
          "<|im_start|>assistant\n");
    CHECK(render("chatml", kConversation) ==
          "<|im_start|>system\nYou are a helpful assistant<|im_end|>\n<|im_start|>user\nHello<|im_end|>\n"
          "<|im_start|>assistant\nHi there<|im_end|>\n<|im_start|>user\nWho are you<|im_end|>\n"
          "<|im_start|>assistant\n   I am an assistant   <|im_end|>\n<|im_start|>user\nAnother question<|im_end|>\n"
          "<|im_start|>assistant\n");
    CHECK(render("chatml", {{"user", "Hi"}}) == "<|im_start|>user\nHi<|im_end|>\n<|im_start|>assistant\n");
}

TEST_CASE("chat template: llama3 renders as llama.cpp does (no BOS: the tokenizer adds it)") {
    CHECK(render("llama3", kSystemUser) ==
          "<|start_header_id|>system<|end_header_id|>\n\nYou are a helpful assistant<|eot_id|>"
          "<|start_header_id|>user<|end_header_id|>\n\nHello<|eot_id|>"
          "<|start_header_id|>assistant<|end_header_id|>\n\n");
    CHECK(render(kLlama3Template, kConversation) ==
          "<|start_header_id|>system<|end_header_id|>\n\nYou are a helpful assistant<|eot_id|>"
          "<|start_header_id|>user<|end_header_id|>\n\nHello<|eot_id|>"
          "<|start_header_id|>assistant<|end_header_id|>\n\nHi there<|eot_id|>"
          "<|start_header_id|>user<|end_header_id|>\n\nWho are you<|eot_id|>"
          "<|start_header_id|>assistant<|end_header_id|>\n\nI am an assistant<|eot_id|>"
          "<|start_header_id|>user<|end_header_id|>\n\nAnother question<|eot_id|>"
          "<|start_header_id|>assistant<|end_header_id|>\n\n");
}

TEST_CASE("chat template: llama2 variants render as llama.cpp does") {
    CHECK(render("llama2", kSystemUser) == "[INST] You are a helpful assistant\nHello [/INST]");
    CHECK(render("llama2", kConversation) ==
          "[INST] You are a helpful assistant\nHello [/INST]Hi there</s>[INST] Who are you [/INST]"
          "   I am an assistant   </s>[INST] Another question [/INST]");
    CHECK(render("llama2-sys", kSystemUser) == "[INST] <<SYS>>\nYou are a helpful assistant\n<</SYS>>\n\nHello [/INST]");
    CHECK(render("llama2-sys", kConversation) ==
          "[INST] <<SYS>>\nYou are a helpful assistant\n<</SYS>>\n\nHello [/INST]Hi there</s>"
          "[INST] Who are you [/INST]   I am an assistant   </s>[INST] Another question [/INST]");
    CHECK(render("llama2-sys-bos", kConversation) ==
          "[INST] <<SYS>>\nYou are a helpful assistant\n<</SYS>>\n\nHello [/INST]Hi there</s>"
          "<s>[INST] Who are you [/INST]   I am an assistant   </s><s>[INST] Another question [/INST]");
    // The real Llama-2-chat template strips contents (and puts BOS inside history, but
    // llama.cpp checks strip first).
    CHECK(render(kLlama2ChatTemplate, kConversation) ==
          "[INST] <<SYS>>\nYou are a helpful assistant\n<</SYS>>\n\nHello [/INST]Hi there</s>"
          "[INST] Who are you [/INST]I am an assistant</s>[INST] Another question [/INST]");
    CHECK(render(kLlama2PlainTemplate, {{"user", "Hello"}}) == "[INST] Hello [/INST]");
}

TEST_CASE("chat template: detection from real templates") {
    CHECK(family(kLlama3Template) == ChatFamily::Llama3);
    CHECK(family(kLlama2ChatTemplate) == ChatFamily::Llama2SysStrip);
    CHECK(family(kLlama2PlainTemplate) == ChatFamily::Llama2);
    CHECK(family("{{ '[INST] <<SYS>>\\n' + system_message + '\\n<</SYS>>\\n\\n' }}") == ChatFamily::Llama2Sys);
    CHECK(family("{{ bos_token + '[INST] <<SYS>>' }}") == ChatFamily::Llama2SysBos);
    // No template in the GGUF: chatml, llama.cpp's default.
    CHECK(family("") == ChatFamily::Chatml);

    // Qwen2's template, read from the shared vocab fixture (a chatml template).
    auto f = GgufFile::open(vocab_path("ggml-vocab-qwen2.gguf"));
    REQUIRE_MESSAGE(f.ok(), f.error());
    std::string_view qwen;
    REQUIRE((*f)->get_string("tokenizer.chat_template", &qwen).ok());
    CHECK(qwen.find("<|im_start|>") != std::string_view::npos);
    CHECK(family(qwen) == ChatFamily::Chatml);
    auto fam = detect_chat_family(**f);
    REQUIRE_MESSAGE(fam.ok(), fam.error());
    CHECK(*fam == ChatFamily::Chatml);
    // Rendered as llama.cpp's chatml: no default system message added.
    CHECK(render(qwen, {{"user", "Hello"}}) == "<|im_start|>user\nHello<|im_end|>\n<|im_start|>assistant\n");

    // A vocabulary GGUF without a template falls back to chatml.
    auto spm = GgufFile::open(vocab_path("ggml-vocab-llama-spm.gguf"));
    REQUIRE_MESSAGE(spm.ok(), spm.error());
    REQUIRE((*spm)->find("tokenizer.chat_template") == nullptr);
    auto spm_fam = detect_chat_family(**spm);
    REQUIRE(spm_fam.ok());
    CHECK(*spm_fam == ChatFamily::Chatml);
}

TEST_CASE("chat template: forcing a family by name") {
    for (const char* name : {"chatml", "llama3", "llama2", "llama2-sys", "llama2-sys-bos", "llama2-sys-strip"}) {
        auto f = chat_family_from_name(name);
        REQUIRE_MESSAGE(f.ok(), f.error());
        CHECK(std::string(chat_family_name(*f)) == name);
        CHECK(family(name) == *f);
    }
    CHECK_FALSE(chat_family_from_name("llama-3").ok());
    CHECK_FALSE(chat_family_from_name("gemma").ok());
}

TEST_CASE("chat template: unsupported templates are errors") {
    auto g = detect_chat_family(kGemmaTemplate);
    REQUIRE_FALSE(g.ok());
    CHECK(g.error().find("gemma") != std::string::npos);
    CHECK_FALSE(detect_chat_family("gemma").ok());  // llama.cpp's name, not ours
    // Phi-4 uses <|im_start|> but is not chatml; mistral v7 uses [INST] but is not llama2.
    CHECK_FALSE(detect_chat_family("<|im_start|>{{ role }}<|im_sep|>").ok());
    CHECK_FALSE(detect_chat_family("[SYSTEM_PROMPT]{{ system }}[/SYSTEM_PROMPT][INST]").ok());
    CHECK_FALSE(detect_chat_family("{{ messages }} plain text, no markers").ok());
    CHECK_FALSE(apply_chat_template(kGemmaTemplate, kSystemUser).ok());
}

TEST_CASE("chat template: bad role order and unknown roles are errors") {
    const ChatFamily f = ChatFamily::Chatml;
    CHECK_FALSE(apply_chat_template(f, {}).ok());
    CHECK_FALSE(apply_chat_template(f, {{"system", "s"}}).ok());
    CHECK_FALSE(apply_chat_template(f, {{"assistant", "a"}}).ok());
    CHECK_FALSE(apply_chat_template(f, {{"user", "u"}, {"user", "u"}}).ok());
    CHECK_FALSE(apply_chat_template(f, {{"user", "u"}, {"assistant", "a"}}).ok());  // ends with the assistant
    CHECK_FALSE(apply_chat_template(f, {{"user", "u"}, {"system", "s"}, {"user", "u"}}).ok());
    CHECK_FALSE(apply_chat_template(f, {{"tool", "t"}, {"user", "u"}}).ok());
    auto r = apply_chat_template(f, {{"user", "u"}, {"robot", "r"}});
    REQUIRE_FALSE(r.ok());
    CHECK(r.error().find("robot") != std::string::npos);
    CHECK(apply_chat_template(f, {{"user", "u"}, {"assistant", "a"}, {"user", "v"}}).ok());
}
