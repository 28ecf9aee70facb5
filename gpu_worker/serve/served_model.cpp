#include "gpu_worker/serve/served_model.h"

#include <algorithm>

#include "common/error.h"

namespace ra::serve {
namespace {

void add_unique(std::vector<int32_t>& ids, int32_t id) {
  if (id >= 0 && std::find(ids.begin(), ids.end(), id) == ids.end()) ids.push_back(id);
}

}  // namespace

void derive_token_rules(ServedModel& m, const ModelConfig& config) {
  RA_ASSERT(m.tokenizer != nullptr);
  const TokenizerSpecials sp = m.tokenizer->specials();
  const int32_t bos = sp.bos_id >= 0 ? sp.bos_id : config.bos_token_id;
  m.bos_id = sp.add_bos.value_or(true) ? bos : -1;
  // As gpu_worker/decode/generator.cpp: the model's EOS and BOS, and every EOS the tokenizer names.
  m.stop_tokens.clear();
  add_unique(m.stop_tokens, config.eos_token_id);
  add_unique(m.stop_tokens, config.bos_token_id);
  for (const int32_t id : sp.eos_ids) add_unique(m.stop_tokens, id);
  m.chat_stop_tokens = m.stop_tokens;
  if (!m.chat.chat) return;
  // The layout's special tokens must be tokens of this tokenizer, or the prompts would spell them out.
  const ChatTemplate& t = *m.chat.chat;
  std::vector<std::string> specials = {t.bos_token, t.end_of_turn};
  if (t.layout != ChatLayout::kLlama2) specials.insert(specials.end(), {"<|start_header_id|>", "<|end_header_id|>"});
  for (const std::string& special : specials) {
    if (m.tokenizer->encode(special).size() != 1) {
      m.chat.unavailable = fmt::format("the chat template's token {} is not a token of the tokenizer ({})", special,
                                       m.tokenizer->name());
      m.chat.chat.reset();
      return;
    }
  }
  add_unique(m.chat_stop_tokens, m.tokenizer->encode(t.end_of_turn)[0]);
}

std::vector<int32_t> encode_prompt(const ServedModel& m, std::string_view text) {
  std::vector<int32_t> tokens;
  if (m.bos_id >= 0) tokens.push_back(m.bos_id);
  const std::vector<int32_t> body = m.tokenizer->encode(text);
  tokens.insert(tokens.end(), body.begin(), body.end());
  return tokens;
}

}  // namespace ra::serve
