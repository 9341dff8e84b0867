#include "engine/model_maker.hpp"

#include <algorithm>
#include <cmath>
#include <cstring>
#include <map>
#include <set>
#include <string_view>
#include <utility>

#include "engine/unicode.hpp"

namespace reprise::engine {

namespace {

struct SplitMix64 {
    uint64_t s;
    uint64_t next() {
        uint64_t z = (s += 0x9E3779B97F4A7C15ull);
        z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
        z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
        return z ^ (z >> 31);
    }
    // Uniform in [-1, 1): 24 random bits, exactly representable.
    float uniform_pm1() { return float(int64_t(next() >> 40) - (1 << 23)) * (1.0f / float(1 << 23)); }
};

// The real tokenizer.chat_template strings of Qwen2.5-Instruct and of Qwen3 (the 2507
// thinking release's, whose generation prompt opens <think>), as their
// tokenizer_config.json files publish them. llama.cpp detects both as chatml.
constexpr std::string_view kQwen25Template = R"jinja({%- if tools %}
    {{- '<|im_start|>system\n' }}
    {%- if messages[0]['role'] == 'system' %}
        {{- messages[0]['content'] }}
    {%- else %}
        {{- 'You are Qwen, created by Alibaba Cloud. You are a helpful assistant.' }}
    {%- endif %}
    {{- "\n\n# Tools\n\nYou may call one or more functions to assist with the user query.\n\nYou are provided with function signatures within <tools></tools> XML tags:\n<tools>" }}
    {%- for tool in tools %}
        {{- "\n" }}
        {{- tool | tojson }}
    {%- endfor %}
    {{- "\n</tools>\n\nFor each function call, return a json object with function name and arguments within <tool_call></tool_call> XML tags:\n<tool_call>\n{\"name\": <function-name>, \"arguments\": <args-json-object>}\n</tool_call><|im_end|>\n" }}
{%- else %}
    {%- if messages[0]['role'] == 'system' %}
        {{- '<|im_start|>system\n' + messages[0]['content'] + '<|im_end|>\n' }}
    {%- else %}
        {{- '<|im_start|>system\nYou are Qwen, created by Alibaba Cloud. You are a helpful assistant.<|im_end|>\n' }}
    {%- endif %}
{%- endif %}
{%- for message in messages %}
    {%- if (message.role == "user") or (message.role == "system" and not loop.first) or (message.role == "assistant" and not message.tool_calls) %}
        {{- '<|im_start|>' + message.role + '\n' + message.content + '<|im_end|>' + '\n' }}
    {%- elif message.role == "assistant" %}
        {{- '<|im_start|>' + message.role }}
        {%- if message.content %}
            {{- '\n' + message.content }}
        {%- endif %}
        {%- for tool_call in message.tool_calls %}
            {%- if tool_call.function is defined %}
                {%- set tool_call = tool_call.function %}
            {%- endif %}
            {{- '\n<tool_call>\n{"name": "' }}
            {{- tool_call.name }}
            {{- '", "arguments": ' }}
            {{- tool_call.arguments | tojson }}
            {{- '}\n</tool_call>' }}
        {%- endfor %}
        {{- '<|im_end|>\n' }}
    {%- elif message.role == "tool" %}
        {%- if (loop.index0 == 0) or (messages[loop.index0 - 1].role != "tool") %}
            {{- '<|im_start|>user' }}
        {%- endif %}
        {{- '\n<tool_response>\n' }}
        {{- message.content }}
        {{- '\n</tool_response>' }}
        {%- if loop.last or (messages[loop.index0 + 1].role != "tool") %}
            {{- '<|im_end|>\n' }}
        {%- endif %}
    {%- endif %}
{%- endfor %}
{%- if add_generation_prompt %}
    {{- '<|im_start|>assistant\n' }}
{%- endif %}
)jinja";
constexpr std::string_view kQwen3Template = R"jinja({%- if tools %}
    {{- '<|im_start|>system\n' }}
    {%- if messages[0].role == 'system' %}
        {{- messages[0].content + '\n\n' }}
    {%- endif %}
    {{- "# Tools\n\nYou may call one or more functions to assist with the user query.\n\nYou are provided with function signatures within <tools></tools> XML tags:\n<tools>" }}
    {%- for tool in tools %}
        {{- "\n" }}
        {{- tool | tojson }}
    {%- endfor %}
    {{- "\n</tools>\n\nFor each function call, return a json object with function name and arguments within <tool_call></tool_call> XML tags:\n<tool_call>\n{\"name\": <function-name>, \"arguments\": <args-json-object>}\n</tool_call><|im_end|>\n" }}
{%- else %}
    {%- if messages[0].role == 'system' %}
        {{- '<|im_start|>system\n' + messages[0].content + '<|im_end|>\n' }}
    {%- endif %}
{%- endif %}
{%- set ns = namespace(multi_step_tool=true, last_query_index=messages|length - 1) %}
{%- for message in messages[::-1] %}
    {%- set index = (messages|length - 1) - loop.index0 %}
    {%- if ns.multi_step_tool and message.role == "user" and message.content is string and not(message.content.startswith('<tool_response>') and message.content.endswith('</tool_response>')) %}
        {%- set ns.multi_step_tool = false %}
        {%- set ns.last_query_index = index %}
    {%- endif %}
{%- endfor %}
{%- for message in messages %}
    {%- if message.content is string %}
        {%- set content = message.content %}
    {%- else %}
        {%- set content = '' %}
    {%- endif %}
    {%- if (message.role == "user") or (message.role == "system" and not loop.first) %}
        {{- '<|im_start|>' + message.role + '\n' + content + '<|im_end|>' + '\n' }}
    {%- elif message.role == "assistant" %}
        {%- set reasoning_content = '' %}
        {%- if message.reasoning_content is string %}
            {%- set reasoning_content = message.reasoning_content %}
        {%- else %}
            {%- if '</think>' in content %}
                {%- set reasoning_content = content.split('</think>')[0].rstrip('\n').split('<think>')[-1].lstrip('\n') %}
                {%- set content = content.split('</think>')[-1].lstrip('\n') %}
            {%- endif %}
        {%- endif %}
        {%- if loop.index0 > ns.last_query_index %}
            {%- if loop.last or (not loop.last and reasoning_content) %}
                {{- '<|im_start|>' + message.role + '\n<think>\n' + reasoning_content.strip('\n') + '\n</think>\n\n' + content.lstrip('\n') }}
            {%- else %}
                {{- '<|im_start|>' + message.role + '\n' + content }}
            {%- endif %}
        {%- else %}
            {{- '<|im_start|>' + message.role + '\n' + content }}
        {%- endif %}
        {%- if message.tool_calls %}
            {%- for tool_call in message.tool_calls %}
                {%- if (loop.first and content) or (not loop.first) %}
                    {{- '\n' }}
                {%- endif %}
                {%- if tool_call.function %}
                    {%- set tool_call = tool_call.function %}
                {%- endif %}
                {{- '<tool_call>\n{"name": "' }}
                {{- tool_call.name }}
                {{- '", "arguments": ' }}
                {%- if tool_call.arguments is string %}
                    {{- tool_call.arguments }}
                {%- else %}
                    {{- tool_call.arguments | tojson }}
                {%- endif %}
                {{- '}\n</tool_call>' }}
            {%- endfor %}
        {%- endif %}
        {{- '<|im_end|>\n' }}
    {%- elif message.role == "tool" %}
        {%- if loop.first or (messages[loop.index0 - 1].role != "tool") %}
            {{- '<|im_start|>user' }}
        {%- endif %}
        {{- '\n<tool_response>\n' }}
        {{- content }}
        {{- '\n</tool_response>' }}
        {%- if loop.last or (messages[loop.index0 + 1].role != "tool") %}
            {{- '<|im_end|>\n' }}
        {%- endif %}
    {%- endif %}
{%- endfor %}
{%- if add_generation_prompt %}
    {{- '<|im_start|>assistant\n<think>\n' }}
{%- endif %})jinja";

