#include "gpu_worker/serve/context_files.h"

#include <fmt/format.h>

#include <cstdlib>
#include <filesystem>
#include <sstream>
#include <utility>

namespace ra::serve {
namespace fs = std::filesystem;
using ojson = nlohmann::ordered_json;

namespace {

constexpr const char* kManifest = "manifest.json";
constexpr const char* kFormat = "ra-context";

void hash_sample(Fnv1a64& h, const std::vector<float>& w, size_t stride) {
  const uint64_t n = w.size();
  h.add(&n, sizeof(n));
  if (w.empty()) return;
  for (size_t i = 0; i < w.size(); i += stride) h.add(&w[i], sizeof(float));
  h.add(&w[w.size() / 2], sizeof(float));
  h.add(&w.back(), sizeof(float));
}

ojson identity_json(const ContextIdentity& c) {
  return ojson{{"model", c.model},           {"model_digest", c.model_digest}, {"n_layers", c.n_layers},
               {"n_heads", c.n_heads},       {"n_kv_heads", c.n_kv_heads},     {"head_dim", c.head_dim},
               {"vocab_size", c.vocab_size}, {"mode", c.mode},                 {"sinks", c.sinks},
               {"window", c.window},         {"queries", c.queries}};
}

// manifest[key] as T, or an error naming the file and the field.
template <typename T>
T field(const nlohmann::json& object, const char* key, const std::string& where, const std::string& path) {
  const auto it = object.find(key);
  RA_REQUIRE(it != object.end(), "{}: field '{}{}' is missing", path, where, key);
  try {
    return it->get<T>();
  } catch (const nlohmann::json::exception&) {
    raise("{}: field '{}{}' has the wrong type ({})", path, where, key, it->type_name());
  }
}

}  // namespace

std::string model_digest(const Model& m) {
  Fnv1a64 h;
  const ModelConfig& c = m.config;
  const int64_t dims[] = {c.vocab_size, c.hidden_size, c.intermediate_size, c.n_layers, c.n_heads, c.n_kv_heads,
                          c.head_dim, c.max_position_embeddings};
  h.add(dims, sizeof(dims));
  const double reals[] = {c.rms_norm_eps, c.rope_theta, c.attn_scale()};
  h.add(reals, sizeof(reals));
  hash_sample(h, m.weights.embed, 4099);
  for (const LayerWeights& l : m.weights.layers) {
    for (const std::vector<float>* w : {&l.attn_norm, &l.wq, &l.wk, &l.wv, &l.wo, &l.ffn_norm, &l.w_gate, &l.w_up,
                                        &l.w_down}) {
      hash_sample(h, *w, 65537);
    }
  }
  hash_sample(h, m.weights.final_norm, 1);
  hash_sample(h, m.weights.lm_head, 4099);
  return h.hex();
}

ContextIdentity context_identity(const Model& model, const std::string& mode) {
  const ModelConfig& mc = model.config;
  ContextIdentity id;
  id.model = model.source;
  id.model_digest = model_digest(model);
  id.n_layers = mc.n_layers;
  id.n_heads = mc.n_heads;
  id.n_kv_heads = mc.n_kv_heads;
  id.head_dim = mc.head_dim;
  id.vocab_size = mc.vocab_size;
  id.mode = mode;
  return id;
}

std::string layer_file(int64_t layer) { return fmt::format("layer-{:03d}.bin", layer); }

std::string retriever_shard_file(size_t retriever) { return fmt::format("retriever-{:03d}.shards", retriever); }

std::string absolute_path(const std::string& dir, const std::string& name) {
  return fs::absolute(fs::path(dir) / name).lexically_normal().string();
}

bool compatible_modes(const std::string& saved, const std::string& serving) {
  if (saved == serving) return true;
  auto keys_only = [](const std::string& m) { return m == "flat" || m == "ivf" || m == "hnsw"; };
  return keys_only(saved) && keys_only(serving);
}

ContextWriter::ContextWriter(std::string dir) : dir_(std::move(dir)) {
  std::error_code ec;
  fs::create_directories(dir_, ec);
  RA_REQUIRE(!ec, "cannot create the context folder {}: {}", dir_, ec.message());
  RA_REQUIRE(!fs::exists(fs::path(dir_) / kManifest), "{} already holds a saved context ({}); remove it or save "
             "elsewhere", dir_, kManifest);
}

void ContextWriter::open(const std::string& name) {
  RA_ASSERT(!out_.is_open());
  name_ = name;
  out_.open(fs::path(dir_) / name, std::ios::binary | std::ios::trunc);
  RA_REQUIRE(out_.good(), "cannot write {}", (fs::path(dir_) / name).string());
  hash_ = Fnv1a64();
  bytes_ = 0;
}

void ContextWriter::write(const void* data, size_t bytes) {
  out_.write(static_cast<const char*>(data), static_cast<std::streamsize>(bytes));
  RA_REQUIRE(out_.good(), "cannot write {} (disk full?)", (fs::path(dir_) / name_).string());
  hash_.add(data, bytes);
  bytes_ += bytes;
}

void ContextWriter::close() {
  out_.close();
  RA_REQUIRE(out_.good(), "cannot write {}", (fs::path(dir_) / name_).string());
  files_[name_] = ojson{{"bytes", bytes_}, {"fnv1a64", hash_.hex()}};
}

void ContextWriter::record(const std::string& name, uint64_t bytes, uint64_t fnv1a64) {
  files_[name] = ojson{{"bytes", bytes}, {"fnv1a64", fmt::format("{:016x}", fnv1a64)}};
}

void ContextWriter::finish(const ContextIdentity& identity, std::span<const int32_t> tokens) {
  ojson m;
  m["format"] = kFormat;
  m["version"] = kContextFormatVersion;
  m["identity"] = identity_json(identity);
  m["n_tokens"] = tokens.size();
  m["tokens"] = std::vector<int32_t>(tokens.begin(), tokens.end());
  m["files"] = files_;
  if (shards_) m["retriever_shards"] = ojson{{"owned_kv_heads", shards_->owned_kv_heads}, {"files", shards_->files}};
  const fs::path path = fs::path(dir_) / kManifest;
  const fs::path tmp = fs::path(dir_) / (std::string(kManifest) + ".tmp");
  {
    std::ofstream out(tmp);
    out << m.dump(1) << "\n";
    RA_REQUIRE(out.good(), "cannot write {}", tmp.string());
  }
  fs::rename(tmp, path);
}

ContextReader::ContextReader(std::string dir, const ContextIdentity& expect) : dir_(std::move(dir)) {
  const std::string path = (fs::path(dir_) / kManifest).string();
  std::ifstream in(path);
  RA_REQUIRE(in.good(), "{}: cannot read it: is {} a folder written by `ra prefill --save`?", path, dir_);
  std::stringstream text;
  text << in.rdbuf();
  nlohmann::json m;
  try {
    m = nlohmann::json::parse(text.str());
  } catch (const nlohmann::json::exception& e) {
    raise("{}: not valid JSON: {}", path, e.what());
  }
  RA_REQUIRE(m.is_object(), "{}: not a JSON object", path);
  RA_REQUIRE(field<std::string>(m, "format", "", path) == kFormat, "{}: field 'format' is '{}', not '{}'", path,
             m["format"].get<std::string>(), kFormat);
  const int version = field<int>(m, "version", "", path);
  RA_REQUIRE(version == kContextFormatVersion, "{}: field 'version' is {}, this build reads {}", path, version,
             kContextFormatVersion);
  const nlohmann::json id = field<nlohmann::json>(m, "identity", "", path);
  RA_REQUIRE(id.is_object(), "{}: field 'identity' is not an object", path);
  ContextIdentity& c = identity_;
  c.model = field<std::string>(id, "model", "identity.", path);
  c.model_digest = field<std::string>(id, "model_digest", "identity.", path);
  c.n_layers = field<int64_t>(id, "n_layers", "identity.", path);
  c.n_heads = field<int64_t>(id, "n_heads", "identity.", path);
  c.n_kv_heads = field<int64_t>(id, "n_kv_heads", "identity.", path);
  c.head_dim = field<int64_t>(id, "head_dim", "identity.", path);
  c.vocab_size = field<int64_t>(id, "vocab_size", "identity.", path);
  c.mode = field<std::string>(id, "mode", "identity.", path);
  c.sinks = field<int64_t>(id, "sinks", "identity.", path);
  c.window = field<int64_t>(id, "window", "identity.", path);
  c.queries = field<bool>(id, "queries", "identity.", path);

  auto same = [&](const char* name, const auto& saved, const auto& mine) {
    RA_REQUIRE(saved == mine, "{}: field 'identity.{}' is {} in the save, but this server has {} (saved with model {})",
               path, name, saved, mine, c.model);
  };
  same("n_layers", c.n_layers, expect.n_layers);
  same("n_heads", c.n_heads, expect.n_heads);
  same("n_kv_heads", c.n_kv_heads, expect.n_kv_heads);
  same("head_dim", c.head_dim, expect.head_dim);
  same("vocab_size", c.vocab_size, expect.vocab_size);
  RA_REQUIRE(c.model_digest == expect.model_digest,
             "{}: field 'identity.model_digest' is {} (model {}), but this server's model {} is {}: another "
             "checkpoint", path, c.model_digest, c.model, expect.model, expect.model_digest);
  RA_REQUIRE(compatible_modes(c.mode, expect.mode),
             "{}: field 'identity.mode' is '{}' in the save, but this server runs mode '{}'", path, c.mode, expect.mode);
  if (expect.mode != "full") {
    same("sinks", c.sinks, expect.sinks);
    same("window", c.window, expect.window);
  }
  RA_REQUIRE(c.queries || !expect.queries, "{}: field 'identity.queries' is false: the save has no training "
             "queries, which mode '{}' builds its index from", path, expect.mode);

  tokens_ = field<std::vector<int32_t>>(m, "tokens", "", path);
  const auto n_tokens = field<int64_t>(m, "n_tokens", "", path);
  RA_REQUIRE(n_tokens == static_cast<int64_t>(tokens_.size()) && n_tokens > 0,
             "{}: field 'n_tokens' is {} but 'tokens' holds {}", path, n_tokens, tokens_.size());
  for (const int32_t t : tokens_) {
    RA_REQUIRE(t >= 0 && t < c.vocab_size, "{}: field 'tokens' holds id {}, outside the vocabulary [0, {})", path, t,
               c.vocab_size);
  }
  files_ = field<nlohmann::json>(m, "files", "", path);
  RA_REQUIRE(files_.is_object(), "{}: field 'files' is not an object", path);
  if (m.contains("retriever_shards")) {
    const auto rs = field<nlohmann::json>(m, "retriever_shards", "", path);
    RA_REQUIRE(rs.is_object(), "{}: field 'retriever_shards' is not an object", path);
    SavedShards saved;
    saved.owned_kv_heads =
        field<std::vector<std::vector<std::vector<int64_t>>>>(rs, "owned_kv_heads", "retriever_shards.", path);
    saved.files = field<std::vector<std::string>>(rs, "files", "retriever_shards.", path);
    RA_REQUIRE(saved.files.size() == saved.owned_kv_heads.size() && !saved.files.empty(),
               "{}: field 'retriever_shards' lists {} files for {} retrievers", path, saved.files.size(),
               saved.owned_kv_heads.size());
    for (const std::string& f : saved.files) {
      RA_REQUIRE(!f.empty() && f.find('/') == std::string::npos && f != "." && f != "..",
                 "{}: field 'retriever_shards.files' holds '{}', not a file name of the folder", path, f);
      entry(f);  // listed with a size and checksum
    }
    shards_ = std::move(saved);
  }
}

FileEntry ContextReader::entry(const std::string& name) const {
  const std::string manifest = (fs::path(dir_) / kManifest).string();
  const auto it = files_.find(name);
  RA_REQUIRE(it != files_.end() && it->is_object(), "{}: field 'files.{}' is missing", manifest, name);
  FileEntry e;
  e.bytes = field<uint64_t>(*it, "bytes", "files." + name + ".", manifest);
  const auto checksum = field<std::string>(*it, "fnv1a64", "files." + name + ".", manifest);
  char* end = nullptr;
  e.fnv1a64 = std::strtoull(checksum.c_str(), &end, 16);
  RA_REQUIRE(checksum.size() == 16 && *end == '\0', "{}: field 'files.{}.fnv1a64' is '{}', not 16 hex digits",
             manifest, name, checksum);
  return e;
}

std::string ContextReader::path(const std::string& name) const { return (fs::path(dir_) / name).string(); }

std::vector<std::byte> ContextReader::read(const std::string& name) const {
  const std::string manifest = (fs::path(dir_) / kManifest).string();
  const auto it = files_.find(name);
  RA_REQUIRE(it != files_.end() && it->is_object(), "{}: field 'files.{}' is missing", manifest, name);
  const auto bytes = field<uint64_t>(*it, "bytes", "files." + name + ".", manifest);
  const auto checksum = field<std::string>(*it, "fnv1a64", "files." + name + ".", manifest);
  const std::string p = path(name);
  std::ifstream in(p, std::ios::binary | std::ios::ate);
  RA_REQUIRE(in.good(), "{}: cannot read it (listed in {})", p, manifest);
  const auto size = static_cast<uint64_t>(in.tellg());
  RA_REQUIRE(size == bytes, "{}: {} bytes, but {} says {} (field 'files.{}.bytes')", p, size, manifest, bytes, name);
  std::vector<std::byte> data(size);
  in.seekg(0);
  in.read(reinterpret_cast<char*>(data.data()), static_cast<std::streamsize>(size));
  RA_REQUIRE(in.good(), "{}: cannot read it", p);
  Fnv1a64 h;
  h.add(data.data(), data.size());
  RA_REQUIRE(h.hex() == checksum, "{}: checksum {} does not match {}'s field 'files.{}.fnv1a64' {}: the file is "
             "corrupt", p, h.hex(), manifest, name, checksum);
  return data;
}

}  // namespace ra::serve
