#include "launcher/config/config_keys.h"

#include <fmt/format.h>

#include <algorithm>
#include <limits>
#include <string_view>
#include <vector>

#include "common/error.h"
#include "launcher/config/config_schema.h"
#include "launcher/config/config_value.h"

namespace ra::config {
namespace {

size_t edit_distance(std::string_view a, std::string_view b) {
  std::vector<size_t> row(b.size() + 1);
  for (size_t j = 0; j <= b.size(); ++j) row[j] = j;
  for (size_t i = 1; i <= a.size(); ++i) {
    size_t diag = row[0];
    row[0] = i;
    for (size_t j = 1; j <= b.size(); ++j) {
      const size_t up = row[j];
      row[j] = std::min({row[j] + 1, row[j - 1] + 1, diag + (a[i - 1] == b[j - 1] ? 0 : 1)});
      diag = up;
    }
  }
  return row[b.size()];
}

}  // namespace

[[noreturn]] void unknown_key(const std::string& where, const std::string& key) {
  std::string best;
  size_t best_d = std::numeric_limits<size_t>::max();
  visit_fields([&](std::string_view k, std::string_view, auto) {
    const std::string_view tail = k.substr(k.find('.') == std::string_view::npos ? 0 : k.find('.') + 1);
    // A key given without its section ("top_k" for "index.top_k") is the best guess there is.
    const size_t d = tail != k && tail == key ? 0
                                              : std::min(edit_distance(key, k), edit_distance(key, tail) + (tail == k ? 0 : 1));
    if (d < best_d) { best_d = d; best = std::string(k); }
  });
  const bool close = best_d <= std::max<size_t>(2, key.size() / 4);
  raise("{}: unknown key '{}'{}", where, key, close ? fmt::format(" (did you mean '{}'?)", best) : "");
}

void apply_key(RunConfig& c, const std::string& key, const json& v, const std::string& where) {
  bool found = false;
  if (in_geometry(key) && !c.geometry) c.geometry.emplace();
  visit_fields([&](std::string_view k, std::string_view, auto acc) {
    if (!found && k == key) {
      read_value(acc(c), v, key, where);
      found = true;
    }
  });
  if (!found) unknown_key(where, key);
}

void require_undotted(const std::string& key, const std::string& where) {
  const size_t dot = key.find('.');
  RA_REQUIRE(dot == std::string::npos, "{}: unknown key '{}': write nested keys as a map ('{}:' then '  {}:')",
             where, key, key.substr(0, dot), key.substr(dot + 1));
}

bool open_section(RunConfig& c, const std::string& section, bool is_null, bool is_map, const std::string& where,
                  const std::string& got) {
  if (is_null) {
    if (section == "geometry") c.geometry.reset();
    return false;
  }
  RA_REQUIRE(is_map, "{}: key '{}' must be a map of keys (got {})", where, section, got);
  if (section == "geometry" && !c.geometry) c.geometry.emplace();
  return true;
}

}  // namespace ra::config
