// The drivers' result tables: markdown, so a run's output can be pasted into
// README.md as it is.
#pragma once

#include <cstddef>
#include <string>
#include <vector>

namespace mpod_bench {

// v printed with `decimals` decimals, or "-" if it is not finite (a row or
// ratio with a side that never ran).
std::string fmt(double v, int decimals);

// Prints rows on stdout as a markdown table, rows[0] being the header. The
// first `text_cols` columns are left-aligned (text), the others right-aligned
// (numbers); every column is padded to its widest cell.
void print_table(const std::vector<std::vector<std::string>>& rows, size_t text_cols);

}  // namespace mpod_bench