bool is_k_quant(GgmlType t) { return t == GgmlType::Q4_K || t == GgmlType::Q5_K || t == GgmlType::Q6_K; }

// llama.cpp's use_more_bits (llama-quant.cpp): which layers' attn_v / ffn_down get Q6_K
// in the _M mixes: the first and last eighth, and every third layer between.
bool use_more_bits(int i, int n) { return i < n / 8 || i >= 7 * n / 8 || (i - n / 8) % 3 == 2; }

// The built-in vocabulary's training text: common English words plus a few of this
// project's. Every word becomes a single token (with its leading space, as words
// mostly appear in running text); everything else still encodes, byte by byte at worst.
constexpr std::string_view kBuiltinWords =
    "the of and to in is you that it he was for on are as with his they at be this have from or one had by word "
    "but not what all were we when your can said there use an each which she do how their if will up other about "
    "out many then them these so some her would make like him into time has look two more write go see number no "
    "way could people my than first water been call who its now find long down day did get come made may part "
    "over new sound take only little work know place year live me back give most very after thing our just name "
    "good sentence man think say great where help through much before line right too mean old any same tell "
    "follow came want show also around form three small set put end does another well large must big even such "
    "because turn here why ask went men read need land different home us move try kind hand picture again change "
    "off play spell air away animal house point page letter mother answer found study still learn should world "
    "hello hi yes thanks please question model assistant user system chat text token cache proxy engine request "
    "reply story today";

