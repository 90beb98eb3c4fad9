// Integrity of what a job reads (issue 19): a model spliced in its middle from
// another seed's file, an input changed in its middle, and one byte flipped
// inside a tensor are each refused with exit 2 and one error line, where the
// fingerprints of before (size plus first and last MiB of files over 64 MiB)
// and a load without checksums let them through with exit 0.
#include <gtest/gtest.h>
#include <hdf5.h>

#include <filesystem>
#include <fstream>

#include "dataset_bytes.hpp"
#include "job_helpers.hpp"

namespace tpinfer::test {
namespace {

namespace fs = std::filesystem;

// Bounds every run, so that a job that hangs fails its test instead of ctest's timeout.
constexpr const char* kTimeout = "timeout -k 5 300 ";

size_t count(const std::string& text, const std::string& what) {
  size_t n = 0;
  for (size_t at = text.find(what); at != std::string::npos; at = text.find(what, at + 1)) ++n;
  return n;
}

std::string slurp(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  return {std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>()};
}

void write_file(const std::string& path, const std::string& bytes) {
  std::ofstream out(path, std::ios::binary | std::ios::trunc);
  out.write(bytes.data(), static_cast<std::streamsize>(bytes.size()));
  ASSERT_TRUE(out.good()) << path;
}

std::string fresh_output(const std::string& name) {
  const std::string out = tmp_path("integrity-" + name + ".jsonl");
  fs::remove(out);
  fs::remove(out + ".manifest.json");
  return out;
}

CommandResult run_job(int np, int tp, const std::string& model, const std::string& input,
                      const std::string& out, const std::string& extra = "") {
  return run_shell(std::string(kTimeout) + TPINFER_MPIRUN + " -np " + std::to_string(np) + " " +
                   TPINFER_BIN + " run --model " + model + " --input " + input + " --output " +
                   out + " --tp " + std::to_string(tp) + " --max-new-tokens 4 " + extra);
}

std::string make_model(const std::string& config_json, const std::string& name, int seed) {
  const std::string config = tmp_path(name + ".json"),
                    model = tmp_path(name + "-" + std::to_string(seed) + ".h5");
  std::ofstream(config) << config_json;
  const CommandResult r = tpinfer_cli("make-model --config " + config + " --output " + model +
                                      " --seed " + std::to_string(seed));
  EXPECT_EQ(r.exit_code, 0) << r.output;
  return model;
}

std::string prompts_input(const std::string& name) {
  const std::string path = tmp_path(name);
  std::ofstream in(path);
  for (int i = 0; i < 4; ++i)
    in << R"({"id": "p)" << i << R"(", "prompt_tokens": [)" << 10 + i << ", " << 20 + i << ", "
       << 30 + i << "]}\n";
  return path;
}

// (a) A model over 64 MiB (hidden 512, 8 layers, vocab 8192: about 84 MB of
// bf16) whose middle third is replaced by the same bytes of another seed's
// file (same config, so the same layout and size). The old fingerprint (size,
// first and last MiB) matched and --resume ran on with other weights. Now the
// tensor headers inside the splice carry the other file's tile checksums, so
// the data they cover reads clean; what catches it is the content hash, which
// the manifest step recomputes from every stored checksum before any weight is
// loaded: --resume is refused with exit 2 naming the model file as corrupt,
// and so is a fresh run on it.
TEST(Integrity, AModelSplicedInItsMiddleIsRefused) {
  const char* config = R"({
    "architectures": ["LlamaForCausalLM"], "hidden_size": 512, "intermediate_size": 2048,
    "num_hidden_layers": 8, "num_attention_heads": 8, "num_key_value_heads": 4,
    "vocab_size": 8192, "max_position_embeddings": 256, "rope_theta": 10000.0,
    "rms_norm_eps": 1e-5, "bos_token_id": 1, "eos_token_id": 2, "torch_dtype": "bfloat16"})";
  const std::string a = make_model(config, "integrity-large", 1);
  const std::string b = make_model(config, "integrity-large", 2);
  const size_t size = fs::file_size(a);
  ASSERT_GT(size, size_t{64} << 20);
  ASSERT_EQ(fs::file_size(b), size);
  const std::string input = prompts_input("integrity-large-input.jsonl");
  const std::string out = fresh_output("spliced-model");
  CommandResult r = run_job(1, 1, a, input, out);
  ASSERT_EQ(r.exit_code, 0) << r.output;
  const std::string results = slurp(out);
  ASSERT_EQ(count(results, "\n"), 4u);

  std::string bytes = slurp(a);
  const std::string other = slurp(b);
  const size_t from = size / 3, to = 2 * size / 3;
  bytes.replace(from, to - from, other, from, to - from);
  // What the old fingerprint read, the first and last MiB, is a's own.
  ASSERT_GT(from, size_t{1} << 20);
  ASSERT_LT(to, size - (size_t{1} << 20));
  ASSERT_NE(bytes, slurp(a));
  write_file(a, bytes);

  r = run_job(1, 1, a, input, out, "--resume");
  EXPECT_EQ(r.exit_code, 2) << r.output;
  EXPECT_EQ(count(r.output, "tpinfer: error"), 1u) << r.output;
  EXPECT_NE(
      r.output.find("model file " + a + ": its parts' checksums do not add up to its content_hash"),
      std::string::npos)
      << r.output;
  EXPECT_NE(r.output.find("the file is corrupt"), std::string::npos) << r.output;
  EXPECT_EQ(slurp(out), results);  // nothing written

