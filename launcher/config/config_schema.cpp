#include "launcher/config/config_schema.h"

#include "common/error.h"

namespace ra {
namespace {

using config::joined_names;

// `what` names the kind in errors: "unknown attention mode 'x' (expected one of full, window, ...)".
template <typename T, typename Table>
T parse_named(const Table& table, std::string_view s, std::string_view what) {
  for (const auto& [n, v] : table) if (n == s) return v;
  raise("unknown {} '{}' (expected one of {})", what, s, joined_names(table));
}

template <typename T, typename Table>
std::string_view name_of(const Table& table, T value, std::string_view type) {
  for (const auto& [n, v] : table) if (v == value) return n;
  RA_ASSERT_MSG(false, "{} {}", type, static_cast<int>(value));
}

}  // namespace

AttentionMode parse_mode(std::string_view s) { return parse_named<AttentionMode>(config::kModes, s, "attention mode"); }
std::string_view name(AttentionMode mode) { return name_of(config::kModes, mode, "AttentionMode"); }

TransportKind parse_transport(std::string_view s) {
  return parse_named<TransportKind>(config::kTransports, s, "transport");
}
std::string_view name(TransportKind transport) { return name_of(config::kTransports, transport, "TransportKind"); }
std::string_view name(GraphNavigation navigation) {
  return name_of(config::kNavigations, navigation, "GraphNavigation");
}

bool needs_retrievers(AttentionMode mode) {
  return mode == AttentionMode::kFlat || mode == AttentionMode::kIvf || mode == AttentionMode::kHnsw ||
         mode == AttentionMode::kRetrieval;
}

}  // namespace ra
