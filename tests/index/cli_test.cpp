// The index subcommands of the flashkm executable, run as subprocesses against a directory
// that the library then inspects (the library is the oracle for what the CLI did).
#include <gtest/gtest.h>
#include <sys/wait.h>

#include <cstdio>
#include <nlohmann/json.hpp>
#include <string>

#include "flashkm/index.h"
#include "flashkm/io.h"
#include "tests/index/index_test_util.h"

namespace flashkm {
namespace {

using testing::TempDir;

struct Result {
  int code;
  std::string out;
};

Result run(const std::string& args) {
  std::string cmd = std::string(FLASHKM_CLI) + " " + args + " 2>&1";
  FILE* p = ::popen(cmd.c_str(), "r");
  EXPECT_NE(p, nullptr);
  std::string out;
  char buf[4096];
  size_t r;
  while ((r = std::fread(buf, 1, sizeof(buf), p)) > 0) out.append(buf, r);
  int status = ::pclose(p);
  return {WIFEXITED(status) ? WEXITSTATUS(status) : -1, out};
}

TEST(IndexCli, AddRemoveReclusterInfoExportImport) {
  TempDir tmp;
  const int64_t n = 3000, d = 8;
  std::string dir = tmp.file("idx");
  std::vector<float> x = testing::skewed_blobs(n, d, 12, 5);
  {
    auto idx = IvfIndex::create(dir, d, "IVF8,Flat");
    IvfTrainParams p;
    p.kmeans.max_iter = 3;
    idx->train(n, x.data(), p);
  }
  write_vectors(tmp.file("x.fvecs"), n, d, x.data());
  std::vector<int32_t> ids(n);
  for (int64_t i = 0; i < n; ++i) ids[i] = int32_t(5 * i);
  write_int_matrix(tmp.file("ids.ivecs"), n, 1, ids.data());
  std::vector<int32_t> rm = {0, 5, 10, 99999};
  write_int_matrix(tmp.file("rm.ivecs"), int64_t(rm.size()), 1, rm.data());

  Result r = run("add --index " + dir + " --input " + tmp.file("x.fvecs") + " --ids " +
                 tmp.file("ids.ivecs") + " --batch 1000");
  ASSERT_EQ(r.code, 0) << r.out;
  // The same ids again are refused as a whole (exit code 1, error names the id).
  r = run("add --index " + dir + " --input " + tmp.file("x.fvecs") + " --ids " +
          tmp.file("ids.ivecs"));
  EXPECT_EQ(r.code, 1) << r.out;
  EXPECT_NE(r.out.find("id 0 is already in the index"), std::string::npos) << r.out;
  r = run("remove --index " + dir + " --ids " + tmp.file("rm.ivecs"));
  ASSERT_EQ(r.code, 0) << r.out;
  EXPECT_NE(r.out.find("3 of 4 ids removed"), std::string::npos) << r.out;
  r = run("recluster --index " + dir + " --nlist 6 --iters 3 --device cpu");
  ASSERT_EQ(r.code, 0) << r.out;

  r = run("info --index " + dir + " --json");
  ASSERT_EQ(r.code, 0) << r.out;
  nlohmann::json info = nlohmann::json::parse(r.out);
  EXPECT_EQ(info["ntotal"], n - 3);
  EXPECT_EQ(info["nlist"], 6);
  EXPECT_EQ(info["generation"], 2);
  EXPECT_EQ(info["factory"], "IVF6,Flat");
  EXPECT_EQ(info["list_sizes"].size(), 6u);
  r = run("info --index " + dir);
  ASSERT_EQ(r.code, 0) << r.out;
  EXPECT_NE(r.out.find("IVF6,Flat"), std::string::npos) << r.out;

  r = run("export --index " + dir + " --output " + tmp.file("out.faiss"));
  ASSERT_EQ(r.code, 0) << r.out;
  r = run("import --input " + tmp.file("out.faiss") + " --index " + tmp.file("copy"));
  ASSERT_EQ(r.code, 0) << r.out;

  auto a = IvfIndex::open(dir);
  auto b = IvfIndex::open(tmp.file("copy"));
  EXPECT_EQ(a->ntotal(), n - 3);
  EXPECT_EQ(b->ntotal(), n - 3);
  std::vector<float> v(d);
  EXPECT_FALSE(a->get_vector(5, v.data()));
  ASSERT_TRUE(b->get_vector(5 * 7, v.data()));
  EXPECT_EQ(0, std::memcmp(v.data(), &x[7 * d], sizeof(float) * d));
  std::vector<float> da(50), db(50);
  std::vector<int64_t> la(50), lb(50);
  a->search(5, x.data(), 10, 6, da.data(), la.data());
  b->search(5, x.data(), 10, 6, db.data(), lb.data());
  EXPECT_EQ(la, lb);
  EXPECT_EQ(da, db);

  // Usage and caller errors.
  EXPECT_EQ(run("add --index " + tmp.file("none") + " --input " + tmp.file("x.fvecs")).code, 1);
  EXPECT_EQ(run("info").code, 2);
}

}  // namespace
}  // namespace flashkm
