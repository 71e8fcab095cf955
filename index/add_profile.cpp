#include "index/add_profile.h"

#include <mutex>

namespace flashkm {
namespace index {

namespace {
std::mutex mu;
AddProfile total;
}  // namespace

AddProfile add_profile() {
  std::lock_guard<std::mutex> lock(mu);
  return total;
}

void reset_add_profile() {
  std::lock_guard<std::mutex> lock(mu);
  total = AddProfile();
}

void record_add(const AddProfile& one) {
  std::lock_guard<std::mutex> lock(mu);
  total.calls += one.calls;
  total.vectors += one.vectors;
  total.assign_s += one.assign_s;
  total.encode_s += one.encode_s;
  total.ingested += one.ingested;
  total.build_s += one.build_s;
  total.finish_s += one.finish_s;
  total.write_s += one.write_s;
  total.total_s += one.total_s;
}

}  // namespace index
}  // namespace flashkm
