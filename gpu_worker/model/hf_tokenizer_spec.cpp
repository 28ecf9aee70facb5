// Reading tokenizer.json into HfTokenizerSpec: every field is checked for presence and type, and every
// message names the file and the field path (e.g. "pre_tokenizer.pretokenizers[0].pattern").

#include "gpu_worker/model/hf_tokenizer_spec.h"

#include <fstream>
#include <iterator>
#include <nlohmann/json.hpp>

#include "common/error.h"

namespace ra {
namespace {

using json = nlohmann::json;

// Ids beyond this are refused: they would make the id tables absurdly large.
constexpr int64_t kMaxTokenId = int64_t{1} << 26;

const char* type_name(const json& j) { return j.type_name(); }

// Field accessors that throw ra::Error "<file>: field '<path>' ...".
class JsonReader {
 public:
  explicit JsonReader(std::string file) : file_(std::move(file)) {}

  [[noreturn]] void fail(const std::string& path, const std::string& what) const {
    raise("{}: field '{}' {}", file_, path, what);
  }

  const json& member(const json& obj, const std::string& path, const char* key) const {
    require_object(obj, path);
    const auto it = obj.find(key);
    if (it == obj.end()) fail(join(path, key), "is missing");
    return *it;
  }
  // nullptr when absent or null.
  const json* optional_member(const json& obj, const std::string& path, const char* key) const {
    require_object(obj, path);
    const auto it = obj.find(key);
    return it == obj.end() || it->is_null() ? nullptr : &*it;
  }
  void require_object(const json& j, const std::string& path) const {
    if (!j.is_object()) fail(path.empty() ? "(top level)" : path, fmt::format("must be an object (got {})", type_name(j)));
  }
  std::string string(const json& obj, const std::string& path, const char* key) const {
    const json& v = member(obj, path, key);
    if (!v.is_string()) fail(join(path, key), fmt::format("must be a string (got {})", type_name(v)));
    return v.get<std::string>();
  }
  bool boolean(const json& obj, const std::string& path, const char* key, std::optional<bool> fallback) const {
    const json* v = optional_member(obj, path, key);
    if (v == nullptr) {
      if (!fallback) fail(join(path, key), "is missing");
      return *fallback;
    }
    if (!v->is_boolean()) fail(join(path, key), fmt::format("must be true or false (got {})", type_name(*v)));
    return v->get<bool>();
  }
  int64_t integer(const json& j, const std::string& path, int64_t lo, int64_t hi) const {
    if (!j.is_number_integer()) fail(path, fmt::format("must be an integer (got {})", type_name(j)));
    const int64_t v = j.is_number_unsigned() && j.get<uint64_t>() > uint64_t{INT64_MAX} ? INT64_MAX : j.get<int64_t>();
    if (v < lo || v > hi) fail(path, fmt::format("is {}, outside [{}, {}]", v, lo, hi));
    return v;
  }
  const json& array(const json& obj, const std::string& path, const char* key) const {
    const json& v = member(obj, path, key);
    if (!v.is_array()) fail(join(path, key), fmt::format("must be an array (got {})", type_name(v)));
    return v;
  }
  // A single Unicode character given as a string (Metaspace replacement, Strip content).
  std::string character(const json& obj, const std::string& path, const char* key) const {
    std::string s = string(obj, path, key);
    size_t n = s.empty() ? 0 : 1;
    while (n < s.size() && (static_cast<unsigned char>(s[n]) & 0xC0) == 0x80) ++n;
    if (s.empty() || n != s.size()) fail(join(path, key), fmt::format("must be a single character (got '{}')", s));
    return s;
  }
  HfPattern pattern(const json& obj, const std::string& path) const {
    const json& p = member(obj, path, "pattern");
    const std::string where = join(path, "pattern");
    require_object(p, where);
    if (p.size() == 1 && p.contains("String") && p["String"].is_string()) return {false, p["String"].get<std::string>()};
    if (p.size() == 1 && p.contains("Regex") && p["Regex"].is_string()) return {true, p["Regex"].get<std::string>()};
    fail(where, "must be {\"String\": ...} or {\"Regex\": ...}");
  }
  static std::string join(const std::string& path, const char* key) { return path.empty() ? key : path + "." + key; }
  static std::string index(const std::string& path, size_t i) { return fmt::format("{}[{}]", path, i); }

