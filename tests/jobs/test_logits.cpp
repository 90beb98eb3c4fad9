// tpinfer logits: TP=1 and TP=2 (with chunked prefill) agree, and both match
// the model's forward called directly in this process on the same weights;
// --positions last, text prompts, and bad setups.
#include <gtest/gtest.h>
#include <mpi.h>
#include <sys/wait.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <numeric>

#include "backend/backend.hpp"
#include "backend/cpu/cpu_backend.hpp"
#include "dist/mpi_collectives.hpp"
#include "job_helpers.hpp"
#include "logits_helpers.hpp"
#include "model/model.hpp"
#include "weights/weight_store.hpp"

namespace tpinfer::test {
namespace {

namespace fs = std::filesystem;

// GQA with KV heads split at TP 2, llama3 RoPE scaling, untied head, a vocab
// that TP 2 does not divide.
const std::string kConfig =
    config_json({"LlamaForCausalLM", 64, 96, 2, 4, 2, 301, 512,
                 R"({"rope_theta": 500000.0, "rms_norm_eps": 1e-5, "tie_word_embeddings": false,
         "rope_scaling": {"rope_type": "llama3", "factor": 8.0, "low_freq_factor": 1.0,
                          "high_freq_factor": 4.0, "original_max_position_embeddings": 64}})"});

const int kLengths[] = {1, 5, 40, 70, 130};

class Logits : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    model_ = make_random_model("logits", kConfig, 11);
    ASSERT_FALSE(model_.empty());
    std::ofstream in(tmp_path("logits-in.jsonl"));
    for (size_t i = 0; i < std::size(kLengths); ++i) {
      std::vector<int> prompt;
      for (int t = 0; t < kLengths[i]; ++t)
        prompt.push_back((static_cast<int>(i) * 97 + t * 31) % 301);
      in << nlohmann::json{{"id",
                            i == 1 ? nlohmann::json(42) : nlohmann::json("p" + std::to_string(i))},
                           {"prompt_tokens", prompt}}
                .dump()
         << "\n";
    }
  }

  // Runs `tpinfer logits` and returns its array and index.
  static std::pair<Npy, nlohmann::json> run(int np, const std::string& tag,
                                            const std::string& extra) {
    const std::string out = tmp_path("logits-" + tag + ".npy");
    auto r = mpirun_tpinfer(np, "logits --backend cpu --model " + model_ + " --input " +
                                    tmp_path("logits-in.jsonl") + " --output " + out + " --tp " +
                                    std::to_string(np) + " " + extra);
    EXPECT_EQ(r.exit_code, 0) << r.output;
    EXPECT_NE(r.output.find("tpinfer logits: 5 prompts"), std::string::npos) << r.output;
    EXPECT_FALSE(fs::exists(out + ".part"));
    return {read_npy(out), read_json_file(out + ".json")};
  }

  static std::string model_;
};
std::string Logits::model_;

// Every row's argmax (lowest id on ties) is the index's greedy token.
void expect_greedy_is_argmax(const Npy& a, const nlohmann::json& index) {
  for (const auto& p : index["prompts"])
    for (int64_t k = 0; k < p["rows"].get<int64_t>(); ++k) {
      const float* row = a.row(p["row"].get<int64_t>() + k);
      EXPECT_EQ(std::max_element(row, row + a.cols) - row, p["greedy"][k].get<int64_t>());
    }
}

