#include "gpu_worker/model/safetensors.h"

#include <nlohmann/json.hpp>

#include <algorithm>
#include <cstring>
#include <fstream>
#include <sstream>

#include "common/error.h"
#include "common/half.h"

namespace ra {
namespace {

using nlohmann::json;

struct DTypeInfo {
  const char* name;
  DType dtype;
  int64_t bytes;
};

constexpr DTypeInfo kDTypes[] = {
    {"F32", DType::kF32, 4},    {"F16", DType::kF16, 2},  {"BF16", DType::kBF16, 2},
    {"F64", DType::kOther, 8},  {"I64", DType::kOther, 8}, {"I32", DType::kOther, 4},
    {"I16", DType::kOther, 2},  {"I8", DType::kOther, 1},  {"U8", DType::kOther, 1},
    {"BOOL", DType::kOther, 1}, {"F8_E4M3", DType::kOther, 1}, {"F8_E5M2", DType::kOther, 1},
    {"U16", DType::kOther, 2},  {"U32", DType::kOther, 4},  {"U64", DType::kOther, 8},
};

const DTypeInfo* lookup_dtype(const std::string& name) {
  for (const auto& info : kDTypes) {
    if (name == info.name) return &info;
  }
  return nullptr;
}

std::string shape_string(std::span<const int64_t> shape) {
  std::string s = "[";
  for (size_t i = 0; i < shape.size(); ++i) s += (i ? ", " : "") + std::to_string(shape[i]);
  return s + "]";
}

}  // namespace

const char* dtype_name(DType dtype) {
  switch (dtype) {
    case DType::kF32: return "F32";
    case DType::kF16: return "F16";
    case DType::kBF16: return "BF16";
    case DType::kOther: break;
  }
  return "other";
}

int64_t TensorView::numel() const {
  int64_t n = 1;
  for (int64_t d : shape) n *= d;
  return n;
}

SafetensorsFile::SafetensorsFile(const std::filesystem::path& path) : file_(path) {
  const std::string where = path.string();
  const auto bytes = file_.bytes();
  RA_REQUIRE(bytes.size() >= 8, "{}: truncated safetensors file ({} bytes, the header length alone is 8)",
             where, bytes.size());
  uint64_t header_len = 0;
  std::memcpy(&header_len, bytes.data(), 8);  // little-endian on every platform we build for
  RA_REQUIRE(header_len <= bytes.size() - 8,
             "{}: truncated safetensors file: header claims {} bytes but the file has {} after the "
             "length",
             where, header_len, bytes.size() - 8);
  const auto header_text =
      std::string_view(reinterpret_cast<const char*>(bytes.data()) + 8, header_len);
  json header;
  try {
    header = json::parse(header_text);
  } catch (const json::exception& e) {  // parse_error, and out_of_range for a number too large (1e99999)
    raise("{}: invalid JSON in the safetensors header: {}", where, e.what());
  }
  RA_REQUIRE(header.is_object(), "{}: safetensors header is not a JSON object", where);

  const std::span<const std::byte> data = bytes.subspan(8 + header_len);
  struct Range {
    uint64_t begin, end;
    const std::string* name;
  };
  std::vector<Range> ranges;

  for (const auto& [name, entry] : header.items()) {
    if (name == "__metadata__") continue;
    const std::string& tensor = name;  // a structured binding cannot be captured before clang 16
    auto bad = [&](const std::string& what) { raise("{}: tensor '{}': {}", where, tensor, what); };
    if (!entry.is_object()) bad("header entry is not an object");
    const auto dt = entry.find("dtype");
    const auto sh = entry.find("shape");
    const auto off = entry.find("data_offsets");
    if (dt == entry.end() || !dt->is_string()) bad("missing or invalid 'dtype'");
    if (sh == entry.end() || !sh->is_array()) bad("missing or invalid 'shape'");
    if (off == entry.end() || !off->is_array() || off->size() != 2 || !(*off)[0].is_number_unsigned() ||
        !(*off)[1].is_number_unsigned()) {
      bad("missing or invalid 'data_offsets' (expected [begin, end])");
    }
    TensorView t;
    t.name = name;
    t.dtype_string = dt->get<std::string>();
    const DTypeInfo* info = lookup_dtype(t.dtype_string);
    if (info == nullptr) bad(fmt::format("unknown dtype '{}'", t.dtype_string));
    t.dtype = info->dtype;
    int64_t numel = 1;
    for (const auto& d : *sh) {
      if (!d.is_number_unsigned()) bad("shape entries must be non-negative integers");
      const auto v = d.get<int64_t>();
      if (v != 0 && numel > (int64_t{1} << 48) / v) bad("shape is implausibly large");
      numel *= v;
      t.shape.push_back(v);
    }
    const auto begin = (*off)[0].get<uint64_t>();
    const auto end = (*off)[1].get<uint64_t>();
    if (begin > end) bad(fmt::format("data_offsets [{}, {}] run backwards", begin, end));
    if (end > data.size()) {
      bad(fmt::format("data_offsets [{}, {}] reach past the end of the data section ({} bytes): the "
                      "file is truncated or the header lies",
                      begin, end, data.size()));
    }
    const uint64_t expected = static_cast<uint64_t>(numel * info->bytes);
    if (end - begin != expected) {
      bad(fmt::format("data_offsets [{}, {}] hold {} bytes but {} {} needs {}", begin, end, end - begin,
                      t.dtype_string, shape_string(t.shape), expected));
    }
    t.data = data.subspan(begin, end - begin);
    t.file = &file_.path();
    const auto [it, inserted] = tensors_.emplace(name, std::move(t));
    ranges.push_back({begin, end, &it->first});
  }

  std::sort(ranges.begin(), ranges.end(), [](const Range& a, const Range& b) {
    return a.begin != b.begin ? a.begin < b.begin : a.end < b.end;
  });
  // After sorting by begin, a range overlaps an earlier one iff it starts before the furthest end so far.
  const Range* furthest = nullptr;
  for (const Range& cur : ranges) {
    if (cur.begin == cur.end) continue;  // empty tensors occupy no bytes
    if (furthest != nullptr && cur.begin < furthest->end) {
      raise("{}: tensors '{}' [{}, {}) and '{}' [{}, {}) overlap in the data section", where,
            *furthest->name, furthest->begin, furthest->end, *cur.name, cur.begin, cur.end);
    }
    if (furthest == nullptr || cur.end > furthest->end) furthest = &cur;
  }
}

const TensorView* SafetensorsFile::find(const std::string& name) const {
  const auto it = tensors_.find(name);
  return it == tensors_.end() ? nullptr : &it->second;
}

SafetensorsCheckpoint::SafetensorsCheckpoint(const std::filesystem::path& dir) : dir_(dir) {
  const auto single = dir / "model.safetensors";
  const auto index = dir / "model.safetensors.index.json";
  if (std::filesystem::exists(index)) {
    std::ifstream in(index, std::ios::binary);
    std::stringstream buffer;
    buffer << in.rdbuf();
    json j;
    try {
      j = json::parse(buffer.str());
    } catch (const json::exception& e) {  // parse_error, and out_of_range for a number too large (1e99999)
      raise("{}: invalid JSON: {}", index.string(), e.what());
    }
    const auto map = j.find("weight_map");
    RA_REQUIRE(j.is_object() && map != j.end() && map->is_object(),
               "{}: missing required field 'weight_map'", index.string());
    RA_REQUIRE(!map->empty(), "{}: 'weight_map' is empty", index.string());
    sharded_ = true;
    std::map<std::string, const SafetensorsFile*> opened;
    for (const auto& [tensor, shard] : map->items()) {
      RA_REQUIRE(shard.is_string(), "{}: weight_map entry '{}' is not a file name", index.string(),
                 tensor);
      const auto shard_name = shard.get<std::string>();
      RA_REQUIRE(shard_name.find('/') == std::string::npos && shard_name != ".." && !shard_name.empty(),
                 "{}: weight_map entry '{}' names '{}', which is not a file in the checkpoint directory",
                 index.string(), tensor, shard_name);
      auto it = opened.find(shard_name);
      if (it == opened.end()) {
        const auto shard_path = dir / shard_name;
        RA_REQUIRE(std::filesystem::exists(shard_path), "{}: shard '{}' listed for tensor '{}' does not exist",
                   index.string(), shard_path.string(), tensor);
        files_.push_back(std::make_unique<SafetensorsFile>(shard_path));
        it = opened.emplace(shard_name, files_.back().get()).first;
      }
      RA_REQUIRE(it->second->find(tensor) != nullptr,
                 "{}: missing tensor '{}', which {} lists in {}", it->second->path().string(), tensor,
                 index.filename().string(), shard_name);
      by_tensor_.emplace(tensor, it->second);
    }
  } else if (std::filesystem::exists(single)) {
    files_.push_back(std::make_unique<SafetensorsFile>(single));
  } else {
    raise("{}: no weights found (looked for model.safetensors and model.safetensors.index.json)",
          dir.string());
  }
}

const TensorView* SafetensorsCheckpoint::find(const std::string& name) const {
  if (sharded_) {
    const auto it = by_tensor_.find(name);
    return it == by_tensor_.end() ? nullptr : it->second->find(name);
  }
  return files_.front()->find(name);
}

const TensorView& SafetensorsCheckpoint::get(const std::string& name) const {
  if (const TensorView* t = find(name)) return *t;
  std::string searched;
  for (const auto& f : files_) searched += (searched.empty() ? "" : ", ") + f->path().string();
  raise("missing tensor '{}' (searched {}{})", name, searched,
        sharded_ ? "; model.safetensors.index.json does not list it" : "");
}

std::vector<float> to_float32(const TensorView& t, std::span<const int64_t> expected_shape) {
  const std::string file = t.file ? t.file->string() : "<memory>";
  RA_REQUIRE(std::equal(t.shape.begin(), t.shape.end(), expected_shape.begin(), expected_shape.end()),
             "{}: tensor '{}' has shape {} but the config implies {}", file, t.name,
             shape_string(t.shape), shape_string(expected_shape));
  const auto n = static_cast<size_t>(t.numel());
  std::vector<float> out(n);
  switch (t.dtype) {
    case DType::kF32:
      std::memcpy(out.data(), t.data.data(), n * sizeof(float));
      break;
    case DType::kBF16:
      for (size_t i = 0; i < n; ++i) {
        bf16 x;
        std::memcpy(&x, t.data.data() + 2 * i, 2);
        out[i] = to_float(x);
      }
      break;
    case DType::kF16:
      for (size_t i = 0; i < n; ++i) {
        f16 x;
        std::memcpy(&x, t.data.data() + 2 * i, 2);
        out[i] = to_float(x);
      }
      break;
    case DType::kOther:
      raise("{}: tensor '{}' has unsupported dtype {} (supported: F32, F16, BF16)", file, t.name,
            t.dtype_string);
  }
  return out;
}

}  // namespace ra
