// Vector-file IO: round trips for every format and dtype, byte-level pins of what we write,
// malformed inputs, and the make_blobs generator.
#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <omp.h>
#include <sys/resource.h>

#include <cmath>
#include <csignal>
#include <filesystem>
#include <limits>
#include <numeric>

#include "flashkm/io.h"
#include "test_util.h"

namespace flashkm {
namespace {

using ::testing::HasSubstr;
using testing::int32_bytes;
using testing::npy_bytes;
using testing::pod_bytes;
using testing::read_bytes;
using testing::TempDir;
using testing::write_bytes;

// Message of the flashkm::Error that f throws ("" and a failure when it does not throw).
template <typename F>
std::string error_of(F&& f) {
  try {
    f();
  } catch (const Error& e) {
    return e.what();
  }
  ADD_FAILURE() << "expected a flashkm::Error";
  return "";
}

std::vector<float> iota_floats(size_t count, float scale) {
  std::vector<float> v(count);
  for (size_t i = 0; i < count; ++i) v[i] = scale * float(i) - 3.25f;
  return v;
}

// fvecs row r of dimension d, as the TEXMEX format defines it: int32 d then d floats.
std::string fvecs_bytes(const std::vector<float>& x, int32_t d) {
  std::string out;
  for (size_t r = 0; r * size_t(d) < x.size(); ++r)
    out += int32_bytes(d) + pod_bytes(x.data() + r * d, size_t(d));
  return out;
}

TEST(VectorIo, FormatFromPath) {
  EXPECT_EQ(format_from_path("a/b.fvecs"), FileFormat::Fvecs);
  EXPECT_EQ(format_from_path("b.bvecs"), FileFormat::Bvecs);
  EXPECT_EQ(format_from_path("c.ivecs"), FileFormat::Ivecs);
  EXPECT_EQ(format_from_path("d.npy"), FileFormat::Npy);
  EXPECT_THAT(error_of([] { format_from_path("data.csv"); }),
              HasSubstr("data.csv: unknown file extension"));
  EXPECT_THAT(error_of([] { format_from_path(".npy"); }), HasSubstr("unknown file extension"));
}

TEST(VectorIo, FvecsRoundTripIsTheTexmexLayout) {
  TempDir dir;
  const int64_t n = 7, d = 5;
  std::vector<float> x = iota_floats(n * d, 0.5f);
  const std::string path = dir.file("x.fvecs");
  write_vectors(path, n, d, x.data());
  EXPECT_EQ(read_bytes(path), fvecs_bytes(x, d));

  VectorFile f(path);
  EXPECT_EQ(f.format(), FileFormat::Fvecs);
  EXPECT_EQ(f.dtype(), DType::Float32);
  EXPECT_EQ(f.n(), n);
  EXPECT_EQ(f.d(), d);
  EXPECT_EQ(f.float_data(), nullptr);  // rows carry headers: never in place

  std::vector<float> mid(2 * d);
  f.read_rows(3, 2, mid.data());
  EXPECT_EQ(mid, std::vector<float>(x.begin() + 3 * d, x.begin() + 5 * d));

  Matrix m = read_matrix(path);
  EXPECT_FALSE(m.is_mapped());
  ASSERT_EQ(m.n(), n);
  ASSERT_EQ(m.d(), d);
  EXPECT_EQ(std::vector<float>(m.data(), m.data() + n * d), x);
}

TEST(VectorIo, NpyFloat32IsWrittenLikeNumpyAndReadInPlace) {
  TempDir dir;
  const int64_t n = 2, d = 3;
  std::vector<float> x = iota_floats(n * d, 1.0f);
  const std::string path = dir.file("x.npy");
  write_vectors(path, n, d, x.data());
  // Exactly the bytes numpy.save writes for this array.
  EXPECT_EQ(read_bytes(path),
            npy_bytes("{'descr': '<f4', 'fortran_order': False, 'shape': (2, 3), }",
                      pod_bytes(x.data(), x.size())));

  Matrix m = read_matrix(path);
  EXPECT_TRUE(m.is_mapped());
  EXPECT_EQ(std::vector<float>(m.data(), m.data() + n * d), x);
  // Copies share the mapping and stay valid after the original goes away.
  Matrix copy = m;
  m = Matrix();
  EXPECT_EQ(std::vector<float>(copy.data(), copy.data() + n * d), x);
}

TEST(VectorIo, OwnedMatrixCopiesItsBuffer) {
  Matrix a(2, 2, {1, 2, 3, 4});
  Matrix b = a;
  a = Matrix(1, 1, {9});
  EXPECT_EQ(std::vector<float>(b.data(), b.data() + 4), (std::vector<float>{1, 2, 3, 4}));
  EXPECT_THAT(error_of([] { Matrix(2, 3, {1, 2}); }), HasSubstr("2 x 3 given 2 values"));
}

TEST(VectorIo, LabelsRoundTripAsIvecsAndOneDimensionalNpy) {
  TempDir dir;
  std::vector<int32_t> labels = {4, 0, -1, 2147483647, 7};
  const int64_t n = int64_t(labels.size());

  const std::string iv = dir.file("l.ivecs");
  write_labels(iv, n, labels.data());
  std::string expect;
  for (int32_t l : labels) expect += int32_bytes(1) + int32_bytes(l);
  EXPECT_EQ(read_bytes(iv), expect);

  const std::string np = dir.file("l.npy");
  write_labels(np, n, labels.data());
  EXPECT_EQ(read_bytes(np), npy_bytes("{'descr': '<i4', 'fortran_order': False, 'shape': (5,), }",
                                      pod_bytes(labels.data(), labels.size())));

  for (const std::string& p : {iv, np}) {
    SCOPED_TRACE(p);
    IntMatrix m = read_int_matrix(p);
    EXPECT_EQ(m.n, n);
    EXPECT_EQ(m.d, 1);
    EXPECT_EQ(m.values, std::vector<int64_t>(labels.begin(), labels.end()));
  }
}

TEST(VectorIo, IntMatrixRoundTrip) {
  TempDir dir;
  const int64_t n = 3, d = 4;
  std::vector<int32_t> v(n * d);
  std::iota(v.begin(), v.end(), -5);
  for (const char* name : {"g.ivecs", "g.npy"}) {
    SCOPED_TRACE(name);
    write_int_matrix(dir.file(name), n, d, v.data());
    VectorFile f(dir.file(name));
    EXPECT_EQ(f.dtype(), DType::Int32);
    EXPECT_TRUE(f.is_integer());
    IntMatrix m = read_int_matrix(dir.file(name));
    EXPECT_EQ(m.n, n);
    EXPECT_EQ(m.d, d);
    EXPECT_EQ(m.values, std::vector<int64_t>(v.begin(), v.end()));
  }
}

TEST(VectorIo, BvecsConvertsBytesToFloats) {
  TempDir dir;
  const std::string path = dir.file("x.bvecs");
  const unsigned char rows[2][3] = {{0, 1, 255}, {128, 7, 42}};
  write_bytes(path,
              int32_bytes(3) + pod_bytes(rows[0], 3) + int32_bytes(3) + pod_bytes(rows[1], 3));
  VectorFile f(path);
  EXPECT_EQ(f.dtype(), DType::UInt8);
  Matrix m = read_matrix(path);
  ASSERT_EQ(m.n(), 2);
  ASSERT_EQ(m.d(), 3);
  EXPECT_EQ(std::vector<float>(m.data(), m.data() + 6),
            (std::vector<float>{0, 1, 255, 128, 7, 42}));
}

TEST(VectorIo, NpyFloat16ConvertsExactly) {
  TempDir dir;
  // IEEE binary16 encodings and their exact values, including subnormals, -0 and infinity.
  const uint16_t half[8] = {0x3C00, 0xC000, 0x3555, 0x7BFF, 0x0001, 0x03FF, 0x8000, 0x7C00};
  const float want[8] = {1.0f,
                         -2.0f,
                         0.333251953125f,
                         65504.0f,
                         std::ldexp(1.0f, -24),
                         std::ldexp(1023.0f, -24),
                         -0.0f,
                         std::numeric_limits<float>::infinity()};
  const std::string path = dir.file("h.npy");
  write_bytes(path, npy_bytes("{'descr': '<f2', 'fortran_order': False, 'shape': (4, 2), }",
                              pod_bytes(half, 8)));
  VectorFile f(path);
  EXPECT_EQ(f.dtype(), DType::Float16);
  EXPECT_EQ(f.float_data(), nullptr);
  Matrix m = read_matrix(path);
  ASSERT_EQ(m.n(), 4);
  ASSERT_EQ(m.d(), 2);
  for (int i = 0; i < 8; ++i) {
    EXPECT_EQ(m.data()[i], want[i]) << "half 0x" << std::hex << half[i];
    EXPECT_EQ(std::signbit(m.data()[i]), std::signbit(want[i])) << i;
  }
  std::vector<float> nan(1);
  const uint16_t h_nan = 0x7E00;
  write_bytes(path, npy_bytes("{'descr': '<f2', 'fortran_order': False, 'shape': (1, 1), }",
                              pod_bytes(&h_nan, 1)));
  VectorFile(path).read_rows(0, 1, nan.data());
  EXPECT_TRUE(std::isnan(nan[0]));
}

TEST(VectorIo, NpyOtherDtypesAndVersions) {
  TempDir dir;
  const double f8[3] = {1.5, -2.25, 1e30};
  write_bytes(dir.file("d.npy"), npy_bytes("{'descr': '<f8', 'fortran_order': False, "
                                           "'shape': (3, 1), }",
                                           pod_bytes(f8, 3)));
  Matrix m = read_matrix(dir.file("d.npy"));
  EXPECT_EQ(std::vector<float>(m.data(), m.data() + 3),
            (std::vector<float>{1.5f, -2.25f, float(1e30)}));

  const unsigned char u1[4] = {9, 8, 7, 6};
  // Different spacing, double quotes, key order and no trailing comma parse as numpy would.
  write_bytes(dir.file("u.npy"), npy_bytes(R"({"shape":(2,2),"fortran_order":False,"descr":"|u1"})",
                                           pod_bytes(u1, 4)));
  m = read_matrix(dir.file("u.npy"));
  EXPECT_EQ(std::vector<float>(m.data(), m.data() + 4), (std::vector<float>{9, 8, 7, 6}));

  const int64_t i8[2] = {int64_t(1) << 40, -3};
  write_bytes(dir.file("i.npy"),
              npy_bytes("{'descr': '<i8', 'fortran_order': False, 'shape': (2,), }",
                        pod_bytes(i8, 2), /*major=*/2));
  IntMatrix ids = read_int_matrix(dir.file("i.npy"));
  EXPECT_EQ(ids.n, 2);
  EXPECT_EQ(ids.d, 1);
  EXPECT_EQ(ids.values, (std::vector<int64_t>{int64_t(1) << 40, -3}));

  const float f4[2] = {3.0f, 4.0f};
  write_bytes(dir.file("v3.npy"),
              npy_bytes("{'descr': '<f4', 'fortran_order': False, 'shape': (1, 2), }",
                        pod_bytes(f4, 2), /*major=*/3));
  m = read_matrix(dir.file("v3.npy"));
  EXPECT_TRUE(m.is_mapped());
  EXPECT_EQ(std::vector<float>(m.data(), m.data() + 2), (std::vector<float>{3, 4}));
}

TEST(VectorIo, WritesAreAtomicAndReplaceOldFiles) {
  TempDir dir;
  const std::string path = dir.file("c.npy");
  std::vector<float> a(12, 1.0f), b(6, 2.0f);
  write_vectors(path, 4, 3, a.data());
  write_vectors(path, 2, 3, b.data());
  Matrix m = read_matrix(path);
  EXPECT_EQ(m.n(), 2);
  EXPECT_EQ(m.data()[5], 2.0f);
  // Only the destination is left behind: no temporary files.
  int entries = 0;
  for (const auto& e : std::filesystem::directory_iterator(dir.path())) {
    ++entries;
    EXPECT_EQ(e.path().filename(), "c.npy");
  }
  EXPECT_EQ(entries, 1);

  EXPECT_THAT(error_of([&] { write_vectors(dir.file("no/such/dir/x.fvecs"), 2, 3, b.data()); }),
              HasSubstr("no/such/dir/x.fvecs: cannot create a temporary file"));
  EXPECT_THAT(error_of([&] { write_vectors(dir.file("x.ivecs"), 2, 3, b.data()); }),
              HasSubstr("x.ivecs: float vectors are written as .fvecs or .npy"));
  EXPECT_THAT(error_of([&] { write_vectors(dir.file("x.txt"), 2, 3, b.data()); }),
              HasSubstr("x.txt: unknown file extension"));
  std::vector<int32_t> l(2);
  EXPECT_THAT(error_of([&] { write_labels(dir.file("l.fvecs"), 2, l.data()); }),
              HasSubstr("l.fvecs: int32 labels/ids are written as .ivecs or .npy"));
  EXPECT_THAT(error_of([&] { write_vectors(dir.file("z.npy"), 2, 0, b.data()); }),
              HasSubstr("d = 0"));
}

// A write that fails part way (here: the file-size limit, as a full disk would) throws,
// leaves the previous file intact, and leaves no temporary behind.
TEST(VectorIo, FailedWriteKeepsTheOldFile) {
  TempDir dir;
  const std::string path = dir.file("c.fvecs");
  std::vector<float> old(6, 1.0f), big(1 << 16, 2.0f);
  write_vectors(path, 2, 3, old.data());
  const std::string before = read_bytes(path);
  // Lower the soft file-size limit for the one write (no other thread writes files here).
  struct rlimit saved;
  ASSERT_EQ(::getrlimit(RLIMIT_FSIZE, &saved), 0);
  struct rlimit lim = saved;
  lim.rlim_cur = 1 << 14;
  auto old_handler = std::signal(SIGXFSZ, SIG_IGN);
  ASSERT_EQ(::setrlimit(RLIMIT_FSIZE, &lim), 0);
  std::string msg = error_of([&] { write_vectors(path, 1 << 10, 64, big.data()); });
  ASSERT_EQ(::setrlimit(RLIMIT_FSIZE, &saved), 0);
  std::signal(SIGXFSZ, old_handler);
  EXPECT_THAT(msg, HasSubstr(path + ": write failed: File too large"));
  EXPECT_EQ(read_bytes(path), before);
  int entries = 0;
  for (const auto& e : std::filesystem::directory_iterator(dir.path())) {
    ++entries;
    EXPECT_EQ(e.path().filename(), "c.fvecs");
  }
  EXPECT_EQ(entries, 1);
}

// ---- malformed files -------------------------------------------------------------------

TEST(VectorIoErrors, MissingAndEmptyFiles) {
  TempDir dir;
  EXPECT_THAT(error_of([&] { VectorFile f(dir.file("absent.fvecs")); }),
              HasSubstr("absent.fvecs: cannot open: No such file"));
  write_bytes(dir.file("empty.fvecs"), "");
  EXPECT_THAT(error_of([&] { VectorFile f(dir.file("empty.fvecs")); }),
              HasSubstr("empty.fvecs: empty file (0 rows)"));
}

TEST(VectorIoErrors, TruncatedFvecsNamesRowAndOffset) {
  TempDir dir;
  std::vector<float> x = iota_floats(3 * 4, 1.0f);
  std::string bytes = fvecs_bytes(x, 4);  // rows of 20 bytes
  const std::string path = dir.file("t.fvecs");
  write_bytes(path, bytes.substr(0, bytes.size() - 3));
  EXPECT_THAT(
      error_of([&] { VectorFile f(path); }),
      HasSubstr(path + ": truncated: row 2 at byte offset 40 needs 20 bytes, only 17 remain"));
  write_bytes(path, bytes.substr(0, 42));
  EXPECT_THAT(error_of([&] { VectorFile f(path); }),
              HasSubstr("row 2 at byte offset 40 has only 2 of the 4 header bytes"));
  write_bytes(path, bytes.substr(0, 2));
  EXPECT_THAT(error_of([&] { VectorFile f(path); }), HasSubstr("less than one row header"));
}

TEST(VectorIoErrors, FvecsRowOfAnotherDimension) {
  TempDir dir;
  const std::string path = dir.file("w.fvecs");
  std::vector<float> x = iota_floats(3 * 4, 1.0f);
  // Row 1 has 3 values instead of 4: the size no longer divides, found when opening.
  std::string bytes = fvecs_bytes({x.begin(), x.begin() + 4}, 4) +
                      fvecs_bytes({x.begin() + 4, x.begin() + 7}, 3) +
                      fvecs_bytes({x.begin() + 8, x.end()}, 4);
  write_bytes(path, bytes);
  EXPECT_THAT(error_of([&] { VectorFile f(path); }),
              HasSubstr(path + ": row 1 at byte offset 20 has dimension 3; expected 4"));

  // Row 2's header alone is wrong (size still divides): found when the row is read.
  bytes = fvecs_bytes(x, 4);
  int32_t bad = 5;
  std::memcpy(&bytes[40], &bad, 4);
  write_bytes(path, bytes);
  VectorFile f(path);
  EXPECT_EQ(f.n(), 3);
  std::vector<float> out(12);
  f.read_rows(0, 2, out.data());
  EXPECT_THAT(error_of([&] { f.read_rows(0, 3, out.data()); }),
              HasSubstr(path + ": row 2 at byte offset 40 has dimension 5; expected 4"));
  EXPECT_THAT(error_of([&] { read_matrix(path); }), HasSubstr("row 2 at byte offset 40"));

  std::string zero = int32_bytes(0);
  write_bytes(path, zero);
  EXPECT_THAT(error_of([&] { VectorFile f2(path); }),
              HasSubstr("row 0 at byte offset 0 has dimension 0; expected >= 1"));
}

TEST(VectorIoErrors, IvecsRowHeaderChecked) {
  TempDir dir;
  const std::string path = dir.file("l.ivecs");
  write_bytes(path, int32_bytes(1) + int32_bytes(7) + int32_bytes(2) + int32_bytes(8));
  EXPECT_THAT(error_of([&] { read_int_matrix(path); }),
              HasSubstr("row 1 at byte offset 8 has dimension 2; expected 1"));
}

TEST(VectorIoErrors, NpyHeaderProblems) {
  TempDir dir;
  const std::string path = dir.file("bad.npy");
  const float data[6] = {};
  const std::string payload = pod_bytes(data, 6);
  auto expect_error = [&](const std::string& bytes, const std::string& what) {
    write_bytes(path, bytes);
    std::string msg = error_of([&] { VectorFile f(path); });
    EXPECT_THAT(msg, HasSubstr(path + ": "));
    EXPECT_THAT(msg, HasSubstr(what));
  };
  std::string good =
      npy_bytes("{'descr': '<f4', 'fortran_order': False, 'shape': (2, 3), }", payload);
  std::string wrong_magic = good;
  wrong_magic[1] = 'X';
  expect_error(wrong_magic, "does not start with the magic");
  expect_error("\x93NUMPY", "does not start with the magic");
  std::string v9 = good;
  v9[6] = 9;
  expect_error(v9, "unsupported npy format version 9.0");
  expect_error(good.substr(0, 40), "truncated npy header");
  expect_error(npy_bytes("{'descr': '<f4', 'fortran_order': True, 'shape': (2, 3), }", payload),
               "Fortran (column-major) order");
  expect_error(npy_bytes("{'descr': '<c8', 'fortran_order': False, 'shape': (2, 3), }", payload),
               "unsupported npy dtype '<c8'");
  expect_error(npy_bytes("{'descr': '>f4', 'fortran_order': False, 'shape': (2, 3), }", payload),
               "unsupported npy dtype '>f4'");
  expect_error(npy_bytes("{'descr': '<f4', 'fortran_order': False, 'shape': (2, 3) ", payload),
               "malformed npy header: expected ',' or '}'");
  expect_error(npy_bytes("{'descr': '<f4', 'fortran_order': Nope, 'shape': (2, 3)}", payload),
               "malformed npy header: expected True or False");
  expect_error(npy_bytes("{'descr': '<f4', 'shape': (2, 3)}", payload),
               "missing key 'fortran_order'");
  expect_error(npy_bytes("{'descr': '<f4', 'fortran_order': False, 'shape': (2, x)}", payload),
               "expected a dimension");
  expect_error(
      npy_bytes("{'descr': '<f4', 'fortran_order': False, 'shape': (2, 3), 'x': 1}", payload),
      "unexpected key 'x'");
  expect_error(npy_bytes("{'descr': '<f4', 'fortran_order': False, 'shape': (1, 2, 3), }", payload),
               "npy array has 3 dimensions");
  expect_error(npy_bytes("{'descr': '<f4', 'fortran_order': False, 'shape': (), }", payload),
               "npy array has 0 dimensions");
  expect_error(npy_bytes("{'descr': '<f4', 'fortran_order': False, 'shape': (0, 3), }", ""),
               "npy array has 0 rows");
  expect_error(npy_bytes("{'descr': '<f4', 'fortran_order': False, 'shape': (2, 0), }", ""),
               "d = 0 columns");
  expect_error(npy_bytes("{'descr': '<f4', 'fortran_order': False, 'shape': (2, 3), }",
                         payload.substr(0, 20)),
               "truncated: shape (2, 3) of float32 needs 24 data bytes after the 128-byte header, "
               "the file has 20");
  expect_error(
      npy_bytes("{'descr': '<f4', 'fortran_order': False, 'shape': (2, 3), }", payload + "xx"),
      "trailing bytes");
  expect_error(npy_bytes("{'descr': '<f4', 'fortran_order': False, "
                         "'shape': (4611686018427387904, 4), }",
                         payload),
               "overflows");
}

TEST(VectorIoErrors, WrongKindOfData) {
  TempDir dir;
  std::vector<int32_t> l = {1, 2};
  write_labels(dir.file("l.npy"), 2, l.data());
  EXPECT_THAT(error_of([&] { read_matrix(dir.file("l.npy")); }),
              HasSubstr("l.npy: holds int32 values (labels or ids); expected float vectors"));
  std::vector<float> x(4);
  write_vectors(dir.file("x.fvecs"), 2, 2, x.data());
  EXPECT_THAT(error_of([&] { read_int_matrix(dir.file("x.fvecs")); }),
              HasSubstr("x.fvecs: holds float32 values; expected int32 or int64"));
  VectorFile f(dir.file("x.fvecs"));
  EXPECT_THAT(error_of([&] { f.read_rows(1, 2, x.data()); }),
              HasSubstr("rows [1, 3) requested; the file has 2 rows"));
}

// ---- make_blobs ------------------------------------------------------------------------

TEST(MakeBlobs, DeterministicAndThreadIndependent) {
  const int64_t n = 3000, d = 5, c = 4;  // several 1024-row blocks, the last one partial
  std::vector<float> a(n * d), b(n * d);
  std::vector<int32_t> la(n), lb(n);
  const int saved = omp_get_max_threads();
  omp_set_num_threads(1);
  make_blobs(n, d, c, 99, 0.5, a.data(), la.data());
  omp_set_num_threads(3);
  make_blobs(n, d, c, 99, 0.5, b.data(), lb.data());
  omp_set_num_threads(saved);
  EXPECT_EQ(a, b);
  EXPECT_EQ(la, lb);
  make_blobs(n, d, c, 100, 0.5, b.data(), lb.data());
  EXPECT_NE(a, b);
  // Without labels the points are the same.
  make_blobs(n, d, c, 99, 0.5, b.data());
  EXPECT_EQ(a, b);
}

TEST(MakeBlobs, IsTheDocumentedMixture) {
  const int64_t n = 40000, d = 3, c = 4;
  const double spread = 0.5;
  std::vector<float> x(n * d);
  std::vector<int32_t> label(n);
  make_blobs(n, d, c, 7, spread, x.data(), label.data());

  // Spread 0 puts every point exactly on its center: recover the centers from it.
  std::vector<float> exact(n * d);
  std::vector<int32_t> label0(n);
  make_blobs(n, d, c, 7, 0.0, exact.data(), label0.data());
  EXPECT_EQ(label, label0);
  std::vector<double> center(c * d, std::nan(""));
  for (int64_t i = 0; i < n; ++i)
    for (int64_t j = 0; j < d; ++j) {
      double& ref = center[label[i] * d + j];
      if (std::isnan(ref)) ref = exact[i * d + j];
      ASSERT_EQ(exact[i * d + j], float(ref)) << "point " << i << " is not on its center";
    }
  for (double v : center) {
    EXPECT_GE(v, -10.0);
    EXPECT_LT(v, 10.0);
  }

  // Noise: mean 0, standard deviation spread, per coordinate; labels near uniform.
  std::vector<int64_t> count(c, 0);
  double sum = 0, sum2 = 0, within1 = 0;
  for (int64_t i = 0; i < n; ++i) {
    ++count[label[i]];
    for (int64_t j = 0; j < d; ++j) {
      double z = (double(x[i * d + j]) - center[label[i] * d + j]) / spread;
      sum += z;
      sum2 += z * z;
      within1 += std::fabs(z) <= 1.0;
    }
  }
  const double m = double(n * d);
  // Tolerances are about 7 standard errors of each statistic for m = 120000 samples.
  EXPECT_NEAR(sum / m, 0.0, 0.02);
  EXPECT_NEAR(sum2 / m, 1.0, 0.03);
  EXPECT_NEAR(within1 / m, 0.682689, 0.01);  // normal, not merely unit variance
  for (int64_t k = 0; k < c; ++k) EXPECT_NEAR(double(count[k]) / n, 0.25, 0.015) << k;
}

TEST(MakeBlobs, RejectsBadArguments) {
  std::vector<float> x(4);
  EXPECT_THAT(error_of([&] { make_blobs(0, 2, 1, 1, 1.0, x.data()); }), HasSubstr("n = 0"));
  EXPECT_THAT(error_of([&] { make_blobs(2, 0, 1, 1, 1.0, x.data()); }), HasSubstr("d = 0"));
  EXPECT_THAT(error_of([&] { make_blobs(2, 2, 0, 1, 1.0, x.data()); }), HasSubstr("n_centers = 0"));
  EXPECT_THAT(error_of([&] { make_blobs(2, 2, 1, 1, -1.0, x.data()); }), HasSubstr("spread = -1"));
  EXPECT_THAT(error_of([&] { make_blobs(2, 2, 1, 1, std::nan(""), x.data()); }),
              HasSubstr("spread = nan"));
}

}  // namespace
}  // namespace flashkm
