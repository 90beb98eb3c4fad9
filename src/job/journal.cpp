#include "job/journal.hpp"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <cstring>
#include <ctime>
#include <filesystem>
#include <fstream>
#include <map>
#include <mutex>
#include <vector>

#include "base/error.hpp"
#include "weights/content_hash.hpp"

namespace tpinfer {

namespace {

[[noreturn]] void fail(const std::string& what, const std::string& path) {
  throw Error(what + " " + path + ": " + std::strerror(errno), kExitOther);
}

void sync_folder_of(const std::string& path) {
  // A rename is durable only once the folder is synced.
  const std::filesystem::path parent = std::filesystem::path(path).parent_path();
  const std::string dir = parent.empty() ? "." : parent.string();
  const int dfd = ::open(dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (dfd >= 0) {
    ::fsync(dfd);
    ::close(dfd);
  }
}

// Writes `text` to `path` (created or truncated) and fsyncs it; on failure the
// partial file is removed.
void write_file_durably(const std::string& path, const std::string& text) {
  const int fd = ::open(path.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
  if (fd < 0) fail("cannot write", path);
  size_t done = 0;
  while (done < text.size()) {
    const ssize_t n = ::write(fd, text.data() + done, text.size() - done);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) {
      const int err = n < 0 ? errno : EIO;
      ::close(fd);
      ::unlink(path.c_str());
      errno = err;
      fail("cannot write", path);
    }
    done += static_cast<size_t>(n);
  }
  if (::fsync(fd) != 0) {
    const int err = errno;
    ::close(fd);
    ::unlink(path.c_str());
    errno = err;
    fail("cannot write", path);
  }
  if (::close(fd) != 0) fail("cannot write", path);
}

}  // namespace

namespace {

// What one complete output line answers: "id:<compact id>" for a result (or an
// error line that has an id), "line:<N>" for an input line's error without one;
// empty when the line is not a tpinfer result at all.
std::string answered_key(const std::string& line) {
  nlohmann::json j;
  try {
    j = nlohmann::json::parse(line);
  } catch (const nlohmann::json::exception&) {
    return "";
  }
  if (!j.is_object()) return "";
  // An OpenAI batch line (its "id" is ours, derived from the custom_id): keyed
  // by custom_id, or by input line when it has none or repeats one.
  if (j.contains("custom_id")) {
    const nlohmann::json& error = j.contains("error") ? j["error"] : nlohmann::json();
    const bool by_line = j["custom_id"].is_null() ||
                         (error.is_object() && error.value("code", "") == "duplicate_custom_id");
    if (!by_line && j["custom_id"].is_string()) return "id:" + j["custom_id"].dump();
    if (by_line && error.is_object() && error.contains("line") && error["line"].is_number_integer())
      return "line:" + error["line"].dump();
    return "";
  }
  if (j.contains("id")) return "id:" + j["id"].dump();
  if (j.contains("line") && j["line"].is_number_integer()) return "line:" + j["line"].dump();
  return "";
}

std::string describe_key(const std::string& key) {
  return key.rfind("id:", 0) == 0 ? "id " + key.substr(3) : "input line " + key.substr(5);
}

// Replaces `path` by `keep` (temp file, fsync, rename, fsync the folder) and
// saves `dropped` beside it, so that --repair loses nothing it removes.
std::string rewrite_repaired(const std::string& path, const std::string& keep,
                             const std::string& dropped) {
  const std::string saved = path + ".repair-dropped-" + std::to_string(std::time(nullptr));
  write_file_durably(saved, dropped);
  const std::string tmp = path + ".repair.tmp";
  write_file_durably(tmp, keep);
  if (std::rename(tmp.c_str(), path.c_str()) != 0) fail("cannot rename repaired output to", path);
  sync_folder_of(path);
  return saved;
}

}  // namespace

Finished read_finished(const std::string& path, bool repair) {
  Finished f;
  std::ifstream in(path, std::ios::binary);
  if (!in) return f;
  std::string text((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  in.close();
  const size_t end = text.rfind('\n');
  const size_t keep = end == std::string::npos ? 0 : end + 1;
  if (keep < text.size()) {
    f.torn_bytes = static_cast<int64_t>(text.size() - keep);
    if (truncate(path.c_str(), static_cast<off_t>(keep)) != 0) fail("cannot truncate", path);
    text.resize(keep);
  }
  std::map<std::string, int64_t> first_line_of;  // answered key -> its first line
  std::string kept, dropped;
  int64_t line_no = 0;
  for (size_t start = 0; start < text.size();) {
    const size_t nl = text.find('\n', start);
    const std::string line = text.substr(start, nl - start);
    start = nl + 1;
    ++line_no;
    const std::string key = answered_key(line);
    std::string problem;
    if (key.empty()) {
      problem = "is not a tpinfer result";
    } else if (auto [it, fresh] = first_line_of.emplace(key, line_no); !fresh) {
      problem = "answers " + describe_key(key) + " again (first at line " +
                std::to_string(it->second) + ")";
    }
    if (!problem.empty()) {
      if (!repair)
        throw InputError("output file " + path + " line " + std::to_string(line_no) + " " +
                         problem +
                         "; refusing to resume into it (--repair keeps the first result of "
                         "each request and moves every other line to a file beside it)");
      f.dropped_lines.push_back(line_no);
      dropped += line + "\n";
      continue;
    }
    kept += line + "\n";
    ++f.lines;
    if (key.rfind("id:", 0) == 0)
      f.ids.insert(key.substr(3));
    else
      f.error_lines.insert(std::stoll(key.substr(5)));
  }
  if (!f.dropped_lines.empty()) f.dropped_to = rewrite_repaired(path, kept, dropped);
  return f;
}

std::string manifest_path(const std::string& output) {
  return output + ".manifest.json";
}

bool is_legacy_fingerprint(const std::string& fingerprint) {
  const size_t colon = fingerprint.find(':');
  if (colon == 0 || colon == std::string::npos || fingerprint.size() - colon - 1 != 16)
    return false;
  return fingerprint.find_first_not_of("0123456789") == colon &&
         fingerprint.find_first_not_of("0123456789abcdef", colon + 1) == std::string::npos;
}

void write_manifest(const std::string& output, const nlohmann::json& manifest) {
  // The watchdog thread may write a last status while the main thread writes one.
  static std::mutex one_at_a_time;
  const std::lock_guard lock(one_at_a_time);
  const std::string path = manifest_path(output), tmp = path + ".tmp";
  write_file_durably(tmp, manifest.dump(2) + "\n");
  if (std::rename(tmp.c_str(), path.c_str()) != 0) fail("cannot rename manifest to", path);
  sync_folder_of(path);
}

nlohmann::json read_manifest(const std::string& output) {
  std::ifstream in(manifest_path(output));
  if (!in) return nullptr;
  try {
    return nlohmann::json::parse(in);
  } catch (const nlohmann::json::exception& e) {
    throw InputError("manifest " + manifest_path(output) + " is not valid JSON: " + e.what());
  }
}

void check_manifest_matches(const nlohmann::json& previous, const nlohmann::json& now,
                            const std::string& output) {
  // Refused rather than upgraded: an old fingerprint that still matches proves
  // nothing about the middle of a file over 64 MiB, which is the change it missed.
  for (const char* key : {"input", "model"}) {
    const auto it = previous.find(key);
    if (it != previous.end() && it->is_string() && is_legacy_fingerprint(it->get<std::string>()))
      throw UsageError("--resume: the manifest of " + output +
                       " predates whole-content fingerprints (its " + key + " fingerprint " +
                       it->dump() +
                       " covers only the first and last MiB of a file over 64 MiB), so this "
                       "tpinfer cannot tell whether the input and model are unchanged; finish the "
                       "job with the tpinfer version that started it, or write to a new --output");
  }
  // The deterministic promise, said in its own words rather than as a settings diff.
  const auto setting = [](const nlohmann::json& m, const char* key) {
    return m.contains("settings") && m["settings"].contains(key) ? m["settings"][key]
                                                                 : nlohmann::json();
  };
  const bool was_det = setting(previous, "deterministic") == true;
  const bool is_det = setting(now, "deterministic") == true;
  if (was_det && !is_det)
    throw UsageError("--resume: " + output +
                     " was written with --deterministic (byte-identical results); resume it with "
                     "--deterministic, or write to a new --output");
  if (was_det && setting(previous, "tp") != setting(now, "tp")) {
    const std::string tp = setting(previous, "tp").dump();
    throw UsageError("--resume: " + output + " was written with --deterministic at --tp " + tp +
                     "; its results are byte-identical only at that TP size, so resume at --tp " +
                     tp + " (the DP size may change), or write to a new --output");
  }
  if (!was_det && is_det)
    throw UsageError("--resume: " + output +
                     " was started without --deterministic, and the results it holds were not made "
                     "under that promise; resume without it, or write to a new --output");
  std::string diffs;
  for (const auto& [key, value] : now.items()) {
    // "created" is taken from the previous manifest, not compared with it.
    if (key == "run" || key == "created") continue;
    nlohmann::json before = previous.contains(key) ? previous[key] : nlohmann::json();
    // Manifests from before input formats were all of native files.
    if (key == "input_format" && before.is_null()) before = "tpinfer";
    if (before != value)
      diffs +=
          (diffs.empty() ? "" : "; ") + key + " was " + before.dump() + ", now " + value.dump();
  }
  if (!diffs.empty())
    throw UsageError("--resume: " + output + " was written with other settings (" + diffs +
                     "); resume with the same input, model and generation settings, or write to "
                     "a new --output");
}

}  // namespace tpinfer
