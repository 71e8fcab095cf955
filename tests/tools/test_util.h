// Helpers shared by the tools tests: a scratch directory and raw file writing.
#pragma once

#include <gtest/gtest.h>
#include <stdlib.h>
#include <unistd.h>

#include <cstdint>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <string>
#include <vector>

#include "tests/temp_dir.h"

namespace flashkm {
namespace testing {

inline void write_bytes(const std::string& path, const std::string& bytes) {
  std::ofstream f(path, std::ios::binary | std::ios::trunc);
  f.write(bytes.data(), std::streamsize(bytes.size()));
  ASSERT_TRUE(f.good()) << path;
}

inline std::string read_bytes(const std::string& path) {
  std::ifstream f(path, std::ios::binary);
  return std::string(std::istreambuf_iterator<char>(f), std::istreambuf_iterator<char>());
}

template <typename T>
std::string pod_bytes(const T* v, size_t count) {
  return std::string(reinterpret_cast<const char*>(v), count * sizeof(T));
}

inline std::string int32_bytes(int32_t v) { return pod_bytes(&v, 1); }

/// A .npy file exactly as numpy 1.x writes it (version 1.0, dict padded with spaces to a
/// 64-byte multiple, ending in '\n'), from the dict text, followed by data.
inline std::string npy_bytes(const std::string& dict, const std::string& data, int major = 1) {
  std::string h = dict;
  const size_t prefix = major == 1 ? 10 : 12;
  size_t total = prefix + h.size() + 1;
  h.append((64 - total % 64) % 64, ' ');
  h += '\n';
  std::string out = "\x93NUMPY";
  out += char(major);
  out += '\0';
  uint32_t len = uint32_t(h.size());
  out += char(len & 0xff);
  out += char((len >> 8) & 0xff);
  if (major != 1) {
    out += char((len >> 16) & 0xff);
    out += char(len >> 24);
  }
  return out + h + data;
}

}  // namespace testing
}  // namespace flashkm