// Every position's logits of each prompt from the model's forward called
// directly (cpu backend, one rank, the whole prompt in one step), computed in a
// forked child: MPI initialised in this process would break its later mpirun runs.
std::vector<float> direct_logits(const std::string& model,
                                 const std::vector<std::vector<int32_t>>& prompts) {
  const std::string out = tmp_path("logits-direct.f32");
  fs::remove(out);
  const pid_t pid = fork();
  if (pid == 0) {
    int code = 1;
    try {
      MPI_Init(nullptr, nullptr);
      WeightReader weights(model);
      auto backend = make_cpu_backend(mpi_collectives(MPI_COMM_SELF), 1);
      Model m = load_model(*backend, weights.config(), 0, 1,
                           [&](const TensorShard& s) { return weights.read(s); });
      size_t longest = 0;
      for (const auto& p : prompts) longest = std::max(longest, p.size());
      const int32_t blocks = static_cast<int32_t>(longest / 16 + 1);
      allocate_kv_cache(m, *backend, blocks, 16);
      allocate_workspace(m, *backend, static_cast<int64_t>(longest), static_cast<int64_t>(longest));
      std::ofstream f(out, std::ios::binary);
      for (const auto& p : prompts) {
        BatchLayout b;
        b.block_size = 16;
        b.token_ids = p;
        b.max_blocks_per_seq = blocks;
        for (int32_t k = 0; k < blocks; ++k) b.block_tables.push_back(k);
        for (int32_t pos = 0; pos < static_cast<int32_t>(p.size()); ++pos) {
          b.positions.push_back(pos);
          b.slot_mapping.push_back(pos);
          b.logit_rows.push_back(pos);
        }
        b.query_start = {0, static_cast<int32_t>(p.size())};
        b.context_len = {static_cast<int32_t>(p.size())};
        std::vector<float> logits;
        forward(m, *backend, b, logits);
        f.write(reinterpret_cast<const char*>(logits.data()),
                static_cast<std::streamsize>(logits.size() * sizeof(float)));
      }
      f.close();
      code = f ? 0 : 1;
      MPI_Finalize();
    } catch (const std::exception& e) {
      std::fprintf(stderr, "direct forward: %s\n", e.what());
    }
    _exit(code);
  }
  int status = 0;
  waitpid(pid, &status, 0);
  EXPECT_TRUE(WIFEXITED(status) && WEXITSTATUS(status) == 0) << "the direct forward failed";
  const std::string bytes = read_file_bytes(out);
  std::vector<float> v(bytes.size() / sizeof(float));
  std::memcpy(v.data(), bytes.data(), v.size() * sizeof(float));
  return v;
}

TEST_F(Logits, TensorParallelTwoMatchesOneRankAndTheForwardCalledDirectly) {
  auto [one, index1] = run(1, "tp1", "");
  // TP 2 and prompts prefilled in chunks of 32 (the 130-token prompt in 5).
  auto [two, index2] = run(2, "tp2", "--max-step-tokens 32");
  int64_t total = 0;
  for (int n : kLengths) total += n;
  ASSERT_EQ(one.rows, total);
  ASSERT_EQ(one.cols, 301);
  ASSERT_EQ(two.rows, one.rows);
  ASSERT_EQ(two.cols, one.cols);
  EXPECT_EQ(index1["vocab_size"], 301);
  EXPECT_EQ(index1["rows"], total);
  EXPECT_EQ(index2["tp"], 2);
  ASSERT_EQ(index1["prompts"].size(), std::size(kLengths));
  EXPECT_EQ(index1["prompts"][1]["id"], 42);  // ids as in the input
  EXPECT_EQ(index1["prompts"][0]["id"], "p0");
  expect_greedy_is_argmax(one, index1);
  expect_greedy_is_argmax(two, index2);

  std::vector<std::vector<int32_t>> prompts;
  for (const auto& p : index1["prompts"])
    prompts.push_back(p["prompt_tokens"].get<std::vector<int32_t>>());
  const std::vector<float> direct_all = direct_logits(model_, prompts);
  size_t offset = 0;
  for (size_t i = 0; i < std::size(kLengths); ++i) {
    const auto& p = index1["prompts"][i];
    const auto tokens = p["prompt_tokens"].get<std::vector<int32_t>>();
    ASSERT_EQ(tokens.size(), static_cast<size_t>(kLengths[i]));
    EXPECT_EQ(index2["prompts"][i]["prompt_tokens"], p["prompt_tokens"]);
    EXPECT_EQ(p["rows"], kLengths[i]);
    const size_t n = static_cast<size_t>(kLengths[i]) * 301;
    ASSERT_LE(offset + n, direct_all.size());
    const float* direct = direct_all.data() + offset;
    offset += n;
    const float* a1 = one.row(p["row"].get<int64_t>());
    const float* a2 = two.row(index2["prompts"][i]["row"].get<int64_t>());
    const double e1 = relative_error(a1, direct, n), e2 = relative_error(a2, direct, n),
                 e12 = relative_error(a2, a1, n);
    EXPECT_LE(e1, 1e-5) << "prompt " << i << ": tp 1 against the forward called directly";
    EXPECT_LE(e2, 1e-5) << "prompt " << i << ": tp 2 against the forward called directly";
    EXPECT_LE(e12, 1e-5) << "prompt " << i << ": tp 2 against tp 1";
    std::printf(
        "[ logits   ] prompt %zu (%d tokens): tp1 %.2e, tp2 %.2e vs direct; tp2 vs tp1 %.2e\n", i,
        kLengths[i], e1, e2, e12);
  }
}

