// tokenizer_bench: the tokenizer alone, for speed and for comparisons with
// other implementations (tools/tokenizer_compare.py drives it).
//   tokenizer_bench speed TOKENIZER.json TEXT_FILE [--repeat N]
//     encodes TEXT_FILE line by line on one thread, N times (default 3), and
//     prints the best run's MB/s (bytes of text per second) and token count.
//   tokenizer_bench ids TOKENIZER.json < JSONL
//     each line a JSON string; prints its ids (no special tokens) as a JSON list.
#include <chrono>
#include <cstdio>
#include <fstream>
#include <iostream>
#include <nlohmann/json.hpp>
#include <sstream>
#include <string>
#include <vector>

#include "base/error.hpp"
#include "text/tokenizer.hpp"

namespace {

std::string slurp(const std::string& path) {
  std::ifstream f(path, std::ios::binary);
  if (!f) throw tpinfer::UsageError("cannot open " + path);
  std::stringstream ss;
  ss << f.rdbuf();
  return ss.str();
}

int speed(const std::string& tok_path, const std::string& text_path, int repeat) {
  const tpinfer::Tokenizer tok = tpinfer::Tokenizer::from_file(tok_path);
  const std::string text = slurp(text_path);
  std::vector<std::string_view> lines;
  for (size_t p = 0; p < text.size();) {
    size_t e = text.find('\n', p);
    e = e == std::string::npos ? text.size() : e + 1;
    lines.push_back(std::string_view(text).substr(p, e - p));
    p = e;
  }
  double best = 1e30;
  size_t tokens = 0;
  for (int r = 0; r < repeat; ++r) {
    const auto t0 = std::chrono::steady_clock::now();
    size_t n = 0;
    for (std::string_view l : lines) n += tok.encode(l).size();
    const double s = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    best = std::min(best, s);
    tokens = n;
  }
  std::printf("%.2f MB/s  %zu bytes  %zu tokens  %.3f s (best of %d)\n", text.size() / best / 1e6,
              text.size(), tokens, best, repeat);
  return 0;
}

int ids(const std::string& tok_path) {
  const tpinfer::Tokenizer tok = tpinfer::Tokenizer::from_file(tok_path);
  std::string line;
  while (std::getline(std::cin, line))
    std::cout << nlohmann::json(tok.encode(nlohmann::json::parse(line).get<std::string>())).dump()
              << "\n";
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  try {
    const std::vector<std::string> a(argv + 1, argv + argc);
    if (a.size() >= 3 && a[0] == "speed") {
      int repeat = 3;
      for (size_t i = 3; i < a.size(); ++i) {
        if (a[i] == "--repeat" && i + 1 < a.size())
          repeat = std::stoi(a[++i]);
        else
          throw tpinfer::UsageError("unknown option " + a[i]);
      }
      return speed(a[1], a[2], repeat);
    }
    if (a.size() == 2 && a[0] == "ids") return ids(a[1]);
    std::fprintf(stderr,
                 "usage: tokenizer_bench speed TOKENIZER.json TEXT [--repeat N]\n"
                 "       tokenizer_bench ids TOKENIZER.json < JSONL\n");
    return 2;
  } catch (const tpinfer::Error& e) {
    std::fprintf(stderr, "tokenizer_bench: %s\n", e.what());
    return e.exit_code;
  } catch (const std::exception& e) {
    std::fprintf(stderr, "tokenizer_bench: %s\n", e.what());
    return 1;
  }
}
