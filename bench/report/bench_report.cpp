#include "bench/report/bench_report.h"

#include <fmt/format.h>

#include <cstdlib>
#include <filesystem>
#include <iterator>
#include <string>
#include <string_view>

#include "common/error.h"

namespace ra::bench {
namespace {

std::string padded(const Column& c, const std::string& text) {
  if (c.width <= 0) return text;
  return fmt::format(fmt::runtime(c.left ? "{:<{}}" : "{:>{}}"), text, c.width);
}

std::string cell(const Column& c, const nlohmann::json& row) {
  const auto it = row.find(c.key);
  if (it == row.end() || it->is_null()) return padded(c, "-");
  if (it->is_string()) return padded(c, it->get<std::string>());
  if (!c.spec.empty()) {
    const std::string width = c.width > 0 ? std::to_string(c.width) : "";
    const std::string format = fmt::format("{{:{}{}{}}}", c.left ? "<" : ">", width, c.spec);  // e.g. "{:>8.4f}"
    return fmt::format(fmt::runtime(format), it->get<double>());
  }
  if (it->is_number_unsigned()) return padded(c, fmt::format("{}", it->get<uint64_t>()));
  if (it->is_number_integer()) return padded(c, fmt::format("{}", it->get<int64_t>()));
  return padded(c, it->dump());
}

}  // namespace

JsonLines::JsonLines(const std::string& path) : enabled_(!path.empty()) {
  if (enabled_) out_.open(path);
}

void JsonLines::write(const std::string& line) {
  if (enabled_) out_ << line << '\n' << std::flush;
}

void JsonLines::close() {
  if (enabled_ && out_.is_open()) out_.close();
}

std::string table_header(std::span<const Column> columns) {
  std::string out;
  for (size_t i = 0; i < columns.size(); ++i) {
    if (i > 0) out += columns[i].gap;
    out += padded(columns[i], columns[i].header);
  }
  return out;
}

std::string table_row(std::span<const Column> columns, const nlohmann::json& row) {
  std::string out;
  for (size_t i = 0; i < columns.size(); ++i) {
    if (i > 0) out += columns[i].gap;
    out += cell(columns[i], row);
  }
  return out;
}

void plot_rows(const std::string& json_path, const std::string& png_path, const std::string& title) {
  namespace fs = std::filesystem;
  // Debian's python3 has matplotlib (scripts/setup.sh); a python3 earlier on PATH may not.
  const char* env_python = std::getenv("RA_PYTHON");
  const std::string python = env_python ? env_python : fs::exists("/usr/bin/python3") ? "/usr/bin/python3" : "python3";
  auto quoted = [](std::string_view s) {  // one shell word, whatever it holds
    std::string q = "'";
    for (const char c : s) {
      if (c == '\'') {
        q.append("'\\''");
      } else {
        q.push_back(c);
      }
    }
    q.push_back('\'');
    return q;
  };
  std::string cmd = fmt::format("{} {}/bench/report/plot_rows.py {} {}", quoted(python), quoted(RA_SOURCE_DIR),
                                quoted(json_path), quoted(png_path));
  if (!title.empty()) fmt::format_to(std::back_inserter(cmd), " {}", quoted(title));
  RA_REQUIRE(std::system(cmd.c_str()) == 0, "plotting failed: {}", cmd);
}

}  // namespace ra::bench
