#pragma once
// A tiny Llama-3-style chat checkpoint for the serve tests, written in a few milliseconds:
//   config.json + model.safetensors: tests/support/tiny_hf_model.h's model with a 261-entry vocabulary
//     and 4096 positions; the output rows of the special tokens are zero, so greedy decoding never
//     picks one (the other 256 logits are random, and their maximum is positive) and a stream runs as
//     long as it is asked to;
//   tokenizer.json: byte-level BPE with no merges (ids 0-255 are the bytes) and the added tokens
//     <|begin_of_text|> 256, <|end_of_text|> 257, <|start_header_id|> 258, <|end_header_id|> 259,
//     <|eot_id|> 260;
//   tokenizer_config.json: Meta-Llama-3-8B-Instruct's chat_template, bos <|begin_of_text|>, eos <|eot_id|>.

#include <nlohmann/json.hpp>

#include <cstdint>
#include <filesystem>

namespace ra::test {

inline constexpr int32_t kChatBos = 256, kChatEnd = 257, kChatStartHeader = 258, kChatEndHeader = 259,
                         kChatEot = 260;

// Meta-Llama-3-8B-Instruct's chat_template, and Llama-2-7b-chat-hf's.
extern const char* const kLlama3ChatTemplate;
extern const char* const kLlama2ChatTemplate;

nlohmann::json tiny_chat_tokenizer_json();
void write_tiny_chat_model(const std::filesystem::path& dir);

}  // namespace ra::test
