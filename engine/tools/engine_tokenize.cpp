// engine_tokenize: the engine's tokenizer, for comparisons with llama.cpp
// (tests/engine/llamacpp/). One vocabulary load, one request per input line, one output
// line per request:
//   engine_tokenize VOCAB_OR_MODEL.gguf < REQUESTS
//   "e[s][p] HEX"  encode the UTF-8 text given in hex (s: add_special, p: parse_special)
//                  -> the token ids, space-separated
//   "d[u] ID ..."  decode the ids (remove_special off as in node-llama-cpp's
//                  llama_detokenize; u: unparse_special) -> the bytes in hex
// Hex keeps newlines, tabs and invalid UTF-8 intact both ways.
#include <cstdio>
#include <iostream>
#include <sstream>
#include <string>
#include <vector>

#include "engine/gguf.hpp"
#include "engine/tokenizer.hpp"

using namespace reprise::engine;

static int hexval(char c) {
    if (c >= '0' && c <= '9') return c - '0';
    if (c >= 'a' && c <= 'f') return c - 'a' + 10;
    if (c >= 'A' && c <= 'F') return c - 'A' + 10;
    return -1;
}

int main(int argc, char** argv) {
    if (argc != 2) {
        std::fprintf(stderr, "usage: engine_tokenize VOCAB.gguf < lines of 'e[s][p] HEX' or 'd[u] ID ...'\n");
        return 2;
    }
    auto f = GgufFile::open(argv[1]);
    if (!f.ok()) { std::fprintf(stderr, "%s\n", f.error().c_str()); return 1; }
    auto tok = Tokenizer::from_gguf(**f);
    if (!tok.ok()) { std::fprintf(stderr, "%s\n", tok.error().c_str()); return 1; }
    std::string line;
    while (std::getline(std::cin, line)) {
        const size_t sp = line.find(' ');
        const std::string op = line.substr(0, sp);
        const std::string arg = sp == std::string::npos ? "" : line.substr(sp + 1);
        if (op.empty() || (op[0] != 'e' && op[0] != 'd') || op.find_first_not_of(op[0] == 'e' ? "esp" : "du", 1) != std::string::npos) {
            std::fprintf(stderr, "bad request '%s'\n", op.c_str());
            return 2;
        }
        std::string out;
        if (op[0] == 'e') {
            if (arg.size() % 2) { std::fprintf(stderr, "odd hex length\n"); return 2; }
            std::string text;
            for (size_t i = 0; i < arg.size(); i += 2) {
                const int hi = hexval(arg[i]), lo = hexval(arg[i + 1]);
                if (hi < 0 || lo < 0) { std::fprintf(stderr, "bad hex\n"); return 2; }
                text.push_back(char(hi * 16 + lo));
            }
            const std::vector<TokenId> ids =
                (*tok)->encode(text, op.find('s') != std::string::npos, op.find('p') != std::string::npos);
            for (size_t i = 0; i < ids.size(); ++i) {
                if (i) out += ' ';
                out += std::to_string(ids[i]);
            }
        } else {
            std::vector<TokenId> ids;
            std::istringstream ss(arg);
            for (long long id; ss >> id;) {
                if (id < 0 || size_t(id) >= (*tok)->n_vocab()) { std::fprintf(stderr, "token id %lld out of range\n", id); return 2; }
                ids.push_back(TokenId(id));
            }
            static const char* hex = "0123456789abcdef";
            for (unsigned char c : (*tok)->decode(ids, false, op.find('u') != std::string::npos)) {
                out.push_back(hex[c >> 4]);
                out.push_back(hex[c & 15]);
            }
        }
        std::printf("%s\n", out.c_str());
    }
    return 0;
}
