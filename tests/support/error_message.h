#pragma once
// The message of an exception a call throws, for tests that match error text. One helper for every
// test binary: "does it throw, and does the message name the problem".

#include <gtest/gtest.h>

#include <optional>
#include <string>

#include "common/error.h"

namespace ra::test {

// The what() of the E that f() throws; nullopt when f() returns. Other exceptions propagate.
template <typename E = Error, typename F>
std::optional<std::string> thrown_message(F&& f) {
  try {
    f();
  } catch (const E& e) {
    return std::string(e.what());
  }
  return std::nullopt;
}

// "" when f() returns: for checks that may pass, e.g. EXPECT_EQ(error_message(...), "").
template <typename F>
std::string error_message(F&& f) {
  return thrown_message(f).value_or("");
}

// f() must throw E: a test failure, and "", when it returns.
template <typename E = Error, typename F>
std::string error_of(F&& f) {
  std::optional<std::string> message = thrown_message<E>(f);
  if (!message) ADD_FAILURE() << "expected an exception, nothing was thrown";
  return message.value_or("");
}

}  // namespace ra::test
