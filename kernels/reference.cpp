#include "kernels/reference.h"

#include <cmath>
#include <utility>

namespace flashkm {
namespace reference {

double distance(Metric metric, const float* x, const float* c, int64_t d) {
  double s = 0;
  for (int64_t j = 0; j < d; ++j) {
    if (metric == Metric::L2) {
      double t = double(x[j]) - double(c[j]);
      s += t * t;
    } else {
      s += double(x[j]) * double(c[j]);
    }
  }
  return s;
}

void assign(Metric metric, int64_t n, int64_t d, const float* x, int64_t k, const float* c,
            std::vector<int32_t>* labels, std::vector<double>* dist) {
  labels->assign(n, -1);
  dist->assign(n, 0);
  for (int64_t i = 0; i < n; ++i) {
    int32_t arg = 0;
    double best = distance(metric, x + i * d, c, d);
    for (int64_t j = 1; j < k; ++j) {
      double v = distance(metric, x + i * d, c + j * d, d);
      if (metric == Metric::L2 ? v < best : v > best) {
        best = v;
        arg = static_cast<int32_t>(j);
      }
    }
    (*labels)[i] = arg;
    (*dist)[i] = best;
  }
}

double fsum(const std::vector<double>& values) {
  // Shewchuk's exact partials, then their correctly rounded total (Python's math.fsum).
  std::vector<double> partials;
  for (double x : values) {
    size_t i = 0;
    for (double y : partials) {
      if (std::fabs(x) < std::fabs(y)) std::swap(x, y);
      const double hi = x + y;
      const double lo = y - (hi - x);
      if (lo != 0) partials[i++] = lo;
      x = hi;
    }
    partials.resize(i);
    partials.push_back(x);
  }
  size_t n = partials.size();
  if (n == 0) return 0;
  double hi = partials[--n], lo = 0;
  while (n > 0) {
    const double x = hi, y = partials[--n];
    hi = x + y;
    lo = y - (hi - x);
    if (lo != 0) break;
  }
  // Half-way cases: the partials below decide the direction.
  if (n > 0 && ((lo < 0 && partials[n - 1] < 0) || (lo > 0 && partials[n - 1] > 0))) {
    const double y = lo * 2, x = hi + y;
    if (y == x - hi) hi = x;
  }
  return hi;
}

void means(int64_t n, int64_t d, const float* x, const int32_t* labels, int64_t k,
           std::vector<double>* sums, std::vector<int64_t>* counts) {
  sums->assign(k * d, 0.0);
  counts->assign(k, 0);
  std::vector<std::vector<int64_t>> members(k);
  for (int64_t i = 0; i < n; ++i) members[labels[i]].push_back(i);
  std::vector<double> column;
  for (int64_t c = 0; c < k; ++c) {
    (*counts)[c] = int64_t(members[c].size());
    if (members[c].empty()) continue;
    for (int64_t j = 0; j < d; ++j) {
      column.clear();
      for (int64_t i : members[c]) column.push_back(x[i * d + j]);
      (*sums)[c * d + j] = fsum(column) / double((*counts)[c]);
    }
  }
}

bool is_tie(Metric metric, const float* x, const float* ca, const float* cb, int64_t d) {
  double xx = 0, aa = 0, bb = 0;
  for (int64_t j = 0; j < d; ++j) {
    xx += double(x[j]) * x[j];
    aa += double(ca[j]) * ca[j];
    bb += double(cb[j]) * cb[j];
  }
  double da = distance(metric, x, ca, d), db = distance(metric, x, cb, d);
  return std::fabs(da - db) <= 1e-6 * (xx + std::max(aa, bb));
}

}  // namespace reference
}  // namespace flashkm