// The standard ChatML template (as in Hugging Face's chat-template docs; Qwen2's minus
// its default system message): what llama.cpp and chat_template.cpp detect as "chatml".
constexpr std::string_view kChatmlTemplate =
    "{% for message in messages %}{{'<|im_start|>' + message['role'] + '\n' + message['content'] + '<|im_end|>' + "
    "'\n'}}{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}";

// A byte-level BPE trainer, small enough to run on every call (a few ms): each word is
// a sequence of byte symbols; repeatedly merge the pair found in the most words (ties:
// the lexicographically first, so the result is the same everywhere) until no word has
// two symbols left. Training applies merges in the order the tokenizer ranks them, so
// each listed word encodes to the single token it was merged into.
std::vector<std::pair<std::string, std::string>> train_builtin_merges() {
    std::vector<std::vector<std::string>> words;
    for (size_t pos = 0; pos < kBuiltinWords.size();) {
        size_t end = kBuiltinWords.find(' ', pos);
        if (end == std::string_view::npos) end = kBuiltinWords.size();
        std::vector<std::string> w{byte_to_unicode(' ')};
        for (char c : kBuiltinWords.substr(pos, end - pos)) w.push_back(byte_to_unicode(uint8_t(c)));
        words.push_back(std::move(w));
        pos = end + 1;
    }
    std::vector<std::pair<std::string, std::string>> merges;
    std::map<std::pair<std::string, std::string>, int> count;
    while (!words.empty()) {
        count.clear();
        for (const auto& w : words)
            for (size_t i = 0; i + 1 < w.size(); ++i) ++count[{w[i], w[i + 1]}];
        auto best = count.begin();
        for (auto it = count.begin(); it != count.end(); ++it)
            if (it->second > best->second) best = it;
        const auto [l, r] = best->first;
        merges.emplace_back(l, r);
        for (auto& w : words) {
            size_t o = 0;
            for (size_t i = 0; i < w.size(); ++i) {
                if (i + 1 < w.size() && w[i] == l && w[i + 1] == r) w[o++] = l + r, ++i;
                else if (o++ != i) w[o - 1] = std::move(w[i]);  // a self-move would empty it
            }
            w.resize(o);
        }
        std::erase_if(words, [](const auto& w) { return w.size() < 2; });
    }
    return merges;
}

}  // namespace

