// libFuzzer target: the body of a POST to `ra serve` (/v1/completions, /v1/chat/completions,
// /v1/contexts). Any body gives a request or an ApiError (a 400 naming the field), never a crash or an
// exception of another type.
#include <cstdint>
#include <string_view>

#include "gpu_worker/serve/api_error.h"
#include "gpu_worker/serve/openai_request.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string_view body(reinterpret_cast<const char*>(data), size);
  try {
    const nlohmann::json j = ra::serve::parse_json_body(body);
    try {
      (void)ra::serve::parse_completion_request(j);
    } catch (const ra::serve::ApiError&) {
    }
    try {
      (void)ra::serve::parse_chat_request(j);
    } catch (const ra::serve::ApiError&) {
    }
    (void)ra::serve::parse_context_request(j);
  } catch (const ra::serve::ApiError&) {
  }
  return 0;
}
