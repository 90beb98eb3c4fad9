#include "text/stop_matcher.hpp"

#include <algorithm>
#include <utility>

namespace tpinfer {

StopMatcher::StopMatcher(const Tokenizer& tokenizer, std::vector<std::string> stops)
    : tokenizer_(&tokenizer),
      decoder_(tokenizer, /*skip_special_tokens=*/true),
      stops_(std::move(stops)) {
  for (const std::string& s : stops_) longest_ = std::max(longest_, s.size());
}

bool StopMatcher::push(int32_t token) {
  if (matched()) return true;
  // Checkpoints often pad the vocabulary past the tokenizer: such ids have no
  // text (as in the result's "text").
  if (token < 0 || static_cast<size_t>(token) >= tokenizer_->vocab_size()) return false;
  const std::string added = decoder_.push(token);
  if (added.empty()) return false;
  // Text before this token held no stop string, so a match ends in `added` and
  // starts at most longest_ - 1 bytes before it.
  const size_t from = text_.size() - std::min(text_.size(), longest_ > 0 ? longest_ - 1 : 0);
  text_ += added;
  for (const std::string& s : stops_) {
    const size_t at = text_.find(s, from);
    if (at != std::string::npos && at < match_) match_ = at;
  }
  return matched();
}

std::string StopMatcher::text_before_stop() const {
  return matched() ? text_.substr(0, match_) : text_;
}

std::string StopStrings::refusal(const SamplingParams& params) const {
  if (params.stop_strings.empty()) return {};
  if (!tokenizer_)
    return "stop strings need the model's tokenizer, and this model has none: give token ids in "
           "\"stop\"";
  for (const std::string& s : params.stop_strings)
    if (s.empty()) return "a stop string is empty (it would match before any text)";
  return {};
}

void StopStrings::add(int64_t seq_id, const SamplingParams& params) {
  if (params.stop_strings.empty()) return;
  matchers_.insert_or_assign(seq_id, StopMatcher(*tokenizer_, params.stop_strings));
}

bool StopStrings::push(int64_t seq_id, int32_t token) {
  if (matchers_.empty()) return false;
  const auto it = matchers_.find(seq_id);
  return it != matchers_.end() && it->second.push(token);
}

void StopStrings::finish(int64_t seq_id, Completion& completion) {
  const auto it = matchers_.find(seq_id);
  if (it == matchers_.end()) return;
  if (it->second.matched()) completion.text_bytes = static_cast<int64_t>(it->second.stop_at());
  matchers_.erase(it);
}

}  // namespace tpinfer
