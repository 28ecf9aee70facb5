#include "cpu_retriever/shard_file.h"

#include <cerrno>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <fstream>

#include <fmt/format.h>

#include "common/error.h"
#include "common/fnv1a64.h"
#include "cpu_retriever/shard_io.h"

namespace ra::retriever {
namespace {

constexpr char kFileMagic[9] = "RASHFILE";
constexpr uint32_t kShardFileVersion = 1;
constexpr uint64_t kEndMark = 0x454c49462d445241ull;  // "ARD-FILE" in a little-endian file
constexpr size_t kChunkBytes = size_t{8} << 20;

// Writes through to the file and its checksum.
class HashedFile {
 public:
  explicit HashedFile(const std::string& path) : path_(path), out_(path, std::ios::binary | std::ios::trunc) {
    RA_REQUIRE(out_.good(), "{}: cannot create it: {}", path, std::strerror(errno));
  }
  void write(std::span<const std::byte> bytes) {
    out_.write(reinterpret_cast<const char*>(bytes.data()), static_cast<std::streamsize>(bytes.size()));
    RA_REQUIRE(out_.good(), "{}: write failed after {} bytes: {}", path_, info_.bytes, std::strerror(errno));
    hash_.add(bytes.data(), bytes.size());
    info_.bytes += bytes.size();
  }
  ShardFileInfo close() {
    out_.close();
    RA_REQUIRE(!out_.fail(), "{}: closing it failed: {}", path_, std::strerror(errno));
    info_.fnv1a64 = hash_.value();
    return info_;
  }

 private:
  std::string path_;
  std::ofstream out_;
  Fnv1a64 hash_;
  ShardFileInfo info_;
};

// Reads the file in order; every read names the field it is for.
class FileReader {
 public:
  explicit FileReader(const std::string& path) : path_(path), in_(path, std::ios::binary) {
    RA_REQUIRE(in_.good(), "{}: cannot open it: {} (a retriever on another host reads the save through a "
               "shared filesystem)", path, std::strerror(errno));
  }
  // The next `bytes` bytes into `buffer` (replaced).
  std::span<const std::byte> read(size_t bytes, std::string_view field, std::vector<std::byte>& buffer) {
    buffer.resize(bytes);
    in_.read(reinterpret_cast<char*>(buffer.data()), static_cast<std::streamsize>(bytes));
    RA_REQUIRE(in_.gcount() == static_cast<std::streamsize>(bytes), "{}: {}: the file ends {} bytes in", path_,
               field, offset_ + static_cast<uint64_t>(in_.gcount()));
    offset_ += bytes;
    return buffer;
  }
  uint64_t offset() const { return offset_; }

