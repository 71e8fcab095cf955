#include "kernels/reference.h"

#include <cmath>

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

void means(int64_t n, int64_t d, const float* x, const int32_t* labels, int64_t k,
           std::vector<double>* sums, std::vector<int64_t>* counts) {
  sums->assign(k * d, 0.0);
  counts->assign(k, 0);
  for (int64_t i = 0; i < n; ++i) {
    ++(*counts)[labels[i]];
    for (int64_t j = 0; j < d; ++j) (*sums)[labels[i] * d + j] += x[i * d + j];
  }
  for (int64_t c = 0; c < k; ++c)
    if ((*counts)[c] > 0)
      for (int64_t j = 0; j < d; ++j) (*sums)[c * d + j] /= double((*counts)[c]);
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
