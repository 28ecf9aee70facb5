#include "tests/support/temp_dir.h"

#include <stdlib.h>

#include <cerrno>
#include <cstdlib>
#include <cstring>
#include <system_error>
#include <vector>

#include "common/error.h"

namespace ra::test {

TempDir::TempDir(const std::string& prefix) {
  const char* env = std::getenv("TMPDIR");
  const std::filesystem::path base = (env != nullptr && *env != '\0') ? env : "/tmp";
  std::string pattern = (base / (prefix + "-XXXXXX")).string();
  std::vector<char> buffer(pattern.begin(), pattern.end());
  buffer.push_back('\0');
  RA_REQUIRE(::mkdtemp(buffer.data()) != nullptr, "cannot create a temporary directory {}: {}", pattern,
             std::strerror(errno));
  path_ = buffer.data();
}

TempDir::~TempDir() {
  std::error_code ignored;  // a destructor must not throw; a leftover temp dir is harmless
  std::filesystem::remove_all(path_, ignored);
}

}  // namespace ra::test
