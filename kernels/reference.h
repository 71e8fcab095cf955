// PRIVATE to kernels/ and tests: the float64 reference Lloyd, the oracle of the exactness
// contract (DESIGN.md section 2). Plain loops, no tiling, no SIMD, no threads: slow on purpose.
#pragma once

#include <cstdint>
#include <vector>

#include "flashkm/kmeans.h"

namespace flashkm {
namespace reference {

/// Distance in float64 written the plain way: L2 = sum (x_j - c_j)^2, IP = sum x_j c_j.
double distance(Metric metric, const float* x, const float* c, int64_t d);

/// Nearest centroid of each point (L2: smallest, IP: largest; ties: lowest index), and its
/// float64 distance.
void assign(Metric metric, int64_t n, int64_t d, const float* x, int64_t k, const float* c,
            std::vector<int32_t>* labels, std::vector<double>* dist);

/// The sum of values rounded once to the nearest double, ties to even (Shewchuk's
/// partials, as Python's math.fsum): the exact sum wherever a double holds it.
double fsum(const std::vector<double>& values);

/// Per-cluster means of the labelled points, fsum(points) / count in float64 (rows of empty
/// clusters: zeros), and counts. Rounded to float, they are the contract's centroids.
void means(int64_t n, int64_t d, const float* x, const int32_t* labels, int64_t k,
           std::vector<double>* sums, std::vector<int64_t>* counts);

/// True when point x's labels a and b are a tie in the contract's sense:
/// |dist(x, a) - dist(x, b)| <= 1e-6 (|x|^2 + max(|c_a|^2, |c_b|^2)).
bool is_tie(Metric metric, const float* x, const float* ca, const float* cb, int64_t d);

}  // namespace reference
}  // namespace flashkm
