// The output as checkpoint: reading back finished requests, repairing a torn
// last line, and the manifest that ties an output to its input and settings.
#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>

#include "tpinfer/error.hpp"
#include "tpinfer/journal.hpp"

namespace tpinfer {
namespace {

std::string tmp(const std::string& name) {
  return std::string(TPINFER_TEST_TMP) + "/" + name;
}

std::string slurp(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  return {std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>()};
}

TEST(Journal, ReadsFinishedIdsAndErrorLinesAndCutsATornLine) {
  const std::string path = tmp("journal-out.jsonl");
  const std::string whole =
      R"({"id":"a","tokens":[1],"finish_reason":"length","prompt_tokens":1,"completion_tokens":1})"
      "\n"
      R"({"id":7,"line":3,"error":"line 3: bad"})"
      "\n"
      R"({"line":4,"error":"line 4: not valid JSON"})"
      "\n"
      R"({"duplicate_id":"a","line":5,"error":"line 5: duplicate id"})"
      "\n";
  std::ofstream(path, std::ios::binary) << whole << R"({"id":"b","tok)";
  const Finished f = read_finished(path);
  EXPECT_EQ(f.ids, (std::set<std::string>{"\"a\"", "7"}));
  EXPECT_EQ(f.error_lines, (std::set<int64_t>{4, 5}));
  EXPECT_EQ(f.lines, 4);
  EXPECT_EQ(f.torn_bytes, 14);
  EXPECT_EQ(slurp(path), whole);  // the torn tail is gone, the rest untouched
  // Reading again changes nothing.
  EXPECT_EQ(read_finished(path).torn_bytes, 0);
  EXPECT_EQ(slurp(path), whole);
}

TEST(Journal, MissingOrEmptyOutputFinishesNothing) {
  EXPECT_EQ(read_finished(tmp("journal-none.jsonl")).lines, 0);
  std::ofstream(tmp("journal-empty.jsonl"));
  EXPECT_EQ(read_finished(tmp("journal-empty.jsonl")).lines, 0);
}

TEST(Journal, RefusesAFileThatIsNotOurs) {
  const std::string path = tmp("journal-foreign.jsonl");
  std::ofstream(path) << R"({"id":"a","tokens":[]})"
                         "\nhello world\n";
  try {
    read_finished(path);
    FAIL();
  } catch (const InputError& e) {
    EXPECT_NE(std::string(e.what()).find("line 2"), std::string::npos) << e.what();
  }
}

TEST(Journal, RefusesARepeatedResultNamingBothLines) {
  const std::string path = tmp("journal-repeat.jsonl");
  std::ofstream(path) << R"({"id":"a","tokens":[1]})"
                         "\n"
                         R"({"id":5,"tokens":[2]})"
                         "\n"
                         R"({"id":"5","tokens":[3]})"  // "5" is not 5
                         "\n"
                         R"({"id":"a","tokens":[4]})"
                         "\n";
  try {
    read_finished(path);
    FAIL();
  } catch (const InputError& e) {
    EXPECT_NE(std::string(e.what()).find("line 4 answers id \"a\" again (first at line 1)"),
              std::string::npos)
        << e.what();
  }
}

TEST(Journal, RepairKeepsTheFirstResultOfEachRequestAndSavesTheRest) {
  const std::string path = tmp("journal-repair.jsonl");
  for (const auto& e : std::filesystem::directory_iterator(TPINFER_TEST_TMP))
    if (e.path().filename().string().rfind("journal-repair.jsonl.repair-dropped-", 0) == 0)
      std::filesystem::remove(e.path());
  const std::string a1 = R"({"id":"a","tokens":[1]})", b = R"({"id":"b","tokens":[2]})",
                    e4 = R"({"line":4,"error":"line 4: bad"})", a2 = R"({"id":"a","tokens":[9]})",
                    junk = "hello", e4b = R"({"line":4,"error":"line 4: bad"})";
  std::ofstream(path) << a1 << "\n"
                      << b << "\n"
                      << e4 << "\n"
                      << a2 << "\n"
                      << junk << "\n"
                      << e4b << "\n";
  const Finished f = read_finished(path, /*repair=*/true);
  EXPECT_EQ(f.ids, (std::set<std::string>{"\"a\"", "\"b\""}));
  EXPECT_EQ(f.error_lines, (std::set<int64_t>{4}));
  EXPECT_EQ(f.lines, 3);
  EXPECT_EQ(f.dropped_lines, (std::vector<int64_t>{4, 5, 6}));
  EXPECT_EQ(slurp(path), a1 + "\n" + b + "\n" + e4 + "\n");
  EXPECT_EQ(slurp(f.dropped_to), a2 + "\n" + junk + "\n" + e4b + "\n");
  // A repaired file reads back clean.
  const Finished again = read_finished(path);
  EXPECT_EQ(again.lines, 3);
  EXPECT_TRUE(again.dropped_lines.empty());
}

TEST(Manifest, WrittenAtomicallyAndComparedFieldByField) {
  const std::string out = tmp("journal-manifest.jsonl");
  std::filesystem::remove(manifest_path(out));
  EXPECT_TRUE(read_manifest(out).is_null());
  const nlohmann::json m = {{"input", "10:ab"}, {"settings", {{"seed", 1}}}, {"run", {{"tp", 2}}}};
  write_manifest(out, m);
  EXPECT_EQ(read_manifest(out), m);
  EXPECT_FALSE(std::filesystem::exists(manifest_path(out) + ".tmp"));
  nlohmann::json other_layout = m;
  other_layout["run"]["tp"] = 4;  // the layout may change
  EXPECT_NO_THROW(check_manifest_matches(m, other_layout, out));
  nlohmann::json other_seed = m;
  other_seed["settings"]["seed"] = 2;
  try {
    check_manifest_matches(m, other_seed, out);
    FAIL();
  } catch (const UsageError& e) {
    EXPECT_NE(std::string(e.what()).find("settings was {\"seed\":1}, now {\"seed\":2}"),
              std::string::npos)
        << e.what();
  }
}

TEST(Manifest, FingerprintFollowsTheContent) {
  const std::string a = tmp("journal-fp-a"), b = tmp("journal-fp-b");
  std::ofstream(a) << "one two three";
  std::ofstream(b) << "one two three";
  EXPECT_EQ(file_fingerprint(a), file_fingerprint(b));
  std::ofstream(b) << "one two thre3";
  EXPECT_NE(file_fingerprint(a), file_fingerprint(b));
  EXPECT_THROW(file_fingerprint(tmp("journal-fp-missing")), InputError);
}

}  // namespace
}  // namespace tpinfer
