#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstdio>
#include <cstring>
#include <vector>

#include "flashkm/io.h"
#include "io/npy_header.h"

namespace flashkm {
namespace {

// A file written under a temporary name in the destination's directory and renamed over the
// destination by commit(); destroyed uncommitted, it removes the temporary. rename() within
// one directory is atomic on POSIX file systems, so readers see the old file or the new one.
class AtomicFile {
 public:
  explicit AtomicFile(const std::string& path) : path_(path), tmp_(path + ".tmp.XXXXXX") {
    int fd = ::mkstemp(tmp_.data());
    FLASHKM_THROW_IF_NOT(fd >= 0, "%s: cannot create a temporary file beside it: %s", path_.c_str(),
                         std::strerror(errno));
    // mkstemp creates 0600; outputs are ordinary data files.
    if (::fchmod(fd, 0644) != 0 || (f_ = ::fdopen(fd, "wb")) == nullptr) {
      int err = errno;
      ::close(fd);
      ::unlink(tmp_.c_str());
      FLASHKM_THROW("%s: cannot prepare the temporary file: %s", path_.c_str(), std::strerror(err));
    }
  }
  AtomicFile(const AtomicFile&) = delete;
  AtomicFile& operator=(const AtomicFile&) = delete;
  ~AtomicFile() {
    if (f_ != nullptr) {
      std::fclose(f_);
      ::unlink(tmp_.c_str());
    }
  }

  void write(const void* p, size_t bytes) {
    if (bytes == 0) return;
    FLASHKM_THROW_IF_NOT(std::fwrite(p, 1, bytes, f_) == bytes, "%s: write failed: %s",
                         path_.c_str(), std::strerror(errno));
  }

  void commit() {
    int err = 0;
    if (std::fflush(f_) != 0 || ::fsync(::fileno(f_)) != 0) err = errno;
    if (std::fclose(f_) != 0 && err == 0) err = errno;
    f_ = nullptr;
    if (err != 0) {
      ::unlink(tmp_.c_str());
      FLASHKM_THROW("%s: write failed: %s", path_.c_str(), std::strerror(err));
    }
    if (::rename(tmp_.c_str(), path_.c_str()) != 0) {
      err = errno;
      ::unlink(tmp_.c_str());
      FLASHKM_THROW("%s: cannot rename the finished temporary file into place: %s", path_.c_str(),
                    std::strerror(err));
    }
  }

 private:
  std::string path_;
  std::string tmp_;
  std::FILE* f_ = nullptr;
};

void check_shape(const std::string& path, int64_t n, int64_t d) {
  FLASHKM_THROW_IF_NOT(n >= 0, "%s: cannot write n = %lld rows; expected n >= 0", path.c_str(),
                       (long long)n);
  FLASHKM_THROW_IF_NOT(d >= 1 && d <= INT32_MAX,
                       "%s: cannot write rows of dimension d = %lld; expected 1 <= d <= 2^31-1",
                       path.c_str(), (long long)d);
}

// *vecs rows: [int32 d][d elements of 4 bytes]. Rows are staged in a buffer of whole rows so
// large matrices are written in big chunks.
template <typename T>
void write_vecs(AtomicFile& f, int64_t n, int64_t d, const T* v) {
  static_assert(sizeof(T) == 4, "*vecs elements written here are 4 bytes");
  const int32_t dim = static_cast<int32_t>(d);
  const size_t row_bytes = 4 + size_t(d) * 4;
  const int64_t rows_per_chunk = std::max<int64_t>(1, (int64_t(1) << 22) / int64_t(row_bytes));
  std::vector<unsigned char> buf;
  for (int64_t r0 = 0; r0 < n; r0 += rows_per_chunk) {
    int64_t rows = std::min(rows_per_chunk, n - r0);
    buf.resize(size_t(rows) * row_bytes);
    for (int64_t r = 0; r < rows; ++r) {
      unsigned char* p = buf.data() + size_t(r) * row_bytes;
      std::memcpy(p, &dim, 4);
      std::memcpy(p + 4, v + (r0 + r) * d, size_t(d) * 4);
    }
    f.write(buf.data(), buf.size());
  }
}

void write_npy(AtomicFile& f, const char* descr, const std::vector<int64_t>& shape,
               const void* data, size_t bytes) {
  std::string header = io_detail::format_npy_header(descr, shape);
  f.write(header.data(), header.size());
  f.write(data, bytes);
}

}  // namespace

void write_vectors(const std::string& path, int64_t n, int64_t d, const float* x) {
  FileFormat fmt = format_from_path(path);
  FLASHKM_THROW_IF_NOT(fmt == FileFormat::Fvecs || fmt == FileFormat::Npy,
                       "%s: float vectors are written as .fvecs or .npy, not .%s", path.c_str(),
                       to_string(fmt));
  check_shape(path, n, d);
  AtomicFile f(path);
  if (fmt == FileFormat::Fvecs) {
    write_vecs(f, n, d, x);
  } else {
    write_npy(f, "<f4", {n, d}, x, size_t(n) * size_t(d) * sizeof(float));
  }
  f.commit();
}

namespace {
void write_ints(const std::string& path, int64_t n, int64_t d, const int32_t* v, bool one_d) {
  FileFormat fmt = format_from_path(path);
  FLASHKM_THROW_IF_NOT(fmt == FileFormat::Ivecs || fmt == FileFormat::Npy,
                       "%s: int32 labels/ids are written as .ivecs or .npy, not .%s", path.c_str(),
                       to_string(fmt));
  check_shape(path, n, d);
  AtomicFile f(path);
  if (fmt == FileFormat::Ivecs) {
    write_vecs(f, n, d, v);
  } else {
    std::vector<int64_t> shape = one_d ? std::vector<int64_t>{n} : std::vector<int64_t>{n, d};
    write_npy(f, "<i4", shape, v, size_t(n) * size_t(d) * sizeof(int32_t));
  }
  f.commit();
}
}  // namespace

void write_int_matrix(const std::string& path, int64_t n, int64_t d, const int32_t* v) {
  write_ints(path, n, d, v, false);
}

void write_labels(const std::string& path, int64_t n, const int32_t* labels) {
  write_ints(path, n, 1, labels, true);
}

}  // namespace flashkm