  const std::string fresh = fresh_output("spliced-model-fresh");
  r = run_job(2, 2, a, input, fresh);
  EXPECT_EQ(r.exit_code, 2) << r.output;
  EXPECT_NE(r.output.find("do not add up to its content_hash"), std::string::npos) << r.output;
  EXPECT_TRUE(!fs::exists(fresh) || fs::file_size(fresh) == 0);
  fs::remove(a);
  fs::remove(b);
}

// (b) An input over 64 MiB (blank lines around the requests, which the reader
// skips) whose two prompts in the middle are swapped, same size: the old
// fingerprint matched and --resume kept a result of the old prompt. Now the
// input is hashed whole: --resume exits 2 naming the input.
TEST(Integrity, AnInputChangedInItsMiddleIsRefusedOnResume) {
  const std::string model = make_model(R"({
    "architectures": ["LlamaForCausalLM"], "hidden_size": 64, "intermediate_size": 128,
    "num_hidden_layers": 2, "num_attention_heads": 4, "num_key_value_heads": 2,
    "vocab_size": 500, "max_position_embeddings": 128, "rope_theta": 10000.0,
    "rms_norm_eps": 1e-5, "bos_token_id": 1, "eos_token_id": 2, "torch_dtype": "bfloat16"})",
                                       "integrity-small", 3);
  const std::string blank((size_t{1} << 20) - 1, ' ');
  auto input_text = [&](const std::string& first, const std::string& second) {
    std::string text;
    for (int i = 0; i < 33; ++i) text += blank + "\n";
    text += R"({"id": "x", "prompt_tokens": [5, 6, 7]})"
            "\n";
    text += R"({"id": "a", "prompt_tokens": )" + first + "}\n";
    text += R"({"id": "b", "prompt_tokens": )" + second + "}\n";
    for (int i = 0; i < 33; ++i) text += blank + "\n";
    return text;
  };
  const std::string input = tmp_path("integrity-large-input-b.jsonl");
  write_file(input, input_text("[11, 12, 13]", "[41, 42, 43]"));
  ASSERT_GT(fs::file_size(input), size_t{64} << 20);
  const std::string out = fresh_output("changed-input");
  CommandResult r = run_job(1, 1, model, input, out);
  ASSERT_EQ(r.exit_code, 0) << r.output;
  const std::string results = slurp(out);
  ASSERT_EQ(count(results, "\n"), 3u);

  write_file(input, input_text("[41, 42, 43]", "[11, 12, 13]"));
  r = run_job(1, 1, model, input, out, "--resume");
  EXPECT_EQ(r.exit_code, 2) << r.output;
  EXPECT_EQ(count(r.output, "tpinfer: error"), 1u) << r.output;
  EXPECT_NE(r.output.find("--resume: " + out +
                          " was written with other settings (input was "
                          "\"xxh3-128:"),
            std::string::npos)
      << r.output;
  EXPECT_EQ(slurp(out), results);
  fs::remove(input);
  fs::remove(model);
}

// (c) One bit flipped inside a tensor of the demo-sized model (a finite value
// one unit off, so the non-finite check cannot see it): the run exits 2 with
// one error line naming the tensor and its tile, where it used to exit 0 with
// other tokens. With --verify-weights off the same file runs (exit 0).
TEST(Integrity, AFlippedByteInATensorIsAnErrorNamingIt) {
  const std::string model = make_model(
      slurp(std::string(TPINFER_SOURCE_DIR) + "/inputs/demo-config.json"), "integrity-demo", 5);
  const std::string tensor = "model.layers.2.mlp.down_proj.weight";
  const auto [offset, bytes] = dataset_bytes(model, tensor);
  ASSERT_NE(offset, HADDR_UNDEF);
  ASSERT_GT(bytes, 1000u);
  {
    // An even byte offset: the low byte of a bf16 value, its lowest mantissa bit.
    std::fstream f(model, std::ios::in | std::ios::out | std::ios::binary);
    const auto at = static_cast<std::streamoff>(offset + 2 * 1001);
    f.seekg(at);
    char c = 0;
    f.read(&c, 1);
    c = static_cast<char>(c ^ 1);
    f.seekp(at);
    f.write(&c, 1);
    ASSERT_TRUE(f.good());
  }
  const std::string input = prompts_input("integrity-demo-input.jsonl");
  const std::string out = fresh_output("flipped");
  CommandResult r = run_job(2, 2, model, input, out);
  EXPECT_EQ(r.exit_code, 2) << r.output;
  EXPECT_EQ(count(r.output, "tpinfer: error"), 1u) << r.output;
  EXPECT_NE(r.output.find("model file " + model + ": tensor " + tensor + ": tile ("),
            std::string::npos)
      << r.output;
  EXPECT_NE(r.output.find("fails its checksum (stored xxh3 "), std::string::npos) << r.output;
  EXPECT_TRUE(!fs::exists(out) || fs::file_size(out) == 0);

  const std::string unchecked = fresh_output("flipped-unchecked");
  r = run_job(2, 2, model, input, unchecked, "--verify-weights off");
  EXPECT_EQ(r.exit_code, 0) << r.output;
  EXPECT_NE(r.output.find("checksum verification is off"), std::string::npos) << r.output;
  EXPECT_EQ(count(slurp(unchecked), "\n"), 4u);
  r = run_job(1, 1, model, input, unchecked, "--verify-weights maybe");
  EXPECT_EQ(r.exit_code, 2) << r.output;
  EXPECT_NE(r.output.find("--verify-weights maybe is not one of on, off"), std::string::npos)
      << r.output;
  fs::remove(model);
}

}  // namespace
}  // namespace tpinfer::test
