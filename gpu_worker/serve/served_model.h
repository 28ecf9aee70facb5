#pragma once
// A model as the server serves it: its engine, its tokenizer and chat template, and the rules that turn
// a request's text into prompt tokens (the same as `ra generate`'s).

#include <cstdint>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "gpu_worker/model/model_config.h"
#include "gpu_worker/model/tokenizer.h"
#include "gpu_worker/serve/chat_template.h"
#include "gpu_worker/serve/engine.h"

namespace ra::serve {

struct ServedModel {
  std::string name;  // the id of /v1/models, which requests must name
  std::unique_ptr<Engine> engine;
  std::unique_ptr<Tokenizer> tokenizer;
  ChatSupport chat;                       // the checkpoint's chat layout, or why there is none
  int32_t bos_id = -1;                    // starts every completion prompt when >= 0
  std::vector<int32_t> stop_tokens;       // end any generation: the model's and the tokenizer's EOS (and BOS)
  std::vector<int32_t> chat_stop_tokens;  // stop_tokens and the chat layout's end-of-turn token
};

// Sets bos_id and the stop tokens from `config` and the tokenizer's own files (TokenizerSpecials),
// and chat_stop_tokens from `chat`; drops the chat layout (saying why) when its special tokens are not
// single tokens of the tokenizer. Needs tokenizer and chat set.
void derive_token_rules(ServedModel& model, const ModelConfig& config);

// A completion prompt: BOS (when the model has one and its tokenizer does not turn it off), then the text.
std::vector<int32_t> encode_prompt(const ServedModel& model, std::string_view text);

}  // namespace ra::serve
