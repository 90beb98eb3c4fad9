#pragma once
// Rank 0's coordinator and the DP-group leaders' side of the work protocol.
// Rank 0 reads requests lazily, hands chunks to group leaders on demand, and is
// the only writer of the output. Its own group takes work by direct call; the
// others by messages that rank 0 answers between its own steps (non-blocking),
// so coordination never stalls rank 0's compute for long.
#include <mpi.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <deque>
#include <functional>
#include <list>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "dist/watchdog.hpp"
#include "job/journal.hpp"
#include "job/jsonl.hpp"
#include "job/openai_request.hpp"
#include "job/output_lock.hpp"
#include "job/prefix_affinity.hpp"
#include "job/progress.hpp"

namespace tpinfer {

enum CoordinatorTag : int {
  kTagWant = 101,
  kTagWork = 102,
  kTagResult = 103,
  kTagDone = 104,
  kTagDrain = 105,  // rank 0 -> leaders: stop after this step
  kTagAlive = 106   // leaders -> rank 0: still stepping; rank 0 -> stopped ranks: still working
};

// Requests or results packed as newline-separated wire JSON.
std::string pack_requests(const std::vector<Request>& rs);
std::vector<Request> unpack_requests(const std::string& payload);
std::string pack_results(const std::vector<Result>& rs);
std::vector<Result> unpack_results(const std::string& payload);

struct Tally {
  int64_t done = 0, errors = 0, prompt_tokens = 0, generated_tokens = 0;
};

// Sends that must stay alive until MPI has them.
class PendingSends {
 public:
  void send(MPI_Comm comm, int dest, int tag, std::string payload);
  void poll();  // completes finished sends
  void wait_all();

 private:
  struct Send {
    std::string payload;
    MPI_Request request;
  };
  std::list<Send> sends_;
};

// What was at the output before this job touched it, and what to leave there
// if the job ends without finish(): the manifest says "failed" once this run
// has written results; before its first result everything is put back as it
// was (a new output and manifest removed, an earlier manifest restored), so a
// job refused at start leaves nothing behind.
class OutputGuard {
 public:
  OutputGuard(std::string output, nlohmann::json manifest);
  ~OutputGuard() { end_abnormally(); }
  OutputGuard(const OutputGuard&) = delete;
  OutputGuard& operator=(const OutputGuard&) = delete;
  void result_written() { ++results_; }
  void finished() { finished_ = true; }
  // Idempotent; safe on the watchdog thread (it runs this before MPI_Abort).
  void end_abnormally() noexcept;

 private:
  std::string output_;
  nlohmann::json manifest_, previous_manifest_;
  bool output_existed_ = false;
  std::atomic<int64_t> results_{0};
  std::atomic<bool> finished_{false}, ended_{false};
};

class Coordinator {
 public:
  struct Options {
    std::string input, output;
    RequestRules rules;
    bool strict = false;
    double checkpoint_interval_s = 10.0;
    double progress_interval_s = 10.0;
    int num_groups = 1;
    int tp = 1;               // group g's leader is rank g * tp
    bool resume = false;      // continue an existing output instead of refusing it
    bool repair = false;      // on resume: keep the first line of each request, move the rest
    nlohmann::json manifest;  // input/model fingerprints and settings of this run
    // The model's tokenizer, when it has one: text prompts in, "text" out.
    // (rules.tokenizer is set from it.)
    std::shared_ptr<const Tokenizer> tokenizer;
    // --input-format; nullopt: detected from the input's first line. The
    // format goes into the manifest (and rules.format).
    std::optional<InputFormat> input_format;
    // The job's start (Unix seconds), OpenAI results' "created": recorded in
    // the manifest, and taken from it on --resume so resumed lines match.
    int64_t created = 0;
  };
  Coordinator(MPI_Comm comm, Options options);

