#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <utility>

#include "flashkm/io.h"
#include "io/npy_header.h"

namespace flashkm {

using io_detail::dtype_size;

const char* to_string(DType t) {
  switch (t) {
    case DType::Float32:
      return "float32";
    case DType::Float16:
      return "float16";
    case DType::Float64:
      return "float64";
    case DType::UInt8:
      return "uint8";
    case DType::Int32:
      return "int32";
    case DType::Int64:
      return "int64";
  }
  FLASHKM_ASSERT(false);
  return "";
}

const char* to_string(FileFormat f) {
  switch (f) {
    case FileFormat::Fvecs:
      return "fvecs";
    case FileFormat::Bvecs:
      return "bvecs";
    case FileFormat::Ivecs:
      return "ivecs";
    case FileFormat::Npy:
      return "npy";
  }
  FLASHKM_ASSERT(false);
  return "";
}

FileFormat format_from_path(const std::string& path) {
  auto ends_with = [&](const char* ext) {
    size_t n = std::strlen(ext);
    return path.size() > n && path.compare(path.size() - n, n, ext) == 0;
  };
  if (ends_with(".fvecs")) return FileFormat::Fvecs;
  if (ends_with(".bvecs")) return FileFormat::Bvecs;
  if (ends_with(".ivecs")) return FileFormat::Ivecs;
  if (ends_with(".npy")) return FileFormat::Npy;
  FLASHKM_THROW("%s: unknown file extension; expected .fvecs, .bvecs, .ivecs or .npy",
                path.c_str());
}

namespace {

int32_t load_i32(const unsigned char* p) {
  int32_t v;
  std::memcpy(&v, p, sizeof(v));
  return v;
}

float half_to_float(uint16_t h) {
  uint32_t sign = uint32_t(h & 0x8000) << 16;
  uint32_t exp = (h >> 10) & 0x1f;
  uint32_t mant = h & 0x3ff;
  uint32_t bits;
  if (exp == 0) {
    if (mant == 0) {
      bits = sign;
    } else {
      // Subnormal half: renormalise into float's wider exponent range.
      int e = -1;
      do {
        ++e;
        mant <<= 1;
      } while ((mant & 0x400) == 0);
      bits = sign | uint32_t(127 - 15 - e) << 23 | (mant & 0x3ff) << 13;
    }
  } else if (exp == 31) {
    bits = sign | 0x7f800000u | mant << 13;
  } else {
    bits = sign | (exp + 127 - 15) << 23 | mant << 13;
  }
  float f;
  std::memcpy(&f, &bits, sizeof(f));
  return f;
}

}  // namespace

VectorFile::VectorFile(const std::string& path) : path_(path) {
  format_ = format_from_path(path);
  int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  FLASHKM_THROW_IF_NOT(fd >= 0, "%s: cannot open: %s", path.c_str(), std::strerror(errno));
  struct stat st;
  if (::fstat(fd, &st) != 0) {
    int err = errno;
    ::close(fd);
    FLASHKM_THROW("%s: cannot stat: %s", path.c_str(), std::strerror(err));
  }
  if (!S_ISREG(st.st_mode)) {
    ::close(fd);
    FLASHKM_THROW("%s: not a regular file", path.c_str());
  }
  size_ = static_cast<size_t>(st.st_size);
  if (size_ == 0) {
    ::close(fd);
    FLASHKM_THROW("%s: empty file (0 rows); expected at least one vector", path.c_str());
  }
  void* m = ::mmap(nullptr, size_, PROT_READ, MAP_PRIVATE, fd, 0);
  int err = errno;
  ::close(fd);  // the mapping keeps the file alive
  FLASHKM_THROW_IF_NOT(m != MAP_FAILED, "%s: cannot mmap %zu bytes: %s", path.c_str(), size_,
                       std::strerror(err));
  map_ = static_cast<const unsigned char*>(m);

  try {
    if (format_ == FileFormat::Npy) {
      io_detail::NpyHeader h = io_detail::parse_npy_header(path_, map_, size_);
      dtype_ = h.dtype;
      data_offset_ = h.data_offset;
      FLASHKM_THROW_IF_NOT(h.shape.size() == 1 || h.shape.size() == 2,
                           "%s: npy array has %zu dimensions; expected a 2-D (n, d) matrix or a "
                           "1-D vector",
                           path_.c_str(), h.shape.size());
      n_ = h.shape[0];
      d_ = h.shape.size() == 2 ? h.shape[1] : 1;
      FLASHKM_THROW_IF_NOT(n_ > 0, "%s: npy array has 0 rows; expected at least one",
                           path_.c_str());
      FLASHKM_THROW_IF_NOT(d_ > 0, "%s: npy array has d = 0 columns; expected d >= 1",
                           path_.c_str());
      size_t elems, bytes;
      FLASHKM_THROW_IF_NOT(!__builtin_mul_overflow(size_t(n_), size_t(d_), &elems) &&
                               !__builtin_mul_overflow(elems, dtype_size(dtype_), &bytes),
                           "%s: npy shape (%lld, %lld) overflows", path_.c_str(), (long long)n_,
                           (long long)d_);
      size_t have = size_ - data_offset_;
      FLASHKM_THROW_IF_NOT(have == bytes,
                           "%s: %s: shape (%lld, %lld) of %s needs %zu data bytes after the "
                           "%zu-byte header, the file has %zu",
                           path_.c_str(), have < bytes ? "truncated" : "trailing bytes",
                           (long long)n_, (long long)d_, to_string(dtype_), bytes, data_offset_,
                           have);
    } else {
      dtype_ = format_ == FileFormat::Fvecs   ? DType::Float32
               : format_ == FileFormat::Bvecs ? DType::UInt8
                                              : DType::Int32;
      FLASHKM_THROW_IF_NOT(size_ >= 4, "%s: truncated: %zu bytes, less than one row header",
                           path_.c_str(), size_);
      int32_t dim = load_i32(map_);
      FLASHKM_THROW_IF_NOT(dim > 0, "%s: row 0 at byte offset 0 has dimension %d; expected >= 1",
                           path_.c_str(), dim);
      d_ = dim;
      size_t row_bytes = 4 + size_t(d_) * dtype_size(dtype_);
      if (size_ % row_bytes != 0) {
        // Walk the rows to say which one is wrong: a row of another dimension is the usual
        // cause, a cut-off last row the other.
        size_t off = 0;
        for (int64_t row = 0;; ++row) {
          FLASHKM_THROW_IF_NOT(size_ - off >= 4,
                               "%s: truncated: row %lld at byte offset %zu has only %zu of the 4 "
                               "header bytes",
                               path_.c_str(), (long long)row, off, size_ - off);
          int32_t dr = load_i32(map_ + off);
          FLASHKM_THROW_IF_NOT(dr == dim,
                               "%s: row %lld at byte offset %zu has dimension %d; expected %d "
                               "(the dimension of row 0)",
                               path_.c_str(), (long long)row, off, dr, dim);
          FLASHKM_THROW_IF_NOT(size_ - off >= row_bytes,
                               "%s: truncated: row %lld at byte offset %zu needs %zu bytes, only "
                               "%zu remain",
                               path_.c_str(), (long long)row, off, row_bytes, size_ - off);
          off += row_bytes;
        }
      }
      n_ = static_cast<int64_t>(size_ / row_bytes);
      data_offset_ = 0;
    }
  } catch (...) {
    close();
    throw;
  }
}

VectorFile::~VectorFile() { close(); }

VectorFile::VectorFile(VectorFile&& o) noexcept
    : path_(std::move(o.path_)),
      format_(o.format_),
      dtype_(o.dtype_),
      n_(o.n_),
      d_(o.d_),
      map_(std::exchange(o.map_, nullptr)),
      size_(std::exchange(o.size_, 0)),
      data_offset_(o.data_offset_) {}

VectorFile& VectorFile::operator=(VectorFile&& o) noexcept {
  if (this != &o) {
    close();
    path_ = std::move(o.path_);
    format_ = o.format_;
    dtype_ = o.dtype_;
    n_ = o.n_;
    d_ = o.d_;
    map_ = std::exchange(o.map_, nullptr);
    size_ = std::exchange(o.size_, 0);
    data_offset_ = o.data_offset_;
  }
  return *this;
}

void VectorFile::close() {
  if (map_ != nullptr) ::munmap(const_cast<unsigned char*>(map_), size_);
  map_ = nullptr;
  size_ = 0;
}

size_t VectorFile::row_offset(int64_t i) const {
  size_t elem_bytes = size_t(d_) * dtype_size(dtype_);
  if (format_ == FileFormat::Npy) return data_offset_ + size_t(i) * elem_bytes;
  return size_t(i) * (4 + elem_bytes) + 4;
}

void VectorFile::check_vecs_row(int64_t i) const {
  size_t header = row_offset(i) - 4;
  int32_t dim = load_i32(map_ + header);
  FLASHKM_THROW_IF_NOT(dim == d_,
                       "%s: row %lld at byte offset %zu has dimension %d; expected %lld (the "
                       "dimension of row 0)",
                       path_.c_str(), (long long)i, header, dim, (long long)d_);
}

void VectorFile::check_range(int64_t begin, int64_t count) const {
  FLASHKM_THROW_IF_NOT(begin >= 0 && count >= 0 && begin <= n_ && count <= n_ - begin,
                       "%s: rows [%lld, %lld) requested; the file has %lld rows", path_.c_str(),
                       (long long)begin, (long long)(begin + count), (long long)n_);
}

const float* VectorFile::float_data() const {
  if (format_ != FileFormat::Npy || dtype_ != DType::Float32) return nullptr;
  const unsigned char* p = map_ + data_offset_;
  if (reinterpret_cast<uintptr_t>(p) % alignof(float) != 0) return nullptr;
  return reinterpret_cast<const float*>(p);
}

void VectorFile::read_rows(int64_t begin, int64_t count, float* out) const {
  FLASHKM_THROW_IF_NOT(!is_integer(), "%s: holds %s values (labels or ids); expected float vectors",
                       path_.c_str(), to_string(dtype_));
  check_range(begin, count);
  const bool vecs = format_ != FileFormat::Npy;
  for (int64_t i = begin; i < begin + count; ++i) {
    if (vecs) check_vecs_row(i);
    const unsigned char* src = map_ + row_offset(i);
    float* dst = out + (i - begin) * d_;
    switch (dtype_) {
      case DType::Float32:
        std::memcpy(dst, src, size_t(d_) * sizeof(float));
        break;
      case DType::Float16:
        for (int64_t j = 0; j < d_; ++j) {
          uint16_t h;
          std::memcpy(&h, src + 2 * j, 2);
          dst[j] = half_to_float(h);
        }
        break;
      case DType::Float64:
        for (int64_t j = 0; j < d_; ++j) {
          double v;
          std::memcpy(&v, src + 8 * j, 8);
          dst[j] = static_cast<float>(v);
        }
        break;
      case DType::UInt8:
        for (int64_t j = 0; j < d_; ++j) dst[j] = src[j];
        break;
      case DType::Int32:
      case DType::Int64:
        FLASHKM_ASSERT(false);
    }
  }
}

void VectorFile::read_int_rows(int64_t begin, int64_t count, int64_t* out) const {
  FLASHKM_THROW_IF_NOT(is_integer(), "%s: holds %s values; expected int32 or int64 labels/ids",
                       path_.c_str(), to_string(dtype_));
  check_range(begin, count);
  const bool vecs = format_ != FileFormat::Npy;
  for (int64_t i = begin; i < begin + count; ++i) {
    if (vecs) check_vecs_row(i);
    const unsigned char* src = map_ + row_offset(i);
    int64_t* dst = out + (i - begin) * d_;
    if (dtype_ == DType::Int32) {
      for (int64_t j = 0; j < d_; ++j) dst[j] = load_i32(src + 4 * j);
    } else {
      std::memcpy(dst, src, size_t(d_) * sizeof(int64_t));
    }
  }
}

Matrix::Matrix(int64_t n, int64_t d, std::vector<float> values)
    : n_(n), d_(d), owned_(std::move(values)) {
  FLASHKM_THROW_IF_NOT(n >= 0 && d >= 0 && owned_.size() == size_t(n) * size_t(d),
                       "Matrix of %lld x %lld given %zu values", (long long)n, (long long)d,
                       owned_.size());
}

Matrix read_matrix(const std::string& path) {
  auto file = std::make_shared<const VectorFile>(path);
  if (file->float_data() != nullptr) {
    Matrix m;
    m.n_ = file->n();
    m.d_ = file->d();
    m.file_ = std::move(file);
    return m;
  }
  std::vector<float> values(size_t(file->n()) * size_t(file->d()));
  file->read_rows(0, file->n(), values.data());
  return Matrix(file->n(), file->d(), std::move(values));
}

IntMatrix read_int_matrix(const std::string& path) {
  VectorFile file(path);
  IntMatrix m;
  m.n = file.n();
  m.d = file.d();
  m.values.resize(size_t(m.n) * size_t(m.d));
  file.read_int_rows(0, m.n, m.values.data());
  return m;
}

}  // namespace flashkm
