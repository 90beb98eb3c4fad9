// The output as checkpoint: reading back finished requests, repairing a torn
// last line, and the manifest that ties an output to its input and settings.
#include <gtest/gtest.h>

#include <algorithm>
#include <filesystem>
#include <fstream>

#include "base/error.hpp"
#include "job/journal.hpp"
#include "weights/content_hash.hpp"

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

// A --deterministic job resumes only with the mode on and at its TP size (the
// DP size may change); a job started without it does not take it on resume.
TEST(Manifest, ADeterministicJobKeepsItsModeAndTpSize) {
  const std::string out = tmp("journal-det.jsonl");
  const nlohmann::json plain = {
      {"input", "xxh3-128:1"}, {"settings", {{"seed", 1}}}, {"run", {{"dp", 2}, {"tp", 2}}}};
  nlohmann::json det = plain;
  det["settings"]["deterministic"] = true;
  det["settings"]["tp"] = 2;
  auto refusal = [&](const nlohmann::json& before, const nlohmann::json& now) {
    try {
      check_manifest_matches(before, now, out);
    } catch (const UsageError& e) {
      return std::string(e.what());
    }
    return std::string();
  };
  nlohmann::json other_dp = det;
  other_dp["run"]["dp"] = 3;
  EXPECT_EQ(refusal(det, other_dp), "");
  EXPECT_NE(refusal(det, plain)
                .find("was written with --deterministic (byte-identical results); "
                      "resume it with --deterministic"),
            std::string::npos)
      << refusal(det, plain);
  nlohmann::json other_tp = det;
  other_tp["settings"]["tp"] = 4;
  EXPECT_NE(refusal(det, other_tp)
                .find("--deterministic at --tp 2; its results are byte-identical "
                      "only at that TP size, so resume at --tp 2"),
            std::string::npos)
      << refusal(det, other_tp);
  EXPECT_NE(refusal(plain, det).find("was started without --deterministic"), std::string::npos)
      << refusal(plain, det);
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

// Whole content: a byte changed in the middle of a file over 64 MiB (where the
// old fingerprint looked only at the first and last MiB) changes it.
TEST(Manifest, FingerprintCoversTheMiddleOfLargeFiles) {
  const std::string path = tmp("journal-fp-large");
  const size_t size = (size_t{65} << 20) + 12345;
  {
    std::string block(size_t{1} << 20, '\0');
    for (size_t i = 0; i < block.size(); ++i) block[i] = static_cast<char>((i * 131) >> 3);
    std::ofstream out(path, std::ios::binary | std::ios::trunc);
    for (size_t done = 0; done < size; done += block.size())
      out.write(block.data(), static_cast<std::streamsize>(std::min(block.size(), size - done)));
  }
  ASSERT_EQ(std::filesystem::file_size(path), size);
  const std::string before = file_fingerprint(path);
  EXPECT_EQ(before.rfind("xxh3-128:", 0), 0u) << before;
  EXPECT_EQ(before.size(), 9u + 32u) << before;
  EXPECT_EQ(before.find_first_not_of("0123456789abcdef", 9), std::string::npos) << before;
  auto poke = [&](size_t at, char value) {
    std::fstream f(path, std::ios::in | std::ios::out | std::ios::binary);
    f.seekp(static_cast<std::streamoff>(at));
    f.put(value);
  };
  const char original = static_cast<char>(((size / 2 % (size_t{1} << 20)) * 131) >> 3);
  poke(size / 2, static_cast<char>(original ^ 0x20));
  const std::string changed = file_fingerprint(path);
  EXPECT_NE(changed, before);
  poke(size / 2, original);
  EXPECT_EQ(file_fingerprint(path), before);
  std::filesystem::remove(path);
  // XXH3-128 of no bytes (the xxHash reference value).
  std::ofstream(tmp("journal-fp-empty"), std::ios::trunc);
  EXPECT_EQ(file_fingerprint(tmp("journal-fp-empty")), "xxh3-128:99aa06d3014798d86001c324468d497f");
}

// A manifest from before whole-content fingerprints ("size:16 hex digits") is
// refused with a line saying why and what to do, not reported as a changed input.
TEST(Manifest, ALegacyFingerprintIsRefusedNamingTheWayForward) {
  EXPECT_TRUE(is_legacy_fingerprint("1048576:0123456789abcdef"));
  EXPECT_FALSE(is_legacy_fingerprint("xxh3-128:99aa06d3014798d86001c324468d497f"));
  EXPECT_FALSE(is_legacy_fingerprint("content-xxh3-128:99aa06d3014798d86001c324468d497f"));
  EXPECT_FALSE(is_legacy_fingerprint(":0123456789abcdef"));
  EXPECT_FALSE(is_legacy_fingerprint("12:0123456789abcdeg"));
  const std::string out = tmp("journal-legacy.jsonl");
  const nlohmann::json now = {{"input", "xxh3-128:99aa06d3014798d86001c324468d497f"},
                              {"model", "content-xxh3-128:00112233445566778899aabbccddeeff"},
                              {"settings", {{"seed", 1}}}};
  for (const char* key : {"input", "model"}) {
    nlohmann::json old = now;
    old[key] = "73400320:8d2c0a1b3f4e5d6c";
    try {
      check_manifest_matches(old, now, out);
      FAIL() << key;
    } catch (const UsageError& e) {
      const std::string msg = e.what();
      EXPECT_NE(msg.find("the manifest of " + out + " predates whole-content fingerprints"),
                std::string::npos)
          << msg;
      EXPECT_NE(msg.find(std::string("its ") + key + " fingerprint \"73400320:8d2c0a1b3f4e5d6c\""),
                std::string::npos)
          << msg;
      EXPECT_NE(msg.find("write to a new --output"), std::string::npos) << msg;
      EXPECT_EQ(msg.find('\n'), std::string::npos) << msg;
    }
  }
  EXPECT_NO_THROW(check_manifest_matches(now, now, out));
}

}  // namespace
}  // namespace tpinfer