void set_builtin_vocab(GgufWriter* w) {
    constexpr int32_t kNormal = 1, kControl = 3;  // llama.cpp's token types
    std::vector<std::string> tokens, merges;
    for (int b = 0; b < 256; ++b) tokens.push_back(byte_to_unicode(uint8_t(b)));
    std::set<std::string> seen(tokens.begin(), tokens.end());
    for (const auto& [l, r] : train_builtin_merges()) {
        merges.push_back(l + " " + r);
        // Two merges can spell the same token ("ab"+"c", "a"+"bc"): one id for it.
        if (seen.insert(l + r).second) tokens.push_back(l + r);
    }
    std::vector<int32_t> types(tokens.size(), kNormal);
    const uint32_t eot = uint32_t(tokens.size());
    for (const char* sp : {"<|endoftext|>", "<|im_start|>", "<|im_end|>"}) {
        tokens.push_back(sp);
        types.push_back(kControl);
    }
    w->set_string("tokenizer.ggml.model", "gpt2");
    w->set_string("tokenizer.ggml.pre", "gpt-2");
    w->set_array_strings("tokenizer.ggml.tokens", tokens);
    (void)w->set_array("tokenizer.ggml.token_type", GgufType::INT32, types.data(), types.size());  // ok: a scalar type
    w->set_array_strings("tokenizer.ggml.merges", merges);
    w->set_u32("tokenizer.ggml.bos_token_id", eot);
    w->set_u32("tokenizer.ggml.eos_token_id", eot + 2);  // <|im_end|>
    w->set_u32("tokenizer.ggml.padding_token_id", eot);
    w->set_bool("tokenizer.ggml.add_bos_token", false);
    w->set_string("tokenizer.chat_template", kChatmlTemplate);
}

std::vector<uint8_t> builtin_vocab_gguf() {
    GgufWriter w;
    set_builtin_vocab(&w);
    return w.to_bytes();
}

Status copy_tokenizer_metadata(const GgufFile& vocab, GgufWriter* w) {
    for (const GgufKV& kv : vocab.kvs()) {
        if (kv.key.substr(0, 10) != "tokenizer.") continue;
        switch (kv.type) {
            case GgufType::STRING: w->set_string(kv.key, kv.str); break;
            case GgufType::BOOL: w->set_bool(kv.key, kv.data[0] != 0); break;
            case GgufType::FLOAT32: w->set_f32(kv.key, float(kv.float_at(0))); break;
            case GgufType::FLOAT64: w->set_f64(kv.key, kv.float_at(0)); break;
            case GgufType::UINT8: w->set_u8(kv.key, uint8_t(kv.int_at(0))); break;
            case GgufType::INT8: w->set_i8(kv.key, int8_t(kv.int_at(0))); break;
            case GgufType::UINT16: w->set_u16(kv.key, uint16_t(kv.int_at(0))); break;
            case GgufType::INT16: w->set_i16(kv.key, int16_t(kv.int_at(0))); break;
            case GgufType::UINT32: w->set_u32(kv.key, uint32_t(kv.int_at(0))); break;
            case GgufType::INT32: w->set_i32(kv.key, int32_t(kv.int_at(0))); break;
            case GgufType::UINT64: w->set_u64(kv.key, uint64_t(kv.int_at(0))); break;
            case GgufType::INT64: w->set_i64(kv.key, kv.int_at(0)); break;
            case GgufType::ARRAY:
                if (kv.arr_type == GgufType::STRING) {
                    std::vector<std::string> v(kv.strs.begin(), kv.strs.end());
                    w->set_array_strings(kv.key, v);
                } else if (kv.arr_type == GgufType::ARRAY) {
                    return Status::error("vocab: nested array '" + std::string(kv.key) + "' is not supported");
                } else if (Status s = w->set_array(kv.key, kv.arr_type, kv.data, kv.arr_n); !s.ok()) {
                    return s;
                }
                break;
        }
    }
    return Status();
}

