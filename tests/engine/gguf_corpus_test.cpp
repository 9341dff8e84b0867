// The fuzz target's entry point over the committed seed corpus (gguf_corpus/, made by
// gguf_corpus_gen) and over the four real vocabularies in the shared fixtures (read in
// place): no crash, and each file gives the expected success or error.
#include <doctest/doctest.h>

#include <cstdint>
#include <fstream>
#include <sstream>

#include "engine/gguf.hpp"
#include "engine/gguf_check.hpp"
#include "fixtures.hpp"
#include "gguf_corpus_cases.hpp"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size);

using namespace reprise::engine;

namespace {

struct Expected {
    std::string name, expect;
};

std::vector<Expected> read_manifest() {
    const std::string text = engine_test::read_file(std::string(REPRISE_GGUF_CORPUS) + "/EXPECTED");
    std::vector<Expected> out;
    std::istringstream in(text);
    for (std::string line; std::getline(in, line);) {
        if (line.empty() || line[0] == '#') continue;
        const size_t tab = line.find('\t');
        REQUIRE_MESSAGE(tab != std::string::npos, "bad EXPECTED line: " << line);
        out.push_back({line.substr(0, tab), line.substr(tab + 1)});
    }
    return out;
}

void check_one(const std::string& label, const std::string& bytes, const std::string& expect) {
    CAPTURE(label);
    const auto* p = reinterpret_cast<const uint8_t*>(bytes.data());
    CHECK(LLVMFuzzerTestOneInput(p, bytes.size()) == 0);
    const Status s = gguf_check_buffer(p, bytes.size());
    if (expect.empty()) {
        CHECK_MESSAGE(s.ok(), s.message());
    } else {
        CHECK_MESSAGE(!s.ok(), "expected an error containing '" << expect << "'");
        CHECK_MESSAGE(s.message().find(expect) != std::string::npos, "error '" << s.message() << "' lacks '" << expect << "'");
    }
}

}  // namespace

TEST_CASE("gguf corpus: every seed gives its expected result") {
    const auto manifest = read_manifest();
    REQUIRE(manifest.size() >= 40);
    size_t ok = 0, err = 0;
    for (const auto& e : manifest) {
        check_one(e.name, engine_test::read_file(std::string(REPRISE_GGUF_CORPUS) + "/" + e.name), e.expect);
        (e.expect.empty() ? ok : err)++;
    }
    MESSAGE(manifest.size() << " corpus files: " << ok << " valid, " << err << " rejected");
}

TEST_CASE("gguf corpus: the committed files match gguf_corpus_cases.cpp") {
    const auto manifest = read_manifest();
    const auto cases = engine_test::gguf_corpus_cases();
    REQUIRE_MESSAGE(manifest.size() == cases.size(), "run gguf_corpus_gen tests/engine/gguf_corpus to regenerate");
    for (size_t i = 0; i < cases.size(); ++i) {
        CAPTURE(cases[i].name);
        CHECK(manifest[i].name == cases[i].name);
        CHECK(manifest[i].expect == cases[i].expect);
        const std::string bytes = engine_test::read_file(std::string(REPRISE_GGUF_CORPUS) + "/" + cases[i].name);
        CHECK_MESSAGE(bytes == std::string(cases[i].bytes.begin(), cases[i].bytes.end()),
                      "stale corpus file: run gguf_corpus_gen tests/engine/gguf_corpus");
    }
}

TEST_CASE("gguf corpus: the real vocabularies in the shared fixtures") {
    for (const char* name : {"ggml-vocab-llama-spm.gguf", "ggml-vocab-llama-bpe.gguf", "ggml-vocab-gpt-2.gguf", "ggml-vocab-qwen2.gguf"}) {
        const std::string path = engine_test::vocab_path(name);
        check_one(name, engine_test::read_file(path), "");
        // The mmap path agrees with the in-memory one.
        auto f = GgufFile::open(path);
        CHECK_MESSAGE(f.ok(), f.error());
    }
}
