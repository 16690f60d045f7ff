#include "table.hpp"

#include <algorithm>
#include <cmath>
#include <cstdio>

namespace mpod_bench {

std::string fmt(double v, int decimals) {
  if (!std::isfinite(v)) return "-";
  char b[32];
  std::snprintf(b, sizeof b, "%.*f", decimals, v);
  return b;
}

void print_table(const std::vector<std::vector<std::string>>& rows, size_t text_cols) {
  std::vector<size_t> w(rows[0].size(), 0);
  for (auto& r : rows)
    for (size_t i = 0; i < r.size(); ++i) w[i] = std::max(w[i], r[i].size());
  auto line = [&](const std::vector<std::string>& r) {
    std::string out = "|";
    for (size_t i = 0; i < r.size(); ++i) {
      const size_t pad = w[i] - r[i].size();
      out += " " + (i < text_cols ? r[i] + std::string(pad, ' ') : std::string(pad, ' ') + r[i]) + " |";
    }
    std::puts(out.c_str());
  };
  line(rows[0]);
  std::string sep = "|";
  for (size_t i = 0; i < w.size(); ++i)
    sep += (i < text_cols ? ":" : "-") + std::string(w[i], '-') + (i < text_cols ? "-|" : ":|");
  std::puts(sep.c_str());
  for (size_t i = 1; i < rows.size(); ++i) line(rows[i]);
}

}  // namespace mpod_bench
