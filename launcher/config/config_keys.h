#pragma once
// Applying the keys of a parsed config file to a RunConfig, internal to launcher/config/: the JSON and
// YAML readers share these, so both spell errors the same way. `where` names the place for errors: a
// file, "file:line", or "the plan file".

#include <nlohmann/json.hpp>

#include <string>

#include "launcher/config/run_config.h"

namespace ra::config {

// Throws ra::Error "<where>: unknown key '<key>'", with the closest known key when one is close.
[[noreturn]] void unknown_key(const std::string& where, const std::string& key);

// Applies one dotted key (e.g. "index.top_k"). Unknown keys and type errors name `where` and the key.
void apply_key(RunConfig& c, const std::string& key, const nlohmann::json& v, const std::string& where);

// One spelling per key: "index.top_k" is written as a nested map, never as a dotted key.
void require_undotted(const std::string& key, const std::string& where);

// Opens a section map ("index", "geometry"): null clears geometry; anything else but a map is an error.
// Returns whether the section's keys follow.
bool open_section(RunConfig& c, const std::string& section, bool is_null, bool is_map, const std::string& where,
                  const std::string& got);

}  // namespace ra::config
