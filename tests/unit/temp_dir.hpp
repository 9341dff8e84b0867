#pragma once
// A fresh directory under $TMPDIR (or /tmp) for a test, removed with everything in it:
// the cache tests open real RocksDB stores in it.
#include <doctest/doctest.h>

#include <cstdlib>
#include <filesystem>
#include <string>

namespace reprise::test {

class UnitTempDir {
 public:
  explicit UnitTempDir(const std::string& prefix = "reprise_test") {
    const char* base = std::getenv("TMPDIR");
    std::string tmpl = std::string(base && *base ? base : "/tmp") + "/" + prefix + ".XXXXXX";
    REQUIRE(mkdtemp(tmpl.data()) != nullptr);
    path_ = tmpl;
  }
  ~UnitTempDir() {
    std::error_code ec;
    std::filesystem::remove_all(path_, ec);
  }
  UnitTempDir(const UnitTempDir&) = delete;
  UnitTempDir& operator=(const UnitTempDir&) = delete;

  const std::filesystem::path& path() const { return path_; }
  // A store directory inside it ("db" unless named).
  std::string db(const std::string& name = "db") const { return (path_ / name).string(); }

 private:
  std::filesystem::path path_;
};

}  // namespace reprise::test
