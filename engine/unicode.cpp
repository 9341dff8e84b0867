#include "engine/unicode.hpp"

#include <array>

namespace reprise::engine {

uint8_t cpt_flags(uint32_t cp) {
    uint8_t ws = 0;
    // White_Space from the UCD's PropList.txt, which is what regex \s means here.
    if ((cp >= 0x09 && cp <= 0x0D) || cp == 0x20 || cp == 0x85 || cp == 0xA0 || cp == 0x1680 ||
        (cp >= 0x2000 && cp <= 0x200A) || cp == 0x2028 || cp == 0x2029 || cp == 0x202F || cp == 0x205F || cp == 0x3000)
        ws = kCptWhitespace;
    size_t lo = 0, hi = unicode_data::kRangeCount;
    while (lo < hi) {
        const size_t mid = (lo + hi) / 2;
        const CptRange& r = unicode_data::kRanges[mid];
        if (cp < r.first) hi = mid;
        else if (cp > r.last) lo = mid + 1;
        else return r.flags | ws;
    }
    return ws;
}

size_t utf8_len(uint8_t lead) {
    static const uint8_t lookup[] = {1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 2, 2, 3, 4};
    return lookup[lead >> 4];
}

uint32_t utf8_decode(std::string_view s, size_t pos, size_t* len) {
    const auto b = [&](size_t i) { return static_cast<uint8_t>(s[pos + i]); };
    const size_t left = s.size() - pos;
    const uint8_t c = b(0);
    *len = 1;
    if (c < 0x80) return c;
    auto cont = [&](size_t i) { return i < left && (b(i) & 0xC0) == 0x80; };
    if ((c & 0xE0) == 0xC0 && cont(1)) {
        const uint32_t cp = ((c & 0x1Fu) << 6) | (b(1) & 0x3Fu);
        if (cp >= 0x80) { *len = 2; return cp; }
    } else if ((c & 0xF0) == 0xE0 && cont(1) && cont(2)) {
        const uint32_t cp = ((c & 0x0Fu) << 12) | ((b(1) & 0x3Fu) << 6) | (b(2) & 0x3Fu);
        if (cp >= 0x800 && (cp < 0xD800 || cp > 0xDFFF)) { *len = 3; return cp; }
    } else if ((c & 0xF8) == 0xF0 && cont(1) && cont(2) && cont(3)) {
        const uint32_t cp = ((c & 0x07u) << 18) | ((b(1) & 0x3Fu) << 12) | ((b(2) & 0x3Fu) << 6) | (b(3) & 0x3Fu);
        if (cp >= 0x10000 && cp <= 0x10FFFF) { *len = 4; return cp; }
    }
    return 0xFFFD;
}

void utf8_append(std::string& out, uint32_t cp) {
    char b[4];
    size_t n;
    if (cp < 0x80) {
        b[0] = static_cast<char>(cp), n = 1;
    } else if (cp < 0x800) {
        b[0] = static_cast<char>(0xC0 | (cp >> 6)), b[1] = static_cast<char>(0x80 | (cp & 0x3F)), n = 2;
    } else if (cp < 0x10000) {
        b[0] = static_cast<char>(0xE0 | (cp >> 12)), b[1] = static_cast<char>(0x80 | ((cp >> 6) & 0x3F));
        b[2] = static_cast<char>(0x80 | (cp & 0x3F)), n = 3;
    } else {
        b[0] = static_cast<char>(0xF0 | (cp >> 18)), b[1] = static_cast<char>(0x80 | ((cp >> 12) & 0x3F));
        b[2] = static_cast<char>(0x80 | ((cp >> 6) & 0x3F)), b[3] = static_cast<char>(0x80 | (cp & 0x3F)), n = 4;
    }
    out.append(b, n);
}

namespace {
// GPT-2's bytes_to_unicode(): printable Latin-1 bytes map to themselves, the other 68
// bytes to U+0100.. in byte order.
struct ByteMap {
    std::array<std::string, 256> utf8;
    std::array<int16_t, 256 + 68> byte_of;  // inverse, for code points below 324
    ByteMap() {
        uint32_t n = 0;
        for (int b = 0; b < 256; ++b) {
            const bool keep = (b >= 33 && b <= 126) || (b >= 161 && b <= 172) || (b >= 174 && b <= 255);
            const uint32_t cp = keep ? static_cast<uint32_t>(b) : 256 + n++;
            utf8_append(utf8[b], cp);
            byte_of[cp] = static_cast<int16_t>(b);
        }
        for (int c = 0; c < 256; ++c)  // code points below 256 that are not kept map nowhere
            if (!((c >= 33 && c <= 126) || (c >= 161 && c <= 172) || (c >= 174 && c <= 255))) byte_of[c] = -1;
    }
};
const ByteMap& byte_map() {
    static const ByteMap m;
    return m;
}
}  // namespace

const std::string& byte_to_unicode(uint8_t b) { return byte_map().utf8[b]; }

int unicode_to_byte(uint32_t cp) {
    return cp < 256 + 68 ? byte_map().byte_of[cp] : -1;
}

namespace {

constexpr uint32_t kOutOfRange = 0xFFFFFFFF;

// Code points of the text with their byte offsets, so pieces can be cut from the
// original bytes (an invalid byte stays itself in the piece, as one U+FFFD here).
struct Cpts {
    std::vector<uint32_t> cp;
    std::vector<size_t> off;  // off[i] = byte offset of cp[i]; off[n] = text size
    std::vector<uint8_t> fl;
    explicit Cpts(std::string_view s) {
        for (size_t pos = 0; pos < s.size();) {
            size_t len;
            const uint32_t c = utf8_decode(s, pos, &len);
            cp.push_back(c);
            off.push_back(pos);
            fl.push_back(cpt_flags(c));
            pos += len;
        }
        off.push_back(s.size());
    }
    size_t size() const { return cp.size(); }
    uint32_t at(size_t i) const { return i < cp.size() ? cp[i] : kOutOfRange; }
    // Past the end: no class at all (not even "other"), as llama.cpp's scanners treat it.
    uint8_t flags(size_t i) const { return i < fl.size() ? fl[i] : 0; }
    bool in(size_t i) const { return i < cp.size(); }
};

bool is_l(uint8_t f) { return f & kCptLetter; }
bool is_n(uint8_t f) { return f & kCptNumber; }
bool is_s(uint8_t f) { return f & kCptWhitespace; }

uint32_t ascii_lower(uint32_t c) { return (c >= 'A' && c <= 'Z') ? c + 32 : c; }

struct Splitter {
    const Cpts& c;
    std::string_view text;
    std::vector<std::string_view> out;
    size_t prev = 0;
    size_t add(size_t end) {  // emit [prev, end); returns its length in code points
        const size_t len = end - prev;
        if (len > 0) out.push_back(text.substr(c.off[prev], c.off[end] - c.off[prev]));
        prev = end;
        return len;
    }
};

// A contraction at pos ('s 't 're 've 'm 'll 'd), optionally case-insensitive; returns
// its length in code points or 0.
size_t contraction(const Cpts& c, size_t pos, bool icase) {
    if (c.at(pos) != '\'' || !c.in(pos + 1)) return 0;
    auto low = [&](size_t i) { return icase ? ascii_lower(c.at(i)) : c.at(i); };
    const uint32_t n1 = low(pos + 1);
    if (n1 == 's' || n1 == 't' || n1 == 'm' || n1 == 'd') return 2;
    if (!c.in(pos + 2)) return 0;
    const uint32_t n2 = low(pos + 2);
    if ((n1 == 'r' && n2 == 'e') || (n1 == 'v' && n2 == 'e') || (n1 == 'l' && n2 == 'l')) return 3;
    return 0;
}

std::vector<std::string_view> split_gpt2(std::string_view text) {
    const Cpts c(text);
    Splitter sp{c, text, {}};
    for (size_t pos = 0; pos < c.size();) {
        const uint32_t cpt = c.at(pos);
        if (size_t n = contraction(c, pos, false)) {
            pos += sp.add(pos + n);
            continue;
        }
        uint8_t f2 = cpt == ' ' ? c.flags(pos + 1) : c.flags(pos);
        if (is_l(f2)) {  // ' ?\p{L}+'
            pos += (cpt == ' ');
            while (is_l(c.flags(pos))) ++pos;
            sp.add(pos);
            continue;
        }
        if (is_n(f2)) {  // ' ?\p{N}+'
            pos += (cpt == ' ');
            while (is_n(c.flags(pos))) ++pos;
            sp.add(pos);
            continue;
        }
        const size_t q = pos + (cpt == ' ');
        if (c.in(q) && !(is_s(f2) || is_l(f2) || is_n(f2))) {  // ' ?[^\s\p{L}\p{N}]+'
            pos = q;
            while (c.in(pos) && !(is_s(c.flags(pos)) || is_l(c.flags(pos)) || is_n(c.flags(pos)))) ++pos;
            sp.add(pos);
            continue;
        }
        size_t nws = 0;
        while (is_s(c.flags(pos + nws))) ++nws;
        if (nws > 1 && c.in(pos + nws)) {  // '\s+(?!\S)': leave the last space to the next word
            pos += nws - 1;
            sp.add(pos);
            continue;
        }
        if (nws > 0) {  // '\s+'
            pos += nws;
            sp.add(pos);
            continue;
        }
        sp.add(++pos);  // no alternative matched: the code point alone
    }
    return std::move(sp.out);
}

std::vector<std::string_view> split_llama3(std::string_view text, size_t max_digits) {
    const Cpts c(text);
    Splitter sp{c, text, {}};
    for (size_t pos = 0; pos < c.size();) {
        const uint32_t cpt = c.at(pos);
        const uint8_t f = c.flags(pos);
        if (size_t n = contraction(c, pos, true)) {  // (?i:'s|'t|'re|'ve|'m|'ll|'d)
            pos += sp.add(pos + n);
            continue;
        }
        // [^\r\n\p{L}\p{N}]?\p{L}+
        if (!(cpt == '\r' || cpt == '\n' || is_n(f)) && (is_l(f) || is_l(c.flags(pos + 1)))) {
            ++pos;
            while (is_l(c.flags(pos))) ++pos;
            sp.add(pos);
            continue;
        }
        if (is_n(f)) {  // \p{N}{1,max_digits}
            size_t ini = pos;
            while (is_n(c.flags(pos))) {
                if (++pos - ini >= max_digits) {
                    sp.add(pos);
                    ini = pos;
                }
            }
            sp.add(pos);
            continue;
        }
        // ' ?[^\s\p{L}\p{N}]+[\r\n]*'
        const size_t q = pos + (cpt == ' ');
        const uint8_t f2 = c.flags(q);
        if (c.in(q) && !(is_s(f2) || is_l(f2) || is_n(f2))) {
            pos = q;
            while (c.in(pos) && !(is_s(c.flags(pos)) || is_l(c.flags(pos)) || is_n(c.flags(pos)))) ++pos;
            while (c.at(pos) == '\r' || c.at(pos) == '\n') ++pos;
            sp.add(pos);
            continue;
        }
        size_t nws = 0, last_rn_end = 0;
        while (is_s(c.flags(pos + nws))) {
            const uint32_t w = c.at(pos + nws);
            if (w == '\r' || w == '\n') last_rn_end = pos + nws + 1;
            ++nws;
        }
        if (last_rn_end > 0) {  // \s*[\r\n]+
            pos = last_rn_end;
            sp.add(pos);
            continue;
        }
        if (nws > 1 && c.in(pos + nws)) {  // \s+(?!\S)
            pos += nws - 1;
            sp.add(pos);
            continue;
        }
        if (nws > 0) {  // \s+
            pos += nws;
            sp.add(pos);
            continue;
        }
        sp.add(++pos);
    }
    return std::move(sp.out);
}

}  // namespace

std::vector<std::string_view> pretokenize(PreTokenizer kind, std::string_view text) {
    switch (kind) {
        case PreTokenizer::Gpt2: return split_gpt2(text);
        case PreTokenizer::Llama3: return split_llama3(text, 3);
        case PreTokenizer::Qwen2: return split_llama3(text, 1);
    }
    return {};
}

}  // namespace reprise::engine
