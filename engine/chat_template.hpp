#pragma once
// Chat templates without Jinja, as llama.cpp's llama-chat.cpp does it: the GGUF's
// tokenizer.chat_template is matched against distinctive substrings to pick a family
// (llm_chat_detect_template), and the family is rendered by hand
// (llm_chat_apply_template) with the generation prompt appended. Supported families:
// chatml, llama3 and the four llama2 variants. A template llama.cpp recognises as some
// other family (phi3, gemma, mistral-v7, ...) or does not recognise at all is an error.
//
// Faithful to llama.cpp, not to the Jinja source: e.g. Qwen2's template adds a default
// system message when none is given; llama.cpp's chatml rendering (and ours) does not.
// No BOS is written: the tokenizer adds it (encode(..., add_special=true)), so llama3
// prompts start at the first <|start_header_id|> and llama2 ones at "[INST] ".
#include <string>
#include <string_view>
#include <vector>

#include "engine/gguf.hpp"
#include "engine/status.hpp"

namespace reprise::engine {

enum class ChatFamily {
    Chatml,
    Llama3,
    Llama2,          // "llama2": no <<SYS>> (a system message is prepended to the first turn)
    Llama2Sys,       // "llama2-sys": <<SYS>>\n...\n<</SYS>>\n\n
    Llama2SysBos,    // "llama2-sys-bos": later turns start with "<s>[INST] "
    Llama2SysStrip,  // "llama2-sys-strip": contents trimmed of whitespace
};

// llama.cpp's name for the family ("chatml", "llama3", "llama2", "llama2-sys", ...).
const char* chat_family_name(ChatFamily f);

// A family by its llama.cpp name (the names above); an error for any other name.
Result<ChatFamily> chat_family_from_name(std::string_view name);

// The family of a template: a family name is accepted as is (so a caller can force
// one); otherwise substrings are matched in llama.cpp's order. An empty template (the
// GGUF has none) is chatml, llama.cpp's default. Unsupported -> error.
Result<ChatFamily> detect_chat_family(std::string_view tmpl);

// The template's family, or the default: reads tokenizer.chat_template if present.
Result<ChatFamily> detect_chat_family(const GgufFile& f);

struct ChatMessage {
    std::string role;  // "system", "user" or "assistant"
    std::string content;
};

// Checks the conversation: at least one message; an optional leading system message,
// then user and assistant alternating, starting and ending with user (the generation
// prompt follows). Unknown roles are errors.
Status check_chat_messages(const std::vector<ChatMessage>& msgs);

// The prompt text for msgs in family f, with the generation prompt appended where the
// family has one (llama2's ends with " [/INST]" and needs none).
Result<std::string> apply_chat_template(ChatFamily f, const std::vector<ChatMessage>& msgs);

// detect_chat_family(tmpl) then apply_chat_template.
Result<std::string> apply_chat_template(std::string_view tmpl, const std::vector<ChatMessage>& msgs);

}  // namespace reprise::engine
