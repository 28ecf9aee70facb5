#include "launcher/config/config_yaml.h"

#include <fmt/format.h>

#include <charconv>
#include <cstdint>
#include <string>
#include <string_view>
#include <type_traits>
#include <vector>

#include "common/error.h"
#include "launcher/config/config_keys.h"
#include "launcher/config/config_schema.h"
#include "launcher/config/config_value.h"

namespace ra {
namespace config {
namespace {

json yaml_generic(const YAML::Node& n) {
  switch (n.Type()) {
    case YAML::NodeType::Map: {
      json o = json::object();
      for (auto it = n.begin(); it != n.end(); ++it) o[it->first.Scalar()] = yaml_generic(it->second);
      return o;
    }
    case YAML::NodeType::Sequence: {
      json a = json::array();
      for (const auto& item : n) a.push_back(yaml_generic(item));
      return a;
    }
    case YAML::NodeType::Scalar:
      return n.Scalar();
    default:
      return nullptr;
  }
}

template <typename T>
json yaml_typed(const YAML::Node& n) {
  if (!n.IsScalar()) {
    if constexpr (std::is_same_v<T, std::vector<std::string>>) {
      if (n.IsSequence()) {
        json a = json::array();
        for (const auto& item : n) a.push_back(item.IsScalar() ? json(item.Scalar()) : yaml_generic(item));
        return a;
      }
    }
    return yaml_generic(n);
  }
  const std::string& s = n.Scalar();
  const char* first = s.data();
  const char* last = s.data() + s.size();
  if constexpr (std::is_same_v<T, bool>) {
    if (s == "true") return true;  // YAML 1.2 core schema booleans
    if (s == "false") return false;
  } else if constexpr (std::is_same_v<T, float>) {
    double d = 0;
    const auto r = std::from_chars(first, last, d);
    if (r.ec == std::errc() && r.ptr == last) return d;
  } else if constexpr (std::is_integral_v<T>) {
    int64_t i = 0;
    auto r = std::from_chars(first, last, i);
    if (r.ec == std::errc() && r.ptr == last) return i;
    uint64_t u = 0;
    r = std::from_chars(first, last, u);
    if (r.ec == std::errc() && r.ptr == last) return u;
  }
  return s;  // strings, enums, and numbers that did not parse (read_value reports the type)
}

// `key_node` is the key's own node: its line names the place, also for a null value.
void apply_yaml_key(RunConfig& c, const std::string& key, const YAML::Node& key_node, const YAML::Node& v,
                    const std::string& path) {
  const std::string where = fmt::format("{}:{}", path, key_node.Mark().line + 1);
  json converted;
  bool found = false;
  visit_fields([&](std::string_view k, std::string_view, auto acc) {
    if (!found && k == key) {
      converted = yaml_typed<FieldType<decltype(acc)>>(v);
      found = true;
    }
  });
  if (!found) unknown_key(where, key);
  apply_key(c, key, converted, where);
}

}  // namespace

RunConfig run_config_from_yaml(const YAML::Node& root, const std::string& path) {
  RunConfig c;
  if (root.IsNull()) return c;  // an empty file: all defaults
  RA_REQUIRE(root.IsMap(), "{}: a run config must be a map of keys (got {})", path, shown(yaml_generic(root)));
  for (auto it = root.begin(); it != root.end(); ++it) {
    const std::string key = it->first.Scalar();
    const YAML::Node value = it->second;
    const std::string where = fmt::format("{}:{}", path, it->first.Mark().line + 1);
    if (!is_section(key)) {
      require_undotted(key, where);
      apply_yaml_key(c, key, it->first, value, path);
      continue;
    }
    if (!open_section(c, key, value.IsNull(), value.IsMap(), where, shown(yaml_generic(value)))) continue;
    for (auto in = value.begin(); in != value.end(); ++in) {
      require_undotted(in->first.Scalar(), fmt::format("{}:{}", path, in->first.Mark().line + 1));
      apply_yaml_key(c, key + "." + in->first.Scalar(), in->first, in->second, path);
    }
  }
  return c;
}

}  // namespace config

using config::visit_fields;
using config::yaml_text;

std::string to_yaml(const RunConfig& config) {
  std::string out =
      "# ra run configuration: the effective value of every key (defaults < --config < flags).\n"
      "# Load it back with --config FILE.yaml; configs/README.md documents each key.\n";
  std::string section;
  visit_fields([&](std::string_view key, std::string_view doc, auto acc) {
    const size_t dot = key.find('.');
    const std::string sec = dot == std::string_view::npos ? "" : std::string(key.substr(0, dot));
    if (sec == "geometry" && !config.geometry) {
      if (section != "geometry") out += "geometry: null  # none: the model's own geometry\n";
      section = sec;
      return;
    }
    if (sec != section && !sec.empty()) out += sec + ":\n";
    section = sec;
    const std::string_view leaf = dot == std::string_view::npos ? key : key.substr(dot + 1);
    out += fmt::format("{}{}: {}  # {}\n", sec.empty() ? "" : "  ", leaf, yaml_text(acc(config)), doc);
  });
  return out;
}

}  // namespace ra
