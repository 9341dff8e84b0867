#include "engine/chat_template.hpp"

#include <array>
#include <utility>

namespace reprise::engine {

namespace {

constexpr std::array<std::pair<const char*, ChatFamily>, 6> kFamilies = {{
    {"chatml", ChatFamily::Chatml},
    {"llama3", ChatFamily::Llama3},
    {"llama2", ChatFamily::Llama2},
    {"llama2-sys", ChatFamily::Llama2Sys},
    {"llama2-sys-bos", ChatFamily::Llama2SysBos},
    {"llama2-sys-strip", ChatFamily::Llama2SysStrip},
}};

// llama.cpp's names for the families it knows and we do not render.
constexpr std::array<const char*, 36> kOtherNames = {
    "mistral-v1", "mistral-v3", "mistral-v3-tekken", "mistral-v7", "mistral-v7-tekken", "phi3", "phi4",
    "falcon3", "zephyr", "monarch", "gemma", "orion", "openchat", "vicuna", "vicuna-orca", "deepseek",
    "deepseek2", "deepseek3", "command-r", "chatglm3", "chatglm4", "glmedge", "minicpm", "exaone3",
    "exaone4", "rwkv-world", "granite", "gigachat", "megrez", "yandex", "bailing", "llama4", "smolvlm",
    "hunyuan-moe", "hunyuan-dense", "kimi-k2",
};

bool is_space(char c) { return c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '\v' || c == '\f'; }

// llama.cpp's trim(): ASCII whitespace at both ends.
std::string_view trim(std::string_view s) {
    size_t b = 0, e = s.size();
    while (b < e && is_space(s[b])) ++b;
    while (e > b && is_space(s[e - 1])) --e;
    return s.substr(b, e - b);
}

Status unsupported(std::string_view family) {
    return Status::error("chat template: the " + std::string(family) +
                         " family is not supported (supported: chatml, llama3, llama2 and its variants)");
}

}  // namespace

const char* chat_family_name(ChatFamily f) {
    for (const auto& [name, fam] : kFamilies)
        if (fam == f) return name;
    return "?";
}

Result<ChatFamily> chat_family_from_name(std::string_view name) {
    for (const auto& [n, fam] : kFamilies)
        if (name == n) return fam;
    return Status::error("chat template: unknown family name '" + std::string(name) + "'");
}

Result<ChatFamily> detect_chat_family(std::string_view tmpl) {
    if (tmpl.empty()) return ChatFamily::Chatml;  // llama.cpp's default
    for (const auto& [n, fam] : kFamilies)
        if (tmpl == n) return fam;
    for (const char* n : kOtherNames)
        if (tmpl == n) return unsupported(n);

    auto has = [&](std::string_view s) { return tmpl.find(s) != std::string_view::npos; };
    // The order follows llm_chat_detect_template, so a template that llama.cpp gives to
    // another family before reaching ours is refused rather than misrendered.
    if (has("<|im_start|>")) {
        if (has("<|im_sep|>")) return unsupported("phi4");
        if (has("<end_of_utterance>")) return unsupported("smolvlm");
        return ChatFamily::Chatml;
    }
    if (tmpl.substr(0, 7) == "mistral" || has("[INST]")) {
        if (has("[SYSTEM_PROMPT]")) return unsupported("mistral-v7");
        if (has("' [INST] ' + system_message") || has("[AVAILABLE_TOOLS]")) return unsupported("mistral-v1/v3");
        if (has("content.strip()")) return ChatFamily::Llama2SysStrip;
        if (has("bos_token + '[INST]")) return ChatFamily::Llama2SysBos;
        if (has("<<SYS>>")) return ChatFamily::Llama2Sys;
        return ChatFamily::Llama2;
    }
    // Families llama.cpp checks before llama3 (their markers could co-occur).
    if (has("<|assistant|>") && has("<|end|>")) return unsupported("phi3");
    if (has("[gMASK]<sop>")) return unsupported("chatglm4");
    if (has("<|assistant|>") && has("<|user|>")) return unsupported(has("</s>") ? "falcon3" : "glmedge");
    if (has("<|{{ item['role'] }}|>") && has("<|begin_of_image|>")) return unsupported("glmedge");
    if (has("<|user|>") && has("<|endoftext|>")) return unsupported("zephyr");
    if (has("bos_token + message['role']")) return unsupported("monarch");
    if (has("<start_of_turn>")) return unsupported("gemma");
    if (has("'\\n\\nAssistant: ' + eos_token")) return unsupported("orion");
    if (has("GPT4 Correct ")) return unsupported("openchat");
    if (has("USER: ") && has("ASSISTANT: ")) return unsupported("vicuna");
    if (has("### Instruction:") && has("<|EOT|>")) return unsupported("deepseek");
    if (has("<|START_OF_TURN_TOKEN|>") && has("<|USER_TOKEN|>")) return unsupported("command-r");
    if (has("<|start_header_id|>") && has("<|end_header_id|>")) return ChatFamily::Llama3;
    return Status::error("chat template: unrecognised template (not chatml, llama3 or llama2)");
}

Result<ChatFamily> detect_chat_family(const GgufFile& f) {
    const GgufKV* kv = f.find("tokenizer.chat_template");
    if (!kv) return ChatFamily::Chatml;
    std::string_view tmpl;
    if (Status s = f.get_string("tokenizer.chat_template", &tmpl); !s) return s;
    return detect_chat_family(tmpl);
}

Status check_chat_messages(const std::vector<ChatMessage>& msgs) {
    if (msgs.empty()) return Status::error("chat: no messages");
    size_t i = 0;
    if (msgs[0].role == "system") i = 1;
    if (i == msgs.size()) return Status::error("chat: no user message after the system message");
    for (size_t k = i; k < msgs.size(); ++k) {
        const std::string& r = msgs[k].role;
        if (r != "system" && r != "user" && r != "assistant")
            return Status::error("chat: message " + std::to_string(k) + " has unknown role '" + r + "'");
        const char* want = (k - i) % 2 == 0 ? "user" : "assistant";
        if (r != want)
            return Status::error("chat: message " + std::to_string(k) + " is '" + r + "', expected '" + want +
                                 "' (an optional system message first, then user and assistant alternating)");
    }
    if (msgs.back().role != "user") return Status::error("chat: the last message must be from the user");
    return {};
}

Result<std::string> apply_chat_template(ChatFamily f, const std::vector<ChatMessage>& msgs) {
    if (Status s = check_chat_messages(msgs); !s) return s;
    std::string out;
    switch (f) {
    case ChatFamily::Chatml:
        for (const auto& m : msgs) out += "<|im_start|>" + m.role + "\n" + m.content + "<|im_end|>\n";
        out += "<|im_start|>assistant\n";
        break;
    case ChatFamily::Llama3:
        for (const auto& m : msgs) {
            out += "<|start_header_id|>" + m.role + "<|end_header_id|>\n\n";
            out += trim(m.content);
            out += "<|eot_id|>";
        }
        out += "<|start_header_id|>assistant<|end_header_id|>\n\n";
        break;
    case ChatFamily::Llama2:
    case ChatFamily::Llama2Sys:
    case ChatFamily::Llama2SysBos:
    case ChatFamily::Llama2SysStrip: {
        const bool sys = f != ChatFamily::Llama2;
        const bool bos_inside = f == ChatFamily::Llama2SysBos;
        const bool strip = f == ChatFamily::Llama2SysStrip;
        bool inside_turn = true;  // the first "[INST] " follows the tokenizer's BOS
        out += "[INST] ";
        for (const auto& m : msgs) {
            std::string_view content = strip ? trim(m.content) : std::string_view(m.content);
            if (!inside_turn) {
                inside_turn = true;
                out += bos_inside ? "<s>[INST] " : "[INST] ";
            }
            if (m.role == "system") {
                if (sys) {
                    out += "<<SYS>>\n";
                    out += content;
                    out += "\n<</SYS>>\n\n";
                } else {
                    out += content;
                    out += "\n";
                }
            } else if (m.role == "user") {
                out += content;
                out += " [/INST]";
            } else {
                out += content;
                out += "</s>";
                inside_turn = false;
            }
        }
        break;
    }
    }
    return out;
}

Result<std::string> apply_chat_template(std::string_view tmpl, const std::vector<ChatMessage>& msgs) {
    auto f = detect_chat_family(tmpl);
    if (!f) return f.status();
    return apply_chat_template(*f, msgs);
}

}  // namespace reprise::engine
