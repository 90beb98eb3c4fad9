#pragma once
// The two ways a chat template fails. The template itself (a construct the
// renderer lacks, a syntax error) is the model's fault and stops the job at
// start-up; a failure while rendering one conversation (the template's
// raise_exception, a type error on that conversation's data) is that
// request's error line, and the job goes on.
#include <string>

#include "base/error.hpp"

namespace tpinfer {

// Refused at parse time: one line naming the construct and its line:column.
struct ChatTemplateError : ModelError {
  explicit ChatTemplateError(const std::string& w) : ModelError(w) {}
};

// Raised while rendering one conversation.
struct ChatTemplateRenderError : InputError {
  // True when the template itself called raise_exception(message).
  bool raised = false;
  explicit ChatTemplateRenderError(const std::string& w, bool from_raise = false)
      : InputError(w), raised(from_raise) {}
};

}  // namespace tpinfer
