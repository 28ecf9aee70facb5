#pragma once
// Typed values of the run configuration's fields, internal to launcher/config/: the JSON value of a key
// read into its field (wrong types are errors naming the place, the key and the expected type), a field
// written back as JSON or as YAML text, and the type names the errors and the key table use.

#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include <cstdint>
#include <limits>
#include <string>
#include <type_traits>
#include <vector>

#include "common/error.h"
#include "launcher/config/config_schema.h"

namespace ra::config {

using json = nlohmann::json;

template <typename T>
std::string expected_type() {
  if constexpr (std::is_same_v<T, std::string>) return "a string";
  else if constexpr (std::is_same_v<T, std::vector<std::string>>) return "a list of strings";
  else if constexpr (std::is_same_v<T, float>) return "a number";
  else if constexpr (std::is_same_v<T, bool>) return "true or false";
  else if constexpr (kIsEnumField<T>) return "one of " + joined_names(enum_names<T>());
  else if constexpr (std::is_unsigned_v<T>) return "a non-negative integer";
  else if constexpr (sizeof(T) == 4) return "a 32-bit integer";
  else return "an integer";
}

inline std::string shown(const json& v) {
  std::string s = v.dump(-1, ' ', false, json::error_handler_t::replace);
  return s.size() > 80 ? s.substr(0, 77) + "..." : s;
}

[[noreturn]] inline void type_error(const std::string& where, const std::string& key, const std::string& expected,
                             const json& v) {
  raise("{}: key '{}' must be {} (got {})", where, key, expected, shown(v));
}

template <typename T>
void read_value(T& out, const json& v, const std::string& key, const std::string& where) {
  if constexpr (std::is_same_v<T, std::string>) {
    if (v.is_null()) out.clear();
    else if (v.is_string()) out = v.get<std::string>();
    else type_error(where, key, expected_type<T>(), v);
  } else if constexpr (std::is_same_v<T, std::vector<std::string>>) {
    if (v.is_null()) { out.clear(); return; }
    if (!v.is_array()) type_error(where, key, expected_type<T>(), v);
    std::vector<std::string> items;
    for (const json& item : v) {
      if (!item.is_string()) type_error(where, key, expected_type<T>(), v);
      items.push_back(item.get<std::string>());
    }
    out = std::move(items);
  } else if constexpr (std::is_same_v<T, float>) {
    if (!v.is_number()) type_error(where, key, expected_type<T>(), v);
    out = v.get<float>();
  } else if constexpr (std::is_same_v<T, bool>) {
    if (!v.is_boolean()) type_error(where, key, expected_type<T>(), v);
    out = v.get<bool>();
  } else if constexpr (kIsEnumField<T>) {
    if (!v.is_string()) type_error(where, key, expected_type<T>(), v);
    const std::string s = v.get<std::string>();
    bool found = false;
    for (const auto& [n, m] : enum_names<T>()) if (n == s) { out = m; found = true; }
    if (!found) type_error(where, key, expected_type<T>(), v);
  } else {
    static_assert(std::is_integral_v<T>);
    if (!v.is_number_integer()) type_error(where, key, expected_type<T>(), v);
    if (v.is_number_unsigned()) {
      const auto u = v.get<uint64_t>();
      if (u > static_cast<uint64_t>(std::numeric_limits<T>::max())) type_error(where, key, expected_type<T>(), v);
      out = static_cast<T>(u);
    } else {
      const auto i = v.get<int64_t>();
      if (i < static_cast<int64_t>(std::numeric_limits<T>::min()) ||
          (i > 0 && static_cast<uint64_t>(i) > static_cast<uint64_t>(std::numeric_limits<T>::max()))) {
        type_error(where, key, expected_type<T>(), v);
      }
      out = static_cast<T>(i);
    }
  }
}

template <typename T>
json write_value(const T& v) {
  if constexpr (kIsEnumField<T>) return std::string(name(v));
  else return json(v);
}

// Plain text of a value as it appears in YAML: strings double-quoted (JSON escapes are YAML escapes),
// numbers in shortest round-trip form, enums bare, lists in flow style.
template <typename T>
std::string yaml_text(const T& v) {
  if constexpr (std::is_same_v<T, std::string>) return json(v).dump(-1, ' ', false, json::error_handler_t::replace);
  else if constexpr (std::is_same_v<T, std::vector<std::string>>) {
    std::string out = "[";
    for (size_t i = 0; i < v.size(); ++i) {
      if (i > 0) out += ", ";
      out += yaml_text(v[i]);
    }
    return out + "]";
  } else if constexpr (kIsEnumField<T>) {
    return std::string(name(v));
  } else {
    return fmt::format("{}", v);
  }
}

}  // namespace ra::config
