// PRIVATE to tools/io: the .npy header (format 1.0-3.0), parsed and formatted.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>
#include <vector>

#include "flashkm/io.h"

namespace flashkm {
namespace io_detail {

struct NpyHeader {
  DType dtype = DType::Float32;
  std::vector<int64_t> shape;  ///< as written; 0-d, 1-d and 2-d are accepted by the parser
  size_t data_offset = 0;      ///< bytes before the first element
};

/// Parses the magic, version, and header dict of the first size bytes of a .npy file. Throws
/// flashkm::Error naming path for a bad magic or version, a dict that does not parse, a
/// missing or unknown key, fortran_order True, or an unsupported dtype.
NpyHeader parse_npy_header(const std::string& path, const unsigned char* bytes, size_t size);

/// The complete preamble (magic, version 1.0, header dict padded to a multiple of 64 bytes)
/// of a C-order little-endian file of the given descr ("<f4", "<i4") and shape.
std::string format_npy_header(const char* descr, const std::vector<int64_t>& shape);

/// Bytes of one element.
size_t dtype_size(DType t);

}  // namespace io_detail
}  // namespace flashkm