  // Up to `n` requests for `group` (requests sharing a prefix go to one group:
  // prefix_affinity.hpp); empty once the input is exhausted. Bad lines met on
  // the way are written as error results.
  std::vector<Request> take(int group, int64_t n);
  // Answers other leaders' messages that have arrived; never blocks.
  void serve();
  // Records finished results (from any group).
  void write(const std::vector<Result>& results);
  // Serves until every other group has reported done, then flushes. `idle` runs
  // while it waits (rank 0's health report goes on meanwhile).
  void finish(const std::function<void()>& idle = {});
  // Stops handing out work and tells the other groups to stop (once).
  void drain();
  bool draining() const { return draining_; }
  const Tally& tally() const { return tally_; }
  // Results an earlier run had already written (on --resume).
  int64_t resumed() const { return finished_.lines; }
  // Requests this run has to answer (input lines less those already answered).
  int64_t total() const { return std::max<int64_t>(0, total_lines_ - finished_.lines); }
  // Starts the clocks of the progress report and summary (after the model load).
  void start_clock() {
    progress_.restart();
    last_heard_.assign(last_heard_.size(), MPI_Wtime());
  }
  double elapsed_s() const;

 private:
  void handle(const MPI_Status& status);
  void sync_and_report(bool force);
  // Throws RestartableError when a group still at work has sent nothing for
  // twice the collective timeout: its leader hung or died.
  void check_groups_alive() const;
  // Tells the ranks of stopped groups, waiting in await_job_end, that rank 0
  // still works (every timeout / 4).
  void heartbeat_stopped_groups();

  MPI_Comm comm_;
  Options opt_;
  OutputLock lock_;    // first taken, last released: the job owns the output throughout
  OutputGuard guard_;  // before finished_: records what was there before it is changed
  Finished finished_;  // before reader_: preparing the output comes first
  RequestReader reader_;
  PrefixAffinity pending_;  // read, not yet handed to a group
  OutputWriter writer_;
  PendingSends sends_;
  int64_t total_lines_ = 0;  // non-blank input lines, for the ETA
  Progress progress_;
  Tally tally_;
  int64_t skipped_ = 0;  // input lines already answered in the output
  bool exhausted_ = false;
  bool draining_ = false;
  int64_t lines_read_ = 0;
  int groups_done_ = 0;
  std::vector<double> last_heard_;  // per group, MPI_Wtime of its last message
  // OpenAI lines read and not yet written, by input line: what their result
  // line needs beyond the Result, kept here rather than sent with the request.
  std::map<int64_t, std::shared_ptr<const OpenAiEnvelope>> envelopes_;
  std::vector<char> group_done_;
  double last_heartbeat_ = 0;  // MPI_Wtime
  // A watchdog abort (a timeout, a drain past its deadline) syncs the output
  // and marks the manifest before MPI_Abort ends the process.
  watchdog::Hook abort_hook_;
};

// A group leader's view of the work queue: the coordinator itself on rank 0,
// messages to rank 0 elsewhere.
class WorkSource {
 public:
  WorkSource(MPI_Comm comm, Coordinator* local);
  // Asks for up to n more requests unless an ask is already outstanding.
  void ask(int64_t n);
  // Requests that have arrived (blocking when `wait` and an ask is outstanding).
  std::vector<Request> receive(bool wait);
  bool exhausted() const { return exhausted_; }
  // True once rank 0 (or this rank's signal) asked this group to drain.
  bool drain_requested();
  bool asking() const { return outstanding_; }
  // Also sends rank 0 a sign of life when this group has been quiet a while.
  void send_results(const std::vector<Result>& results);
  void done();  // no more results from this group

 private:
  MPI_Comm comm_;
  Coordinator* local_;
  PendingSends sends_;
  bool outstanding_ = false;
  bool exhausted_ = false;
  bool drain_ = false;
  std::vector<Request> local_taken_;
  double last_sent_ = 0, asked_at_ = 0;  // MPI_Wtime
};

// The job's last synchronisation, on every rank of `world` once its group has
// stopped (rank 0 after Coordinator::finish). A group that ran out of work
// waits here while the others finish theirs, for as long as that takes, so
// the wait has no timeout; instead rank 0's heartbeats must keep coming, or
// RestartableError (rank 0 hung or died).
void await_job_end(MPI_Comm world, bool is_rank0);

}  // namespace tpinfer