Status add_matrix(GgufWriter* w, const std::string& name, GgmlType type, const float* data, uint64_t rows, uint64_t cols) {
    uint64_t rb = 0;
    if (!ggml_row_size(uint32_t(type), cols, &rb)) return Status::error("add_matrix: " + name + ": bad row length for the type");
    std::vector<uint8_t> buf(rb * rows);
    for (uint64_t r = 0; r < rows; ++r)
        if (!quantize_row(uint32_t(type), data + r * cols, buf.data() + r * rb, int64_t(cols)))
            return Status::error("add_matrix: unsupported type " + std::string(ggml_type_name(uint32_t(type))));
    return w->add_tensor(name, uint32_t(type), {cols, rows}, buf.data(), buf.size());
}

namespace {

// {arch}.* hyper-parameters and general.*; head_dim is written as key/value_length
// only when given (qwen3), so a llama file keeps exactly its old keys.
void set_arch_hparams(GgufWriter* w, ModelArch arch, const std::string& name, uint32_t n_ctx, uint32_t n_embd, uint32_t n_ff,
                      uint32_t n_layer, uint32_t n_head, uint32_t n_head_kv, uint32_t head_dim, float rope_freq_base,
                      float rms_eps, uint32_t file_type) {
    const std::string a = model_arch_name(arch);
    w->set_string("general.architecture", a);
    w->set_string("general.name", name);
    w->set_u32("general.file_type", file_type);
    w->set_u32(a + ".context_length", n_ctx);
    w->set_u32(a + ".embedding_length", n_embd);
    w->set_u32(a + ".feed_forward_length", n_ff);
    w->set_u32(a + ".block_count", n_layer);
    w->set_u32(a + ".attention.head_count", n_head);
    w->set_u32(a + ".attention.head_count_kv", n_head_kv);
    if (head_dim) {
        w->set_u32(a + ".attention.key_length", head_dim);
        w->set_u32(a + ".attention.value_length", head_dim);
    }
    w->set_u32(a + ".rope.dimension_count", head_dim ? head_dim : n_embd / n_head);
    w->set_f32(a + ".rope.freq_base", rope_freq_base);
    w->set_f32(a + ".attention.layer_norm_rms_epsilon", rms_eps);
}

}  // namespace

void set_llama_hparams(GgufWriter* w, const std::string& name, uint32_t n_ctx, uint32_t n_embd, uint32_t n_ff, uint32_t n_layer,
                       uint32_t n_head, uint32_t n_head_kv, float rope_freq_base, float rms_eps, uint32_t file_type) {
    set_arch_hparams(w, ModelArch::Llama, name, n_ctx, n_embd, n_ff, n_layer, n_head, n_head_kv, 0, rope_freq_base, rms_eps,
                     file_type);
}

std::string_view qwen_chat_template(ModelArch arch) {
    switch (arch) {
        case ModelArch::Qwen2: return kQwen25Template;
        case ModelArch::Qwen3: return kQwen3Template;
        default: return {};
    }
}

uint32_t model_file_type(const TinyLlamaShape& s) {
    if (s.mix == QuantMix::Q4_K_M) return 15;
    if (s.mix == QuantMix::Q5_K_M) return 17;
    switch (s.type) {
        case GgmlType::F32: return 0;
        case GgmlType::F16: return 1;
        case GgmlType::Q4_0: return 2;
        case GgmlType::Q4_1: return 3;
        case GgmlType::Q8_0: return 7;
        case GgmlType::Q5_0: return 8;
        case GgmlType::Q5_1: return 9;
        case GgmlType::Q4_K: return 14;
        case GgmlType::Q5_K: return 16;
        case GgmlType::Q6_K: return 18;
        case GgmlType::BF16: return 32;
        default: return 0;
    }
}

GgmlType model_tensor_type(const TinyLlamaShape& s, const std::string& name, int layer, uint64_t cols) {
    GgmlType t = s.type;
    if (s.mix != QuantMix::Pure) {
        const GgmlType base = s.mix == QuantMix::Q4_K_M ? GgmlType::Q4_K : GgmlType::Q5_K;
        const int n = int(s.n_layer);
        auto is = [&](const char* suffix) { return name.size() > std::strlen(suffix) && name.ends_with(suffix); };
        if (name == "output.weight" || (s.tie_output && name == "token_embd.weight"))
            return cols % kQK_K != 0 ? GgmlType::Q8_0 : GgmlType::Q6_K;  // no fallback needed
        t = (is(".attn_v.weight") || is(".ffn_down.weight")) && use_more_bits(layer, n) ? GgmlType::Q6_K : base;
    }
    if (is_k_quant(t) && cols % kQK_K != 0) {
        t = t == GgmlType::Q4_K ? GgmlType::Q5_0 : t == GgmlType::Q5_K ? GgmlType::Q5_1 : GgmlType::Q8_0;
        if (cols % 32 != 0) t = GgmlType::F16;
    }
    return t;
}

