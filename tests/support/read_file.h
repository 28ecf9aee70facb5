#pragma once
// A whole file's bytes, for tests that compare files with what they expect ("" when it cannot be read).

#include <filesystem>
#include <fstream>
#include <iterator>
#include <string>

namespace ra::test {

inline std::string read_file(const std::filesystem::path& path) {
  std::ifstream in(path, std::ios::binary);
  return {std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>()};
}

}  // namespace ra::test
