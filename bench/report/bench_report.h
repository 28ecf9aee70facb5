#pragma once
// What every benchmark reports, in one form (STYLE §10): rows as JSON objects, written one per line to the
// --json file, printed as a fixed-width table on stdout, and plotted to a PNG by bench/report/plot_rows.py.
// `ra bench retrieval`, `ra bench transport` and `ra bench decode` share it, so their files read alike.

#include <nlohmann/json.hpp>

#include <fstream>
#include <span>
#include <string>

namespace ra::bench {

// The --json file: one JSON object per line, flushed after each so an interrupted sweep keeps its rows.
// An empty path writes nothing. Callers check good() and name their own flag in the error.
class JsonLines {
 public:
  explicit JsonLines(const std::string& path);

  bool enabled() const { return enabled_; }
  // As std::ofstream's: good() right after construction says whether the file opened; bad() after
  // close() whether a write failed. Both are "fine" when disabled.
  bool good() const { return !enabled_ || out_.good(); }
  bool bad() const { return enabled_ && out_.bad(); }
  // `line` must be one JSON object without a newline.
  void write(const std::string& line);
  void write(const nlohmann::json& row) { write(row.dump()); }
  void close();

 private:
  bool enabled_ = false;
  std::ofstream out_;
};

// One column of a table: the row's field `key` under `header`, `width` characters wide (0: as long as
// it is), left-aligned when `left`. `spec` is the fmt precision and type for numbers (".4f"); empty
// prints strings and integers as they are. `gap` separates it from the previous column.
struct Column {
  std::string key;
  std::string header;
  int width = 0;
  bool left = false;
  std::string spec;
  std::string gap = " ";
};

// The header line and one row's line, without the newline. A field the row lacks, or null, shows "-".
std::string table_header(std::span<const Column> columns);
std::string table_row(std::span<const Column> columns, const nlohmann::json& row);

// Draws the rows of a JSON-lines file to a PNG with bench/report/plot_rows.py (the chart follows the
// rows' fields: see the script). Python: $RA_PYTHON, else /usr/bin/python3 (Debian's has matplotlib,
// scripts/setup.sh), else python3 on PATH. Throws ra::Error with the command line when it fails.
// An empty title uses the JSON path.
void plot_rows(const std::string& json_path, const std::string& png_path, const std::string& title = "");

}  // namespace ra::bench
