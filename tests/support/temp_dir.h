#pragma once
// An RAII temporary directory for tests: created with mkdtemp under $TMPDIR (or /tmp) and removed,
// with everything in it, when the object goes out of scope.

#include <filesystem>
#include <string>

namespace ra::test {

class TempDir {
 public:
  // Throws ra::Error when the directory cannot be created.
  explicit TempDir(const std::string& prefix = "ra-test");
  ~TempDir();
  TempDir(const TempDir&) = delete;
  TempDir& operator=(const TempDir&) = delete;

  const std::filesystem::path& path() const { return path_; }

 private:
  std::filesystem::path path_;
};

}  // namespace ra::test