TEST_F(Logits, PositionsLastIsTheLastRowOfEachPrompt) {
  auto [all, index_all] = run(1, "all", "");
  auto [last, index_last] = run(2, "last", "--positions last --max-step-tokens 16");
  ASSERT_EQ(last.rows, static_cast<int64_t>(std::size(kLengths)));
  EXPECT_EQ(index_last["positions"], "last");
  for (size_t i = 0; i < std::size(kLengths); ++i) {
    const auto& pa = index_all["prompts"][i];
    const auto& pl = index_last["prompts"][i];
    EXPECT_EQ(pl["row"], i);
    EXPECT_EQ(pl["rows"], 1);
    const int64_t r = pa["row"].get<int64_t>() + pa["rows"].get<int64_t>() - 1;
    EXPECT_LE(relative_error(last.row(static_cast<int64_t>(i)), all.row(r), 301), 1e-5) << i;
  }
  expect_greedy_is_argmax(last, index_last);
}

// log-softmax(row)[t], in double.
double log_softmax_at(const float* row, int64_t cols, int64_t t) {
  const double max = *std::max_element(row, row + cols);
  double sum = 0;
  for (int64_t j = 0; j < cols; ++j) sum += std::exp(row[j] - max);
  return row[t] - max - std::log(sum);
}

// A job's prompt logprobs and top logprobs are the log-softmax of the logits
// `tpinfer logits` writes for the same prompts: every prompt position, and the
// k best at the first generated one (in chunks of 16 tokens, at TP 2).
TEST_F(Logits, PromptAndTopLogprobsOfAJobAreTheLogSoftmaxOfTheLogits) {
  auto [all, index] = run(1, "for-logprobs", "");
  const std::string in = tmp_path("logits-logprobs-in.jsonl"),
                    out = tmp_path("logits-logprobs-out.jsonl");
  {
    std::ofstream f(in);
    for (const auto& p : index["prompts"])
      f << nlohmann::json{{"id", p["id"]},
                          {"prompt_tokens", p["prompt_tokens"]},
                          {"max_new_tokens", 1},
                          {"prompt_logprobs", true},
                          {"top_logprobs", 5}}
               .dump()
        << "\n";
  }
  fs::remove(out);
  const auto r = mpirun_tpinfer(2, "run --backend cpu --model " + model_ + " --input " + in +
                                       " --output " + out + " --tp 2 --max-step-tokens 16");
  ASSERT_EQ(r.exit_code, 0) << r.output;
  const auto results = results_by_id(out);
  ASSERT_EQ(results.size(), std::size(kLengths));
  for (const auto& p : index["prompts"]) {
    const nlohmann::json& got = results.at(p["id"].dump());
    const auto tokens = p["prompt_tokens"].get<std::vector<int64_t>>();
    const int64_t first = p["row"].get<int64_t>(), n = static_cast<int64_t>(tokens.size());
    // A one-token prompt has no position to score: no field.
    ASSERT_EQ(got.contains("prompt_logprobs"), n > 1) << got;
    const nlohmann::json pl = got.value("prompt_logprobs", nlohmann::json::array({nullptr}));
    ASSERT_EQ(static_cast<int64_t>(pl.size()), n) << got;
    EXPECT_TRUE(pl[0].is_null());
    for (int64_t i = 1; i < n; ++i)
      EXPECT_NEAR(pl[i].get<double>(), log_softmax_at(all.row(first + i - 1), all.cols, tokens[i]),
                  1e-5)
          << p["id"] << " position " << i;
    // The k best after the whole prompt, most likely first.
    const float* last = all.row(first + n - 1);
    std::vector<int64_t> order(static_cast<size_t>(all.cols));
    std::iota(order.begin(), order.end(), 0);
    std::stable_sort(order.begin(), order.end(),
                     [&](int64_t a, int64_t b) { return last[a] > last[b]; });
    const auto& top = got["top_logprobs"].at(0);
    ASSERT_EQ(top.size(), 5u) << got;
    for (size_t k = 0; k < 5; ++k) {
      EXPECT_EQ(top[k]["token"].get<int64_t>(), order[k]) << p["id"] << " top " << k;
      EXPECT_NEAR(top[k]["logprob"].get<double>(), log_softmax_at(last, all.cols, order[k]), 1e-5);
    }
    EXPECT_EQ(got["tokens"].at(0).get<int64_t>(), order[0]);  // greedy
  }
}

