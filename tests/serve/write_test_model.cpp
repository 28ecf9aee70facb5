// ra-serve-test-model DIR: writes the tiny Llama-3-style chat checkpoint of tiny_chat_model.h to DIR
// (for the serve integration tests, which start the real server on it).

#include <cstdio>

#include "common/error.h"
#include "tests/serve/tiny_chat_model.h"

int main(int argc, char** argv) {
  if (argc != 2) {
    std::fprintf(stderr, "usage: %s DIR\n", argv[0]);
    return 2;
  }
  try {
    ra::test::write_tiny_chat_model(argv[1]);
  } catch (const ra::Error& e) {
    std::fprintf(stderr, "error: %s\n", e.what());
    return 1;
  }
  return 0;
}