  const std::string& file() const { return file_; }

 private:
  std::string file_;
};

json parse_json_file(const std::filesystem::path& path) {
  std::ifstream in(path, std::ios::binary);
  RA_REQUIRE(in.good(), "{}: cannot open", path.string());
  const std::string text((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  try {
    return json::parse(text);
  } catch (const json::parse_error& e) {
    raise("{}: invalid JSON (truncated or corrupt?) at byte {}: {}", path.string(), e.byte, e.what());
  } catch (const json::exception& e) {  // out_of_range: a number too large (1e99999)
    raise("{}: invalid JSON: {}", path.string(), e.what());
  }
}

HfPrependScheme prepend_scheme(const JsonReader& r, const json& obj, const std::string& path) {
  if (const json* s = r.optional_member(obj, path, "prepend_scheme")) {
    if (!s->is_string()) r.fail(JsonReader::join(path, "prepend_scheme"), "must be a string");
    const std::string v = s->get<std::string>();
    if (v == "always") return HfPrependScheme::kAlways;
    if (v == "first") return HfPrependScheme::kFirst;
    if (v == "never") return HfPrependScheme::kNever;
    r.fail(JsonReader::join(path, "prepend_scheme"), fmt::format("is '{}'; expected always, first or never", v));
  }
  // Files written before prepend_scheme existed say add_prefix_space.
  if (r.optional_member(obj, path, "add_prefix_space") != nullptr) {
    return r.boolean(obj, path, "add_prefix_space", true) ? HfPrependScheme::kAlways : HfPrependScheme::kNever;
  }
  return HfPrependScheme::kAlways;
}

void read_model(const JsonReader& r, const json& root, HfBpeModel& model) {
  const json& m = r.member(root, "", "model");
  r.require_object(m, "model");
  const json* type = r.optional_member(m, "model", "type");
  if (type == nullptr) r.fail("model.type", "is missing");
  if (!type->is_string() || type->get<std::string>() != "BPE") {
    r.fail("model.type", fmt::format("is {}; only \"BPE\" is supported", type->dump()));
  }
  if (const json* d = r.optional_member(m, "model", "dropout")) {
    if (!d->is_number() || d->get<double>() != 0.0) r.fail("model.dropout", "is set; BPE dropout is not supported");
  }
  for (const char* key : {"continuing_subword_prefix", "end_of_word_suffix"}) {
    if (const json* v = r.optional_member(m, "model", key); v != nullptr && !(v->is_string() && v->get<std::string>().empty())) {
      r.fail(JsonReader::join("model", key), fmt::format("is {}; it is not supported", v->dump()));
    }
  }
  if (const json* unk = r.optional_member(m, "model", "unk_token")) {
    if (!unk->is_string()) r.fail("model.unk_token", "must be a string or null");
    model.unk_token = unk->get<std::string>();
  }
  model.fuse_unk = r.boolean(m, "model", "fuse_unk", false);
  model.byte_fallback = r.boolean(m, "model", "byte_fallback", false);
  model.ignore_merges = r.boolean(m, "model", "ignore_merges", false);

  const json& vocab = r.member(m, "model", "vocab");
  if (!vocab.is_object()) r.fail("model.vocab", fmt::format("must be an object of token: id (got {})", type_name(vocab)));
  model.vocab.reserve(vocab.size());
  for (const auto& [token, id] : vocab.items()) {
    const bool plain = id.is_number_unsigned() && id.get<uint64_t>() <= static_cast<uint64_t>(kMaxTokenId);
    const int64_t value = plain ? static_cast<int64_t>(id.get<uint64_t>())
                                : r.integer(id, "model.vocab[\"" + token + "\"]", 0, kMaxTokenId);  // throws
    model.vocab.emplace_back(token, static_cast<int32_t>(value));
  }

  const json& merges = r.array(m, "model", "merges");
  model.merges.reserve(merges.size());
  for (size_t i = 0; i < merges.size(); ++i) {
    const json& e = merges[i];
    if (e.is_string()) {
      // The older form "a b": exactly two tokens separated by one space.
      const std::string s = e.get<std::string>();
      const size_t space = s.find(' ');
      if (space == std::string::npos || s.find(' ', space + 1) != std::string::npos) {
        r.fail(JsonReader::index("model.merges", i), fmt::format("is \"{}\"; expected two tokens separated by one space", s));
      }
      model.merges.emplace_back(s.substr(0, space), s.substr(space + 1));
    } else if (e.is_array() && e.size() == 2 && e[0].is_string() && e[1].is_string()) {
      model.merges.emplace_back(e[0].get<std::string>(), e[1].get<std::string>());
    } else {
      r.fail(JsonReader::index("model.merges", i), "must be \"a b\" or [\"a\", \"b\"]");
    }
  }
}

void read_added_tokens(const JsonReader& r, const json& root, std::vector<HfAddedToken>& out) {
  const json* list = r.optional_member(root, "", "added_tokens");
  if (list == nullptr) return;
  if (!list->is_array()) r.fail("added_tokens", "must be an array");
  for (size_t i = 0; i < list->size(); ++i) {
    const json& t = (*list)[i];
    const std::string path = JsonReader::index("added_tokens", i);
    HfAddedToken a;
    a.id = static_cast<int32_t>(r.integer(r.member(t, path, "id"), path + ".id", 0, kMaxTokenId));
    a.content = r.string(t, path, "content");
    if (a.content.empty()) r.fail(path + ".content", "is empty");
    a.single_word = r.boolean(t, path, "single_word", false);
    a.lstrip = r.boolean(t, path, "lstrip", false);
    a.rstrip = r.boolean(t, path, "rstrip", false);
    a.special = r.boolean(t, path, "special", false);
    a.normalized = r.boolean(t, path, "normalized", !a.special);
    out.push_back(std::move(a));
  }
}

void read_normalizer(const JsonReader& r, const json& n, const std::string& path, std::vector<HfNormalizerStep>& out) {
  const std::string type = r.string(n, path, "type");
  if (type == "Sequence") {
    const json& list = r.array(n, path, "normalizers");
    for (size_t i = 0; i < list.size(); ++i) read_normalizer(r, list[i], JsonReader::index(path + ".normalizers", i), out);
    return;
  }
  HfNormalizerStep s;
  if (type == "Prepend") {
    s.kind = HfNormalizerStep::Kind::kPrepend;
    s.text = r.string(n, path, "prepend");
  } else if (type == "Replace") {
    s.kind = HfNormalizerStep::Kind::kReplace;
    s.pattern = r.pattern(n, path);
    s.text = r.string(n, path, "content");
  } else if (type == "Strip") {
    s.kind = HfNormalizerStep::Kind::kStrip;
    s.left = r.boolean(n, path, "strip_left", true);
    s.right = r.boolean(n, path, "strip_right", true);
  } else {
    r.fail(path + ".type", fmt::format("is \"{}\"; supported normalizers: Sequence, Prepend, Replace, Strip", type));
  }
  out.push_back(std::move(s));
}

HfSplitBehavior split_behavior(const JsonReader& r, const json& obj, const std::string& path) {
  const std::string b = r.string(obj, path, "behavior");
  if (b == "Removed") return HfSplitBehavior::kRemoved;
  if (b == "Isolated") return HfSplitBehavior::kIsolated;
  if (b == "MergedWithPrevious") return HfSplitBehavior::kMergedWithPrevious;
  if (b == "MergedWithNext") return HfSplitBehavior::kMergedWithNext;
  if (b == "Contiguous") return HfSplitBehavior::kContiguous;
  r.fail(path + ".behavior", fmt::format("is \"{}\"; expected Removed, Isolated, MergedWithPrevious, MergedWithNext "
                                         "or Contiguous", b));
}

void read_pre_tokenizer(const JsonReader& r, const json& p, const std::string& path, std::vector<HfPreTokenizerStep>& out) {
  const std::string type = r.string(p, path, "type");
  if (type == "Sequence") {
    const json& list = r.array(p, path, "pretokenizers");
    for (size_t i = 0; i < list.size(); ++i) read_pre_tokenizer(r, list[i], JsonReader::index(path + ".pretokenizers", i), out);
    return;
  }
  if (!out.empty() && out.back().kind == HfPreTokenizerStep::Kind::kByteLevel) {
    r.fail(path, "follows a ByteLevel pre-tokenizer; steps after ByteLevel are not supported");
  }
  HfPreTokenizerStep s;
  if (type == "Split") {
    s.kind = HfPreTokenizerStep::Kind::kSplit;
    s.pattern = r.pattern(p, path);
    s.behavior = split_behavior(r, p, path);
    s.invert = r.boolean(p, path, "invert", false);
  } else if (type == "ByteLevel") {
    s.kind = HfPreTokenizerStep::Kind::kByteLevel;
    s.add_prefix_space = r.boolean(p, path, "add_prefix_space", true);
    s.use_regex = r.boolean(p, path, "use_regex", true);
  } else if (type == "Metaspace") {
    s.kind = HfPreTokenizerStep::Kind::kMetaspace;
    s.replacement = r.character(p, path, "replacement");
    s.prepend_scheme = prepend_scheme(r, p, path);
    s.split = r.boolean(p, path, "split", true);
  } else {
    r.fail(path + ".type", fmt::format("is \"{}\"; supported pre-tokenizers: Sequence, Split, ByteLevel, Metaspace", type));
  }
  out.push_back(std::move(s));
}

void read_decoder(const JsonReader& r, const json& d, const std::string& path, std::vector<HfDecoderStep>& out) {
  const std::string type = r.string(d, path, "type");
  if (type == "Sequence") {
    const json& list = r.array(d, path, "decoders");
    for (size_t i = 0; i < list.size(); ++i) read_decoder(r, list[i], JsonReader::index(path + ".decoders", i), out);
    return;
  }
  HfDecoderStep s;
  if (type == "ByteLevel") {
    s.kind = HfDecoderStep::Kind::kByteLevel;
  } else if (type == "Replace") {
    s.kind = HfDecoderStep::Kind::kReplace;
    s.pattern = r.pattern(d, path);
    s.text = r.string(d, path, "content");
  } else if (type == "ByteFallback") {
    s.kind = HfDecoderStep::Kind::kByteFallback;
  } else if (type == "Fuse") {
    s.kind = HfDecoderStep::Kind::kFuse;
  } else if (type == "Strip") {
    s.kind = HfDecoderStep::Kind::kStrip;
    s.text = r.character(d, path, "content");
    s.start = static_cast<size_t>(r.integer(r.member(d, path, "start"), path + ".start", 0, 1 << 20));
    s.stop = static_cast<size_t>(r.integer(r.member(d, path, "stop"), path + ".stop", 0, 1 << 20));
  } else if (type == "Metaspace") {
    s.kind = HfDecoderStep::Kind::kMetaspace;
    s.text = r.character(d, path, "replacement");
    s.prepend_scheme = prepend_scheme(r, d, path);
  } else {
    r.fail(path + ".type", fmt::format("is \"{}\"; supported decoders: Sequence, ByteLevel, Replace, ByteFallback, "
                                       "Fuse, Strip, Metaspace", type));
  }
  out.push_back(std::move(s));
}

// The ids of a TemplateProcessing special token, from its special_tokens table.
std::vector<int32_t> template_ids(const JsonReader& r, const json& proc, const std::string& path, const std::string& name) {
  const json& table = r.member(proc, path, "special_tokens");
  const std::string where = path + ".special_tokens";
  r.require_object(table, where);
  const auto it = table.find(name);
  if (it == table.end()) r.fail(where, fmt::format("has no entry for \"{}\", which the single template names", name));
  const std::string entry = where + "[\"" + name + "\"]";
  const json& ids = r.array(*it, entry, "ids");
  std::vector<int32_t> out;
  for (size_t i = 0; i < ids.size(); ++i) {
    out.push_back(static_cast<int32_t>(r.integer(ids[i], JsonReader::index(entry + ".ids", i), 0, kMaxTokenId)));
  }
  return out;
}

void read_post_processor(const JsonReader& r, const json& p, const std::string& path, HfTokenizerSpec& spec) {
  const std::string type = r.string(p, path, "type");
  if (type == "Sequence") {
    const json& list = r.array(p, path, "processors");
    for (size_t i = 0; i < list.size(); ++i) read_post_processor(r, list[i], JsonReader::index(path + ".processors", i), spec);
    return;
  }
  if (type == "ByteLevel") return;  // offsets only
  if (type != "TemplateProcessing") {
    r.fail(path + ".type", fmt::format("is \"{}\"; supported post-processors: Sequence, TemplateProcessing, ByteLevel", type));
  }
  const json& single = r.array(p, path, "single");
  bool seen_sequence = false;
  for (size_t i = 0; i < single.size(); ++i) {
    const std::string item = JsonReader::index(path + ".single", i);
    const json& piece = single[i];
    r.require_object(piece, item);
    if (piece.contains("Sequence")) {
      seen_sequence = true;
    } else if (piece.contains("SpecialToken")) {
      const std::string name = r.string(piece["SpecialToken"], item + ".SpecialToken", "id");
      auto ids = template_ids(r, p, path, name);
      auto& target = seen_sequence ? spec.template_suffix : spec.template_prefix;
      target.insert(target.end(), ids.begin(), ids.end());
    } else {
      r.fail(item, "must be {\"SpecialToken\": ...} or {\"Sequence\": ...}");
    }
  }
}

}  // namespace

HfTokenizerSpec read_tokenizer_json(const std::filesystem::path& path) {
  const json root = parse_json_file(path);
  const JsonReader r(path.string());
  r.require_object(root, "");
  HfTokenizerSpec spec;
  spec.source = path.string();
  read_model(r, root, spec.model);
  read_added_tokens(r, root, spec.added_tokens);
  if (const json* n = r.optional_member(root, "", "normalizer")) read_normalizer(r, *n, "normalizer", spec.normalizer);
  if (const json* p = r.optional_member(root, "", "pre_tokenizer")) {
    read_pre_tokenizer(r, *p, "pre_tokenizer", spec.pre_tokenizer);
  }
  if (const json* p = r.optional_member(root, "", "post_processor")) read_post_processor(r, *p, "post_processor", spec);
  if (const json* d = r.optional_member(root, "", "decoder")) {
    spec.has_decoder = true;
    read_decoder(r, *d, "decoder", spec.decoder);
  }
  return spec;
}

HfSpecialIds read_hf_special_ids(const std::filesystem::path& dir) {
  HfSpecialIds out;
  const auto config_path = dir / "tokenizer_config.json";
  if (std::filesystem::is_regular_file(config_path)) {
    const json c = parse_json_file(config_path);
    const JsonReader r(config_path.string());
    r.require_object(c, "");
    if (r.optional_member(c, "", "add_bos_token") != nullptr) out.add_bos = r.boolean(c, "", "add_bos_token", false);
    auto token_name = [&](const char* key) -> std::optional<std::string> {
      const json* t = r.optional_member(c, "", key);
      if (t == nullptr) return std::nullopt;
      if (t->is_string()) return t->get<std::string>();
      if (t->is_object()) return r.string(*t, key, "content");  // an AddedToken object
      r.fail(key, "must be a string or an object with \"content\"");
    };
    out.bos_token = token_name("bos_token");
    out.eos_token = token_name("eos_token");
  }
  const auto gen_path = dir / "generation_config.json";
  if (std::filesystem::is_regular_file(gen_path)) {
    const json g = parse_json_file(gen_path);
    const JsonReader r(gen_path.string());
    r.require_object(g, "");
    if (const json* e = r.optional_member(g, "", "eos_token_id")) {
      if (e->is_array()) {
        for (size_t i = 0; i < e->size(); ++i) {
          out.eos_ids.push_back(static_cast<int32_t>(r.integer((*e)[i], JsonReader::index("eos_token_id", i), 0, kMaxTokenId)));
        }
      } else {
        out.eos_ids.push_back(static_cast<int32_t>(r.integer(*e, "eos_token_id", 0, kMaxTokenId)));
      }
    }
  }
  return out;
}

}  // namespace ra
