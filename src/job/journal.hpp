#pragma once
// The output file is the checkpoint: a request is done exactly when its result
// line is in the file. The journal reads an existing output back (repairing a
// torn last line) into the set of finished requests, and keeps the manifest
// beside it, which ties the output to its input, model and settings.
#include <cstdint>
#include <nlohmann/json.hpp>
#include <set>
#include <string>
#include <vector>

namespace tpinfer {

// What a previous run already wrote.
struct Finished {
  std::set<std::string> ids;           // compact JSON of each "id" that has a line
  std::set<int64_t> error_lines;       // input lines whose error line has no "id"
  int64_t lines = 0;                   // complete result lines in the file
  int64_t torn_bytes = 0;              // bytes of an unfinished last line that were cut off
  std::vector<int64_t> dropped_lines;  // with repair: lines removed (repeats, non-results)
  std::string dropped_to;              // with repair: the file that holds them now
};

// Reads `path` (a missing or empty file finishes nothing). A last line without
// its newline was being written when the job died: it is truncated away. A
// complete line that is not a result, or a second line for a request already
// answered (two jobs wrote the file at once), is an InputError naming the line;
// with `repair`, the first line of each request is kept, the file is rewritten
// atomically without the others, and they are saved to OUTPUT.repair-dropped-T.
Finished read_finished(const std::string& path, bool repair = false);

// The manifest: OUTPUT.manifest.json.
std::string manifest_path(const std::string& output);
// Whether `fingerprint` has the form manifests held before whole-content
// fingerprints ("<size>:<16 hex digits>", which covered only the first and
// last MiB of files over 64 MiB).
bool is_legacy_fingerprint(const std::string& fingerprint);
// Writes the manifest atomically (temp file, fsync, rename, fsync the folder).
void write_manifest(const std::string& output, const nlohmann::json& manifest);
// The manifest, or null JSON when there is none.
nlohmann::json read_manifest(const std::string& output);
// Throws UsageError naming every field where `previous` and `now` differ (the
// "run" field, which holds layout and timing, is not compared). A previous
// manifest with a legacy fingerprint is refused with a line saying so.
void check_manifest_matches(const nlohmann::json& previous, const nlohmann::json& now,
                            const std::string& output);

}  // namespace tpinfer
