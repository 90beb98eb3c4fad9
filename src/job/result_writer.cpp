// Results out: output lines, the rank-to-rank wire form of requests and results,
// and the append-only output file that doubles as the job's checkpoint.
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <charconv>
#include <chrono>
#include <cmath>
#include <cstring>
#include <limits>
#include <nlohmann/json.hpp>
#include <string>
#include <string_view>

#include "base/error.hpp"
#include "dist/fault_injection.hpp"
#include "job/jsonl.hpp"
#include "job/result_text.hpp"

namespace tpinfer {

namespace {

using json = nlohmann::json;

// Replace, not throw, on bad UTF-8: a result line must always be writable, and
// every string we produce is valid UTF-8 already, so nothing is changed in practice.
std::string dump(const json& j) {
  return j.dump(-1, ' ', false, json::error_handler_t::replace);
}

void append_quoted(std::string& out, const std::string& s) {
  out += dump(json(s));
}

void append_id(std::string& out, const std::string& id_json) {
  // The id is already JSON text (written verbatim so it comes back exactly as
  // the user gave it); an empty one is a caller's bug, but still valid JSON.
  out += id_json.empty() ? "null" : id_json;
}

template <typename Int>
void append_ints(std::string& out, const std::vector<Int>& v) {
  out += '[';
  for (size_t i = 0; i < v.size(); ++i) {
    if (i) out += ',';
    out += std::to_string(v[i]);
  }
  out += ']';
}

// Shortest text that reads back as the same float ("-0.25", not
// "-0.25000000372529"); JSON has no infinity, so a non-finite value is null.
void append_float(std::string& out, float f) {
  if (!std::isfinite(f)) {
    out += "null";
    return;
  }
  char buf[32];
  const auto res = std::to_chars(buf, buf + sizeof buf, f);
  out.append(buf, res.ptr);
}

// The request's "metadata", last on its line: JSON text already, so written
// as it is (the user gets back exactly the value they gave).
void append_metadata(std::string& out, const std::string& metadata_json) {
  if (metadata_json.empty()) return;
  out += ",\"metadata\":";
  out += metadata_json;
}

double now_s() {
  return std::chrono::duration<double>(std::chrono::steady_clock::now().time_since_epoch()).count();
}

}  // namespace

namespace {

void append_floats(std::string& out, const std::vector<float>& v) {
  out += '[';
  for (size_t i = 0; i < v.size(); ++i) {
    if (i) out += ',';
    append_float(out, v[i]);
  }
  out += ']';
}

// Per position, its k best: [[{"token":..,"logprob":..},..],..]; with
// leading_null, a null first (a prompt's first token has nothing before it).
void append_top_logprobs(std::string& out, const std::vector<std::vector<TokenLogprob>>& top,
                         bool leading_null = false) {
  out += leading_null ? "[null" : "[";
  for (size_t i = 0; i < top.size(); ++i) {
    if (i || leading_null) out += ',';
    out += '[';
    for (size_t k = 0; k < top[i].size(); ++k) {
      if (k) out += ',';
      out += "{\"token\":" + std::to_string(top[i][k].token) + ",\"logprob\":";
      append_float(out, top[i][k].logprob);
      out += '}';
    }
    out += ']';
  }
  out += ']';
}

// A completion's fields, after "id" (n = 1) or inside its "choices" entry.
void append_completion(std::string& out, const Completion& c, const Tokenizer* tokenizer) {
  if (tokenizer) {
    out += ",\"text\":";
    append_quoted(out, completion_text(*tokenizer, c));
  }
  out += ",\"tokens\":";
  append_ints(out, c.tokens);
  out += ",\"finish_reason\":";
  append_quoted(out, c.finish_reason);
}

void append_completion_logprobs(std::string& out, const Completion& c) {
  if (!c.logprobs.empty()) {
    out += ",\"logprobs\":";
    append_floats(out, c.logprobs);
  }
  if (!c.top_logprobs.empty()) {
    out += ",\"top_logprobs\":";
    append_top_logprobs(out, c.top_logprobs);
  }
}

}  // namespace

std::string result_to_json(const Result& r, const Tokenizer* tokenizer) {
  std::string out;
  if (!r.error.empty()) {
    if (r.id_json.empty()) {
      out += '{';
    } else {
      // A repeated id goes under another key, so the resume journal (which
      // collects "id"s) never counts the duplicate as the id's own result.
      out += r.duplicate_id ? "{\"duplicate_id\":" : "{\"id\":";
      out += r.id_json;
      out += ',';
    }
    out += "\"line\":" + std::to_string(r.line) + ",\"error\":";
    append_quoted(out, r.error);
    append_metadata(out, r.metadata_json);
    out += '}';
    return out;
  }
  TPINFER_ASSERT(!r.choices.empty(), "result_to_json: a result without completions");
  int64_t completion_tokens = 0;
  for (const Completion& c : r.choices) completion_tokens += static_cast<int64_t>(c.tokens.size());
  out.reserve(64 + static_cast<size_t>(completion_tokens) * 7 + r.metadata_json.size());
  out += "{\"id\":";
  append_id(out, r.id_json);
  // One completion keeps the flat line of earlier versions; n of them go in
  // "choices", each with its own text, tokens and logprobs.
  const bool flat = r.choices.size() == 1;
  if (flat) append_completion(out, r.choices.front(), tokenizer);
  out += ",\"prompt_tokens\":" + std::to_string(r.prompt_tokens);
  out += ",\"completion_tokens\":" + std::to_string(completion_tokens);
  if (flat) {
    append_completion_logprobs(out, r.choices.front());
  } else {
    out += ",\"choices\":[";
    for (size_t i = 0; i < r.choices.size(); ++i) {
      out += i ? ",{\"index\":" : "{\"index\":";
      out += std::to_string(i);
      append_completion(out, r.choices[i], tokenizer);
      out += ",\"completion_tokens\":" + std::to_string(r.choices[i].tokens.size());
      append_completion_logprobs(out, r.choices[i]);
      out += '}';
    }
    out += ']';
  }
  if (!r.prompt_logprobs.empty()) {
    // Aligned with the prompt's tokens: the first has nothing before it.
    out += ",\"prompt_logprobs\":[null";
    for (float f : r.prompt_logprobs) {
      out += ',';
      append_float(out, f);
    }
    out += ']';
  }
  if (!r.prompt_top_logprobs.empty()) {
    out += ",\"prompt_top_logprobs\":";
    append_top_logprobs(out, r.prompt_top_logprobs, /*leading_null=*/true);
  }
  append_metadata(out, r.metadata_json);
  out += '}';
  return out;
}

OutputWriter::OutputWriter(const std::string& path) : path_(path) {
  fd_ = ::open(path.c_str(), O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC, 0644);
  if (fd_ < 0) {
    throw InputError("cannot open output file " + path + ": " + std::strerror(errno));
  }
  struct stat st {};
  if (::fstat(fd_, &st) == 0) {
    device_ = static_cast<uint64_t>(st.st_dev);
    inode_ = static_cast<uint64_t>(st.st_ino);
  }
  last_sync_ = now_s();
}

OutputWriter::~OutputWriter() {
  if (fd_ < 0) return;
  while (::fdatasync(fd_) != 0 && errno == EINTR) {
  }
  ::close(fd_);
}

void OutputWriter::write_line(const std::string& line) {
  const auto fail = [&](int err, const std::string& extra) {
    throw Error("cannot write output file " + path_ + ": " + std::strerror(err) + extra,
                kExitOther);
  };
  if (line.find('\n') != std::string::npos) {
    // One result per line is the checkpoint's whole format; never break it.
    throw Error("refusing to write a line with a newline in it to output file " + path_,
                kExitOther);
  }
  struct stat st {};
  if (::fstat(fd_, &st) != 0) fail(errno, "");
  // Only rank 0 appends, so the file's length now is where this line starts.
  const off_t before = st.st_size;
  const bool regular = S_ISREG(st.st_mode);

  std::string buf;
  buf.reserve(line.size() + 1);
  buf += line;
  buf += '\n';
  // Test-only (TPINFER_FAULT kind=write-fail): the disk fills halfway through this line.
  const size_t room = fault::take_write_failure() ? buf.size() / 2 : buf.size();
  size_t done = 0;
  while (done < buf.size()) {
    if (done >= room) errno = ENOSPC;
    const ssize_t n = done < room ? ::write(fd_, buf.data() + done, room - done) : -1;
    if (n > 0) {
      done += static_cast<size_t>(n);
      continue;
    }
    if (n < 0 && errno == EINTR) continue;
    const int err = n < 0 ? errno : EIO;
    // A short write (disk full, file size limit) leaves part of the line behind;
    // cut it off so the file still ends in a whole line and --resume needs no repair.
    std::string extra;
    if (regular && done > 0) {
      int rc;
      while ((rc = ::ftruncate(fd_, before)) != 0 && errno == EINTR) {
      }
      if (rc != 0) {
        extra =
            std::string(" (and removing the partial line failed: ") + std::strerror(errno) + ")";
      }
    }
    fail(err, extra);
  }
  ++lines_;
}

void OutputWriter::sync() {
  int rc;
  while ((rc = ::fdatasync(fd_)) != 0 && errno == EINTR) {
  }
  // EINVAL / EROFS: a pipe or device that has nothing to sync (output to a FIFO).
  if (rc != 0 && errno != EINVAL && errno != EROFS) {
    throw Error(
        "cannot write output file " + path_ + ": " + std::strerror(errno) + " (while syncing)",
        kExitOther);
  }
  last_sync_ = now_s();
  struct stat at_path {};
  if (::stat(path_.c_str(), &at_path) != 0)
    throw RestartableError("output file " + path_ + " was removed while the job ran (" +
                           std::strerror(errno) +
                           "): the results written to it are gone with it; run again with "
                           "--resume to redo them");
  if (static_cast<uint64_t>(at_path.st_dev) != device_ ||
      static_cast<uint64_t>(at_path.st_ino) != inode_)
    throw RestartableError("output file " + path_ +
                           " was replaced by another file while the job ran: the results "
                           "written since are not in it; run again with --resume to redo them");
}

void OutputWriter::sync_quietly() noexcept {
  while (::fdatasync(fd_) != 0 && errno == EINTR) {
  }
}

void OutputWriter::maybe_sync(double interval_s) {
  if (now_s() - last_sync_ >= interval_s) sync();
}

}  // namespace tpinfer
