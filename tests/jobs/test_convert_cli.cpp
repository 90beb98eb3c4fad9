// `tpinfer convert` as a user runs it: a Hugging Face directory (safetensors
// shards, tokenizer files, generation config) converted, then a text prompt
// run on the result; a bad directory exits 2 with one error line.
#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <sstream>

#include "job_helpers.hpp"
#include "unit/safetensors_writer.hpp"
#include "weights/model_config.hpp"
#include "weights/weight_store.hpp"

namespace tpinfer::test {
namespace {

namespace fs = std::filesystem;

std::string slurp(const fs::path& p) {
  std::ifstream in(p, std::ios::binary);
  std::stringstream s;
  s << in.rdbuf();
  return s.str();
}

TEST(ConvertCli, ConvertsAHuggingFaceDirectoryAndRunsATextPrompt) {
  const ModelConfig c = config_from_hf_json(nlohmann::json::parse(R"({
    "architectures": ["LlamaForCausalLM"], "hidden_size": 64, "intermediate_size": 96,
    "num_hidden_layers": 2, "num_attention_heads": 4, "num_key_value_heads": 2,
    "vocab_size": 600, "max_position_embeddings": 128, "rms_norm_eps": 1e-5,
    "bos_token_id": 1, "eos_token_id": 2, "torch_dtype": "bfloat16"})"));
  const std::string dir = tmp_path("convert-hf"), model = tmp_path("convert.h5");
  write_hf_dir(dir, c, random_model_tensors(c, 5, "BF16"), 2);
  write_bytes(dir + "/tokenizer.json", slurp(fs::path(TPINFER_SOURCE_DIR) /
                                             "tests/data/tokenizer/tiny_llama2.tokenizer.json"));
  write_json(dir + "/tokenizer_config.json", {{"add_bos_token", true},
                                              {"add_eos_token", false},
                                              {"bos_token", "<s>"},
                                              {"eos_token", "</s>"},
                                              {"tokenizer_class", "LlamaTokenizer"}});
  write_json(dir + "/generation_config.json", {{"bos_token_id", 1}, {"eos_token_id", {2, 3}}});
  fs::remove(model);

  CommandResult r = tpinfer_cli("convert --hf " + dir + " --output " + model + " --dtype fp32");
  ASSERT_EQ(r.exit_code, 0) << r.output;
  EXPECT_NE(r.output.find("[ 1/21] model.embed_tokens.weight [600, 64] BF16 -> float32 "
                          "(model-00001-of-00002.safetensors)"),
            std::string::npos)
      << r.output;
  EXPECT_NE(r.output.find("21 tensors, 138560 parameters, float32"), std::string::npos) << r.output;
  EXPECT_NE(r.output.find("text prompts start with BOS 1"), std::string::npos) << r.output;
  EXPECT_NE(r.output.find("generation stops on EOS [2, 3]"), std::string::npos) << r.output;
  EXPECT_NE(r.output.find("(" + std::to_string(fs::file_size(model)) + " bytes)"),
            std::string::npos)
      << r.output;

  // The tokenizer in the file starts text with BOS as tokenizer_config.json says.
  r = run_shell("echo 'hello world' | " + std::string(TPINFER_BIN) + " tokenize --model " + model +
                " --bos");
  ASSERT_EQ(r.exit_code, 0) << r.output;
  const auto ids = nlohmann::json::parse(r.output).get<std::vector<int>>();
  ASSERT_GE(ids.size(), 2u);
  EXPECT_EQ(ids.front(), 1);

  const std::string in = tmp_path("convert-in.jsonl"), out = tmp_path("convert-out.jsonl");
  std::ofstream(in) << R"({"id": "t", "prompt": "hello world", "max_new_tokens": 5})"
                    << "\n";
  fs::remove(out);
  r = mpirun_tpinfer(1, "run --model " + model + " --input " + in + " --output " + out);
  ASSERT_EQ(r.exit_code, 0) << r.output;
  const auto results = read_jsonl(out);
  ASSERT_EQ(results.size(), 1u);
  EXPECT_EQ(results[0]["prompt_tokens"], ids.size()) << results[0];
  EXPECT_TRUE(results[0].contains("text")) << results[0];
}

TEST(ConvertCli, BadDirectoryOrMissingOptionExitsTwo) {
  CommandResult r = tpinfer_cli("convert --hf /nonexistent/hf --output " + tmp_path("x.h5"));
  EXPECT_EQ(r.exit_code, 2) << r.output;
  EXPECT_NE(r.output.find("tpinfer: error: Hugging Face model directory /nonexistent/hf does not "
                          "exist"),
            std::string::npos)
      << r.output;
  EXPECT_FALSE(fs::exists(tmp_path("x.h5")));

  const std::string dir = tmp_path("convert-empty");
  fs::create_directories(dir);
  write_json(dir + "/config.json", {{"hidden_size", 8}});
  r = tpinfer_cli("convert --hf " + dir + " --output " + tmp_path("x.h5"));
  EXPECT_EQ(r.exit_code, 2) << r.output;
  EXPECT_NE(r.output.find(dir + "/config.json: config is missing the required field"),
            std::string::npos)
      << r.output;

  r = tpinfer_cli("convert --hf " + dir);
  EXPECT_EQ(r.exit_code, 2) << r.output;
  EXPECT_NE(r.output.find("--output is required"), std::string::npos) << r.output;
  r = tpinfer_cli("convert --hf " + dir + " --output x.h5 --dtype int8");
  EXPECT_EQ(r.exit_code, 2) << r.output;
  EXPECT_NE(r.output.find("--dtype: dtype 'int8'"), std::string::npos) << r.output;
}

}  // namespace
}  // namespace tpinfer::test
