// The JSON form of a run config: what --config FILE.json and the plan file's "config" hold.

#include <string>

#include "common/error.h"
#include "launcher/config/config_keys.h"
#include "launcher/config/config_schema.h"
#include "launcher/config/config_value.h"

namespace ra {

using config::apply_key;
using config::in_geometry;
using config::is_section;
using config::json;
using config::open_section;
using config::require_undotted;
using config::shown;
using config::visit_fields;
using config::write_value;

RunConfig run_config_from_json(const json& j, const std::string& source) {
  RA_REQUIRE(j.is_object(), "{}: a run config must be a map of keys (got {})", source, shown(j));
  RunConfig c;
  for (const auto& [key, value] : j.items()) {
    if (!is_section(key)) {
      require_undotted(key, source);
      apply_key(c, key, value, source);
      continue;
    }
    if (!open_section(c, key, value.is_null(), value.is_object(), source, shown(value))) continue;
    for (const auto& [inner, v] : value.items()) {
      require_undotted(inner, source);
      apply_key(c, key + "." + inner, v, source);
    }
  }
  return c;
}

json to_json(const RunConfig& config) {
  json j = json::object();
  visit_fields([&](std::string_view key, std::string_view, auto acc) {
    if (in_geometry(key) && !config.geometry) return;
    const size_t dot = key.find('.');
    if (dot == std::string_view::npos) {
      j[std::string(key)] = write_value(acc(config));
    } else {
      j[std::string(key.substr(0, dot))][std::string(key.substr(dot + 1))] = write_value(acc(config));
    }
  });
  if (!config.geometry) j["geometry"] = nullptr;
  return j;
}

}  // namespace ra
