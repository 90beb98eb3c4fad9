// One job owns its output: the lock beside it, the check that the output file
// is still the one opened, and the check that a run's files are distinct.
#include <gtest/gtest.h>
#include <unistd.h>

#include <cmath>
#include <filesystem>
#include <fstream>
#include <functional>
#include <memory>
#include <nlohmann/json.hpp>

#include "base/error.hpp"
#include "cli/options.hpp"
#include "job/job_files.hpp"
#include "job/jsonl.hpp"
#include "job/output_lock.hpp"

namespace tpinfer {
namespace {

namespace fs = std::filesystem;

std::string tmp(const std::string& name) {
  fs::create_directories(TPINFER_TEST_TMP);
  return std::string(TPINFER_TEST_TMP) + "/" + std::to_string(getpid()) + "-" + name;
}

std::string message_of(const std::function<void()>& f) {
  try {
    f();
  } catch (const UsageError& e) {
    return e.what();
  }
  return "";
}

TEST(OutputLock, ASecondHolderIsRefusedNamingTheFirst) {
  const std::string out = tmp("lock-out.jsonl");
  auto first = std::make_unique<OutputLock>(out);
  EXPECT_TRUE(fs::exists(OutputLock::lock_path(out)));
  // An OFD lock conflicts with another open file even in the same process.
  const std::string why = message_of([&] { OutputLock second(out); });
  EXPECT_NE(why.find("output " + out + " is in use by another tpinfer job (pid " +
                     std::to_string(getpid()) + " on host "),
            std::string::npos)
      << why;
  EXPECT_NE(why.find("lock " + OutputLock::lock_path(out)), std::string::npos) << why;
  first.reset();
  EXPECT_FALSE(fs::exists(OutputLock::lock_path(out)));
  EXPECT_NO_THROW(OutputLock again(out));
}

TEST(OutputLock, ALeftoverLockFileOfADeadProcessDoesNotBlock) {
  const std::string out = tmp("lock-stale.jsonl");
  std::ofstream(OutputLock::lock_path(out))
      << R"({"pid":999999,"host":"gone","since":0,"output":"x"})"
      << "\n";
  OutputLock lock(out);
  std::ifstream in(OutputLock::lock_path(out));
  const auto holder = nlohmann::json::parse(in);
  EXPECT_EQ(holder["pid"], getpid());
}

TEST(OutputLock, AMissingOrReadOnlyFolderIsAUsageErrorNamingIt) {
  const std::string dir = tmp("lock-nowhere");
  fs::remove_all(dir);
  const std::string why = message_of([&] { OutputLock lock(dir + "/out.jsonl"); });
  EXPECT_NE(why.find("output folder " + dir + " of --output " + dir + "/out.jsonl"),
            std::string::npos)
      << why;
  std::ofstream(dir) << "a file";
  EXPECT_NE(message_of([&] { OutputLock lock(dir + "/out.jsonl"); }).find("is not a folder"),
            std::string::npos);
}

TEST(OutputWriter, AnOutputRemovedOrReplacedWhileOpenIsRestartable) {
  const std::string out = tmp("writer-removed.jsonl");
  fs::remove(out);
  {
    OutputWriter w(out);
    w.write_line("{\"id\":1}");
    EXPECT_NO_THROW(w.sync());
    fs::remove(out);
    try {
      w.sync();
      FAIL() << "a removed output must be noticed";
    } catch (const RestartableError& e) {
      EXPECT_NE(std::string(e.what()).find("output file " + out + " was removed"),
                std::string::npos)
          << e.what();
    }
  }
  {
    OutputWriter w(out);
    w.write_line("{\"id\":1}");
    fs::rename(out, out + ".moved");
    std::ofstream(out) << "someone else's\n";
    try {
      w.sync();
      FAIL() << "a replaced output must be noticed";
    } catch (const RestartableError& e) {
      EXPECT_NE(std::string(e.what()).find("was replaced by another file"), std::string::npos)
          << e.what();
    }
  }
}

TEST(JobFiles, TheSameFileUnderTwoNamesIsRefused) {
  const std::string in = tmp("files-in.jsonl"), model = tmp("files-model.h5");
  const std::string out = tmp("files-out.jsonl"), link = tmp("files-link"),
                    hard = tmp("files-hard");
  std::ofstream(in) << "{}\n";
  std::ofstream(model) << "m";
  fs::remove(link);
  fs::remove(hard);
  fs::create_symlink(in, link);
  fs::create_hard_link(model, hard);
  EXPECT_NO_THROW(check_job_files({in, model, out, tmp("files-metrics.jsonl")}));
  EXPECT_NE(message_of([&] {
              check_job_files({in, model, out, link});
            }).find("--input " + in + " and --metrics " + link + " are the same file"),
            std::string::npos);
  EXPECT_NE(message_of([&] {
              check_job_files({in, model, out, hard});
            }).find("--model " + model + " and --metrics " + hard),
            std::string::npos);
  // Not yet existing: compared as paths with symlinks resolved.
  EXPECT_NE(message_of([&] {
              check_job_files({in, model, out, out});
            }).find("--output " + out + " and --metrics " + out),
            std::string::npos);
  EXPECT_NE(message_of([&] {
              check_job_files({in, model, out, out + ".manifest.json"});
            }).find("the manifest of --output"),
            std::string::npos);
  EXPECT_NE(message_of([&] {
              check_job_files({in, model, link, ""});
            }).find("--input " + in + " and --output " + link),
            std::string::npos);
  EXPECT_NE(message_of([&] {
              check_job_files({TPINFER_TEST_TMP, model, out, ""});
            }).find("is a folder"),
            std::string::npos);
}

TEST(NumericOptions, NotANumberInfinityAndOutOfRangeAreRefused) {
  EXPECT_NO_THROW(check_number("temperature", 0.0, 0, false));
  EXPECT_NO_THROW(check_number("top-p", 1.0, 0, true, 1));
  EXPECT_EQ(message_of([] { check_number("temperature", std::nan(""), 0, false); }),
            "--temperature nan: must be a finite number >= 0");
  EXPECT_EQ(message_of([] { check_number("top-p", 0.0, 0, true, 1); }),
            "--top-p 0: must be a finite number > 0 and <= 1");
  EXPECT_EQ(message_of([] { check_number("drain-timeout", HUGE_VAL, 0, true); }),
            "--drain-timeout inf: must be a finite number > 0");
  EXPECT_EQ(message_of([] { check_number("temperature", -0.5, 0, false); }),
            "--temperature -0.5: must be a finite number >= 0");
}

}  // namespace
}  // namespace tpinfer
