#include "engine/model_maker.hpp"

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

// llama.cpp's llama_ftype for the file's dominant type (general.file_type).
uint32_t file_type_of(GgmlType t) {
    switch (t) {
        case GgmlType::F32: return 0;
        case GgmlType::F16: return 1;
        case GgmlType::Q4_0: return 2;
        case GgmlType::Q8_0: return 7;
        default: return 0;
    }
}

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
    for (uint64_t r = 0; r < rows; ++r) {
        const float* src = data + r * cols;
        uint8_t* dst = buf.data() + r * rb;
        switch (type) {
            case GgmlType::F32: std::memcpy(dst, src, rb); break;
            case GgmlType::F16: quantize_row_f16(src, reinterpret_cast<uint16_t*>(dst), int64_t(cols)); break;
            case GgmlType::Q8_0: quantize_row_q8_0_ref(src, reinterpret_cast<BlockQ8_0*>(dst), int64_t(cols)); break;
            case GgmlType::Q4_0: quantize_row_q4_0_ref(src, reinterpret_cast<BlockQ4_0*>(dst), int64_t(cols)); break;
            default: return Status::error("add_matrix: unsupported type " + std::string(ggml_type_name(uint32_t(type))));
        }
    }
    return w->add_tensor(name, uint32_t(type), {cols, rows}, buf.data(), buf.size());
}

void set_llama_hparams(GgufWriter* w, const std::string& name, uint32_t n_ctx, uint32_t n_embd, uint32_t n_ff, uint32_t n_layer,
                       uint32_t n_head, uint32_t n_head_kv, float rope_freq_base, float rms_eps, uint32_t file_type) {
    w->set_string("general.architecture", "llama");
    w->set_string("general.name", name);
    w->set_u32("general.file_type", file_type);
    w->set_u32("llama.context_length", n_ctx);
    w->set_u32("llama.embedding_length", n_embd);
    w->set_u32("llama.feed_forward_length", n_ff);
    w->set_u32("llama.block_count", n_layer);
    w->set_u32("llama.attention.head_count", n_head);
    w->set_u32("llama.attention.head_count_kv", n_head_kv);
    w->set_u32("llama.rope.dimension_count", n_embd / n_head);
    w->set_f32("llama.rope.freq_base", rope_freq_base);
    w->set_f32("llama.attention.layer_norm_rms_epsilon", rms_eps);
}

Status make_tiny_llama(const TinyLlamaShape& s, const GgufFile& vocab, GgufWriter* w) {
    const GgufKV* toks = nullptr;
    if (Status st = vocab.get_array("tokenizer.ggml.tokens", GgufType::STRING, &toks); !st.ok()) return st;
    const uint64_t V = toks->arr_n;
    if (s.n_embd == 0 || s.n_head == 0 || s.n_head_kv == 0 || s.n_layer == 0 || s.n_ff == 0 || s.n_ctx == 0 ||
        s.n_embd % s.n_head != 0 || s.n_head % s.n_head_kv != 0 || (s.n_embd / s.n_head) % 2 != 0)
        return Status::error("make_tiny_llama: inconsistent shape (n_embd % n_head, n_head % n_head_kv, even head dim)");
    if (s.type != GgmlType::F32 && s.type != GgmlType::F16 && s.type != GgmlType::Q8_0 && s.type != GgmlType::Q4_0)
        return Status::error("make_tiny_llama: type must be F32, F16, Q8_0 or Q4_0");
    if ((s.type == GgmlType::Q8_0 || s.type == GgmlType::Q4_0) && (s.n_embd % 32 || s.n_ff % 32))
        return Status::error("make_tiny_llama: Q8_0/Q4_0 need n_embd and n_ff to be multiples of 32");

    if (!(s.late_layer_scale >= 0.0f) || !std::isfinite(s.late_layer_scale))
        return Status::error("make_tiny_llama: late_layer_scale must be a finite number >= 0");
    const bool late = s.late_layer_scale != 1.0f && s.late_from < s.n_layer;

    set_llama_hparams(w, s.name, s.n_ctx, s.n_embd, s.n_ff, s.n_layer, s.n_head, s.n_head_kv, s.rope_freq_base,
                      s.rms_eps, file_type_of(s.type));
    w->set_u64("reprise.seed", s.seed);
    if (late) {  // only then: a default model's file stays byte for byte as before
        w->set_f32("reprise.late_layer_scale", s.late_layer_scale);
        w->set_u32("reprise.late_from", s.late_from);
    }
    if (Status st = copy_tokenizer_metadata(vocab, w); !st.ok()) return st;

    SplitMix64 rng{s.seed};
    const uint64_t E = s.n_embd, F = s.n_ff, KV = uint64_t(s.n_embd / s.n_head) * s.n_head_kv;
    std::vector<float> buf;
    // std = a / sqrt(3) for uniform [-a, a].
    // scale: the synthetic early-exit option; 1 leaves the values (and the file) as they were.
    auto matrix = [&](const std::string& name, uint64_t rows, uint64_t cols, float stddev, float scale = 1.0f) {
        buf.resize(rows * cols);
        const float a = stddev * std::sqrt(3.0f);
        for (auto& x : buf) x = a * rng.uniform_pm1();
        if (scale != 1.0f)
            for (auto& x : buf) x *= scale;
        return add_matrix(w, name, s.type, buf.data(), rows, cols);
    };
    auto norm = [&](const std::string& name, uint64_t n) {
        buf.resize(n);
        for (auto& x : buf) x = 1.0f + 0.1f * rng.uniform_pm1();
        return w->add_tensor(name, uint32_t(GgmlType::F32), {n}, buf.data(), n * sizeof(float));
    };
    // Embeddings with unit std per element: rows have RMS 1 like the normed stream.
    if (Status st = matrix("token_embd.weight", V, E, 1.0f); !st.ok()) return st;
    for (uint32_t l = 0; l < s.n_layer; ++l) {
        const std::string p = "blk." + std::to_string(l) + ".";
        const float se = 1.0f / std::sqrt(float(E)), sf = 1.0f / std::sqrt(float(F));
        const float out_scale = late && l >= s.late_from ? s.late_layer_scale : 1.0f;
        Status st;
        if ((st = norm(p + "attn_norm.weight", E)).ok() && (st = matrix(p + "attn_q.weight", E, E, se)).ok() &&
            (st = matrix(p + "attn_k.weight", KV, E, se)).ok() && (st = matrix(p + "attn_v.weight", KV, E, se)).ok() &&
            (st = matrix(p + "attn_output.weight", E, E, se, out_scale)).ok() && (st = norm(p + "ffn_norm.weight", E)).ok() &&
            (st = matrix(p + "ffn_gate.weight", F, E, se)).ok() && (st = matrix(p + "ffn_up.weight", F, E, se)).ok() &&
            (st = matrix(p + "ffn_down.weight", E, F, sf, out_scale)).ok()) {
        }
        if (!st.ok()) return st;
    }
    if (Status st = norm("output_norm.weight", E); !st.ok()) return st;
    if (!s.tie_output)
        if (Status st = matrix("output.weight", V, E, s.logit_scale / std::sqrt(float(E))); !st.ok()) return st;
    return Status();
}

}  // namespace reprise::engine
