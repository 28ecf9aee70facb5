// Reading a --config file: its format by extension, its syntax errors with the place.

#include <yaml-cpp/yaml.h>

#include <algorithm>
#include <cctype>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <string>

#include "common/error.h"
#include "launcher/config/config_yaml.h"
#include "launcher/config/run_config.h"

namespace ra {
namespace {

using json = nlohmann::json;

std::string lower_extension(const std::string& path) {
  std::string ext = std::filesystem::path(path).extension().string();
  std::transform(ext.begin(), ext.end(), ext.begin(), [](unsigned char ch) { return std::tolower(ch); });
  return ext;
}

}  // namespace

RunConfig load_run_config(const std::string& path) {
  const std::string ext = lower_extension(path);
  RA_REQUIRE(ext == ".yaml" || ext == ".yml" || ext == ".json",
             "{}: unknown config format '{}' (expected .yaml, .yml or .json)", path, ext);
  std::ifstream in(path, std::ios::binary);
  RA_REQUIRE(in.good(), "{}: cannot open the config file", path);
  std::stringstream text;
  text << in.rdbuf();
  if (ext == ".json") {
    json j;
    try {
      j = json::parse(text.str());
    } catch (const json::exception& e) {  // parse_error, and out_of_range for a number too large (1e99999)
      raise("{}: JSON syntax error: {}", path, e.what());
    }
    return run_config_from_json(j, path);
  }
  YAML::Node root;
  try {
    root = YAML::Load(text.str());
  } catch (const YAML::Exception& e) {
    raise("{}:{}:{}: YAML syntax error: {}", path, e.mark.line + 1, e.mark.column + 1, e.msg);
  }
  return config::run_config_from_yaml(root, path);
}

}  // namespace ra
