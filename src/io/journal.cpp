#include "tpinfer/journal.hpp"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <vector>

#include "io/content_hash.hpp"
#include "tpinfer/error.hpp"

namespace tpinfer {

namespace {

[[noreturn]] void fail(const std::string& what, const std::string& path) {
  throw Error(what + " " + path + ": " + std::strerror(errno), kExitOther);
}

}  // namespace

Finished read_finished(const std::string& path) {
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
  size_t start = 0;
  while (start < text.size()) {
    const size_t nl = text.find('\n', start);
    const std::string line = text.substr(start, nl - start);
    start = nl + 1;
    ++f.lines;
    nlohmann::json j;
    try {
      j = nlohmann::json::parse(line);
    } catch (const nlohmann::json::exception&) {
      j = nullptr;
    }
    if (!j.is_object() || (!j.contains("id") && !j.contains("line")))
      throw InputError("output file " + path + " line " + std::to_string(f.lines) +
                       " is not a tpinfer result; refusing to resume into it");
    if (j.contains("id"))
      f.ids.insert(j["id"].dump());
    else
      f.error_lines.insert(j["line"].get<int64_t>());
  }
  return f;
}

std::string manifest_path(const std::string& output) {
  return output + ".manifest.json";
}

std::string file_fingerprint(const std::string& path) {
  return "xxh3-128:" + xxh3_128_file(path);
}

bool is_legacy_fingerprint(const std::string& fingerprint) {
  const size_t colon = fingerprint.find(':');
  if (colon == 0 || colon == std::string::npos || fingerprint.size() - colon - 1 != 16)
    return false;
  return fingerprint.find_first_not_of("0123456789") == colon &&
         fingerprint.find_first_not_of("0123456789abcdef", colon + 1) == std::string::npos;
}

void write_manifest(const std::string& output, const nlohmann::json& manifest) {
  const std::string path = manifest_path(output), tmp = path + ".tmp";
  const std::string text = manifest.dump(2) + "\n";
  const int fd = ::open(tmp.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
  if (fd < 0) fail("cannot write manifest", tmp);
  size_t done = 0;
  while (done < text.size()) {
    const ssize_t n = ::write(fd, text.data() + done, text.size() - done);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) {
      const int err = errno;
      ::close(fd);
      ::unlink(tmp.c_str());
      errno = err;
      fail("cannot write manifest", tmp);
    }
    done += static_cast<size_t>(n);
  }
  if (::fsync(fd) != 0 || ::close(fd) != 0) fail("cannot write manifest", tmp);
  if (std::rename(tmp.c_str(), path.c_str()) != 0) fail("cannot rename manifest to", path);
  // The rename is durable only once the folder is synced.
  const std::string dir = std::filesystem::path(path).parent_path().empty()
                              ? "."
                              : std::filesystem::path(path).parent_path().string();
  const int dfd = ::open(dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (dfd >= 0) {
    ::fsync(dfd);
    ::close(dfd);
  }
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
  std::string diffs;
  for (const auto& [key, value] : now.items()) {
    if (key == "run") continue;
    const nlohmann::json before = previous.contains(key) ? previous[key] : nlohmann::json();
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
