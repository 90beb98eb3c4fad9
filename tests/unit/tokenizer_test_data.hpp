#pragma once
// Where the tokenizer tests' committed data lives, and a whole-file reader.
#include <filesystem>
#include <fstream>
#include <sstream>
#include <string>

namespace tpinfer::test {

inline const std::filesystem::path kSourceRoot =
    std::filesystem::path(__FILE__).parent_path().parent_path().parent_path();
inline const std::filesystem::path kData = kSourceRoot / "tests" / "data" / "tokenizer";

inline std::string slurp(const std::filesystem::path& p) {
  std::ifstream f(p, std::ios::binary);
  std::stringstream ss;
  ss << f.rdbuf();
  return ss.str();
}

}  // namespace tpinfer::test
