#pragma once
// Test helpers shared by the weight-file, safetensors and converter tests: the
// bits of a float, and "this throws one line of ModelError naming these parts".
#include <gtest/gtest.h>

#include <cstdint>
#include <cstring>
#include <string>
#include <vector>

#include "base/error.hpp"

namespace tpinfer::test {

inline uint32_t bits_of(float f) {
  uint32_t u;
  std::memcpy(&u, &f, sizeof u);
  return u;
}

inline float float_of(uint32_t u) {
  float f;
  std::memcpy(&f, &u, sizeof f);
  return f;
}

// Asserts that `fn` throws a ModelError of one line containing every one of `parts`.
template <typename F>
void expect_model_error(F&& fn, const std::vector<std::string>& parts) {
  try {
    fn();
    ADD_FAILURE() << "expected a ModelError containing '" << parts.front() << "'";
  } catch (const ModelError& e) {
    const std::string msg = e.what();
    EXPECT_EQ(msg.find('\n'), std::string::npos) << "not one line: " << msg;
    for (const auto& p : parts)
      EXPECT_NE(msg.find(p), std::string::npos) << "'" << p << "' not in: " << msg;
  } catch (const std::exception& e) {
    ADD_FAILURE() << "expected a ModelError, got: " << e.what();
  }
}

}  // namespace tpinfer::test