Status make_tiny_llama(const TinyLlamaShape& s, const GgufFile& vocab, GgufWriter* w) {
    const GgufKV* toks = nullptr;
    if (Status st = vocab.get_array("tokenizer.ggml.tokens", GgufType::STRING, &toks); !st.ok()) return st;
    const uint64_t V = toks->arr_n;
    if (s.head_dim != 0 && s.arch != ModelArch::Qwen3)
        return Status::error("make_tiny_llama: a head size other than n_embd / n_head is for qwen3 only");
    if (s.n_embd == 0 || s.n_head == 0 || s.n_head_kv == 0 || s.n_layer == 0 || s.n_ff == 0 || s.n_ctx == 0 ||
        (s.head_dim == 0 && s.n_embd % s.n_head != 0) || s.n_head % s.n_head_kv != 0 ||
        (s.head_dim ? s.head_dim : s.n_embd / s.n_head) % 2 != 0)
        return Status::error("make_tiny_llama: inconsistent shape (n_embd % n_head, n_head % n_head_kv, even head dim)");
    const uint32_t head_dim = s.head_dim ? s.head_dim : s.n_embd / s.n_head;
    const GgmlType t = s.type;
    const bool legacy = t == GgmlType::Q8_0 || t == GgmlType::Q4_0 || t == GgmlType::Q4_1 || t == GgmlType::Q5_0 || t == GgmlType::Q5_1;
    if (s.mix == QuantMix::Pure && !legacy && !is_k_quant(t) && t != GgmlType::F32 && t != GgmlType::F16 && t != GgmlType::BF16)
        return Status::error("make_tiny_llama: type must be F32, F16, BF16, Q8_0, Q4_0, Q4_1, Q5_0, Q5_1, Q4_K, Q5_K or Q6_K");
    // K-quants fall back to 32-element types on other rows (model_tensor_type); the
    // 32-element types themselves have nothing to fall back to.
    if ((s.mix != QuantMix::Pure || legacy || is_k_quant(t)) && (s.n_embd % 32 || s.n_ff % 32 || (head_dim * s.n_head) % 32))
        return Status::error("make_tiny_llama: quantized types need n_embd, n_ff and n_head * head_dim to be multiples of 32");

    if (!(s.late_layer_scale >= 0.0f) || !std::isfinite(s.late_layer_scale))
        return Status::error("make_tiny_llama: late_layer_scale must be a finite number >= 0");
    const bool late = s.late_layer_scale != 1.0f && s.late_from < s.n_layer;

    const float rope_base = s.rope_freq_base > 0.0f ? s.rope_freq_base : s.arch == ModelArch::Llama ? 10000.0f : 1e6f;
    set_arch_hparams(w, s.arch, s.name, s.n_ctx, s.n_embd, s.n_ff, s.n_layer, s.n_head, s.n_head_kv,
                     s.arch == ModelArch::Qwen3 ? head_dim : 0, rope_base, s.rms_eps, model_file_type(s));
    w->set_u64("reprise.seed", s.seed);
    if (late) {  // only then: a default model's file stays byte for byte as before
        w->set_f32("reprise.late_layer_scale", s.late_layer_scale);
        w->set_u32("reprise.late_from", s.late_from);
    }
    if (Status st = copy_tokenizer_metadata(vocab, w); !st.ok()) return st;
    // A qwen file talks like one when its vocabulary can spell the template's markers.
    if (s.arch != ModelArch::Llama && std::find(toks->strs.begin(), toks->strs.end(), "<|im_start|>") != toks->strs.end())
        w->set_string("tokenizer.chat_template", qwen_chat_template(s.arch));

    SplitMix64 rng{s.seed};
    const uint64_t E = s.n_embd, F = s.n_ff, HD = head_dim, EQ = HD * s.n_head, KV = HD * s.n_head_kv;
    std::vector<float> buf;
    // std = a / sqrt(3) for uniform [-a, a].
    // scale: the synthetic early-exit option; 1 leaves the values (and the file) as they were.
    int layer = -1;  // of the matrices being written, for the K-quant mixes
    auto matrix = [&](const std::string& name, uint64_t rows, uint64_t cols, float stddev, float scale = 1.0f) {
        buf.resize(rows * cols);
        const float a = stddev * std::sqrt(3.0f);
        for (auto& x : buf) x = a * rng.uniform_pm1();
        if (scale != 1.0f)
            for (auto& x : buf) x *= scale;
        return add_matrix(w, name, model_tensor_type(s, name, layer, cols), buf.data(), rows, cols);
    };
    auto vector = [&](const std::string& name, uint64_t n, float center, float spread) {
        buf.resize(n);
        for (auto& x : buf) x = center + spread * rng.uniform_pm1();
        return w->add_tensor(name, uint32_t(GgmlType::F32), {n}, buf.data(), n * sizeof(float));
    };
    auto norm = [&](const std::string& name, uint64_t n) { return vector(name, n, 1.0f, 0.1f); };
    // Embeddings with unit std per element: rows have RMS 1 like the normed stream.
    if (Status st = matrix("token_embd.weight", V, E, 1.0f); !st.ok()) return st;
    for (uint32_t l = 0; l < s.n_layer; ++l) {
        layer = int(l);
        const std::string p = "blk." + std::to_string(l) + ".";
        const float se = 1.0f / std::sqrt(float(E)), sf = 1.0f / std::sqrt(float(F)), sq = 1.0f / std::sqrt(float(EQ));
        const float out_scale = late && l >= s.late_from ? s.late_layer_scale : 1.0f;
        Status st;
        if ((st = norm(p + "attn_norm.weight", E)).ok() && (st = matrix(p + "attn_q.weight", EQ, E, se)).ok() &&
            (st = matrix(p + "attn_k.weight", KV, E, se)).ok() && (st = matrix(p + "attn_v.weight", KV, E, se)).ok() &&
            (st = matrix(p + "attn_output.weight", E, EQ, sq, out_scale)).ok() && (st = norm(p + "ffn_norm.weight", E)).ok() &&
            (st = matrix(p + "ffn_gate.weight", F, E, se)).ok() && (st = matrix(p + "ffn_up.weight", F, E, se)).ok() &&
            (st = matrix(p + "ffn_down.weight", E, F, sf, out_scale)).ok()) {
        }
        if (!st.ok()) return st;
        // The architectures' extra tensors, drawn after the layer's shared ones. Biases
        // of std 0.3 (uniform +-0.52) move Q, K and V (unit scale) visibly.
        if (s.arch == ModelArch::Qwen2) {
            const float b = 0.3f * std::sqrt(3.0f);
            if (!(st = vector(p + "attn_q.bias", EQ, 0.0f, b)).ok() || !(st = vector(p + "attn_k.bias", KV, 0.0f, b)).ok() ||
                !(st = vector(p + "attn_v.bias", KV, 0.0f, b)).ok())
                return st;
        } else if (s.arch == ModelArch::Qwen3) {
            if (!(st = norm(p + "attn_q_norm.weight", HD)).ok() || !(st = norm(p + "attn_k_norm.weight", HD)).ok()) return st;
        }
    }
    layer = -1;
    if (Status st = norm("output_norm.weight", E); !st.ok()) return st;
    if (!s.tie_output)
        if (Status st = matrix("output.weight", V, E, s.logit_scale / std::sqrt(float(E))); !st.ok()) return st;
    return Status();
}

}  // namespace reprise::engine
