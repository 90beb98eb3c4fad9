#include "job/coordinator.hpp"

#include <cstdio>
#include <ctime>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <thread>
#include <utility>

#include "base/error.hpp"
#include "dist/mpi_check.hpp"
#include "dist/mpi_messages.hpp"
#include "dist/signals.hpp"
#include "dist/watchdog.hpp"
#include "job/openai_result.hpp"

namespace tpinfer {

namespace {

std::string join_lines(const std::vector<std::string>& lines) {
  std::string out;
  for (const auto& l : lines) {
    out += l;
    out += '\n';
  }
  return out;
}

template <typename T, typename F>
std::vector<T> split_lines(const std::string& payload, F parse) {
  std::vector<T> out;
  size_t start = 0;
  while (start < payload.size()) {
    size_t end = payload.find('\n', start);
    if (end == std::string::npos) end = payload.size();
    if (end > start) out.push_back(parse(std::string_view(payload).substr(start, end - start)));
    start = end + 1;
  }
  return out;
}

int64_t count_nonblank_lines(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  std::string line;
  int64_t n = 0;
  while (std::getline(in, line))
    if (line.find_first_not_of(" \t\r") != std::string::npos) ++n;
  return n;
}

std::string seconds(double s) {
  char buf[32];
  std::snprintf(buf, sizeof buf, "%.1f s", s);
  return buf;
}

bool has_content(const std::string& path) {
  std::ifstream in(path, std::ios::binary | std::ios::ate);
  return in && in.tellg() > 0;
}

// Refuses to touch results it cannot account for, reads back what an earlier
// run finished (on --resume), and records this run's manifest.
Finished prepare_output(const Coordinator::Options& o) {
  Finished done;
  if (!o.resume) {
    if (has_content(o.output))
      throw UsageError("output file " + o.output +
                       " already exists and is not empty; refusing to overwrite results (pass "
                       "--resume to continue it, or choose another --output)");
  } else {
    const nlohmann::json previous = read_manifest(o.output);
    if (previous.is_null() && has_content(o.output))
      throw UsageError("--resume: " + o.output + " has results but no manifest (" +
                       manifest_path(o.output) + "), so its settings cannot be checked");
    if (!previous.is_null()) check_manifest_matches(previous, o.manifest, o.output);
    done = read_finished(o.output, o.repair);
    if (done.torn_bytes > 0)
      std::fprintf(stderr, "tpinfer: resume: cut %lld bytes of an unfinished last line from %s\n",
                   static_cast<long long>(done.torn_bytes), o.output.c_str());
    if (!done.dropped_lines.empty()) {
      std::string which;
      for (size_t i = 0; i < done.dropped_lines.size() && i < 20; ++i)
        which += (i ? ", " : "") + std::to_string(done.dropped_lines[i]);
      if (done.dropped_lines.size() > 20) which += ", ...";
      std::fprintf(stderr,
                   "tpinfer: --repair: %s keeps %lld result lines; dropped %zu line(s) that "
                   "repeated a request or were not results (line %s), saved in %s\n",
                   o.output.c_str(), static_cast<long long>(done.lines), done.dropped_lines.size(),
                   which.c_str(), done.dropped_to.c_str());
    } else if (o.repair) {
      std::fprintf(stderr, "tpinfer: --repair: %s needed no repair\n", o.output.c_str());
    }
  }
  nlohmann::json m = o.manifest;
  m["run"]["status"] = "running";
  write_manifest(o.output, m);
  return done;
}

}  // namespace

OutputGuard::OutputGuard(std::string output, nlohmann::json manifest)
    : output_(std::move(output)),
      manifest_(std::move(manifest)),
      previous_manifest_(read_manifest(output_)),
      output_existed_(std::filesystem::exists(output_)) {}

void OutputGuard::end_abnormally() noexcept {
  if (finished_ || ended_.exchange(true)) return;
  try {
    if (results_ > 0) {
      nlohmann::json m = manifest_;
      m["run"]["status"] = "failed";
      write_manifest(output_, m);
      return;
    }
    // Nothing of this run is in the output: leave it as it was.
    std::error_code ec;
    if (!output_existed_ && std::filesystem::exists(output_, ec) &&
        std::filesystem::file_size(output_, ec) == 0)
      std::filesystem::remove(output_, ec);
    if (previous_manifest_.is_null())
      std::filesystem::remove(manifest_path(output_), ec);
    else
      write_manifest(output_, previous_manifest_);
  } catch (...) {  // ending anyway; the manifest is only advice to the next run
  }
}

std::string pack_requests(const std::vector<Request>& rs) {
  std::vector<std::string> lines;
  for (const auto& r : rs) lines.push_back(request_to_wire(r));
  return join_lines(lines);
}
std::vector<Request> unpack_requests(const std::string& p) {
  return split_lines<Request>(p, request_from_wire);
}
std::string pack_results(const std::vector<Result>& rs) {
  std::vector<std::string> lines;
  for (const auto& r : rs) lines.push_back(result_to_wire(r));
  return join_lines(lines);
}
std::vector<Result> unpack_results(const std::string& p) {
  return split_lines<Result>(p, result_from_wire);
}

void PendingSends::send(MPI_Comm comm, int dest, int tag, std::string payload) {
  sends_.push_back({std::move(payload), MPI_REQUEST_NULL});
  Send& s = sends_.back();
  TPINFER_MPI_CHECK(MPI_Isend(s.payload.data(), static_cast<int>(s.payload.size()), MPI_CHAR, dest,
                              tag, comm, &s.request));
}

void PendingSends::poll() {
  for (auto it = sends_.begin(); it != sends_.end();) {
    int flag = 0;
    TPINFER_MPI_CHECK(MPI_Test(&it->request, &flag, MPI_STATUS_IGNORE));
    it = flag ? sends_.erase(it) : std::next(it);
  }
}

void PendingSends::wait_all() {
  for (auto& s : sends_) TPINFER_MPI_CHECK(MPI_Wait(&s.request, MPI_STATUS_IGNORE));
  sends_.clear();
}

namespace {
// The settings the readers and the manifest need, settled before either is
// made: the tokenizer for text, the input's format, and the job's "created".
Coordinator::Options settled(Coordinator::Options o) {
  o.rules.tokenizer = o.tokenizer;
  o.rules.format = o.input_format ? *o.input_format : detect_input_format(o.input);
  if (o.rules.format == InputFormat::kOpenAi && !o.tokenizer)
    throw ModelError("input " + o.input +
                     " is an OpenAI batch file, whose results are text, and the model has no "
                     "tokenizer (convert it with its tokenizer.json)");
  o.manifest["input_format"] = input_format_name(o.rules.format);
  int64_t created = o.created > 0 ? o.created : static_cast<int64_t>(std::time(nullptr));
  if (o.resume) {
    // The lines written before said this; the rest must say the same.
    const nlohmann::json previous = read_manifest(o.output);
    if (previous.is_object() && previous.contains("created") &&
        previous["created"].is_number_integer())
      created = previous["created"].get<int64_t>();
  }
  o.created = created;
  o.manifest["created"] = created;
  return o;
}
}  // namespace

Coordinator::Coordinator(MPI_Comm comm, Options options)
    : comm_(comm),
      opt_(settled(std::move(options))),
      lock_(opt_.output),
      guard_(opt_.output, opt_.manifest),
      finished_(prepare_output(opt_)),
      reader_(opt_.input, opt_.rules),
      pending_(opt_.num_groups),
      writer_(opt_.output),
      total_lines_(count_nonblank_lines(opt_.input)),
      progress_(std::max<int64_t>(0, total_lines_ - finished_.lines), opt_.progress_interval_s),
      last_heard_(static_cast<size_t>(opt_.num_groups), MPI_Wtime()),
      group_done_(static_cast<size_t>(opt_.num_groups), 0),
      abort_hook_({}, [this] {
        writer_.sync_quietly();
        guard_.end_abnormally();
      }) {
  if (opt_.strict) {
    // --strict: every line must be good before any work starts.
    RequestReader scan(opt_.input, opt_.rules);
    int64_t bad = 0;
    std::string first;
    while (auto parsed = scan.next()) {
      if (parsed->error) {
        if (bad++ == 0) first = parsed->error->error;
      }
    }
    if (bad > 0)
      throw InputError("input " + opt_.input + " has " + std::to_string(bad) +
                       " bad line(s) and --strict is set; first: " + first);
  }
}

double Coordinator::elapsed_s() const {
  return progress_.elapsed_s();
}

std::vector<Request> Coordinator::take(int group, int64_t n) {
  if (draining_) return {};
  // Read ahead of the groups, so that requests sharing a prefix can go to one
  // group together (prefix_affinity.hpp); requests read ahead and not yet
  // handed out when the job stops were not answered, and a resume reads them
  // again.
  const int64_t ahead = std::clamp<int64_t>(4 * n * opt_.num_groups, 256, 4096);
  while (!exhausted_ && pending_.size() < ahead) {
    auto parsed = reader_.next();
    if (!parsed) {
      exhausted_ = true;
      break;
    }
    ++lines_read_;
    // On --resume, a line whose result is already in the output is skipped.
    const std::string& id = parsed->request ? parsed->request->id_json : parsed->error->id_json;
    const bool keyed_by_id = parsed->request || (!id.empty() && !parsed->error->duplicate_id);
    if (keyed_by_id ? finished_.ids.count(id) > 0
                    : finished_.error_lines.count(parsed->error->line) > 0) {
      ++skipped_;
      continue;
    }
    if (parsed->envelope)
      envelopes_[parsed->request ? parsed->request->line : parsed->error->line] =
          std::move(parsed->envelope);
    if (parsed->request)
      pending_.add(std::move(*parsed->request));
    else
      write({std::move(*parsed->error)});
  }
  return pending_.take(group, n);
}

void Coordinator::write(const std::vector<Result>& results) {
  for (const auto& r : results) {
    if (opt_.rules.format == InputFormat::kOpenAi) {
      const auto it = envelopes_.find(r.line);
      TPINFER_ASSERT(it != envelopes_.end(), "an OpenAI result for a line not read");
      writer_.write_line(
          openai_result_to_json(r, it->second.get(), opt_.tokenizer.get(), opt_.created));
      envelopes_.erase(it);
    } else {
      writer_.write_line(result_to_json(r, opt_.tokenizer.get()));
    }
    ++tally_.done;
    guard_.result_written();
    if (!r.error.empty()) {
      ++tally_.errors;
    } else {
      tally_.prompt_tokens += r.prompt_tokens;
      for (const Completion& c : r.choices)
        tally_.generated_tokens += static_cast<int64_t>(c.tokens.size());
    }
  }
  sync_and_report(false);
}

void Coordinator::sync_and_report(bool force) {
  if (force)
    writer_.sync();
  else
    writer_.maybe_sync(opt_.checkpoint_interval_s);
  progress_.update(tally_.done, tally_.errors, tally_.generated_tokens);
}

void Coordinator::handle(const MPI_Status& st) {
  std::string payload = receive_string(comm_, st);
  const size_t group = static_cast<size_t>(st.MPI_SOURCE / opt_.tp);
  if (group < last_heard_.size()) last_heard_[group] = MPI_Wtime();
  switch (st.MPI_TAG) {
    case kTagWant: {
      const int64_t want = std::stoll(payload);
      // Smaller chunks near the end keep groups finishing together.
      const int64_t left = std::max<int64_t>(0, total_lines_ - lines_read_) + pending_.size();
      const int64_t fair = std::max<int64_t>(1, left / (2 * opt_.num_groups));
      sends_.send(comm_, st.MPI_SOURCE, kTagWork,
                  pack_requests(take(static_cast<int>(group), std::min(want, fair))));
      break;
    }
    case kTagResult:
      write(unpack_results(payload));
      break;
    case kTagDone:
      ++groups_done_;
      if (group < group_done_.size()) group_done_[group] = 1;
      break;
    case kTagAlive:
      break;
    default:
      throw Error("coordinator: unexpected message tag " + std::to_string(st.MPI_TAG) +
                      " from rank " + std::to_string(st.MPI_SOURCE),
                  kExitOther);
  }
}

void Coordinator::drain() {
  if (draining_) return;
  draining_ = true;
  for (int g = 1; g < opt_.num_groups; ++g) sends_.send(comm_, g * opt_.tp, kTagDrain, "");
}

void Coordinator::serve() {
  if (drain_signal() != 0) drain();
  sends_.poll();
  for (;;) {
    int flag = 0;
    MPI_Status st;
    TPINFER_MPI_CHECK(MPI_Iprobe(MPI_ANY_SOURCE, MPI_ANY_TAG, comm_, &flag, &st));
    if (!flag) break;
    handle(st);
  }
  progress_.update(tally_.done, tally_.errors, tally_.generated_tokens);
  check_groups_alive();
  heartbeat_stopped_groups();
}

void Coordinator::heartbeat_stopped_groups() {
  const double t = watchdog::timeout_s(), now = MPI_Wtime();
  if (t <= 0 || now - last_heartbeat_ < t / 4) return;
  last_heartbeat_ = now;
  for (size_t g = 0; g < group_done_.size(); ++g) {
    if (!group_done_[g]) continue;
    for (int r = 0; r < opt_.tp; ++r) {
      const int rank = static_cast<int>(g) * opt_.tp + r;
      if (rank != 0) sends_.send(comm_, rank, kTagAlive, "");
    }
  }
}

// A leader that stops answering (stopped, or stuck outside any guarded call)
// would leave rank 0 waiting for its results forever. Each leader sends
// something at least every timeout/4 while it steps, and a step is bounded by
// the leader's own watchdog, so twice the timeout of silence is a dead group.
void Coordinator::check_groups_alive() const {
  const double limit = 2 * watchdog::timeout_s();
  if (limit <= 0) return;
  const double now = MPI_Wtime();
  for (size_t g = 1; g < last_heard_.size(); ++g) {
    if (group_done_[g] || now - last_heard_[g] <= limit) continue;
    const int first = static_cast<int>(g) * opt_.tp;
    throw RestartableError("data-parallel group " + std::to_string(g) + " (ranks " +
                           std::to_string(first) + "-" + std::to_string(first + opt_.tp - 1) +
                           ") has sent rank 0 nothing for " + seconds(now - last_heard_[g]) +
                           " (twice --collective-timeout): its leader hung or died");
  }
}

void Coordinator::finish(const std::function<void()>& idle) {
  group_done_[0] = 1;  // rank 0's TP peers now wait in await_job_end
  while (groups_done_ < opt_.num_groups - 1) {
    if (drain_signal() != 0) drain();
    int flag = 0;
    MPI_Status st;
    TPINFER_MPI_CHECK(MPI_Iprobe(MPI_ANY_SOURCE, MPI_ANY_TAG, comm_, &flag, &st));
    if (flag) {
      handle(st);
      continue;
    }
    sends_.poll();
    check_groups_alive();
    heartbeat_stopped_groups();
    if (idle) idle();
    // A drain that takes too long is ended by the watchdog's --drain-timeout
    // deadline (dist/watchdog.cpp), which holds even inside a hung collective.
    std::this_thread::sleep_for(std::chrono::microseconds(200));
  }
  {
    watchdog::Guard guard("send_to_leaders");
    sends_.wait_all();
  }
  sync_and_report(true);
  progress_.finish(tally_.done, tally_.errors, tally_.generated_tokens);
  nlohmann::json m = opt_.manifest;
  m["run"]["status"] = draining_ ? "drained" : "done";
  write_manifest(opt_.output, m);
  guard_.finished();
}

WorkSource::WorkSource(MPI_Comm comm, Coordinator* local)
    : comm_(comm), local_(local), last_sent_(MPI_Wtime()) {}

void WorkSource::ask(int64_t n) {
  if (outstanding_ || exhausted_ || n < 1) return;
  if (local_) {
    local_taken_ = local_->take(/*group=*/0, n);
    if (local_taken_.empty()) exhausted_ = true;
    return;
  }
  sends_.send(comm_, 0, kTagWant, std::to_string(n));
  outstanding_ = true;
  last_sent_ = asked_at_ = MPI_Wtime();
}

std::vector<Request> WorkSource::receive(bool wait) {
  sends_.poll();
  if (local_) return std::exchange(local_taken_, {});
  if (!outstanding_) return {};
  int flag = 0;
  MPI_Status st;
  if (wait) {
    watchdog::Guard guard("wait_for_work");
    TPINFER_MPI_CHECK(MPI_Probe(0, kTagWork, comm_, &st));
    flag = 1;
  } else {
    TPINFER_MPI_CHECK(MPI_Iprobe(0, kTagWork, comm_, &flag, &st));
  }
  if (!flag) {
    // Rank 0 answers between its own steps, each bounded by its watchdog; a
    // group with work queued would otherwise notice a dead rank 0 only when idle.
    const double limit = 2 * watchdog::timeout_s(), waited = MPI_Wtime() - asked_at_;
    if (limit > 0 && waited > limit)
      throw RestartableError("rank 0 has not answered this group's request for work for " +
                             seconds(waited) + " (twice --collective-timeout): it hung or died");
    return {};
  }
  outstanding_ = false;
  auto requests = unpack_requests(receive_string(comm_, st));
  if (requests.empty()) exhausted_ = true;
  return requests;
}

bool WorkSource::drain_requested() {
  if (drain_) return true;
  if (local_) return drain_ = local_->draining() || drain_signal() != 0;
  int flag = 0;
  MPI_Status st;
  TPINFER_MPI_CHECK(MPI_Iprobe(0, kTagDrain, comm_, &flag, &st));
  if (flag) {
    receive_string(comm_, st);
    drain_ = true;
  }
  return drain_ = drain_ || drain_signal() != 0;
}

void WorkSource::send_results(const std::vector<Result>& results) {
  if (local_) {
    if (!results.empty()) local_->write(results);
    return;
  }
  const double now = MPI_Wtime();
  if (!results.empty())
    sends_.send(comm_, 0, kTagResult, pack_results(results));
  else if (const double t = watchdog::timeout_s(); t > 0 && now - last_sent_ >= t / 4)
    sends_.send(comm_, 0, kTagAlive, "");
  else
    return;
  last_sent_ = now;
}

void WorkSource::done() {
  // An answer still on its way must be taken, or rank 0's send never completes.
  watchdog::Guard guard("hand_over_results");
  if (outstanding_) receive(true);
  if (!local_) sends_.send(comm_, 0, kTagDone, "");
  sends_.wait_all();
}

void await_job_end(MPI_Comm world, bool is_rank0) {
  MPI_Request barrier = MPI_REQUEST_NULL;
  TPINFER_MPI_CHECK(MPI_Ibarrier(world, &barrier));
  if (is_rank0) {  // every other rank waits here already
    watchdog::Guard guard("job_end");
    TPINFER_MPI_CHECK(MPI_Wait(&barrier, MPI_STATUS_IGNORE));
    return;
  }
  double heard = MPI_Wtime();
  for (;;) {
    int done = 0, flag = 0;
    TPINFER_MPI_CHECK(MPI_Test(&barrier, &done, MPI_STATUS_IGNORE));
    MPI_Status st;
    for (;;) {
      TPINFER_MPI_CHECK(MPI_Iprobe(0, kTagAlive, world, &flag, &st));
      if (!flag) break;
      receive_string(world, st);
      heard = MPI_Wtime();
    }
    if (done) return;
    const double limit = 2 * watchdog::timeout_s(), silent = MPI_Wtime() - heard;
    if (limit > 0 && silent > limit)
      throw RestartableError("rank 0 has sent nothing for " + seconds(silent) +
                             " while this rank waited for the job's end (twice "
                             "--collective-timeout): it hung or died");
    std::this_thread::sleep_for(std::chrono::milliseconds(1));
  }
}

}  // namespace tpinfer
