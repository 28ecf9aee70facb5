#include "tests/serve/tiny_chat_model.h"

#include <string>
#include <utility>
#include <vector>

#include "gpu_worker/model/bpe_model.h"
#include "gpu_worker/model/utf8.h"
#include "tests/support/tiny_hf_model.h"

namespace ra::test {
namespace {

using json = nlohmann::json;

json added(int32_t id, const std::string& content) {
  return {{"id", id}, {"content", content}, {"single_word", false}, {"lstrip", false}, {"rstrip", false},
          {"normalized", false}, {"special", true}};
}

}  // namespace

const char* const kLlama3ChatTemplate =
    "{% set loop_messages = messages %}{% for message in loop_messages %}{% set content = "
    "'<|start_header_id|>' + message['role'] + '<|end_header_id|>\n\n'+ message['content'] | trim + "
    "'<|eot_id|>' %}{% if loop.index0 == 0 %}{% set content = bos_token + content %}{% endif %}{{ content }}"
    "{% endfor %}{% if add_generation_prompt %}{{ '<|start_header_id|>assistant<|end_header_id|>\n\n' }}"
    "{% endif %}";

const char* const kLlama2ChatTemplate =
    "{% if messages[0]['role'] == 'system' %}{% set loop_messages = messages[1:] %}{% set system_message = "
    "messages[0]['content'] %}{% else %}{% set loop_messages = messages %}{% set system_message = false %}"
    "{% endif %}{% for message in loop_messages %}{% if (message['role'] == 'user') != (loop.index0 % 2 == 0) "
    "%}{{ raise_exception('Conversation roles must alternate user/assistant/user/assistant/...') }}{% endif %}"
    "{% if loop.index0 == 0 and system_message != false %}{% set content = '<<SYS>>\\n' + system_message + "
    "'\\n<</SYS>>\\n\\n' + message['content'] %}{% else %}{% set content = message['content'] %}{% endif %}"
    "{% if message['role'] == 'user' %}{{ bos_token + '[INST] ' + content.strip() + ' [/INST]' }}{% elif "
    "message['role'] == 'assistant' %}{{ ' '  + content.strip() + ' ' + eos_token }}{% endif %}{% endfor %}";

json tiny_chat_tokenizer_json() {
  json vocab = json::object();
  for (int b = 0; b < 256; ++b) {
    std::string s;
    utf8_append(s, byte_level_char(static_cast<unsigned char>(b)));
    vocab[s] = b;
  }
  const std::string pattern =
      R"((?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+)";
  return {
      {"version", "1.0"},
      {"added_tokens", json::array({added(kChatBos, "<|begin_of_text|>"), added(kChatEnd, "<|end_of_text|>"),
                                    added(kChatStartHeader, "<|start_header_id|>"),
                                    added(kChatEndHeader, "<|end_header_id|>"), added(kChatEot, "<|eot_id|>")})},
      {"normalizer", nullptr},
      {"pre_tokenizer",
       {{"type", "Sequence"},
        {"pretokenizers", json::array({{{"type", "Split"}, {"pattern", {{"Regex", pattern}}}, {"behavior", "Isolated"},
                                        {"invert", false}},
                                       {{"type", "ByteLevel"}, {"add_prefix_space", false}, {"trim_offsets", true},
                                        {"use_regex", false}}})}}},
      {"post_processor",
       {{"type", "TemplateProcessing"},
        {"single", json::array({{{"SpecialToken", {{"id", "<|begin_of_text|>"}, {"type_id", 0}}}},
                                {{"Sequence", {{"id", "A"}, {"type_id", 0}}}}})},
        {"pair", json::array()},
        {"special_tokens",
         {{"<|begin_of_text|>", {{"id", "<|begin_of_text|>"}, {"ids", {kChatBos}}, {"tokens", {"<|begin_of_text|>"}}}}}}}},
      {"decoder", {{"type", "ByteLevel"}, {"add_prefix_space", true}, {"trim_offsets", true}, {"use_regex", true}}},
      {"model",
       {{"type", "BPE"}, {"dropout", nullptr}, {"unk_token", nullptr}, {"continuing_subword_prefix", nullptr},
        {"end_of_word_suffix", nullptr}, {"fuse_unk", false}, {"byte_fallback", false}, {"ignore_merges", true},
        {"vocab", vocab}, {"merges", json::array()}}}};
}

void write_tiny_chat_model(const std::filesystem::path& dir) {
  std::filesystem::create_directories(dir);
  TinyHfSpec spec;
  spec.vocab = 261;
  spec.max_position_embeddings = 4096;
  spec.dtype = "F32";
  spec.seed = 18;
  std::vector<FloatTensor> weights = tiny_hf_weights(spec);
  for (FloatTensor& t : weights) {
    if (t.name != "lm_head.weight") continue;
    std::fill(t.values.begin() + 256 * spec.hidden, t.values.end(), 0.0f);  // never greedy-picked
  }
  HfCheckpoint checkpoint;
  checkpoint.config = tiny_hf_config(spec);
  std::vector<RawTensor> tensors;
  for (const FloatTensor& t : weights) tensors.push_back(encode_tensor(t, spec.dtype));
  checkpoint.shards.emplace_back("model.safetensors", std::move(tensors));
  write_hf_checkpoint(dir, checkpoint);
  write_json(dir / "tokenizer.json", tiny_chat_tokenizer_json());
  write_json(dir / "tokenizer_config.json", {{"bos_token", "<|begin_of_text|>"},
                                             {"eos_token", "<|eot_id|>"},
                                             {"chat_template", kLlama3ChatTemplate}});
}

}  // namespace ra::test
