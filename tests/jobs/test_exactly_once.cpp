// Exactly once, as a careful operator tries to break it: two jobs on one
// output, an output holding repeated results, a drain while a TP peer hangs in
// a collective, the output deleted mid-run, files that are one file, options
// that are not numbers, and jobs refused at start that must leave nothing.
#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>
#include <regex>

#include "faults_fixture.hpp"

namespace tpinfer::test {
namespace {

namespace fs = std::filesystem;

std::string slurp(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  return {std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>()};
}

std::string manifest_status(const std::string& out) {
  std::ifstream in(out + ".manifest.json");
  if (!in) return "";
  return nlohmann::json::parse(in)["run"].value("status", "");
}

// The line of `text` that contains `what` (for messages).
bool has(const std::string& text, const std::string& what) {
  return text.find(what) != std::string::npos;
}

// A second job on an output that a running job writes is refused before it
// writes anything, naming the holder; the first one finishes with every id
// once. Both a --resume and a fresh start are tried against it.
TEST_F(Faults, ASecondJobOnARunningJobsOutputIsRefusedNamingTheHolder) {
  const std::string out = fresh_output("locked");
  const std::string log = tmp_path("locked-first.log");
  // The first job, in the background, is paused (SIGSTOP) once it has written
  // results, i.e. holds the lock mid-run, so that it cannot finish before the
  // second has tried, however slow the machine; it goes on (SIGCONT) after.
  const std::string ranks = "$(for p in $(pgrep -x tpinfer); do grep -q " +
                            fs::path(out).filename().string() +
                            " /proc/$p/cmdline 2>/dev/null && echo $p; done)";
  const std::string first = "( " + job(2, 1, out) + " > " + log + " 2>&1; echo $? > " + log +
                            ".rc ) & for i in $(seq 6000); do [ $(cat " + out +
                            " 2>/dev/null | wc -l) -ge 3 ] && break; sleep 0.01; done; first=\"" +
                            ranks + "\"; kill -STOP $first; ";
  for (const std::string second_flags : {"--resume", ""}) {
    SCOPED_TRACE("second job with '" + second_flags + "'");
    fs::remove(log + ".rc");
    auto r = run_shell(first + job(1, 1, out, second_flags) +
                       "; rc=$?; kill -CONT $first; wait; exit $rc");
    EXPECT_EQ(r.exit_code, 2) << r.output;
    EXPECT_EQ(count(r.output, "tpinfer: error"), 1u) << r.output;
    const std::regex holder("output " + out +
                            " is in use by another tpinfer job \\(pid [0-9]+ on host [^ ]+ since ");
    EXPECT_TRUE(std::regex_search(r.output, holder)) << r.output;
    EXPECT_EQ(slurp(log + ".rc"), "0\n") << slurp(log);
    EXPECT_EQ(results_by_id(out).size(), static_cast<size_t>(kRequests));  // throws on a repeat
    EXPECT_EQ(manifest_status(out), "done");
    EXPECT_FALSE(fs::exists(out + ".lock")) << "the lock file goes with its job";
    fs::remove(out);
    fs::remove(out + ".manifest.json");
  }
}

// A lock file left by a job that died (kill -9) does not block the next one.
TEST_F(Faults, AStaleLockOfADeadJobDoesNotBlock) {
  const std::string out = fresh_output("stale-lock");
  auto killed = run_shell(on_rank_later(out, 2, 0, 0, "kill -KILL $p") + job(2, 1, out) +
                          "; rc=$?; wait; exit $rc");
  ASSERT_TRUE(killed.exit_code == 137 || killed.exit_code == 0) << killed.output;
  if (killed.exit_code == 137) {
    EXPECT_TRUE(fs::exists(out + ".lock"));
  }
  resume_and_expect_reference(2, 1, out);
}

// An output that repeats a result (two jobs wrote it at once before there was a
// lock) is refused by --resume naming the line; --repair keeps the first result
// of each id, moves the rest aside, and the run completes exactly once.
TEST_F(Faults, ResumeRefusesRepeatedResultsAndRepairKeepsTheFirst) {
  const Results& ref = reference(2, 1);
  const std::string done = tmp_path("faults-ref-2-1.jsonl"), out = fresh_output("repeats");
  std::vector<std::string> lines;
  {
    std::ifstream in(done);
    for (std::string l; std::getline(in, l);) lines.push_back(l);
  }
  {
    std::ofstream o(out);
    for (int i = 0; i < 40; ++i) o << lines[i] << "\n";
    o << lines[7] << "\n" << lines[3] << "\n";  // lines 41 and 42 repeat ids
    o << "{\"not\":\"a result\"}\n";            // line 43
  }
  fs::copy_file(done + ".manifest.json", out + ".manifest.json");
  const std::string id7 = nlohmann::json::parse(lines[7])["id"].dump();
  auto refused = run_shell(job(2, 1, out, "--resume"));
  EXPECT_EQ(refused.exit_code, 2) << refused.output;
  EXPECT_TRUE(has(refused.output, "output file " + out + " line 41 answers id " + id7 +
                                      " again (first at line 8); refusing to resume into it"))
      << refused.output;
  auto repaired = run_shell(job(2, 1, out, "--resume --repair"));
  ASSERT_EQ(repaired.exit_code, 0) << repaired.output;
  EXPECT_TRUE(has(repaired.output, "dropped 3 line(s)")) << repaired.output;
  EXPECT_TRUE(has(repaired.output, "(line 41, 42, 43)")) << repaired.output;
  expect_exact(ref, results_by_id(out));
  // The dropped lines are kept beside the output.
  int saved = 0;
  for (const auto& e : fs::directory_iterator(fs::path(out).parent_path()))
    if (e.path().filename().string().rfind(fs::path(out).filename().string() + ".repair-dropped-",
                                           0) == 0) {
      EXPECT_EQ(slurp(e.path()), lines[7] + "\n" + lines[3] + "\n{\"not\":\"a result\"}\n");
      ++saved;
    }
  EXPECT_EQ(saved, 1);
}

// SIGTERM while a TP peer hangs inside a collective: every rank ends within
// --drain-timeout (not at --collective-timeout), the lines written stay whole,
// the manifest says "failed", and --resume completes the output exactly.
TEST_F(Faults, ADrainEndsWithinItsDeadlineWhenATensorParallelPeerHangs) {
  const std::string out = fresh_output("drain-hung-peer"), log = tmp_path("drain-hung-peer.log");
  const auto t0 = std::chrono::steady_clock::now();
  // Rank 1 hangs in an all-reduce at step 40; once it says so, both ranks get
  // SIGTERM (as Slurm sends it to every task).
  auto r = run_shell(
      "( TPINFER_FAULT=rank=1,step=40,kind=hang,op=all_reduce_sum " +
      job(2, 2, out, "--collective-timeout 100 --drain-timeout 3") + " > " + log +
      " 2>&1; echo $? > " + log + ".rc ) & for i in $(seq 6000); do grep -q 'hangs' " + log +
      " 2>/dev/null && break; sleep 0.01; done; sleep 0.5; date +%s.%N > " + log +
      ".t; for p in $(pgrep -x tpinfer); do grep -q " + fs::path(out).filename().string() +
      " /proc/$p/cmdline 2>/dev/null && kill -TERM $p; done; wait; cat " + log + "; exit $(cat " +
      log + ".rc)");
  const double took = seconds_since(t0);
  EXPECT_EQ(r.exit_code, 75) << r.output;
  EXPECT_LT(took, 60) << r.output;
  EXPECT_TRUE(has(r.output, "did not stop within --drain-timeout 3 s of signal 15")) << r.output;
  EXPECT_FALSE(has(r.output, "did not finish within --collective-timeout")) << r.output;
  EXPECT_EQ(manifest_status(out), "failed");
  // From the signal to mpirun's exit: the deadline plus the abort's own time.
  const double signalled = std::stod(slurp(log + ".t"));
  const double now =
      std::chrono::duration<double>(std::chrono::system_clock::now().time_since_epoch()).count();
  EXPECT_LT(now - signalled, 3 + 8) << r.output;
  resume_and_expect_reference(2, 2, out);
}

// The output removed during the run: noticed at the next sync, exit 75 with
// one line saying so, no "done" summary; --resume then redoes everything.
TEST_F(Faults, AnOutputRemovedWhileRunningIsExit75AndResumeRedoesIt) {
  reference(2, 1);
  const std::string out = fresh_output("removed");
  auto r = run_shell(on_rank_later(out, 3, 0, 0, "rm -f " + out) + job(2, 1, out) +
                     "; rc=$?; wait; exit $rc");
  EXPECT_EQ(r.exit_code, 75) << r.output;
  EXPECT_TRUE(has(r.output, "output file " + out + " was removed while the job ran")) << r.output;
  EXPECT_FALSE(has(r.output, "tpinfer: done:")) << r.output;
  EXPECT_EQ(manifest_status(out), "failed");
  resume_and_expect_reference(2, 1, out);
}

// The metrics file, the input, the model and the output must be four files.
TEST_F(Faults, MetricsInputModelAndOutputMustBeDistinctFiles) {
  const std::string out = fresh_output("collide"), link = tmp_path("collide-input-link.jsonl");
  fs::remove(link);
  fs::create_symlink(input_, link);
  const std::string input_before = slurp(input_);
  struct Case {
    std::string flags, expect;
  };
  for (const Case& c :
       {Case{"--metrics " + input_, "--input " + input_ + " and --metrics " + input_},
        Case{"--metrics " + link, "--input " + input_ + " and --metrics " + link},
        Case{"--metrics " + model_, "--model " + model_ + " and --metrics " + model_},
        Case{"--metrics " + out, "--output " + out + " and --metrics " + out}}) {
    auto r = run_shell(job(1, 1, out, c.flags));
    EXPECT_EQ(r.exit_code, 2) << c.flags << "\n" << r.output;
    EXPECT_TRUE(has(r.output, c.expect + " are the same file")) << r.output;
    EXPECT_FALSE(fs::exists(out));
  }
  // The output itself may not be the input either.
  auto r = run_shell(std::string(TPINFER_MPIRUN) + " -np 1 " + TPINFER_BIN + " run --model " +
                     model_ + " --input " + input_ + " --output " + link + " --resume");
  EXPECT_EQ(r.exit_code, 2) << r.output;
  EXPECT_TRUE(has(r.output, "are the same file")) << r.output;
  EXPECT_EQ(slurp(input_), input_before);
}

// Numeric options are checked like the per-request fields: NaN, infinities,
// negatives and zero intervals are usage errors naming the option.
TEST_F(Faults, NumericOptionsThatAreNotNumbersAreUsageErrors) {
  const std::string out = fresh_output("numbers");
  for (const std::string flags :
       {"--temperature nan", "--temperature -0.5", "--top-p nan", "--top-p 0", "--drain-timeout 0",
        "--drain-timeout inf", "--checkpoint-interval nan", "--progress-interval 0",
        "--collective-timeout -1", "--health-interval nan"}) {
    auto r = run_shell(std::string(TPINFER_MPIRUN) + " -np 1 " + TPINFER_BIN + " run --model " +
                       model_ + " --input " + input_ + " --output " + out + " " + flags);
    EXPECT_EQ(r.exit_code, 2) << flags << "\n" << r.output;
    const std::string option = flags.substr(0, flags.find(' '));
    EXPECT_TRUE(has(r.output, "tpinfer: error: " + option + " ")) << r.output;
    EXPECT_TRUE(has(r.output, "must be")) << r.output;
    EXPECT_FALSE(fs::exists(out));
  }
}

// A job refused before its first result leaves no output and no manifest (and
// an earlier manifest as it was); a missing output folder is a usage error
// naming the folder.
TEST_F(Faults, AJobRefusedAtStartLeavesNothingBehind) {
  const std::string out = fresh_output("refused");
  const std::string bad = tmp_path("refused-bad.jsonl");
  std::ofstream(bad) << "{\"id\": \"a\", \"prompt_tokens\": [5, 6]}\nnot json\n";
  auto strict = run_shell(std::string(TPINFER_MPIRUN) + " -np 1 " + TPINFER_BIN + " run --model " +
                          model_ + " --input " + bad + " --output " + out + " --strict");
  EXPECT_EQ(strict.exit_code, 2) << strict.output;
  EXPECT_FALSE(fs::exists(out)) << strict.output;
  EXPECT_FALSE(fs::exists(out + ".manifest.json"));
  EXPECT_FALSE(fs::exists(out + ".lock"));

  auto folder = run_shell(std::string(TPINFER_MPIRUN) + " -np 1 " + TPINFER_BIN + " run --model " +
                          model_ + " --input " + TPINFER_TEST_TMP + " --output " + out);
  EXPECT_EQ(folder.exit_code, 2) << folder.output;
  EXPECT_TRUE(has(folder.output, "is a folder")) << folder.output;
  EXPECT_FALSE(fs::exists(out));

  const std::string nowhere = tmp_path("no-such-folder") + "/out.jsonl";
  auto missing = run_shell(job(1, 1, nowhere));
  EXPECT_EQ(missing.exit_code, 2) << missing.output;
  EXPECT_EQ(count(missing.output, "tpinfer: error"), 1u) << missing.output;
  EXPECT_TRUE(has(missing.output,
                  "output folder " + tmp_path("no-such-folder") + " of --output " + nowhere))
      << missing.output;

  // On --resume, a refusal after the manifest was marked "running" (the
  // metrics file cannot be opened) puts the earlier manifest back as it was.
  const std::string done = tmp_path("faults-ref-2-1.jsonl");
  reference(2, 1);
  {
    std::ifstream in(done);
    std::ofstream part(out);
    std::string l;
    for (int i = 0; i < 20 && std::getline(in, l); ++i) part << l << "\n";
  }
  nlohmann::json m = nlohmann::json::parse(slurp(done + ".manifest.json"));
  m["run"]["status"] = "drained";
  std::ofstream(out + ".manifest.json") << m.dump(2) << "\n";
  const std::string manifest_before = slurp(out + ".manifest.json"), output_before = slurp(out);
  auto refused = run_shell(job(1, 1, out, "--resume --metrics " + nowhere));
  EXPECT_EQ(refused.exit_code, 2) << refused.output;
  EXPECT_TRUE(has(refused.output, "cannot open metrics file")) << refused.output;
  EXPECT_EQ(slurp(out + ".manifest.json"), manifest_before);
  EXPECT_EQ(slurp(out), output_before);
}

}  // namespace
}  // namespace tpinfer::test
