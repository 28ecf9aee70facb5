#pragma once
// Whether this test binary is built with ThreadSanitizer, under GCC (__SANITIZE_THREAD__) or clang
// (__has_feature(thread_sanitizer)): a test whose bound is time or resident memory may relax or skip it.

namespace ra::test {

#if defined(__SANITIZE_THREAD__)
inline constexpr bool kThreadSanitizer = true;
#elif defined(__has_feature)
#if __has_feature(thread_sanitizer)
inline constexpr bool kThreadSanitizer = true;
#else
inline constexpr bool kThreadSanitizer = false;
#endif
#else
inline constexpr bool kThreadSanitizer = false;
#endif

}  // namespace ra::test
