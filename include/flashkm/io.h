// PUBLIC: reading and writing vector files, and a deterministic test-data generator.
//
// Formats (chosen by file extension, case-sensitive):
//   .fvecs  rows of [int32 d][d x float32]        (the TEXMEX/faiss benchmark format)
//   .bvecs  rows of [int32 d][d x uint8]
//   .ivecs  rows of [int32 d][d x int32]          (labels, ids, ground truth)
//   .npy    NumPy format 1.0/2.0/3.0, C order, 1-D (read as n x 1) or 2-D; dtypes <f4, <f2,
//           <f8, |u1 (or <u1), <i4, <i8. Little-endian, as on every platform flashkm targets.
//
// Reading maps the file read-only (mmap). A .npy float32 file is used in place: a 1M x 128
// input costs no RAM beyond the page cache. Other dtypes and the *vecs formats, whose rows
// carry a 4-byte header, are converted into an owned float32 buffer.
//
// Writing goes to a temporary file in the destination directory that is renamed over the
// destination only once complete, so a crash or a full disk never leaves a half-written file.
//
// Errors: every malformed input (missing file, unknown extension, bad magic, npy header that
// does not parse, fortran order, unsupported dtype, 0 rows, d = 0, truncated file, a *vecs row
// whose dimension differs from the first row's) throws flashkm::Error. The message names the
// file, and for *vecs rows the 0-based row and its byte offset.
//
// Thread safety: a VectorFile / Matrix is immutable after construction; concurrent reads are
// safe.
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "flashkm/error.h"

namespace flashkm {

/// Element type stored in a file.
enum class DType { Float32, Float16, Float64, UInt8, Int32, Int64 };

/// File layout, from the extension.
enum class FileFormat { Fvecs, Bvecs, Ivecs, Npy };

const char* to_string(DType t);       ///< "float32", "float16", "float64", "uint8", ...
const char* to_string(FileFormat f);  ///< "fvecs", "bvecs", "ivecs", "npy"

/// Format from the extension of path; throws flashkm::Error for any other extension.
FileFormat format_from_path(const std::string& path);

/// A read-only memory-mapped vector file: n rows of d elements of dtype. The constructor
/// checks the header and the file size (O(1) for npy; the *vecs row headers are checked as the
/// rows are read, and all of them when the size does not match, to name the bad row).
/// Move-only; the mapping lives as long as the object.
class VectorFile {
 public:
  explicit VectorFile(const std::string& path);
  ~VectorFile();
  VectorFile(VectorFile&& other) noexcept;
  VectorFile& operator=(VectorFile&& other) noexcept;
  VectorFile(const VectorFile&) = delete;
  VectorFile& operator=(const VectorFile&) = delete;

  const std::string& path() const { return path_; }
  FileFormat format() const { return format_; }
  DType dtype() const { return dtype_; }
  int64_t n() const { return n_; }
  int64_t d() const { return d_; }
  bool is_integer() const { return dtype_ == DType::Int32 || dtype_ == DType::Int64; }

  /// The n x d float32 rows in place when the file stores exactly that contiguously (npy <f4,
  /// suitably aligned), else nullptr.
  const float* float_data() const;

  /// Converts rows [begin, begin + count) of a float32/16/64 or uint8 file to float32 into
  /// out (count x d). Throws for integer files, out-of-range rows, or a bad *vecs row header.
  void read_rows(int64_t begin, int64_t count, float* out) const;

  /// Copies rows [begin, begin + count) of an integer file (ivecs, npy <i4/<i8) into out
  /// (count x d) as int64. Throws for float files, out-of-range rows, or a bad row header.
  void read_int_rows(int64_t begin, int64_t count, int64_t* out) const;

 private:
  // Byte offset of row i's first element (past the 4-byte header for *vecs).
  size_t row_offset(int64_t i) const;
  void check_vecs_row(int64_t i) const;
  void check_range(int64_t begin, int64_t count) const;
  void close();

  std::string path_;
  FileFormat format_ = FileFormat::Npy;
  DType dtype_ = DType::Float32;
  int64_t n_ = 0, d_ = 0;
  const unsigned char* map_ = nullptr;  // whole file
  size_t size_ = 0;                     // bytes mapped
  size_t data_offset_ = 0;              // first byte of row 0 (npy: past the header)
};

/// A row-major n x d float32 matrix, either a view into a mapped npy file (kept alive by the
/// Matrix) or an owned buffer. Cheap to move; copies share the mapping or copy the buffer.
class Matrix {
 public:
  Matrix() = default;
  /// Owns values (n * d floats).
  Matrix(int64_t n, int64_t d, std::vector<float> values);

  int64_t n() const { return n_; }
  int64_t d() const { return d_; }
  const float* data() const { return file_ ? file_->float_data() : owned_.data(); }
  /// True when data() points into the mapped file (no copy was made).
  bool is_mapped() const { return file_ != nullptr; }

 private:
  friend Matrix read_matrix(const std::string& path);
  int64_t n_ = 0, d_ = 0;
  std::vector<float> owned_;
  std::shared_ptr<const VectorFile> file_;  // set when the rows are used in place
};

/// Reads a float32/float16/float64/uint8 file as float32: zero-copy for npy <f4, converted
/// otherwise.
Matrix read_matrix(const std::string& path);

/// An integer file (labels, ids): n rows of d int64 values.
struct IntMatrix {
  int64_t n = 0, d = 0;
  std::vector<int64_t> values;  ///< n x d, row-major
};

/// Reads an .ivecs or integer .npy (<i4, <i8) file.
IntMatrix read_int_matrix(const std::string& path);

/// Writes n x d float32 rows to a .fvecs or .npy (<f4, shape (n, d)) file, atomically.
/// Throws for any other extension, n < 0, d < 1, or an I/O failure (naming the path).
void write_vectors(const std::string& path, int64_t n, int64_t d, const float* x);

/// Writes n x d int32 rows to an .ivecs or .npy (<i4, shape (n, d)) file, atomically.
void write_int_matrix(const std::string& path, int64_t n, int64_t d, const int32_t* v);

/// Writes n labels to an .ivecs (n rows of dimension 1) or .npy (<i4, shape (n,)) file.
void write_labels(const std::string& path, int64_t n, const int32_t* labels);

/// Deterministic Gaussian mixture ("blobs"), identical on every platform and thread count:
/// n_centers centers drawn uniformly in the box [-10, 10]^d, then each point picks a center
/// uniformly and adds N(0, spread^2) noise per coordinate. Uses std::mt19937_64 and an
/// explicit Box-Muller transform (std::normal_distribution differs between standard
/// libraries). Points are generated in fixed blocks with per-block seeds, so the work is
/// spread over threads without changing the output.
///   out: n x d float32 (caller-allocated); true_labels: n center indices, or nullptr.
/// Throws for n < 1, d < 1, n_centers < 1, spread < 0 or non-finite.
void make_blobs(int64_t n, int64_t d, int64_t n_centers, uint64_t seed, double spread, float* out,
                int32_t* true_labels = nullptr);

}  // namespace flashkm
