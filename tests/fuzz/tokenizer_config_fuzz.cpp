// libFuzzer target: a checkpoint's tokenizer_config.json as `ra serve` reads it for chat: the chat
// template detected, then a short conversation rendered with it. Any input gives a ChatSupport (and a
// rendered prompt, or an ApiError for a conversation the layout cannot write) or a ra::Error.
#include <cstdint>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "common/error.h"
#include "gpu_worker/serve/chat_template.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const nlohmann::json j = nlohmann::json::parse(data, data + size, nullptr, /*allow_exceptions=*/false);
  if (j.is_discarded()) return 0;  // not JSON: the loader's parse error, not this target's concern
  try {
    const ra::serve::ChatSupport support = ra::serve::detect_chat_template(j, "tokenizer_config.json");
    if (support.chat) {
      const std::vector<ra::serve::ChatMessage> messages = {{"system", "be brief"}, {"user", "hi"}, {"assistant", "hello"},
                                                     {"user", "and?"}};
      (void)ra::serve::render_chat(*support.chat, messages, true);
    }
  } catch (const ra::Error&) {
  }
  return 0;
}
