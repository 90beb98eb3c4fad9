// The JSON files of a Hugging Face model directory: config.json with
// generation_config.json's special ids, and tokenizer.json with
// tokenizer_config.json's BOS/EOS settings applied as transformers applies them.
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <optional>
#include <sstream>
#include <string>

#include "base/error.hpp"
#include "text/chat_template.hpp"
#include "text/tokenizer.hpp"
#include "weights/hf_convert.hpp"

namespace tpinfer {

namespace fs = std::filesystem;

namespace {

std::string read_bytes(const fs::path& p) {
  std::ifstream in(p, std::ios::binary);
  if (!in) throw ModelError("cannot open " + p.string());
  std::ostringstream s;
  s << in.rdbuf();
  return s.str();
}

nlohmann::json read_json(const fs::path& p) {
  try {
    return nlohmann::json::parse(read_bytes(p));
  } catch (const nlohmann::json::exception& e) {
    throw ModelError(p.string() + " is not valid JSON: " + e.what());
  }
}

// j[key] as T; `fallback` when absent or null; a value of another type is an
// error naming the file.
template <typename T>
T field_or(const nlohmann::json& j, const char* key, T fallback, const std::string& path) {
  if (!j.contains(key) || j[key].is_null()) return fallback;
  try {
    return j[key].get<T>();
  } catch (const nlohmann::json::exception&) {
    throw ModelError(path + ": field '" + key + "' has the wrong type: " + j[key].dump());
  }
}

bool is_id_or_id_list(const nlohmann::json& v) {
  if (v.is_number_integer()) return true;
  if (!v.is_array()) return false;
  for (const auto& e : v)
    if (!e.is_number_integer()) return false;
  return true;
}

// A special token in tokenizer_config.json: a string, an AddedToken object
// {"content": ...}, or null/absent.
std::optional<std::string> token_content(const nlohmann::json& cfg, const char* key,
                                         const std::string& path) {
  if (!cfg.contains(key) || cfg[key].is_null()) return std::nullopt;
  const nlohmann::json& v = cfg[key];
  if (v.is_string()) return v.get<std::string>();
  if (v.is_object() && v.contains("content") && v["content"].is_string())
    return v["content"].get<std::string>();
  throw ModelError(path + ": " + key + " is neither a string nor {\"content\": ...}, got " +
                   v.dump());
}

// The add_bos_token default of the tokenizer class when tokenizer_config.json
// sets only add_eos_token: true for the SentencePiece Llama-family classes
// (their constructors default to it), false for the generic fast tokenizer.
bool default_add_bos(const nlohmann::json& cfg, const std::string& path) {
  const auto cls = field_or<std::string>(cfg, "tokenizer_class", "", path);
  for (const char* c : {"LlamaTokenizer", "LlamaTokenizerFast", "CodeLlamaTokenizer",
                        "CodeLlamaTokenizerFast", "GemmaTokenizer", "GemmaTokenizerFast"})
    if (cls == c) return true;
  return false;
}

nlohmann::ordered_json special(const std::string& token, int type_id) {
  return {{"SpecialToken", {{"id", token}, {"type_id", type_id}}}};
}

nlohmann::ordered_json sequence(const char* id, int type_id) {
  return {{"Sequence", {{"id", id}, {"type_id", type_id}}}};
}

// transformers' update_post_processor(): "bos:0 $A:0 eos:0" for one sequence,
// "... bos:1 $B:1 eos:1" appended for a pair, each special token only when added.
nlohmann::ordered_json template_processing(const std::optional<std::string>& bos, int32_t bos_id,
                                           const std::optional<std::string>& eos, int32_t eos_id) {
  auto part = [&](const char* seq, int type_id) {
    nlohmann::ordered_json p = nlohmann::ordered_json::array();
    if (bos) p.push_back(special(*bos, type_id));
    p.push_back(sequence(seq, type_id));
    if (eos) p.push_back(special(*eos, type_id));
    return p;
  };
  nlohmann::ordered_json single = part("A", 0), pair = part("A", 0);
  for (auto& e : part("B", 1)) pair.push_back(e);
  nlohmann::ordered_json tokens = nlohmann::ordered_json::object();
  if (bos) tokens[*bos] = {{"id", *bos}, {"ids", {bos_id}}, {"tokens", {*bos}}};
  if (eos) tokens[*eos] = {{"id", *eos}, {"ids", {eos_id}}, {"tokens", {*eos}}};
  return {{"type", "TemplateProcessing"},
          {"single", single},
          {"pair", pair},
          {"special_tokens", tokens}};
}

// config_from_hf_json refuses Mistral's sliding window; Qwen2 switches it on
// with use_sliding_window for the layers from max_window_layers on, and newer
// configs list "sliding_attention" in layer_types. A window shorter than the
// context changes the model, and tpinfer attends to the whole context.
void check_no_sliding_window(const nlohmann::json& j, const ModelConfig& c,
                             const std::string& path) {
  const nlohmann::json* sw = j.contains("sliding_window") ? &j["sliding_window"] : nullptr;
  if (sw == nullptr || !sw->is_number_integer() || sw->get<int64_t>() <= 0 ||
      sw->get<int64_t>() >= c.max_position_embeddings)
    return;
  bool sliding = false;
  if (j.contains("layer_types") && j["layer_types"].is_array())
    for (const auto& t : j["layer_types"]) sliding = sliding || t == "sliding_attention";
  else if (field_or(j, "use_sliding_window", false, path))
    sliding = field_or<int64_t>(j, "max_window_layers", 28, path) < c.num_layers;
  if (sliding)
    throw ModelError(path + ": sliding_window " + std::to_string(sw->get<int64_t>()) +
                     " < max_position_embeddings " + std::to_string(c.max_position_embeddings) +
                     " on some layers (use_sliding_window / layer_types): sliding-window "
                     "attention is not supported");
}

Tokenizer load_tokenizer(const std::string& json, const std::string& path) {
  try {
    return Tokenizer::from_json(json);
  } catch (const ModelError& e) {
    throw ModelError(path + ": " + e.what() + " (--no-tokenizer converts without it)");
  }
}

}  // namespace

ModelConfig read_hf_model_config(const std::string& dir) {
  const fs::path d(dir), config_path = d / "config.json";
  std::error_code ec;
  if (!fs::is_directory(d, ec))
    throw ModelError("Hugging Face model directory " + dir +
                     (fs::exists(d, ec) ? " is not a directory" : " does not exist"));
  if (!fs::exists(config_path, ec))
    throw ModelError(dir +
                     " has no config.json (rule: a Hugging Face model directory holds the "
                     "model's config.json)");
  nlohmann::json j = read_json(config_path);
  if (!j.is_object()) throw ModelError(config_path.string() + " is not a JSON object");
  // generate() stops on generation_config.json's eos_token_id (Llama 3 instruct
  // models list several there and one in config.json).
  const fs::path gen_path = d / "generation_config.json";
  if (fs::exists(gen_path, ec)) {
    const nlohmann::json gen = read_json(gen_path);
    if (!gen.is_object()) throw ModelError(gen_path.string() + " is not a JSON object");
    for (const char* key : {"eos_token_id", "bos_token_id"}) {
      if (!gen.contains(key) || gen[key].is_null()) continue;
      if (!is_id_or_id_list(gen[key]) ||
          (std::string(key) == "bos_token_id" && gen[key].is_array()))
        throw ModelError(gen_path.string() + ": " + key + " must be a token id" +
                         (std::string(key) == "eos_token_id" ? " or a list of ids" : "") +
                         ", got " + gen[key].dump());
      j[key] = gen[key];
    }
  }
  ModelConfig c;
  try {
    c = config_from_hf_json(j);
  } catch (const ModelError& e) {
    throw ModelError(config_path.string() + ": " + e.what());
  }
  check_no_sliding_window(j, c, config_path.string());
  return c;
}

std::optional<HfTokenizer> read_hf_tokenizer(const std::string& dir, const ModelConfig& config) {
  const fs::path d(dir), tok_path = d / "tokenizer.json", cfg_path = d / "tokenizer_config.json";
  std::error_code ec;
  if (!fs::exists(tok_path, ec)) return std::nullopt;
  HfTokenizer out;
  out.json = read_bytes(tok_path);
  int32_t want_bos = -2;  // what transformers adds, when we know it (-2: as tokenizer.json says)

  if (fs::exists(cfg_path, ec)) {
    const nlohmann::json cfg = read_json(cfg_path);
    if (!cfg.is_object()) throw ModelError(cfg_path.string() + " is not a JSON object");
    for (const char* key : {"add_bos_token", "add_eos_token"})
      if (cfg.contains(key) && !cfg[key].is_boolean() && !cfg[key].is_null())
        throw ModelError(cfg_path.string() + ": " + key + " must be true, false or null, got " +
                         cfg[key].dump());
    // transformers rebuilds the post-processor only when the config sets one of them.
    if (cfg.contains("add_bos_token") || cfg.contains("add_eos_token")) {
      const Tokenizer original = load_tokenizer(out.json, tok_path.string());
      std::optional<std::string> bos = token_content(cfg, "bos_token", cfg_path.string());
      std::optional<std::string> eos = token_content(cfg, "eos_token", cfg_path.string());
      // As transformers: asking for a token the config does not name adds nothing.
      // Present but null counts as false, as None does in transformers.
      auto flag = [&](const char* key, bool absent) {
        return cfg.contains(key) ? cfg[key].is_boolean() && cfg[key].get<bool>() : absent;
      };
      if (!flag("add_bos_token", default_add_bos(cfg, cfg_path.string()))) bos.reset();
      if (!flag("add_eos_token", false)) eos.reset();
      auto id_of = [&](const std::optional<std::string>& t, const char* key) {
        if (!t) return int32_t{-1};
        const int32_t id = original.token_id(*t);
        if (id < 0)
          throw ModelError(cfg_path.string() + ": " + key + " '" + *t +
                           "' is not a token of tokenizer.json");
        return id;
      };
      const int32_t bos_id = id_of(bos, "bos_token"), eos_id = id_of(eos, "eos_token");
      try {
        nlohmann::ordered_json tj = nlohmann::ordered_json::parse(out.json);
        // A template that adds nothing encodes as no post-processor does; null
        // also keeps a reader from guessing a BOS for a file without a template.
        tj["post_processor"] = bos || eos ? template_processing(bos, bos_id, eos, eos_id)
                                          : nlohmann::ordered_json(nullptr);
        out.json = tj.dump();
      } catch (const nlohmann::json::exception& e) {
        throw ModelError(tok_path.string() + ": cannot rewrite its post_processor: " + e.what());
      }
      out.rewritten = true;
      want_bos = bos_id;
      if (eos)
        out.warnings.push_back(cfg_path.string() +
                               ": add_eos_token is true, so text prompts end with " + *eos +
                               ", as transformers encodes them (generation then starts after "
                               "an end of sequence)");
    }
  }

  const Tokenizer tok = load_tokenizer(out.json, tok_path.string());
  if (static_cast<int64_t>(tok.vocab_size()) > config.vocab_size)
    throw ModelError(tok_path.string() + " has " + std::to_string(tok.vocab_size()) +
                     " tokens, more than config.json's vocab_size " +
                     std::to_string(config.vocab_size) + " (rule: every token has an embedding)");
  out.bos_id = tok.bos_id();
  if (want_bos != -2 && want_bos != out.bos_id)
    out.warnings.push_back("tpinfer's tokenizer starts text prompts with token " +
                           std::to_string(out.bos_id) + " where transformers starts them with " +
                           std::to_string(want_bos) + " (-1: none)");
  return out;
}

HfChatTemplate read_hf_chat_template(const std::string& dir) {
  const fs::path d(dir), cfg_path = d / "tokenizer_config.json",
                         jinja_path = d / "chat_template.jinja",
                         map_path = d / "special_tokens_map.json";
  std::error_code ec;
  nlohmann::json cfg = nlohmann::json::object();
  if (fs::exists(cfg_path, ec)) {
    cfg = read_json(cfg_path);
    if (!cfg.is_object()) throw ModelError(cfg_path.string() + " is not a JSON object");
  }
  HfChatTemplate out;
  StoredChatTemplate chat;
  if (fs::exists(jinja_path, ec)) {
    chat.source = read_bytes(jinja_path);
    out.from = jinja_path.string();
  } else if (cfg.contains("chat_template") && !cfg["chat_template"].is_null()) {
    const nlohmann::json& t = cfg["chat_template"];
    out.from = cfg_path.string();
    if (t.is_string()) {
      chat.source = t.get<std::string>();
    } else if (t.is_array()) {
      std::string names;
      bool found = false;
      for (const auto& e : t) {
        if (!e.is_object() || !e.contains("name") || !e["name"].is_string() ||
            !e.contains("template") || !e["template"].is_string())
          throw ModelError(cfg_path.string() +
                           ": chat_template is a list whose entries must be {\"name\": string, "
                           "\"template\": string}, got " +
                           e.dump().substr(0, 200));
        names += (names.empty() ? "" : ", ") + e["name"].get<std::string>();
        if (e["name"] == "default") {
          chat.source = e["template"].get<std::string>();
          found = true;
        }
      }
      if (!found) {
        out.warnings.push_back(cfg_path.string() + ": chat_template names templates (" + names +
                               ") but none \"default\": no chat template stored (run with "
                               "--chat-template FILE to use one)");
        return out;
      }
      out.from += " (\"default\")";
    } else {
      throw ModelError(cfg_path.string() +
                       ": chat_template must be a string or a list of {\"name\", \"template\"}, "
                       "got " +
                       std::string(t.type_name()));
    }
  } else {
    return out;
  }
  try {
    const ChatTemplate parsed(chat.source);
  } catch (const ChatTemplateError& e) {
    throw ModelError(out.from + ": chat template: " + e.what() +
                     " (--no-chat-template converts without it)");
  }
  // transformers reads the special tokens from tokenizer_config.json, and from
  // special_tokens_map.json for those it lacks.
  nlohmann::json map = nlohmann::json::object();
  if (fs::exists(map_path, ec)) {
    map = read_json(map_path);
    if (!map.is_object()) throw ModelError(map_path.string() + " is not a JSON object");
  }
  for (const char* key : {"bos_token", "eos_token"}) {
    std::optional<std::string> token = token_content(cfg, key, cfg_path.string());
    if (!token) token = token_content(map, key, map_path.string());
    (std::string(key) == "bos_token" ? chat.bos_token : chat.eos_token) = token;
  }
  out.chat = std::move(chat);
  return out;
}

}  // namespace tpinfer