TEST_F(Logits, BadSetupsFailWithOneLineAndExitTwo) {
  const std::string out = tmp_path("logits-bad.npy");
  auto r = tpinfer_cli("logits --model " + model_ + " --input " + tmp_path("logits-in.jsonl") +
                       " --output " + out + " --positions some");
  EXPECT_EQ(r.exit_code, 2) << r.output;
  EXPECT_NE(r.output.find("--positions some is not one of all, last"), std::string::npos)
      << r.output;
  // Two ranks at --tp 1 would be two replicas.
  r = mpirun_tpinfer(2, "logits --backend cpu --model " + model_ + " --input " +
                            tmp_path("logits-in.jsonl") + " --output " + out);
  EXPECT_EQ(r.exit_code, 2) << r.output;
  EXPECT_NE(r.output.find("logits runs one replica"), std::string::npos) << r.output;
  // A bad line fails the run, naming the line; nothing is left behind.
  const std::string in = tmp_path("logits-bad.jsonl");
  std::ofstream(in) << R"({"id": "a", "prompt_tokens": [1, 2]})"
                       "\n"
                    << R"({"id": "b", "prompt_tokens": [1, 999]})"
                       "\n";
  r = mpirun_tpinfer(
      2, "logits --backend cpu --tp 2 --model " + model_ + " --input " + in + " --output " + out);
  EXPECT_EQ(r.exit_code, 2) << r.output;
  EXPECT_NE(r.output.find("line 2"), std::string::npos) << r.output;
  EXPECT_FALSE(fs::exists(out));
  EXPECT_FALSE(fs::exists(out + ".part"));
}

// A text prompt goes through the model's tokenizer with BOS, as in tpinfer run.
TEST(LogitsText, TextPromptsAreTokenizedWithBos) {
  const std::string tok =
      std::string(TPINFER_SOURCE_DIR) + "/tests/data/tokenizer/tiny_llama3.tokenizer.json";
  const std::string cfg = tmp_path("logits-text-config.json"), model = tmp_path("logits-text.h5"),
                    in = tmp_path("logits-text.jsonl"), out = tmp_path("logits-text.npy");
  std::ofstream(cfg) << R"({"architectures": ["LlamaForCausalLM"], "hidden_size": 64,
    "intermediate_size": 128, "num_hidden_layers": 1, "num_attention_heads": 4,
    "num_key_value_heads": 2, "vocab_size": 600, "max_position_embeddings": 256,
    "torch_dtype": "float32"})";
  auto made =
      tpinfer_cli("make-model --config " + cfg + " --output " + model + " --tokenizer " + tok);
  ASSERT_EQ(made.exit_code, 0) << made.output;
  std::ofstream(in) << R"({"id": "t", "prompt": "Hello world"})"
                       "\n";
  auto r =
      tpinfer_cli("logits --backend cpu --model " + model + " --input " + in + " --output " + out);
  ASSERT_EQ(r.exit_code, 0) << r.output;
  auto ids = run_shell("echo 'Hello world' | " + std::string(TPINFER_BIN) +
                       " tokenize --bos --model " + model);
  ASSERT_EQ(ids.exit_code, 0) << ids.output;
  const auto index = read_json_file(out + ".json");
  EXPECT_EQ(index["prompts"][0]["prompt_tokens"], nlohmann::json::parse(ids.output));
  EXPECT_EQ(read_npy(out).rows, static_cast<int64_t>(nlohmann::json::parse(ids.output).size()));
}

}  // namespace
}  // namespace tpinfer::test
