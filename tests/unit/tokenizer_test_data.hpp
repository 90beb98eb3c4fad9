#pragma once
// Where the tokenizer tests' committed data lives, and a whole-file reader.
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <string>

namespace tpinfer::test {

inline const std::filesystem::path kSourceRoot =
    std::filesystem::path(__FILE__).parent_path().parent_path().parent_path();
inline const std::filesystem::path kData = kSourceRoot / "tests" / "data" / "tokenizer";

// A real tokenizer's file, fetched by tools/tokenizer_fixtures/fetch_tokenizers.sh
// (tools/test.sh runs it) into $TPINFER_TOKENIZER_DIR, default <build>/tokenizers;
// the path, whether or not it exists.
inline std::filesystem::path real_tokenizer_file(const std::string& name) {
  const char* d = std::getenv("TPINFER_TOKENIZER_DIR");
  const std::filesystem::path dir =
      d ? std::filesystem::path(d)
        : std::filesystem::path(TPINFER_TEST_TMP).parent_path() / "tokenizers";
  return dir / name / "tokenizer.json";
}

inline std::string slurp(const std::filesystem::path& p) {
  std::ifstream f(p, std::ios::binary);
  std::stringstream ss;
  ss << f.rdbuf();
  return ss.str();
}

}  // namespace tpinfer::test
