#include "paired.hpp"

#include <algorithm>
#include <cmath>
#include <limits>
#include <stdexcept>

#include "table.hpp"

namespace mpod_bench {

double quantile(std::vector<double> v, double p) {
  if (v.empty()) return std::numeric_limits<double>::quiet_NaN();
  std::sort(v.begin(), v.end());
  const double at = p * double(v.size() - 1);
  const size_t lo = size_t(std::floor(at));
  const size_t hi = std::min(lo + 1, v.size() - 1);
  return v[lo] + (v[hi] - v[lo]) * (at - double(lo));
}

PairedSummary summarise_pairs(const std::vector<double>& a, const std::vector<double>& b) {
  if (a.size() != b.size())
    throw std::invalid_argument("summarise_pairs: " + std::to_string(a.size()) + " figures of one side against " +
                                std::to_string(b.size()) + " of the other; every trial needs its partner");
  PairedSummary s;
  s.pairs = a.size();
  std::vector<double> ratios;
  for (size_t i = 0; i < a.size(); ++i) {
    ratios.push_back(b[i] / a[i]);
    if (b[i] > a[i]) ++s.b_above;
  }
  s.a_median = quantile(a, 0.5);
  s.b_median = quantile(b, 0.5);
  s.ratio_q1 = quantile(ratios, 0.25);
  s.ratio_median = quantile(ratios, 0.5);
  s.ratio_q3 = quantile(ratios, 0.75);
  return s;
}

std::string ratio_with_range(const PairedSummary& s, int decimals) {
  if (s.pairs == 0) return "-";
  return fmt(s.ratio_median, decimals) + " (" + fmt(s.ratio_q1, decimals) + "-" + fmt(s.ratio_q3, decimals) + ")";
}

}  // namespace mpod_bench
