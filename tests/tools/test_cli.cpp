// The flashkm executable end to end, run as a subprocess (its path comes from CMake as
// FLASHKM_CLI). Oracles: the library called in-process with the same parameters, and the
// IO library reading what the CLI wrote.
#include <fcntl.h>
#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cstdlib>
#include <filesystem>
#include <limits>
#include <nlohmann/json.hpp>
#include <sstream>

#include "flashkm/io.h"
#include "flashkm/kmeans.h"
#include "test_util.h"

#ifndef FLASHKM_CLI
#error "FLASHKM_CLI (path of the flashkm executable) must be defined by the build"
#endif

namespace flashkm {
namespace {

using ::testing::HasSubstr;
using ::testing::Not;
using testing::TempDir;

struct RunResult {
  int code = -1;
  std::string out, err;
};

std::string quote(const std::string& s) {
  std::string q = "'";
  for (char c : s) q += c == '\'' ? std::string("'\\''") : std::string(1, c);
  return q + "'";
}

// Runs `flashkm args...` with stdout and stderr captured to files in dir (stdin closed, so
// stderr is not a terminal and no progress lines appear).
RunResult run_cli(const TempDir& dir, const std::vector<std::string>& args) {
  std::string cmd = quote(FLASHKM_CLI);
  for (const std::string& a : args) cmd += " " + quote(a);
  const std::string out = dir.file("stdout.txt"), err = dir.file("stderr.txt");
  cmd += " </dev/null >" + quote(out) + " 2>" + quote(err);
  int status = std::system(cmd.c_str());
  RunResult r;
  r.code = WIFEXITED(status) ? WEXITSTATUS(status) : -1;
  r.out = testing::read_bytes(out);
  r.err = testing::read_bytes(err);
  return r;
}

// Like run_cli, but stderr is a pseudo-terminal; err is what the terminal received (with the
// terminal's \r\n line ends).
RunResult run_cli_on_tty(const TempDir& dir, const std::vector<std::string>& args) {
  std::vector<std::string> words = {FLASHKM_CLI};
  words.insert(words.end(), args.begin(), args.end());
  std::vector<char*> argv;
  for (std::string& w : words) argv.push_back(w.data());
  argv.push_back(nullptr);
  const std::string out = dir.file("stdout.txt");

  RunResult r;
  int master = ::posix_openpt(O_RDWR | O_NOCTTY);
  if (master < 0 || ::grantpt(master) != 0 || ::unlockpt(master) != 0) {
    ADD_FAILURE() << "no pseudo-terminal";
    return r;
  }
  const std::string slave_name = ::ptsname(master);
  pid_t pid = ::fork();
  if (pid == 0) {
    // Only async-signal-safe calls between fork and exec.
    int slave = ::open(slave_name.c_str(), O_RDWR | O_NOCTTY);
    int out_fd = ::open(out.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0644);
    int null_fd = ::open("/dev/null", O_RDONLY);
    if (slave < 0 || out_fd < 0 || null_fd < 0) ::_exit(126);
    ::dup2(null_fd, 0);
    ::dup2(out_fd, 1);
    ::dup2(slave, 2);
    ::close(master);
    ::execv(argv[0], argv.data());
    ::_exit(127);
  }
  char buf[4096];
  ssize_t got;
  // read() fails with EIO once the child, the last holder of the slave side, has exited.
  while ((got = ::read(master, buf, sizeof(buf))) > 0) r.err.append(buf, size_t(got));
  int status = 0;
  ::waitpid(pid, &status, 0);
  ::close(master);
  r.code = WIFEXITED(status) ? WEXITSTATUS(status) : -1;
  r.out = testing::read_bytes(out);
  return r;
}

std::string describe(const RunResult& r) {
  std::ostringstream s;
  s << "exit " << r.code << "\n--- stdout\n" << r.out << "--- stderr\n" << r.err;
  return s.str();
}

constexpr int64_t kN = 600, kD = 7, kCenters = 5;
constexpr uint64_t kSeed = 17;

// `flashkm gen` writes data; returns its path.
std::string gen(const TempDir& dir, const std::string& name, const std::string& labels = "") {
  std::vector<std::string> args = {"gen",
                                   "--n",
                                   std::to_string(kN),
                                   "--d",
                                   std::to_string(kD),
                                   "--centers",
                                   std::to_string(kCenters),
                                   "--seed",
                                   std::to_string(kSeed),
                                   "--spread",
                                   "1.5",
                                   "--output",
                                   dir.file(name)};
  if (!labels.empty()) {
    args.push_back("--labels");
    args.push_back(dir.file(labels));
  }
  RunResult r = run_cli(dir, args);
  EXPECT_EQ(r.code, 0) << describe(r);
  return dir.file(name);
}

std::vector<float> floats_of(const Matrix& m) {
  return std::vector<float>(m.data(), m.data() + m.n() * m.d());
}

TEST(Cli, GenWritesMakeBlobsData) {
  TempDir dir;
  for (const char* name : {"x.fvecs", "x.npy"}) {
    SCOPED_TRACE(name);
    const std::string x = gen(dir, name, "truth.ivecs");
    std::vector<float> want(kN * kD);
    std::vector<int32_t> want_labels(kN);
    make_blobs(kN, kD, kCenters, kSeed, 1.5, want.data(), want_labels.data());
    Matrix m = read_matrix(x);
    ASSERT_EQ(m.n(), kN);
    ASSERT_EQ(m.d(), kD);
    EXPECT_EQ(floats_of(m), want);
    IntMatrix l = read_int_matrix(dir.file("truth.ivecs"));
    EXPECT_EQ(l.values, std::vector<int64_t>(want_labels.begin(), want_labels.end()));
  }
}

TEST(Cli, KMeansJsonHasEveryFieldAndMatchesTheLibrary) {
  TempDir dir;
  const std::string x = gen(dir, "x.npy");
  const int k = 6;
  RunResult r = run_cli(dir, {"kmeans", "--input", x, "--k", std::to_string(k), "--iters", "8",
                              "--seed", "3", "--device", "cpu", "--threads", "2", "--output",
                              dir.file("c.npy"), "--labels", dir.file("l.npy"), "--json"});
  ASSERT_EQ(r.code, 0) << describe(r);
  EXPECT_EQ(r.err, "");
  nlohmann::json j = nlohmann::json::parse(r.out);  // exactly one JSON document
  ASSERT_TRUE(j.is_object());
  EXPECT_EQ(j.at("n"), kN);
  EXPECT_EQ(j.at("d"), kD);
  EXPECT_EQ(j.at("k"), k);
  EXPECT_EQ(j.at("device"), "cpu");
  EXPECT_EQ(j.at("threads"), 2);
  EXPECT_EQ(j.at("metric"), "l2");
  EXPECT_EQ(j.at("init"), "random");
  EXPECT_EQ(j.at("device_rows"), "fp32");
  ASSERT_TRUE(j.at("iterations").is_array());
  ASSERT_GE(j.at("iterations").size(), 1u);
  EXPECT_LE(j.at("iterations").size(), 8u);
  for (size_t i = 0; i < j.at("iterations").size(); ++i) {
    const nlohmann::json& it = j.at("iterations")[i];
    EXPECT_EQ(it.at("iter"), int(i));
    for (const char* key : {"inertia", "seconds", "changed", "fixups"})
      EXPECT_TRUE(it.at(key).is_number()) << key;
  }
  EXPECT_TRUE(j.at("seconds").is_number());

  // The same fit in-process: identical centroids, labels and inertia.
  Matrix data = read_matrix(x);
  KMeansParams p;
  p.n_clusters = k;
  p.max_iter = 8;
  p.seed = 3;
  p.device = Device::CPU;
  p.threads = 2;
  KMeans km(kD, p);
  KMeansResult want = km.fit(kN, data.data());
  EXPECT_EQ(j.at("inertia").get<double>(), want.inertia);
  EXPECT_EQ(j.at("iterations").size(), want.iterations.size());
  Matrix c = read_matrix(dir.file("c.npy"));
  ASSERT_EQ(c.n(), k);
  ASSERT_EQ(c.d(), kD);
  EXPECT_EQ(floats_of(c), want.centroids);
  IntMatrix l = read_int_matrix(dir.file("l.npy"));
  ASSERT_EQ(l.n, kN);
  EXPECT_EQ(l.d, 1);
  EXPECT_EQ(l.values, std::vector<int64_t>(want.labels.begin(), want.labels.end()));

  // --device-rows fp16 applies to CUDA fits only: on the CPU the same result.
  r = run_cli(dir, {"kmeans", "--input", x, "--k", std::to_string(k), "--iters", "8", "--seed", "3",
                    "--device", "cpu", "--threads", "2", "--device-rows", "fp16", "--output",
                    dir.file("c16.npy"), "--json"});
  ASSERT_EQ(r.code, 0) << describe(r);
  j = nlohmann::json::parse(r.out);
  EXPECT_EQ(j.at("device_rows"), "fp16");
  EXPECT_EQ(j.at("inertia").get<double>(), want.inertia);
  EXPECT_EQ(floats_of(read_matrix(dir.file("c16.npy"))), want.centroids);
}

TEST(Cli, KMeansGivenInitMatchesLibraryInitGiven) {
  TempDir dir;
  const std::string x = gen(dir, "x.fvecs");
  const int k = 4;
  Matrix data = read_matrix(x);
  // Initial centroids: points 10, 20, 30, 40, nudged so they are not data points.
  std::vector<float> init(k * kD);
  for (int c = 0; c < k; ++c)
    for (int j = 0; j < kD; ++j) init[c * kD + j] = data.data()[(10 * (c + 1)) * kD + j] + 0.25f;
  write_vectors(dir.file("init.fvecs"), k, kD, init.data());

  for (const char* metric : {"l2", "ip"}) {
    SCOPED_TRACE(metric);
    RunResult r = run_cli(dir, {"kmeans",
                                "-i",
                                x,
                                "-k",
                                std::to_string(k),
                                "--init",
                                dir.file("init.fvecs"),
                                "--metric",
                                metric,
                                "--iters",
                                "5",
                                "--empty",
                                "keep",
                                "--device",
                                "cpu",
                                "--threads",
                                "1",
                                "-o",
                                dir.file("c.fvecs"),
                                "--labels",
                                dir.file("l.ivecs")});
    ASSERT_EQ(r.code, 0) << describe(r);
    // Without --json: one summary line on stdout, nothing on a non-terminal stderr.
    EXPECT_THAT(r.out, HasSubstr("k=4"));
    EXPECT_EQ(std::count(r.out.begin(), r.out.end(), '\n'), 1) << r.out;
    EXPECT_EQ(r.err, "");

    KMeansParams p;
    p.n_clusters = k;
    p.max_iter = 5;
    p.init = Init::Given;
    p.init_centroids = init;
    p.metric = parse_metric(metric);
    p.empty_policy = EmptyClusterPolicy::Keep;
    p.device = Device::CPU;
    p.threads = 1;
    KMeans km(kD, p);
    KMeansResult want = km.fit(kN, data.data());
    EXPECT_EQ(floats_of(read_matrix(dir.file("c.fvecs"))), want.centroids);
    IntMatrix l = read_int_matrix(dir.file("l.ivecs"));
    EXPECT_EQ(l.values, std::vector<int64_t>(want.labels.begin(), want.labels.end()));
  }
}

TEST(Cli, ProgressLinesOnlyOnATerminal) {
  // Sandboxes without /dev/ptmx cannot give the child a terminal: nothing to test there.
  int probe = ::posix_openpt(O_RDWR | O_NOCTTY);
  if (probe < 0) GTEST_SKIP() << "no pseudo-terminal available";
  ::close(probe);
  TempDir dir;
  const std::string x = gen(dir, "x.npy");
  const std::vector<std::string> args = {
      "kmeans", "-i", x,          "-k",  "5",  "--iters",        "3",
      "--tol",  "0",  "--device", "cpu", "-o", dir.file("c.npy")};
  RunResult r = run_cli_on_tty(dir, args);
  ASSERT_EQ(r.code, 0) << describe(r);
  // The JSON run of the same fit says how many iterations there were.
  std::vector<std::string> json_args = args;
  json_args.push_back("--json");
  RunResult j = run_cli(dir, json_args);
  ASSERT_EQ(j.code, 0) << describe(j);
  const size_t iters = nlohmann::json::parse(j.out).at("iterations").size();
  size_t lines = 0;
  for (size_t pos = 0; (pos = r.err.find("iter ", pos)) != std::string::npos; ++pos) ++lines;
  EXPECT_EQ(lines, iters) << r.err;
  EXPECT_THAT(r.err, HasSubstr("iter   0  inertia "));
  EXPECT_THAT(r.out, HasSubstr("flashkm kmeans: n=600 d=7 k=5"));

  // --json keeps the terminal quiet too: stdout carries the one JSON object.
  r = run_cli_on_tty(dir, json_args);
  ASSERT_EQ(r.code, 0) << describe(r);
  EXPECT_EQ(r.err, "");
  EXPECT_EQ(nlohmann::json::parse(r.out).at("iterations").size(), iters);
}

TEST(Cli, DeviceCudaRunsOrFailsClearly) {
  TempDir dir;
  const std::string x = gen(dir, "x.npy");
  RunResult r = run_cli(dir, {"kmeans", "-i", x, "-k", "5", "--iters", "3", "--device", "cuda",
                              "-o", dir.file("c.npy"), "--json"});
  if (cuda_available()) {
    ASSERT_EQ(r.code, 0) << describe(r);
    EXPECT_EQ(nlohmann::json::parse(r.out).at("device"), "cuda");
  } else {
    EXPECT_EQ(r.code, 1) << describe(r);
    EXPECT_THAT(r.err, HasSubstr("flashkm: error: "));
    EXPECT_THAT(r.err, HasSubstr("CUDA"));
    EXPECT_FALSE(std::filesystem::exists(dir.file("c.npy")));
  }
}

TEST(Cli, InitFileOfTheWrongShapeNamesBothShapes) {
  TempDir dir;
  const std::string x = gen(dir, "x.npy");
  std::vector<float> init(3 * (kD + 1), 0.5f);
  write_vectors(dir.file("init.npy"), 3, kD + 1, init.data());
  RunResult r = run_cli(dir, {"kmeans", "--input", x, "--k", "3", "--init", dir.file("init.npy"),
                              "--output", dir.file("c.npy")});
  EXPECT_EQ(r.code, 1) << describe(r);
  EXPECT_THAT(r.err, HasSubstr("flashkm: error: " + dir.file("init.npy") +
                               ": initial centroids have shape 3 x 8; expected k x d = 3 x 7"));
  EXPECT_FALSE(std::filesystem::exists(dir.file("c.npy")));
}

TEST(Cli, MalformedInputIsAnErrorNamingTheFile) {
  TempDir dir;
  const std::string bad = dir.file("bad.fvecs");
  testing::write_bytes(bad, testing::int32_bytes(3) + std::string(10, '\0'));
  RunResult r = run_cli(dir, {"kmeans", "--input", bad, "--k", "2", "--output", dir.file("c.npy")});
  EXPECT_EQ(r.code, 1) << describe(r);
  EXPECT_THAT(r.err, HasSubstr("flashkm: error: " + bad + ": truncated: row 0 at byte offset 0"));
  EXPECT_EQ(r.out, "");

  r = run_cli(dir, {"kmeans", "--input", dir.file("absent.npy"), "--k", "2", "--output",
                    dir.file("c.npy")});
  EXPECT_EQ(r.code, 1) << describe(r);
  EXPECT_THAT(r.err, HasSubstr(dir.file("absent.npy") + ": cannot open"));
}

TEST(Cli, NonFiniteInputNamesFileRowAndColumn) {
  TempDir dir;
  std::vector<float> x(20 * 3, 0.5f);
  x[7 * 3 + 2] = std::numeric_limits<float>::quiet_NaN();
  const std::string in = dir.file("nan.fvecs");
  write_vectors(in, 20, 3, x.data());
  RunResult r = run_cli(dir, {"kmeans", "--input", in, "--k", "2", "--output", dir.file("c.npy")});
  EXPECT_EQ(r.code, 1) << describe(r);
  EXPECT_THAT(r.err, HasSubstr(in + ": input x holds a non-finite value (nan) at row 7, column 2"));
  EXPECT_FALSE(std::filesystem::exists(dir.file("c.npy")));
}

TEST(Cli, KLargerThanNIsAClearError) {
  TempDir dir;
  const std::string x = gen(dir, "x.npy");
  RunResult r = run_cli(
      dir, {"kmeans", "--input", x, "--k", std::to_string(kN + 1), "--output", dir.file("c.npy")});
  EXPECT_EQ(r.code, 1) << describe(r);
  EXPECT_THAT(r.err, HasSubstr("--k 601 is larger than the 600 points in " + x));
}

TEST(Cli, BadOutputExtensionFailsBeforeWorking) {
  TempDir dir;
  const std::string x = gen(dir, "x.npy");
  RunResult r = run_cli(dir, {"kmeans", "--input", x, "--k", "2", "--output", dir.file("c.txt")});
  EXPECT_EQ(r.code, 1) << describe(r);
  EXPECT_THAT(r.err, HasSubstr("--output " + dir.file("c.txt") +
                               ": unsupported output extension; expected a .fvecs or .npy file"));
  r = run_cli(dir, {"kmeans", "--input", x, "--k", "2", "--output", dir.file("c.npy"), "--labels",
                    dir.file("l.fvecs")});
  EXPECT_EQ(r.code, 1) << describe(r);
  EXPECT_THAT(r.err, HasSubstr("expected a .ivecs or .npy file"));
  EXPECT_FALSE(std::filesystem::exists(dir.file("c.npy")));
  r = run_cli(dir,
              {"gen", "--n", "5", "--d", "2", "--centers", "1", "--output", dir.file("g.ivecs")});
  EXPECT_EQ(r.code, 1) << describe(r);
}

TEST(Cli, UsageErrorsExitWithTwo) {
  TempDir dir;
  const std::string x = gen(dir, "x.npy");
  const std::string c = dir.file("c.npy");
  const std::vector<std::vector<std::string>> cases = {
      {},                                                     // no subcommand
      {"nonsense"},                                           // unknown subcommand
      {"kmeans", "--input", x, "--output", c},                // --k missing
      {"kmeans", "--input", x, "--k", "0", "--output", c},    // k must be positive
      {"kmeans", "--input", x, "--k", "two", "--output", c},  // not a number
      {"kmeans", "--input", x, "--k", "2", "--output", c, "--metric", "manhattan"},
      {"kmeans", "--input", x, "--k", "2", "--output", c, "--device", "tpu"},
      {"kmeans", "--input", x, "--k", "2", "--output", c, "--empty", "drop"},
      {"kmeans", "--input", x, "--k", "2", "--output", c, "--precision", "half"},
      {"kmeans", "--input", x, "--k", "2", "--output", c, "--device-rows", "bf16"},
      {"kmeans", "--input", x, "--k", "2", "--output", c, "--init", "kmeans+"},
      {"kmeans", "--input", x, "--k", "2", "--output", c, "--seed", "-5"},
      {"kmeans", "--input", x, "--k", "2", "--output", c, "--bogus"},
      {"gen", "--n", "10", "--d", "2", "--output", c},  // --centers missing
  };
  for (const auto& args : cases) {
    RunResult r = run_cli(dir, args);
    std::string joined;
    for (const auto& a : args) joined += a + " ";
    EXPECT_EQ(r.code, 2) << joined << "\n" << describe(r);
    EXPECT_THAT(r.err, Not(HasSubstr("flashkm: error:"))) << joined;
  }
  RunResult r =
      run_cli(dir, {"kmeans", "--input", x, "--k", "2", "--output", c, "--metric", "manhattan"});
  EXPECT_THAT(r.err, HasSubstr("'manhattan' is not one of l2|ip"));
  EXPECT_FALSE(std::filesystem::exists(c));
}

TEST(Cli, HelpListsEveryOptionWithItsDefault) {
  TempDir dir;
  RunResult r = run_cli(dir, {"kmeans", "--help"});
  ASSERT_EQ(r.code, 0) << describe(r);
  for (const char* opt :
       {"--input", "--k", "--iters", "--tol", "--init", "--seed", "--metric", "--device",
        "--threads", "--empty", "--precision", "--device-rows", "--output", "--labels", "--json"})
    EXPECT_THAT(r.out, HasSubstr(opt));
  // Defaults come from KMeansParams.
  const KMeansParams defaults;
  for (const std::string& d :
       {std::to_string(defaults.max_iter), std::to_string(defaults.seed),
        std::string(to_string(defaults.init)), std::string(to_string(defaults.metric)),
        std::string(to_string(defaults.device)), std::string(to_string(defaults.empty_policy)),
        std::string(to_string(defaults.precision)), std::string(to_string(defaults.device_rows))})
    // CLI11 2.1 writes "--iters INT=25"; later versions write "[25]".
    EXPECT_TRUE(r.out.find("=" + d) != std::string::npos ||
                r.out.find("[" + d + "]") != std::string::npos)
        << d << "\n"
        << r.out;

  r = run_cli(dir, {"--help"});
  ASSERT_EQ(r.code, 0) << describe(r);
  EXPECT_THAT(r.out, HasSubstr("kmeans"));
  EXPECT_THAT(r.out, HasSubstr("gen"));
}

}  // namespace
}  // namespace flashkm
