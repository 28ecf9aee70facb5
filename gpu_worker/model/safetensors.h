#pragma once
// Reader for the safetensors format: an 8-byte little-endian header length, a JSON header mapping
// tensor names to {dtype, shape, data_offsets}, then the raw data. Files are memory-mapped; a header
// whose offsets lie (out of range, wrong size for the shape, overlapping) is rejected at open with the
// file and tensor named.

#include <cstdint>
#include <filesystem>
#include <map>
#include <memory>
#include <span>
#include <string>
#include <vector>

#include "gpu_worker/model/mapped_file.h"

namespace ra {

enum class DType { kF32, kF16, kBF16, kOther };

const char* dtype_name(DType dtype);

struct TensorView {
  std::string name;
  std::string dtype_string;  // as written in the header, e.g. "BF16"
  DType dtype = DType::kOther;
  std::vector<int64_t> shape;
  std::span<const std::byte> data;  // inside the mapping; valid while the file is open
  const std::filesystem::path* file = nullptr;

  int64_t numel() const;
};

class SafetensorsFile {
 public:
  // Maps and validates the file. Throws ra::Error naming the file (and tensor) on any inconsistency.
  explicit SafetensorsFile(const std::filesystem::path& path);
  // Tensor views point into this object (the mapping and its path): it never moves.
  SafetensorsFile(const SafetensorsFile&) = delete;
  SafetensorsFile& operator=(const SafetensorsFile&) = delete;

  const TensorView* find(const std::string& name) const;
  const std::map<std::string, TensorView>& tensors() const { return tensors_; }
  const std::filesystem::path& path() const { return file_.path(); }

 private:
  MappedFile file_;
  std::map<std::string, TensorView> tensors_;
};

// A checkpoint directory: model.safetensors, or shards listed in model.safetensors.index.json.
class SafetensorsCheckpoint {
 public:
  // Throws ra::Error when neither file exists, the index is invalid, or a shard is missing/corrupt.
  explicit SafetensorsCheckpoint(const std::filesystem::path& dir);

  // Throws ra::Error "missing tensor NAME" naming the file(s) searched.
  const TensorView& get(const std::string& name) const;
  const TensorView* find(const std::string& name) const;
  const std::filesystem::path& dir() const { return dir_; }

 private:
  std::filesystem::path dir_;
  std::vector<std::unique_ptr<SafetensorsFile>> files_;
  bool sharded_ = false;
  std::map<std::string, const SafetensorsFile*> by_tensor_;  // from the index, when sharded
};

// Converts a 2-D (or 1-D) tensor to float32. Throws ra::Error naming the file and tensor when the
// dtype is not F32/F16/BF16 or the shape differs from `expected_shape`.
std::vector<float> to_float32(const TensorView& tensor, std::span<const int64_t> expected_shape);

}  // namespace ra
