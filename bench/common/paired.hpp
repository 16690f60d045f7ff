// Comparing two sides measured in alternation (mpod's trial, DPDK's trial,
// mpod's, ...). On this kind of machine (a VM whose two vCPUs the host moves
// about) the cost of a line crossing between the cores changes 2-5x within
// a second, in both directions, so a side's best or median over separate
// runs partly measures when it ran. Each trial is instead paired with the
// other side's trial next to it in time, and the comparison is the median
// of the per-pair ratios: a state the machine was in for both trials of a
// pair cancels out.
#pragma once

#include <cstddef>
#include <string>
#include <vector>

namespace mpod_bench {

struct PairedSummary {
  size_t pairs = 0;
  double a_median = 0, b_median = 0;  // each side's median figure
  // Quartiles of b[i] / a[i] over the pairs (the 25th, 50th and 75th percentile).
  double ratio_q1 = 0, ratio_median = 0, ratio_q3 = 0;
  size_t b_above = 0;  // pairs with b[i] > a[i]
};

// a[i] and b[i] are the two sides' figures of pair i (times, or any figure
// whose ratio is meaningful). Requires a.size() == b.size(); with no pairs,
// every figure is NaN and `pairs` is 0. Throws std::invalid_argument on a
// size mismatch.
PairedSummary summarise_pairs(const std::vector<double>& a, const std::vector<double>& b);

// The p-quantile (0..1) of v, linearly interpolated between order
// statistics; NaN for an empty v.
double quantile(std::vector<double> v, double p);

// "1.12 (1.02-1.25)": the median ratio and its interquartile range.
std::string ratio_with_range(const PairedSummary& s, int decimals);

}  // namespace mpod_bench
