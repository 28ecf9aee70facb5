#pragma once
// The YAML form of a run config, internal to launcher/config/: a parsed YAML tree read into a RunConfig.
// YAML scalars are untyped text, so each is converted to JSON by the type its key expects and then
// applied like a JSON value (config_keys.h); errors name "file:line" and the key.

#include <yaml-cpp/yaml.h>

#include <string>

#include "launcher/config/run_config.h"

namespace ra::config {

RunConfig run_config_from_yaml(const YAML::Node& root, const std::string& path);

}  // namespace ra::config
