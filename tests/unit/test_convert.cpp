// tpinfer convert: Hugging Face directories written here (safetensors in every
// float dtype, sharded with an index, tied embeddings, Qwen2 biases, the
// tokenizer and generation configs) converted and read back with WeightReader
// value by value; the converted model's forward equals the directly written
// model's; and one clear error for each kind of bad directory.
#include <gtest/gtest.h>

#include <cstring>
#include <filesystem>
#include <fstream>
#include <limits>
#include <nlohmann/json.hpp>
#include <sstream>
#include <string>
#include <vector>

#include "backend/backend.hpp"
#include "backend/cpu/cpu_backend.hpp"
#include "base/collectives.hpp"
#include "base/error.hpp"
#include "base/half.hpp"
#include "model/model.hpp"
#include "model_error_matchers.hpp"
#include "safetensors_writer.hpp"
#include "text/tokenizer.hpp"
#include "weights/hf_convert.hpp"
#include "weights/weight_store.hpp"

namespace tpinfer {
namespace {

namespace fs = std::filesystem;
using namespace test;

const fs::path kTokenizerData =
    fs::path(__FILE__).parent_path().parent_path() / "data" / "tokenizer";

std::string slurp(const fs::path& p) {
  std::ifstream in(p, std::ios::binary);
  std::stringstream s;
  s << in.rdbuf();
  return s.str();
}

// Llama 3.1-style: GQA, llama3 rope scaling, untied.
ModelConfig llama_config(DType dtype) {
  return config_from_hf_json({{"architectures", {"LlamaForCausalLM"}},
                              {"hidden_size", 64},
                              {"intermediate_size", 96},
                              {"num_hidden_layers", 2},
                              {"num_attention_heads", 4},
                              {"num_key_value_heads", 2},
                              {"vocab_size", 600},
                              {"max_position_embeddings", 128},
                              {"rope_theta", 500000.0},
                              {"rope_scaling",
                               {{"rope_type", "llama3"},
                                {"factor", 8.0},
                                {"low_freq_factor", 1.0},
                                {"high_freq_factor", 4.0},
                                {"original_max_position_embeddings", 32}}},
                              {"rms_norm_eps", 1e-5},
                              {"bos_token_id", 1},
                              {"eos_token_id", 2},
                              {"torch_dtype", dtype_name(dtype)}});
}

// Qwen2: q/k/v biases, tied embeddings, MQA.
ModelConfig qwen2_config(DType dtype) {
  return config_from_hf_json({{"architectures", {"Qwen2ForCausalLM"}},
                              {"hidden_size", 48},
                              {"intermediate_size", 80},
                              {"num_hidden_layers", 2},
                              {"num_attention_heads", 6},
                              {"num_key_value_heads", 1},
                              {"vocab_size", 90},
                              {"max_position_embeddings", 64},
                              {"rope_theta", 1000000.0},
                              {"rms_norm_eps", 1e-6},
                              {"tie_word_embeddings", true},
                              {"eos_token_id", 5},
                              {"torch_dtype", dtype_name(dtype)}});
}

class Convert : public ::testing::Test {
 protected:
  void SetUp() override {
    const auto* info = ::testing::UnitTest::GetInstance()->current_test_info();
    base_ = std::string(TPINFER_TEST_TMP) + "/convert_" + info->name();
    fs::create_directories(TPINFER_TEST_TMP);
    dir_ = base_ + "_hf";
    out_ = base_ + ".h5";
    fs::remove(out_);
  }
  ConvertSummary convert(std::optional<DType> dtype = std::nullopt, bool tokenizer = true) {
    ConvertOptions o;
    o.hf_dir = dir_;
    o.output = out_;
    o.dtype = dtype;
    o.with_tokenizer = tokenizer;
    return convert_hf_model(o);
  }
  // The conversion fails with these parts in its message and leaves no file behind.
  void expect_convert_error(const std::vector<std::string>& parts) {
    expect_model_error([&] { convert(); }, parts);
    EXPECT_FALSE(fs::exists(out_));
    EXPECT_FALSE(fs::exists(out_ + ".partial"));
  }
  std::string base_, dir_, out_;
};

// Every expected tensor of the file equals `want(name, flat index)` bit for bit.
template <typename Want>
void expect_tensors(const WeightReader& r, const ModelConfig& c, Want want) {
  for (const TensorSpec& spec : expected_tensors(c)) {
    const TensorShard all{spec.name, spec.shape, std::vector<int64_t>(spec.shape.size(), 0),
                          spec.shape};
    const std::vector<float> got = r.read(all);
    ASSERT_EQ(static_cast<int64_t>(got.size()), all.numel()) << spec.name;
    const std::vector<float> expected = want(all);
    for (size_t i = 0; i < got.size(); ++i)
      ASSERT_EQ(bits_of(got[i]), bits_of(expected[i]))
          << spec.name << "[" << i << "]: " << got[i] << " != " << expected[i];
  }
}

TEST_F(Convert, ShardedBf16LlamaWithAnIndexConvertsBitExactly) {
  const ModelConfig c = llama_config(DType::bf16);
  std::vector<StTensor> tensors = random_model_tensors(c, 11, "BF16");
  // Buffers older transformers saved: no weights, ignored.
  for (int l = 0; l < 2; ++l)
    tensors.push_back(
        st_tensor("model.layers." + std::to_string(l) + ".self_attn.rotary_emb.inv_freq", "F32",
                  {8}, std::vector<float>(8, 0.5f)));
  write_hf_dir(dir_, c, tensors, 3);
  ASSERT_TRUE(fs::exists(dir_ + "/model-00003-of-00003.safetensors"));

  int64_t calls = 0;
  ConvertOptions o;
  o.hf_dir = dir_;
  o.output = out_;
  const ConvertSummary s = convert_hf_model(o, [&](int64_t i, int64_t n, const ConvertedTensor& t) {
    EXPECT_EQ(i, calls++);
    EXPECT_EQ(n, static_cast<int64_t>(expected_tensors(c).size()));
    EXPECT_EQ(t.source_dtype, "BF16");
    EXPECT_EQ(t.stored_dtype, DType::bf16);
    EXPECT_EQ(t.file.rfind("model-0000", 0), 0u) << t.file;
  });
  EXPECT_EQ(calls, static_cast<int64_t>(expected_tensors(c).size()));
  EXPECT_EQ(s.tensors, calls);
  int64_t params = 0;
  for (const TensorSpec& spec : expected_tensors(c)) {
    int64_t n = 1;
    for (int64_t d : spec.shape) n *= d;
    params += n;
  }
  EXPECT_EQ(s.parameters, params);
  EXPECT_EQ(s.output_bytes, fs::file_size(out_));
  EXPECT_EQ(s.ignored.size(), 2u);
  EXPECT_FALSE(s.tokenizer.has_value());
  EXPECT_FALSE(fs::exists(out_ + ".partial"));

  const WeightReader r(out_);
  EXPECT_EQ(config_to_json(r.config()), config_to_json(c));
  r.validate(1);
  r.validate(2);
  r.validate(4);
  EXPECT_FALSE(r.has_tokenizer());
  EXPECT_EQ(r.tensor_dtype("model.layers.1.mlp.down_proj.weight"), DType::bf16);
  expect_tensors(r, c, [&](const TensorShard& s) { return random_tensor_values(c, s, 11); });
}

TEST_F(Convert, EverySourceDtypeToEveryStoredDtype) {
  const ModelConfig c32 = llama_config(DType::f32);
  for (const char* src : {"F32", "BF16", "F16", "F64"}) {
    write_hf_dir(dir_, c32, random_model_tensors(c32, 3, src));
    for (DType dst : {DType::f32, DType::bf16, DType::f16}) {
      SCOPED_TRACE(std::string(src) + " -> " + dtype_name(dst));
      const ConvertSummary s = convert(dst);
      EXPECT_EQ(s.config.dtype, dst);
      const WeightReader r(out_);
      EXPECT_EQ(r.config().dtype, dst);
      EXPECT_EQ(r.tensor_dtype("model.embed_tokens.weight"), dst);
      // Stored once in the checkpoint's dtype, then rounded once more to the target.
      expect_tensors(r, c32, [&](const TensorShard& sh) {
        std::vector<float> v = random_tensor_values(c32, sh, 3);
        for (float& x : v) x = round_to_dtype(dst, st_round(src, x));
        return v;
      });
    }
  }
}

TEST_F(Convert, TiedQwen2WithBiasesIgnoresAStoredLmHead) {
  const ModelConfig c = qwen2_config(DType::bf16);
  std::vector<StTensor> tensors = random_model_tensors(c, 4, "BF16");
  // Some checkpoints of tied models also hold lm_head.weight; transformers ties
  // it to the embedding and ignores it, and so must the converter.
  tensors.push_back(st_tensor("lm_head.weight", "BF16", {c.vocab_size, c.hidden_size},
                              std::vector<float>(c.vocab_size * c.hidden_size, 9.0f)));
  write_hf_dir(dir_, c, tensors);
  const ConvertSummary s = convert();
  EXPECT_EQ(s.ignored, std::vector<std::string>{"lm_head.weight"});
  const WeightReader r(out_);
  EXPECT_TRUE(r.config().tie_word_embeddings);
  EXPECT_TRUE(r.config().attention_bias);
  r.validate(1);
  r.validate(2);
  expect_tensors(r, c, [&](const TensorShard& sh) { return random_tensor_values(c, sh, 4); });
  expect_model_error([&] { r.tensor_dtype("lm_head.weight"); }, {"lm_head.weight is missing"});
}

// Logits of `tokens` (one prefill) from a model file on the cpu backend.
std::vector<float> logits_of(const std::string& path, const std::vector<int32_t>& tokens) {
  const WeightReader r(path);
  r.validate(1);
  auto backend = make_cpu_backend(single_process_collectives(), 1);
  Model m = load_model(*backend, r.config(), 0, 1, [&](const TensorShard& s) { return r.read(s); });
  const int block_size = 4;
  allocate_kv_cache(m, *backend, 8, block_size);
  allocate_workspace(m, *backend, 32, 1);
  BatchLayout b;
  b.block_size = block_size;
  b.max_blocks_per_seq = 8;
  for (int i = 0; i < 8; ++i) b.block_tables.push_back(7 - i);
  b.query_start = {0, static_cast<int32_t>(tokens.size())};
  b.context_len = {static_cast<int32_t>(tokens.size())};
  for (size_t t = 0; t < tokens.size(); ++t) {
    b.token_ids.push_back(tokens[t]);
    b.positions.push_back(static_cast<int32_t>(t));
    b.slot_mapping.push_back(b.block_tables[t / block_size] * block_size + t % block_size);
  }
  b.logit_rows = {static_cast<int32_t>(tokens.size() - 1)};
  std::vector<float> out;
  forward(m, *backend, b, out);
  return out;
}

TEST_F(Convert, ConvertedModelRunsExactlyLikeTheDirectlyWrittenOne) {
  for (const ModelConfig& c : {qwen2_config(DType::f32), llama_config(DType::bf16)}) {
    SCOPED_TRACE(c.architecture);
    const std::string direct = base_ + "_direct.h5";
    write_random_model(c, direct, 21);
    // Export the directly written file's tensors (as stored) to safetensors.
    const WeightReader src(direct);
    std::vector<StTensor> tensors;
    for (const TensorSpec& spec : expected_tensors(c)) {
      const TensorShard all{spec.name, spec.shape, std::vector<int64_t>(spec.shape.size(), 0),
                            spec.shape};
      tensors.push_back(
          st_tensor(spec.name, c.dtype == DType::f32 ? "F32" : "BF16", spec.shape, src.read(all)));
    }
    write_hf_dir(dir_, c, tensors, 2);
    convert();
    const WeightReader converted(out_);
    expect_tensors(converted, c, [&](const TensorShard& s) { return src.read(s); });
    const std::vector<int32_t> tokens = {1, 17, 4, 33, 8, 2, 60, 11, 5};
    const std::vector<float> want = logits_of(direct, tokens);
    const std::vector<float> got = logits_of(out_, tokens);
    ASSERT_EQ(got.size(), static_cast<size_t>(c.vocab_size));
    EXPECT_EQ(got, want);  // same weights, same computation: identical
    EXPECT_NE(*std::min_element(got.begin(), got.end()), *std::max_element(got.begin(), got.end()));
  }
}

TEST_F(Convert, GenerationConfigEosAndTokenizerConfigBos) {
  ModelConfig c = llama_config(DType::f32);
  write_hf_dir(dir_, c, random_model_tensors(c, 1, "F32"));
  const std::string tok_bytes = slurp(kTokenizerData / "tiny_llama2.tokenizer.json");
  ASSERT_FALSE(tok_bytes.empty());
  write_bytes(dir_ + "/tokenizer.json", tok_bytes);
  // Llama 3 instruct style: several EOS ids in generation_config.json.
  write_json(dir_ + "/generation_config.json", {{"bos_token_id", 1}, {"eos_token_id", {2, 7}}});

  {  // no tokenizer_config.json: tokenizer.json kept byte for byte (its template adds <s>)
    const ConvertSummary s = convert();
    ASSERT_TRUE(s.tokenizer.has_value());
    EXPECT_FALSE(s.tokenizer->rewritten);
    EXPECT_EQ(s.tokenizer->bos_id, 1);
    const WeightReader r(out_);
    EXPECT_EQ(r.tokenizer_json(), tok_bytes);
    EXPECT_EQ(r.config().eos_token_ids, (std::vector<int64_t>{2, 7}));
    EXPECT_EQ(r.config().bos_token_id, 1);
  }
  {  // add_bos_token false: transformers adds no BOS, and neither does the stored tokenizer
    write_json(dir_ + "/tokenizer_config.json",
               {{"add_bos_token", false},
                {"add_eos_token", false},
                {"bos_token", "<s>"},
                {"eos_token", {{"content", "</s>"}, {"special", true}}},
                {"tokenizer_class", "LlamaTokenizer"}});
    const ConvertSummary s = convert();
    EXPECT_TRUE(s.tokenizer->rewritten);
    EXPECT_EQ(s.tokenizer->bos_id, -1);
    EXPECT_TRUE(s.tokenizer->warnings.empty());
    const Tokenizer tok = Tokenizer::from_json(WeightReader(out_).tokenizer_json());
    EXPECT_EQ(tok.bos_id(), -1);
    const std::vector<int32_t> ids = tok.encode("hello world", true);
    ASSERT_FALSE(ids.empty());
    EXPECT_NE(ids.front(), 1);
    EXPECT_EQ(ids, Tokenizer::from_json(tok_bytes).encode("hello world", false));
  }
  {  // add_bos_token true, add_eos_token true: BOS added; the EOS we cannot add is reported
    write_json(dir_ + "/tokenizer_config.json", {{"add_bos_token", true},
                                                 {"add_eos_token", true},
                                                 {"bos_token", "<s>"},
                                                 {"eos_token", "</s>"}});
    const ConvertSummary s = convert();
    EXPECT_EQ(s.tokenizer->bos_id, 1);
    ASSERT_EQ(s.tokenizer->warnings.size(), 1u);
    EXPECT_NE(s.tokenizer->warnings[0].find("add_eos_token"), std::string::npos);
    const nlohmann::json stored = nlohmann::json::parse(WeightReader(out_).tokenizer_json());
    EXPECT_EQ(stored["post_processor"]["type"], "TemplateProcessing");
    EXPECT_EQ(stored["post_processor"]["single"].size(), 3u);  // <s> $A </s>
    EXPECT_EQ(stored["post_processor"]["special_tokens"]["</s>"]["ids"][0], 2);
    const Tokenizer tok = Tokenizer::from_json(WeightReader(out_).tokenizer_json());
    EXPECT_EQ(tok.encode("hi", true).front(), 1);
  }
  {  // a Llama 3-style tokenizer told not to add its BOS
    write_bytes(dir_ + "/tokenizer.json", slurp(kTokenizerData / "tiny_llama3.tokenizer.json"));
    write_json(dir_ + "/tokenizer_config.json", {{"add_bos_token", false},
                                                 {"bos_token", "<|begin_of_text|>"},
                                                 {"tokenizer_class", "PreTrainedTokenizerFast"}});
    const ConvertSummary s = convert();
    EXPECT_EQ(s.tokenizer->bos_id, -1);
    EXPECT_TRUE(s.tokenizer->warnings.empty());
    const nlohmann::json stored = nlohmann::json::parse(WeightReader(out_).tokenizer_json());
    EXPECT_TRUE(stored["post_processor"].is_null());
    write_json(dir_ + "/tokenizer_config.json",
               {{"add_bos_token", true}, {"bos_token", "<|begin_of_text|>"}});
    EXPECT_EQ(convert().tokenizer->bos_id, 556);
    write_bytes(dir_ + "/tokenizer.json", tok_bytes);
    fs::remove(dir_ + "/tokenizer_config.json");
  }
  {  // --no-tokenizer
    const ConvertSummary s = convert(std::nullopt, /*tokenizer=*/false);
    EXPECT_FALSE(s.tokenizer.has_value());
    EXPECT_FALSE(WeightReader(out_).has_tokenizer());
  }
  {  // without generation_config.json, config.json's EOS
    fs::remove(dir_ + "/generation_config.json");
    convert();
    EXPECT_EQ(WeightReader(out_).config().eos_token_ids, (std::vector<int64_t>{2}));
  }
}

// The chat template: tokenizer_config.json's (a string, or the "default" of a
// named list), chat_template.jinja over it, with the special tokens; stored in
// the model file and covered by its checksums; refused when the renderer
// cannot run it; left out with --no-chat-template or without a tokenizer.
TEST_F(Convert, ChatTemplateIsStoredWithItsSpecialTokens) {
  ModelConfig c = llama_config(DType::f32);
  write_hf_dir(dir_, c, random_model_tensors(c, 1, "F32"));
  write_bytes(dir_ + "/tokenizer.json", slurp(kTokenizerData / "tiny_llama3.tokenizer.json"));
  const std::string tpl = "{{ bos_token }}{% for m in messages %}{{ m.content }}{% endfor %}";
  {  // none
    const ConvertSummary s = convert();
    EXPECT_FALSE(s.chat_template.chat.has_value());
    EXPECT_FALSE(WeightReader(out_).has_chat_template());
    EXPECT_FALSE(WeightReader(out_).chat_template().has_value());
  }
  const std::string hash_without = WeightReader(out_).fingerprint();
  {  // a string, with AddedToken-style special tokens
    write_json(dir_ + "/tokenizer_config.json", {{"chat_template", tpl},
                                                 {"bos_token", {{"content", "<|begin_of_text|>"}}},
                                                 {"eos_token", "<|eot_id|>"}});
    const ConvertSummary s = convert();
    ASSERT_TRUE(s.chat_template.chat.has_value());
    EXPECT_EQ(s.chat_template.from, dir_ + "/tokenizer_config.json");
    const WeightReader r(out_);
    EXPECT_TRUE(r.has_chat_template());
    const auto stored = r.chat_template();
    ASSERT_TRUE(stored.has_value());
    EXPECT_EQ(stored->source, tpl);
    EXPECT_EQ(stored->bos_token, "<|begin_of_text|>");
    EXPECT_EQ(stored->eos_token, "<|eot_id|>");
    // The template is part of the model's content: the fingerprint changes with it.
    EXPECT_NE(r.fingerprint(), hash_without);
  }
  {  // a named list: "default" is taken
    write_json(
        dir_ + "/tokenizer_config.json",
        {{"chat_template",
          {{{"name", "tool_use"}, {"template", "T"}}, {{"name", "default"}, {"template", tpl}}}},
         {"eos_token", "<|eot_id|>"}});
    const ConvertSummary s = convert();
    ASSERT_TRUE(s.chat_template.chat.has_value());
    EXPECT_EQ(s.chat_template.chat->source, tpl);
    EXPECT_FALSE(s.chat_template.chat->bos_token.has_value());
    EXPECT_FALSE(WeightReader(out_).chat_template()->bos_token.has_value());
  }
  {  // special_tokens_map.json gives the tokens tokenizer_config.json lacks
    write_json(dir_ + "/special_tokens_map.json", {{"bos_token", "<|begin_of_text|>"}});
    EXPECT_EQ(convert().chat_template.chat->bos_token, "<|begin_of_text|>");
    fs::remove(dir_ + "/special_tokens_map.json");
  }
  {  // names without "default": nothing stored, and a warning says why
    write_json(dir_ + "/tokenizer_config.json",
               {{"chat_template", {{{"name", "rag"}, {"template", "T"}}}}});
    const ConvertSummary s = convert();
    EXPECT_FALSE(s.chat_template.chat.has_value());
    ASSERT_EQ(s.chat_template.warnings.size(), 1u);
    EXPECT_NE(s.chat_template.warnings[0].find("(rag) but none \"default\""), std::string::npos);
    EXPECT_FALSE(WeightReader(out_).has_chat_template());
  }
  {  // chat_template.jinja wins over tokenizer_config.json
    write_json(dir_ + "/tokenizer_config.json", {{"chat_template", "config's"}});
    write_bytes(dir_ + "/chat_template.jinja", "jinja's {{ messages | length }}");
    const ConvertSummary s = convert();
    EXPECT_EQ(s.chat_template.from, dir_ + "/chat_template.jinja");
    EXPECT_EQ(WeightReader(out_).chat_template()->source, "jinja's {{ messages | length }}");
    fs::remove(dir_ + "/chat_template.jinja");
  }
  {  // --no-chat-template, and no tokenizer: none stored
    ConvertOptions o;
    o.hf_dir = dir_;
    o.output = out_;
    o.with_chat_template = false;
    EXPECT_FALSE(convert_hf_model(o).chat_template.chat.has_value());
    EXPECT_FALSE(WeightReader(out_).has_chat_template());
    convert(std::nullopt, /*tokenizer=*/false);
    EXPECT_FALSE(WeightReader(out_).has_chat_template());
  }
  // A template the renderer cannot run is refused, naming where it came from.
  fs::remove(out_);
  write_json(dir_ + "/tokenizer_config.json", {{"chat_template", "{% for x in y %}"}});
  expect_convert_error({dir_ + "/tokenizer_config.json: chat template: ", "--no-chat-template"});
  write_json(dir_ + "/tokenizer_config.json", {{"chat_template", 5}});
  expect_convert_error({"chat_template must be a string or a list"});
}

TEST_F(Convert, MissingOrMisshapenTensors) {
  const ModelConfig c = llama_config(DType::bf16);
  std::vector<StTensor> tensors = random_model_tensors(c, 2, "BF16");

  auto without = [&](const std::string& name) {
    std::vector<StTensor> t;
    for (const StTensor& x : tensors)
      if (x.name != name) t.push_back(x);
    return t;
  };
  write_hf_dir(dir_, c, without("model.layers.1.mlp.up_proj.weight"));
  expect_convert_error(
      {dir_, "tensor model.layers.1.mlp.up_proj.weight is missing", "model.safetensors"});
  write_hf_dir(dir_, c, without("lm_head.weight"));
  expect_convert_error({"lm_head.weight is missing", "tie_word_embeddings"});

  std::vector<StTensor> bad = tensors;
  for (StTensor& t : bad)
    if (t.name == "model.layers.0.self_attn.k_proj.weight")  // [128, 64] -> [64, 128]
      t.shape = {c.hidden_size, c.num_kv_heads * c.head_dim};
  write_hf_dir(dir_, c, bad, 2);
  expect_convert_error({"model-00001-of-00002.safetensors",
                        "tensor model.layers.0.self_attn.k_proj.weight has shape [64, 32]",
                        "expected [32, 64] from config.json"});

  bad = tensors;
  bad[3] = {bad[3].name, "I16", bad[3].shape, bad[3].bytes};
  write_hf_dir(dir_, c, bad);
  expect_convert_error(
      {"model.safetensors", "tensor " + bad[3].name + " has dtype I16", "cannot be converted"});

  // A weight tpinfer's Llama has no place for (o_proj bias): an error, not dropped.
  bad = tensors;
  bad.push_back(st_tensor("model.layers.0.self_attn.o_proj.bias", "BF16", {c.hidden_size},
                          std::vector<float>(c.hidden_size, 0.0f)));
  write_hf_dir(dir_, c, bad);
  expect_convert_error({"model.safetensors", "tensor model.layers.0.self_attn.o_proj.bias",
                        "is not a weight of LlamaForCausalLM"});
}

TEST_F(Convert, NonFiniteValuesAndValuesBeyondTheStoredDtype) {
  const ModelConfig c = llama_config(DType::f32);
  std::vector<StTensor> tensors = random_model_tensors(c, 2, "F32");
  std::vector<float> v(c.hidden_size, 0.5f);
  v[5] = 70000.0f;  // fine in fp32 and bf16, inf in fp16
  tensors[1] = st_tensor(tensors[1].name, "F32", tensors[1].shape, v);
  write_hf_dir(dir_, c, tensors);
  convert(DType::bf16);
  EXPECT_EQ(WeightReader(out_).read({tensors[1].name, {c.hidden_size}, {5}, {1}})[0], 70144.0f);
  expect_model_error(
      [&] { convert(DType::f16); },
      {dir_ + "/model.safetensors", "tensor " + tensors[1].name, "value 70000.000000 at element 5",
       "beyond the range of float16", "--dtype bf16 or fp32"});
  // A failed conversion leaves an earlier output as it was.
  EXPECT_EQ(WeightReader(out_).config().dtype, DType::bf16);
  EXPECT_FALSE(fs::exists(out_ + ".partial"));
  fs::remove(out_);
  v[5] = std::numeric_limits<float>::quiet_NaN();
  tensors[1] = st_tensor(tensors[1].name, "F32", tensors[1].shape, v);
  write_hf_dir(dir_, c, tensors);
  expect_convert_error(
      {"tensor " + tensors[1].name, "non-finite value", "element 5", "the checkpoint is corrupt"});
}

TEST_F(Convert, BadDirectories) {
  const ModelConfig c = llama_config(DType::bf16);
  const std::vector<StTensor> tensors = random_model_tensors(c, 2, "BF16");

  fs::remove_all(dir_);
  expect_convert_error({"Hugging Face model directory " + dir_, "does not exist"});

  write_hf_dir(dir_, c, tensors);
  fs::remove(dir_ + "/config.json");
  expect_convert_error({dir_ + " has no config.json"});

  write_hf_dir(dir_, c, tensors);
  write_bytes(dir_ + "/config.json", "{\"hidden_size\": 64,");
  expect_convert_error({dir_ + "/config.json is not valid JSON"});

  write_hf_dir(dir_, c, tensors);
  fs::remove(dir_ + "/model.safetensors");
  expect_convert_error({dir_ + " has neither model.safetensors nor model.safetensors.index.json"});

  nlohmann::json cfg = config_to_json(c);
  cfg["architectures"] = {"MistralForCausalLM"};
  cfg["sliding_window"] = 64;
  write_hf_dir(dir_, c, tensors);
  write_json(dir_ + "/config.json", cfg);
  expect_convert_error({dir_ + "/config.json", "sliding_window 64", "not supported"});

  cfg = config_to_json(c);  // Qwen2-style switch, on for layers >= max_window_layers
  cfg["use_sliding_window"] = true;
  cfg["sliding_window"] = 32;
  cfg["max_window_layers"] = 1;
  write_json(dir_ + "/config.json", cfg);
  expect_convert_error(
      {dir_ + "/config.json", "sliding_window 32 < max_position_embeddings 128", "not supported"});
  cfg["max_window_layers"] = 2;  // no layer uses the window: the model is full attention
  write_json(dir_ + "/config.json", cfg);
  convert();
  fs::remove(out_);
  cfg.erase("use_sliding_window");
  cfg["layer_types"] = {"full_attention", "sliding_attention"};
  write_json(dir_ + "/config.json", cfg);
  expect_convert_error({dir_ + "/config.json", "sliding-window attention is not supported"});

  write_hf_dir(dir_, c, tensors);
  write_json(dir_ + "/generation_config.json", {{"eos_token_id", "</s>"}});
  expect_convert_error({dir_ + "/generation_config.json", "eos_token_id must be a token id"});

  // A truncated shard: the safetensors error, naming the shard.
  write_hf_dir(dir_, c, tensors, 2);
  const std::string shard = dir_ + "/model-00002-of-00002.safetensors";
  fs::resize_file(shard, fs::file_size(shard) - 7);
  expect_convert_error({shard, "run past the end of the data section", "truncated"});

  // The index names a shard that is not there, or a tensor a shard lacks.
  write_hf_dir(dir_, c, tensors, 2);
  fs::remove(shard);
  expect_convert_error({"model.safetensors.index.json names shard model-00002-of-00002.safetensors",
                        "does not exist"});
  write_hf_dir(dir_, c, tensors, 2);
  nlohmann::json index = nlohmann::json::parse(slurp(dir_ + "/model.safetensors.index.json"));
  index["weight_map"]["model.norm.weight"] = "model-00001-of-00002.safetensors";
  write_json(dir_ + "/model.safetensors.index.json", index);
  expect_convert_error({"maps tensor model.norm.weight to", "model-00001-of-00002.safetensors",
                        "does not contain it"});

  // One tensor in two shards.
  write_hf_dir(dir_, c, tensors, 2);
  const std::vector<StTensor> dup = {tensors.front()};
  write_bytes(dir_ + "/model-00003-of-00002.safetensors", st_image(dup));
  index = nlohmann::json::parse(slurp(dir_ + "/model.safetensors.index.json"));
  index["weight_map"]["zzz"] = "model-00003-of-00002.safetensors";
  write_json(dir_ + "/model.safetensors.index.json", index);
  expect_convert_error({"maps tensor zzz"});
  index["weight_map"].erase("zzz");
  index["weight_map"]["model.embed_tokens.weight"] = "model-00003-of-00002.safetensors";
  write_json(dir_ + "/model.safetensors.index.json", index);
  expect_model_error([&] { convert(); }, {"tensor model.embed_tokens.weight is in both"});
}

TEST_F(Convert, TokenizerThatDoesNotFitTheModel) {
  ModelConfig c = llama_config(DType::bf16);
  c.vocab_size = 100;  // the tiny Llama 2 tokenizer has 578 tokens
  write_hf_dir(dir_, c, random_model_tensors(c, 2, "BF16"));
  write_bytes(dir_ + "/tokenizer.json", slurp(kTokenizerData / "tiny_llama2.tokenizer.json"));
  expect_convert_error({dir_ + "/tokenizer.json has 578 tokens", "vocab_size 100"});
  write_bytes(dir_ + "/tokenizer.json", "{\"model\": 3}");
  expect_convert_error({dir_ + "/tokenizer.json", "--no-tokenizer"});
  write_bytes(dir_ + "/tokenizer.json", slurp(kTokenizerData / "tiny_llama2.tokenizer.json"));
  c.vocab_size = 600;
  write_hf_dir(dir_, c, random_model_tensors(c, 2, "BF16"));
  write_bytes(dir_ + "/tokenizer.json", slurp(kTokenizerData / "tiny_llama2.tokenizer.json"));
  write_json(dir_ + "/tokenizer_config.json", {{"add_bos_token", true}, {"bos_token", "<bos>"}});
  expect_convert_error({dir_ + "/tokenizer_config.json", "bos_token '<bos>' is not a token"});
  write_json(dir_ + "/tokenizer_config.json", {{"add_bos_token", "yes"}});
  expect_convert_error(
      {dir_ + "/tokenizer_config.json", "add_bos_token must be true, false or null"});
}

}  // namespace
}  // namespace tpinfer
