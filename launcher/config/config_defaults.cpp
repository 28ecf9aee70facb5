// The defaults of every key, as the docs and tests list them. The defaults themselves are the member
// initializers in run_config.h (one typed place); this renders them as YAML text beside each key's doc.

#include <string>
#include <utility>
#include <vector>

#include "launcher/config/config_schema.h"
#include "launcher/config/config_value.h"

namespace ra {

using config::expected_type;
using config::FieldType;
using config::visit_fields;
using config::yaml_text;

std::vector<ConfigField> run_config_fields() {
  RunConfig defaults;
  defaults.geometry.emplace();
  std::vector<ConfigField> out;
  visit_fields([&](std::string_view key, std::string_view doc, auto acc) {
    using T = FieldType<decltype(acc)>;
    std::string type = expected_type<T>();
    if (type.starts_with("a ")) type = type.substr(2);
    else if (type.starts_with("an ")) type = type.substr(3);
    out.push_back({std::string(key), type, yaml_text(acc(std::as_const(defaults))), std::string(doc)});
  });
  return out;
}

}  // namespace ra
