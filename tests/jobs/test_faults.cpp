// Failure tests: a rank killed at a random moment (kill -9) or crashed at an
// exact step (TPINFER_FAULT), a hung collective or a rank that stops answering
// (the watchdog: exit 75 within --collective-timeout), a file size limit or a
// full disk while writing, a torn last line, a truncated model (a corrupt one:
// test_integrity.cpp).
// After each restartable failure, --resume on the same layout must complete the
// output to exactly what an uninterrupted run of that layout writes: the same
// ids, each once, the same greedy and seeded tokens. (On another layout a
// sampled token on a boundary may flip: test_jobs.cpp's Resume tests.)
#include <gtest/gtest.h>

#include <algorithm>
#include <chrono>
#include <filesystem>
#include <fstream>
#include <random>

#include "faults_fixture.hpp"

namespace tpinfer::test {
namespace {

// kill -9 of a random rank at a random moment, and a crash (TPINFER_FAULT) of a
// random rank at a random exact step, alternately, on random layouts of 2 and
// 4 ranks; each resumed on its layout must give that layout's uninterrupted
// results exactly. Whatever the moment (during the load, mid-write, after the
// last result), the assertions hold.
TEST_F(Faults, KilledOrCrashedRanksThenResumeGiveTheUninterruptedResultsExactly) {
  const unsigned seed = std::random_device{}();
  std::mt19937 rng(seed);
  auto pick = [&](int lo, int hi) { return std::uniform_int_distribution<int>(lo, hi)(rng); };
  int interrupted = 0;
  constexpr int kIterations = 16;
  for (int i = 0; i < kIterations; ++i) {
    const int np = i < kIterations / 2 ? 2 : 4;
    const int tp = np == 2 ? pick(1, 2) : std::vector<int>{1, 2, 4}[pick(0, 2)];
    const int rank = pick(0, np - 1);
    const bool external = i % 2 == 0;
    reference(np, tp);  // before the clock of the kill starts
    const std::string out = fresh_output("kill");
    std::string how, command;
    if (external) {
      const int lines = pick(0, kRequests / 2);
      const double delay = pick(0, 300) / 1000.0;
      how = "kill -9 of rank " + std::to_string(rank) + " once " + std::to_string(lines) +
            " lines are written, +" + std::to_string(delay) + " s";
      command = on_rank_later(out, lines, delay, rank, "kill -KILL $p") + job(np, tp, out) +
                "; rc=$?; wait; exit $rc";
    } else {
      // Each rank makes at least steps / dp loop turns (its group's engine steps).
      const int step = pick(1, 12);
      how = "TPINFER_FAULT crash of rank " + std::to_string(rank) + " at step " +
            std::to_string(step);
      command = "TPINFER_FAULT=rank=" + std::to_string(rank) + ",step=" + std::to_string(step) +
                ",kind=crash " + job(np, tp, out);
    }
    SCOPED_TRACE("seed " + std::to_string(seed) + ", iteration " + std::to_string(i) + ": -np " +
                 std::to_string(np) + " --tp " + std::to_string(tp) + ", " + how);
    const auto r = run_shell(command);
    // mpirun ends the job when a rank is killed and exits 128 + 9: restartable
    // for jobs/mpirun-job.sh. 0 when the job finished before the kill.
    if (external) {
      EXPECT_TRUE(r.exit_code == 137 || r.exit_code == 0) << r.exit_code << "\n" << r.output;
    } else {
      EXPECT_EQ(r.exit_code, 137) << r.output;
      EXPECT_NE(r.output.find("crashes at step"), std::string::npos) << r.output;
    }
    interrupted += r.exit_code != 0;
    resume_and_expect_reference(np, tp, out);
    ASSERT_FALSE(HasFailure()) << r.output;
  }
  EXPECT_GE(interrupted, kIterations / 2) << "most runs should have been interrupted mid-run";
}

// A rank stuck inside a collective: every rank's watchdog gives up after
// --collective-timeout and the job exits 75, naming the rank and the collective.
TEST_F(Faults, AHangInACollectiveEndsTheJobWithExit75WithinTheTimeout) {
  std::mt19937 rng(std::random_device{}());
  const int rank = static_cast<int>(rng() % 2), step = 2 + static_cast<int>(rng() % 10);
  SCOPED_TRACE("rank " + std::to_string(rank) + " hangs at step " + std::to_string(step));
  const std::string out = fresh_output("hang-collective");
  const auto t0 = std::chrono::steady_clock::now();
  auto r =
      run_shell("TPINFER_FAULT=rank=" + std::to_string(rank) + ",step=" + std::to_string(step) +
                ",kind=hang,op=all_reduce_sum " + job(2, 2, out, "--collective-timeout 5"));
  const double took = seconds_since(t0);
  EXPECT_EQ(r.exit_code, 75) << r.output;
  EXPECT_LT(took, 30) << r.output;
  EXPECT_NE(r.output.find("all_reduce_sum did not finish within --collective-timeout 5 s"),
            std::string::npos)
      << r.output;
  EXPECT_NE(r.output.find("tpinfer: error (rank "), std::string::npos) << r.output;
  resume_and_expect_reference(2, 2, out);
}

// A rank that stops answering outside any collective (stuck elsewhere, or
// stopped): its peers notice. Its TP peer in the step's control broadcast; with
// TP 1 rank 0 notices a silent group, and a group notices a silent rank 0.
TEST_F(Faults, ARankThatStopsAnsweringIsCaughtByItsPeers) {
  struct Case {
    int np, tp, rank;
    std::vector<std::string> expect_one_of;
  };
  for (const Case& c :
       {Case{4, 2, 2, {"broadcast did not finish within"}},
        // Rank 0 notices a silent group, or one that hung in the middle of
        // handing over a large message (its receive cannot complete).
        Case{2, 1, 1, {"has sent rank 0 nothing for", "receive did not finish within"}},
        // Rank 1 notices while it waits for work, or for an answer, or for the
        // job's end, or inside the receive of work that rank 0 began to send.
        Case{2,
             1,
             0,
             {"wait_for_work did not finish within", "rank 0 has not answered this group's request",
              "rank 0 has sent nothing for", "receive did not finish within"}}}) {
    SCOPED_TRACE("-np " + std::to_string(c.np) + " --tp " + std::to_string(c.tp) + ", rank " +
                 std::to_string(c.rank) + " hangs");
    const std::string out = fresh_output("hang-outside");
    const auto t0 = std::chrono::steady_clock::now();
    auto r = run_shell("TPINFER_FAULT=rank=" + std::to_string(c.rank) + ",step=3,kind=hang " +
                       job(c.np, c.tp, out, "--collective-timeout 4"));
    EXPECT_EQ(r.exit_code, 75) << r.output;
    EXPECT_LT(seconds_since(t0), 30) << r.output;
    EXPECT_NE(r.output.find("hangs outside any collective"), std::string::npos) << r.output;
    EXPECT_TRUE(
        std::any_of(c.expect_one_of.begin(), c.expect_one_of.end(),
                    [&](const std::string& e) { return r.output.find(e) != std::string::npos; }))
        << r.output;
    // The error names another rank than the hung one.
    EXPECT_EQ(r.output.find("tpinfer: error (rank " + std::to_string(c.rank) + ")"),
              std::string::npos)
        << r.output;
    if (c.np == 2) resume_and_expect_reference(c.np, c.tp, out);
  }
}

// A real process stopped at a random moment (SIGSTOP): its TP peer's watchdog
// ends the job with exit 75; the output resumes exactly.
TEST_F(Faults, ARankStoppedAtARandomMomentEndsTheJobWithExit75) {
  std::mt19937 rng(std::random_device{}());
  const int rank = static_cast<int>(rng() % 4), lines = 1 + static_cast<int>(rng() % 20);
  SCOPED_TRACE("SIGSTOP of rank " + std::to_string(rank) + " once " + std::to_string(lines) +
               " lines are written");
  const std::string out = fresh_output("stopped");
  const auto t0 = std::chrono::steady_clock::now();
  auto r = run_shell(on_rank_later(out, lines, 0, rank, "kill -STOP $p") +
                     job(4, 2, out, "--collective-timeout 4") + "; rc=$?; wait; exit $rc");
  EXPECT_EQ(r.exit_code, 75) << r.output;
  EXPECT_LT(seconds_since(t0), 30) << r.output;
  EXPECT_NE(r.output.find("did not finish within --collective-timeout 4 s"), std::string::npos)
      << r.output;
  resume_and_expect_reference(4, 2, out);
}

// Every line of an interrupted output is whole, each a result of the reference.
void expect_whole_lines_of(const Results& want, const std::string& out, size_t at_most) {
  const Results got = results_by_id(out);  // read_jsonl throws on a partial line
  EXPECT_GE(got.size(), 1u);
  EXPECT_LT(got.size(), at_most);
  for (const auto& [id, j] : got) {
    ASSERT_TRUE(want.count(id)) << id;
    EXPECT_EQ(j, want.at(id)) << id;
  }
}

// A file size limit (RLIMIT_FSIZE: the write that crosses it is cut short,
// then EFBIG) stops the job with one clear line and exit 1, leaves only whole
// lines, and --resume without the limit completes the output exactly. The
// limit is put on rank 0 once it writes results (prlimit): `ulimit -f` around
// mpirun would break Open MPI's own shared-memory set-up first.
TEST_F(Faults, AFileSizeLimitStopsTheJobCleanlyAndResumeCompletesIt) {
  if (run_shell("command -v prlimit").exit_code != 0) GTEST_SKIP() << "no prlimit (util-linux)";
  const std::string out = fresh_output("fsize");
  auto r = run_shell(on_rank_later(out, 1, 0, 0, "prlimit --pid $p --fsize=6144") + job(2, 1, out) +
                     "; rc=$?; wait; exit $rc");
  EXPECT_EQ(r.exit_code, 1) << r.output;
  EXPECT_NE(r.output.find("cannot write output file " + out + ": File too large"),
            std::string::npos)
      << r.output;
  EXPECT_EQ(count(r.output, "tpinfer: error"), 1u) << r.output;
  expect_whole_lines_of(reference(2, 1), out, kRequests);
  resume_and_expect_reference(2, 1, out);
}

// A full disk at an exact write (TPINFER_FAULT write-fail: the write stops
// halfway with ENOSPC): the same. At step 30 rank 0's own group has finished
// and written results of its own (the shortest requests take 7 steps), however
// slowly the machine runs, so there are lines that must survive whole.
TEST_F(Faults, AFullDiskWhileWritingStopsTheJobCleanlyAndResumeCompletesIt) {
  const std::string out = fresh_output("enospc");
  auto r = run_shell("TPINFER_FAULT=rank=0,step=30,kind=write-fail " + job(4, 2, out));
  EXPECT_EQ(r.exit_code, 1) << r.output;
  EXPECT_NE(r.output.find("cannot write output file " + out + ": No space left on device"),
            std::string::npos)
      << r.output;
  expect_whole_lines_of(reference(4, 2), out, kRequests);
  resume_and_expect_reference(4, 2, out);
}

// The job died mid-write: --resume cuts the partial last line and redoes it.
TEST_F(Faults, ATornLastLineIsCutOffOnResume) {
  const Results& ref = reference(2, 2);
  const std::string done = tmp_path("faults-ref-2-2.jsonl"), out = fresh_output("torn");
  std::ifstream in(done);
  std::ofstream torn(out, std::ios::binary);
  std::string line;
  for (int i = 0; i < 30 && std::getline(in, line); ++i) torn << line << "\n";
  ASSERT_TRUE(std::getline(in, line));
  torn << line.substr(0, line.size() / 2);
  torn.close();
  fs::copy_file(done + ".manifest.json", out + ".manifest.json");
  auto r = run_shell(job(2, 2, out, "--resume"));
  ASSERT_EQ(r.exit_code, 0) << r.output;
  EXPECT_NE(
      r.output.find("cut " + std::to_string(line.size() / 2) + " bytes of an unfinished last line"),
      std::string::npos)
      << r.output;
  expect_exact(ref, results_by_id(out));
}

// A truncated model file: one line naming the file and the cause, exit 2.
TEST_F(Faults, ATruncatedModelFileIsOneClearErrorWithExit2) {
  const std::string bad = tmp_path("faults-truncated.h5");
  fs::copy_file(model_, bad, fs::copy_options::overwrite_existing);
  fs::resize_file(bad, fs::file_size(model_) * 2 / 3);
  const std::string out = fresh_output("truncated");
  auto r = run_shell(std::string(TPINFER_MPIRUN) + " -np 2 " + TPINFER_BIN + " run --model " + bad +
                     " --input " + input_ + " --output " + out + " --tp 2");
  EXPECT_EQ(r.exit_code, 2) << r.output;
  EXPECT_EQ(count(r.output, "tpinfer: error"), 1u) << r.output;
  EXPECT_NE(r.output.find(bad + ": cannot open as HDF5: truncated file"), std::string::npos)
      << r.output;
}

// The switch itself: a malformed TPINFER_FAULT is a usage error, not ignored.
TEST_F(Faults, AMalformedFaultSwitchIsAUsageError) {
  const std::string out = fresh_output("bad-switch");
  for (const char* value :
       {"rank=1,step=3", "rank=1,step=3,kind=explode", "rank=1,step=0,kind=crash",
        "rank=1,step=3,kind=hang,op=no_such_op", "rank=1,step=3,kind=write-fail"}) {
    auto r = run_shell(std::string("TPINFER_FAULT=") + value + " " + job(2, 1, out));
    EXPECT_EQ(r.exit_code, 2) << value << "\n" << r.output;
    EXPECT_NE(r.output.find("TPINFER_FAULT=\"" + std::string(value) + "\""), std::string::npos)
        << r.output;
  }
}

}  // namespace
}  // namespace tpinfer::test
