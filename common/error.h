#pragma once
// Two error tiers (STYLE §4):
//  - RA_ASSERT: an invariant of our own code. Always compiled in; aborts with expression and file:line.
//  - ra::Error: bad input, config or peer behaviour. Carries a message a user can act on; only main()
//    turns it into an exit code.

#include <fmt/format.h>

#include <stdexcept>
#include <string>

namespace ra {

class Error : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

[[noreturn]] void assertion_failed(const char* expr, const char* file, int line, const std::string& msg);

template <typename... Args>
[[noreturn]] void raise(fmt::format_string<Args...> format, Args&&... args) {
  throw Error(fmt::format(format, std::forward<Args>(args)...));
}

}  // namespace ra

#define RA_ASSERT(cond)                                             \
  do {                                                              \
    if (!(cond)) ::ra::assertion_failed(#cond, __FILE__, __LINE__, ""); \
  } while (0)

#define RA_ASSERT_MSG(cond, ...)                                                          \
  do {                                                                                    \
    if (!(cond)) ::ra::assertion_failed(#cond, __FILE__, __LINE__, fmt::format(__VA_ARGS__)); \
  } while (0)

// Throws ra::Error with a formatted message when a caller-supplied condition does not hold.
#define RA_REQUIRE(cond, ...)           \
  do {                                  \
    if (!(cond)) ::ra::raise(__VA_ARGS__); \
  } while (0)
