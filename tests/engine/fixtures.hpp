#pragma once
// Paths of the shared fixtures (../shared/fixtures, never copied into the tree) and of
// this directory's GGUF seed corpus. A missing fixture fails the test that needs it.
#include <doctest/doctest.h>

#include <filesystem>
#include <fstream>
#include <sstream>
#include <string>

namespace engine_test {

inline std::string fixtures_dir() { return REPRISE_FIXTURES; }
inline std::string vocab_path(const std::string& name) { return fixtures_dir() + "/vocab/" + name; }

inline std::string read_file(const std::string& path) {
    std::ifstream in(path, std::ios::binary);
    REQUIRE_MESSAGE(in.good(), "cannot read " << path << " (the shared fixtures are expected at " << fixtures_dir() << ")");
    std::ostringstream ss;
    ss << in.rdbuf();
    return ss.str();
}

}  // namespace engine_test
