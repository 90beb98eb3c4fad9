// tpinfer tokenize: text lines on stdin to JSON id lists on stdout (or back
// with --decode), with a model file's tokenizer or a tokenizer.json: for
// debugging prompts and comparing with other tokenizers. With --chat, each
// line is a conversation (a JSON array of messages) and the output its prompt
// tokens as a job makes them (tools/chat_template_check.py compares them with
// transformers' apply_chat_template).
#include <iostream>
#include <nlohmann/json.hpp>
#include <string>

#include "base/error.hpp"
#include "cli/commands.hpp"
#include "cli/options.hpp"
#include "job/chat_prompt.hpp"
#include "job/line_checks.hpp"
#include "text/tokenizer.hpp"
#include "weights/weight_store.hpp"

namespace tpinfer {

int tokenize_command(int argc, char** argv) {
  std::string model, tokenizer_path;
  std::string chat_template_path, bos_token, eos_token;
  bool decode = false, bos = false, skip_special = false, chat = false;
  po::options_description desc("tpinfer tokenize options");
  desc.add_options()("model", po::value(&model), "model file whose tokenizer to use")(
      "tokenizer", po::value(&tokenizer_path), "or a Hugging Face tokenizer.json")(
      "decode", po::bool_switch(&decode), "JSON id lists in, text lines out")(
      "bos", po::bool_switch(&bos), "encode: add the BOS token as a prompt gets it")(
      "skip-special", po::bool_switch(&skip_special), "decode: leave special tokens out")(
      "chat", po::bool_switch(&chat),
      "lines are conversations (JSON arrays of messages): their prompt tokens, rendered by the "
      "chat template with add_generation_prompt")(
      "chat-template", po::value(&chat_template_path),
      "with --chat: this template file instead of the model file's")(
      "bos-token", po::value(&bos_token), "with --chat: the template's bos_token")(
      "eos-token", po::value(&eos_token), "with --chat: the template's eos_token");
  auto vm = parse_options(
      "usage: tpinfer tokenize (--model M.h5 | --tokenizer tokenizer.json) [--decode] < lines",
      desc, argc, argv);
  if (!vm) return kExitOk;
  if (model.empty() == tokenizer_path.empty())
    throw UsageError("give exactly one of --model and --tokenizer");
  if (chat && decode) throw UsageError("--chat encodes conversations; it goes without --decode");
  std::optional<StoredChatTemplate> stored;
  Tokenizer tok = [&] {
    if (!tokenizer_path.empty()) return Tokenizer::from_file(tokenizer_path);
    WeightReader reader(model);
    if (!reader.has_tokenizer()) throw ModelError(model + " has no tokenizer");
    stored = reader.chat_template();
    return Tokenizer::from_json(reader.tokenizer_json());
  }();
  if (chat) {
    if (chat_template_path.empty() && !stored)
      throw UsageError("--chat needs --chat-template FILE or a model file with a chat template");
    if (!chat_template_path.empty())
      stored = StoredChatTemplate{read_chat_template_file(chat_template_path), {}, {}};
    if (!bos_token.empty()) stored->bos_token = bos_token;
    if (!eos_token.empty()) stored->eos_token = eos_token;
    const ChatPrompt prompt(stored->source, stored->bos_token, stored->eos_token,
                            std::make_shared<const Tokenizer>(std::move(tok)));
    std::string line;
    for (int64_t n = 1; std::getline(std::cin, line); ++n) {
      nlohmann::json messages;
      try {
        messages = nlohmann::json::parse(line);
      } catch (const nlohmann::json::exception&) {
        throw InputError("stdin line " + std::to_string(n) + " is not JSON");
      }
      try {
        const nlohmann::json checked = ChatPrompt::checked_messages(messages, "messages");
        std::cout << nlohmann::json(prompt.encode(checked)).dump() << "\n";
      } catch (const LineError& e) {
        throw InputError("stdin line " + std::to_string(n) + ": " + e.message);
      }
    }
    return kExitOk;
  }
  std::string line;
  for (int64_t n = 1; std::getline(std::cin, line); ++n) {
    if (!line.empty() && line.back() == '\r') line.pop_back();
    if (!decode) {
      std::cout << nlohmann::json(tok.encode(line, bos)).dump() << "\n";
      continue;
    }
    std::vector<int32_t> ids;
    try {
      ids = nlohmann::json::parse(line).get<std::vector<int32_t>>();
    } catch (const nlohmann::json::exception&) {
      throw InputError("stdin line " + std::to_string(n) + " is not a JSON list of token ids");
    }
    // JSON-quoted, so a decoded newline cannot split the output line.
    std::cout << nlohmann::json(tok.decode(ids, skip_special)).dump() << "\n";
  }
  return kExitOk;
}

}  // namespace tpinfer