 private:
  std::string path_;
  std::ifstream in_;
  uint64_t offset_ = 0;
};

ShardFileInfo checksum_file(const std::string& path) {
  std::error_code ec;
  RA_REQUIRE(std::filesystem::is_regular_file(path, ec), "{}: cannot open it: {} (a retriever on another host reads "
             "the save through a shared filesystem)", path, ec ? ec.message() : "not a regular file");
  std::ifstream in(path, std::ios::binary);
  RA_REQUIRE(in.good(), "{}: cannot open it: {} (a retriever on another host reads the save through a shared "
             "filesystem)", path, std::strerror(errno));
  std::vector<char> chunk(kChunkBytes);
  Fnv1a64 hash;
  ShardFileInfo info;
  while (in) {
    in.read(chunk.data(), static_cast<std::streamsize>(chunk.size()));
    const auto got = static_cast<size_t>(in.gcount());
    hash.add(chunk.data(), got);
    info.bytes += got;
  }
  RA_REQUIRE(in.eof(), "{}: read failed after {} bytes: {}", path, info.bytes, std::strerror(errno));
  info.fnv1a64 = hash.value();
  return info;
}

}  // namespace

ShardFileInfo write_shard_file(const std::string& path, const std::vector<std::vector<int64_t>>& owned_kv_heads,
                               const std::vector<int64_t>& offload_start,
                               const std::vector<std::vector<std::unique_ptr<HeadShard>>>& shards) {
  RA_REQUIRE(owned_kv_heads.size() == shards.size() && offload_start.size() == shards.size(),
             "{}: {} layers of shards, {} of kv heads, {} offload starts", path, shards.size(), owned_kv_heads.size(),
             offload_start.size());
  const std::string tmp = path + ".tmp";
  HashedFile file(tmp);
  std::vector<std::byte> bytes;
  ShardWriter w(bytes);
  write_record_header(w, kFileMagic, kShardFileVersion);
  w.put<uint32_t>(static_cast<uint32_t>(shards.size()));
  file.write(bytes);
  for (size_t l = 0; l < shards.size(); ++l) {
    const auto& owned = owned_kv_heads[l];
    RA_REQUIRE(owned.size() == shards[l].size(), "{}: layer {} has {} shards for {} kv heads (not built yet)", path,
               l, shards[l].size(), owned.size());
    bytes.clear();
    w.put<uint32_t>(static_cast<uint32_t>(l));
    w.put<int64_t>(offload_start[l]);
    w.put_array(owned);
    file.write(bytes);
    for (size_t i = 0; i < owned.size(); ++i) {
      bytes.clear();
      w.put<uint64_t>(0);  // the record's length, patched below
      shards[l][i]->save(w);
      w.patch<uint64_t>(0, bytes.size() - sizeof(uint64_t));
      file.write(bytes);
    }
  }
  bytes.clear();
  w.put<uint64_t>(kEndMark);
  file.write(bytes);
  const ShardFileInfo info = file.close();
  RA_REQUIRE(std::rename(tmp.c_str(), path.c_str()) == 0, "{}: cannot rename {} to it: {}", path, tmp,
             std::strerror(errno));
  return info;
}

ShardLayers read_shard_file(const std::string& path, const ShardFileExpect& expect) {
  // Size and checksum before anything is used: a corrupt file is refused whole.
  const ShardFileInfo found = checksum_file(path);
  RA_REQUIRE(found.bytes == expect.file.bytes, "{}: {} bytes, the manifest says {}: the file is truncated or "
             "another one", path, found.bytes, expect.file.bytes);
  RA_REQUIRE(found.fnv1a64 == expect.file.fnv1a64, "{}: checksum {:016x} does not match the manifest's {:016x}: the "
             "file is corrupt", path, found.fnv1a64, expect.file.fnv1a64);

  FileReader file(path);
  std::vector<std::byte> buffer;
  {
    ShardReader r(file.read(sizeof(RecordHeader) + sizeof(uint32_t), "header", buffer), path);
    read_record_header(r, kFileMagic, kShardFileVersion);
    const auto n_layers = r.get<uint32_t>("layers");
    r.check(n_layers == expect.owned_kv_heads.size(), "layers", "{} in the file, the model has {}", n_layers,
            expect.owned_kv_heads.size());
  }
  ShardLayers out;
  out.owned_kv_heads = expect.owned_kv_heads;
  out.offload_start.resize(expect.owned_kv_heads.size());
  out.shards.resize(expect.owned_kv_heads.size());
  for (size_t l = 0; l < expect.owned_kv_heads.size(); ++l) {
    const auto& owned = expect.owned_kv_heads[l];
    const std::string where = fmt::format("{}: layer {}", path, l);
    {
      ShardReader r(file.read(sizeof(uint32_t) + sizeof(int64_t) + sizeof(uint64_t), "layer header", buffer), where);
      const auto layer = r.get<uint32_t>("layer");
      r.check(layer == l, "layer", "{} where layer {} was expected", layer, l);
      out.offload_start[l] = r.get<int64_t>("offload start");
      r.check(out.offload_start[l] >= -1, "offload start", "{}", out.offload_start[l]);
      const auto count = r.get<uint64_t>("kv heads");
      r.check(count == owned.size(), "kv heads", "{} saved, this retriever owns {} of the layer (the save was made "
              "with another shard plan)", count, owned.size());
    }
    if (!owned.empty()) {
      ShardReader r(file.read(owned.size() * sizeof(int64_t), "kv heads", buffer), where);
      for (const int64_t kv : owned) {
        const auto saved = r.get<int64_t>("kv heads");
        r.check(saved == kv, "kv heads", "{} saved where this retriever owns {} (the save was made with another shard "
                "plan)", saved, kv);
      }
    }
    for (const int64_t kv : owned) {
      const std::string shard = fmt::format("{} kv head {}", where, kv);
      ShardReader len(file.read(sizeof(uint64_t), "record bytes", buffer), shard);
      const auto bytes = len.get<uint64_t>("record bytes");
      len.check(bytes <= found.bytes - file.offset(), "record bytes", "{}, beyond the file's end", bytes);
      ShardReader r(file.read(static_cast<size_t>(bytes), "record", buffer), shard);
      ShardIndexParams params = expect.params;
      params.stagger_key = static_cast<int64_t>(l) * expect.n_kv_heads + kv;  // as build_layer sets it
      out.shards[l].push_back(HeadShard::load(r, expect.head_dim, expect.dtype, expect.group_size, params));
      r.check(r.left() == 0, "record", "{} bytes after the shard's end", r.left());
    }
  }
  ShardReader end(file.read(sizeof(uint64_t), "end mark", buffer), path);
  end.check(end.get<uint64_t>("end mark") == kEndMark, "end mark", "not found: the file is corrupt");
  return out;
}

}  // namespace ra::retriever
