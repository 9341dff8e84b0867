#pragma once
// Token pieces -> valid UTF-8 text, as it streams. Byte-fallback (SentencePiece) and
// byte-level (BPE) vocabularies split a character over several tokens, and a model can
// emit any byte sequence at all. Whole characters are released as soon as their last
// byte arrives; a character still incomplete is held back; bytes that can never be
// part of a well-formed character (RFC 3629: no overlongs, no surrogates, nothing
// above U+10FFFF) become U+FFFD. So every piece handed on, and their concatenation, is
// valid UTF-8 (what a JSON string needs) and the text never depends on where the token
// boundaries fell.
#include <cstdint>
#include <string>
#include <string_view>

namespace reprise::engine {

class Utf8Stream {
public:
    // Appends bytes; returns the whole characters now complete.
    std::string feed(std::string_view bytes) {
        pending_.append(bytes);
        std::string out;
        size_t i = 0;
        while (i < pending_.size()) {
            const size_t len = well_formed_prefix(i);
            if (len == kIncomplete) break;  // wait for the rest of the character
            if (len == 0) {
                out += kReplacement;
                ++i;
            } else {
                out.append(pending_, i, len);
                i += len;
            }
        }
        pending_.erase(0, i);
        return out;
    }
    // End of the text: an incomplete character left over is one U+FFFD.
    std::string flush() {
        std::string out = pending_.empty() ? std::string() : std::string(kReplacement);
        pending_.clear();
        return out;
    }

private:
    static constexpr const char* kReplacement = "\xEF\xBF\xBD";
    static constexpr size_t kIncomplete = size_t(-1);

    // The length of the well-formed character at pending_[i], 0 if the bytes there can
    // never form one, kIncomplete if they may once more bytes come.
    size_t well_formed_prefix(size_t i) const {
        const auto byte = [&](size_t k) { return uint8_t(pending_[i + k]); };
        const uint8_t b0 = byte(0);
        if (b0 < 0x80) return 1;
        size_t len = 0;
        uint8_t lo = 0x80, hi = 0xBF;  // the allowed range of the second byte (Table 3-7 of Unicode)
        if (b0 >= 0xC2 && b0 <= 0xDF) len = 2;
        else if (b0 >= 0xE0 && b0 <= 0xEF) { len = 3; if (b0 == 0xE0) lo = 0xA0; if (b0 == 0xED) hi = 0x9F; }
        else if (b0 >= 0xF0 && b0 <= 0xF4) { len = 4; if (b0 == 0xF0) lo = 0x90; if (b0 == 0xF4) hi = 0x8F; }
        else return 0;
        for (size_t k = 1; k < len; ++k) {
            if (i + k >= pending_.size()) return kIncomplete;
            const uint8_t b = byte(k);
            if (k == 1 ? (b < lo || b > hi) : (b < 0x80 || b > 0xBF)) return 0;
        }
        return len;
    }

    std::string pending_;
};

}  // namespace reprise::engine
