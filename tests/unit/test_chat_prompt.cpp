// Conversations to prompt tokens (job/chat_prompt): messages checked and
// normalised, rendered with add_generation_prompt and tokenized as
// transformers does after apply_chat_template (special tokens parsed, no
// second BOS); which template a job uses and its special tokens; and the
// native request fields "messages", "n", "top_logprobs", "prompt_logprobs".
#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "base/error.hpp"
#include "job/chat_prompt.hpp"
#include "job/jsonl.hpp"
#include "job/line_checks.hpp"
#include "tiny_chat.hpp"

namespace tpinfer {
namespace {

using json = nlohmann::json;
namespace fs = std::filesystem;

const std::string kTemplate =
    std::string(test::kTinyLlama3Template) + "{{ eos_token is defined }}";

using test::tiny_llama3_tokenizer;

std::string message_error(const json& messages) {
  try {
    ChatPrompt::checked_messages(messages, "messages");
  } catch (const LineError& e) {
    return e.message;
  }
  return "";
}

TEST(ChatPrompt, MessagesAreCheckedAndTextPartsJoined) {
  const json parts = {{{"type", "text"}, {"text", "a"}}, {{"type", "text"}, {"text", "é"}}};
  const json checked = ChatPrompt::checked_messages(
      {{{"role", "system"}, {"content", "s"}},
       {{"role", "user"}, {"name", "ann"}, {"content", parts}}},
      "messages");
  EXPECT_EQ(checked, json({{{"role", "system"}, {"content", "s"}},
                           {{"role", "user"}, {"content", parts}, {"name", "ann"}}}));
  // A template that takes a string gets the parts joined with "\n"; one that
  // iterates content (as Gemma 3's does) gets the list, as transformers gives it.
  const ChatPrompt joined("{% for m in messages %}[{{ m.content }}]{% endfor %}", std::nullopt,
                          std::nullopt, tiny_llama3_tokenizer());
  EXPECT_EQ(joined.render(checked), "[s][a\né]");
  const ChatPrompt iterating(
      "{% for m in messages %}{% if m['content'] is string %}[{{ m['content'] }}]{% else %}"
      "{%- for p in m['content'] %}<{{ p.text }}>{% endfor %}{% endif %}{% endfor %}",
      std::nullopt, std::nullopt, tiny_llama3_tokenizer());
  EXPECT_EQ(iterating.render(checked), "[s]<a><é>");
  EXPECT_EQ(message_error("x"), "\"messages\" must be an array of messages, not a string");
  EXPECT_EQ(message_error(json::array()), "\"messages\" is empty");
  EXPECT_EQ(message_error({1}),
            "messages[0] must be an object {\"role\": ..., \"content\": ...}, not an integer");
  EXPECT_EQ(message_error({{{"content", "x"}}}), "messages[0] has no \"role\"");
  EXPECT_EQ(message_error({{{"role", "user"}}}), "messages[0] has no \"content\"");
  EXPECT_EQ(message_error({{{"role", 3}, {"content", "x"}}}),
            "messages[0].role must be a string, not an integer");
  EXPECT_EQ(message_error({{{"role", "user"}, {"content", nullptr}}}),
            "messages[0].content must be a string or a list of text parts, not null");
  EXPECT_EQ(message_error({{{"role", "user"}, {"content", "x"}, {"tool_call_id", "t"}}})
                .rfind("messages[0].tool_call_id is not supported", 0),
            0u);
  EXPECT_EQ(message_error({{{"role", "user"}, {"content", {{{"type", "input_audio"}}}}}}),
            "messages[0].content[0].type \"input_audio\" is not supported: only text parts (it "
            "would change the prompt)");
  EXPECT_EQ(message_error({{{"role", "user"}, {"content", {{{"type", "text"}}}}}}),
            "messages[0].content[0].text must be a string, not missing");
  EXPECT_EQ(message_error({{{"role", "user"},
                            {"content", {{{"type", "text"}, {"text", "a"}, {"cache", 1}}}}}}),
            "messages[0].content[0].cache is not supported in a text part");
}

TEST(ChatPrompt, RenderedWithGenerationPromptAndTokenizedWithoutASecondBos) {
  const ChatPrompt chat(kTemplate, "<|begin_of_text|>", std::nullopt, tiny_llama3_tokenizer());
  const json m = ChatPrompt::checked_messages({{{"role", "user"}, {"content", " hi "}}}, "m");
  const std::string text = chat.render(m);
  EXPECT_EQ(text, "<|begin_of_text|>[user]\nhi<|eot_id|>[assistant]\nFalse");
  const std::vector<int32_t> ids = chat.encode(m);
  EXPECT_EQ(ids, tiny_llama3_tokenizer()->encode(text, false));
  EXPECT_EQ(ids.front(), 556);  // the template's BOS, parsed as the special token
  EXPECT_EQ(std::count(ids.begin(), ids.end(), 556), 1);
  EXPECT_EQ(std::count(ids.begin(), ids.end(), 557), 1);
}

TEST(ChatPrompt, TheJobsTemplateAndItsSpecialTokens) {
  fs::create_directories(TPINFER_TEST_TMP);
  const std::string file = std::string(TPINFER_TEST_TMP) + "/chat_prompt_override.jinja";
  std::ofstream(file) << "{{ bos_token }}|{{ eos_token }}|{{ messages[0].content }}";
  const json m = ChatPrompt::checked_messages({{{"role", "user"}, {"content", "x"}}}, "m");
  std::string why;
  // From the file; without a stored template the tokens are the tokenizer's BOS and the model's
  // EOS.
  auto chat = make_chat_prompt({file, std::nullopt, "m.h5", {557}}, tiny_llama3_tokenizer(), &why);
  ASSERT_TRUE(chat);
  EXPECT_EQ(chat->render(m), "<|begin_of_text|>|<|eot_id|>|x");
  // The stored template's tokens go with the file's template too.
  StoredChatTemplate stored{"stored {{ messages[0].content }}", "B", std::nullopt};
  EXPECT_EQ(make_chat_prompt({file, stored, "m.h5", {557}}, tiny_llama3_tokenizer(), &why)->render(m), "B||x");
  EXPECT_EQ(make_chat_prompt({"", stored, "m.h5", {557}}, tiny_llama3_tokenizer(), &why)->render(m),
            "stored x");
  // None: why says what to do.
  EXPECT_FALSE(make_chat_prompt({"", std::nullopt, "m.h5", {}}, tiny_llama3_tokenizer(), &why));
  EXPECT_NE(why.find("the model m.h5 has none"), std::string::npos) << why;
  EXPECT_NE(why.find("--chat-template FILE"), std::string::npos) << why;
  EXPECT_FALSE(make_chat_prompt({"", stored, "m.h5", {}}, nullptr, &why));
  EXPECT_NE(why.find("has no tokenizer"), std::string::npos) << why;
  // A file that cannot be read is a usage error; a template that cannot run, a model error.
  EXPECT_THROW(make_chat_prompt({file + ".missing", std::nullopt, "m.h5", {}}, tiny_llama3_tokenizer(), &why),
               UsageError);
  std::ofstream(file) << "{% for m in messages %}";
  try {
    make_chat_prompt({file, std::nullopt, "m.h5", {}}, tiny_llama3_tokenizer(), &why);
    FAIL() << "a broken template was accepted";
  } catch (const ModelError& e) {
    EXPECT_EQ(std::string(e.what()).rfind("--chat-template " + file + ": ", 0), 0u) << e.what();
  }
}

RequestRules native_rules(bool with_chat) {
  RequestRules r;
  r.vocab_size = 600;
  r.max_context = 64;
  r.tokenizer = tiny_llama3_tokenizer();
  if (with_chat)
    r.chat = std::make_shared<const ChatPrompt>(kTemplate, "<|begin_of_text|>", std::nullopt,
                                                tiny_llama3_tokenizer());
  r.no_chat_reason = "no template here";
  return r;
}

TEST(ChatPrompt, NativeRequestsTakeMessagesNTopLogprobsAndPromptLogprobs) {
  const std::string line =
      R"({"id":"m","messages":[{"role":"user","content":"hi"}],"n":4,"top_logprobs":3,"prompt_logprobs":true})";
  const ParsedLine p = parse_request_line(line, 2, native_rules(true));
  ASSERT_TRUE(p.request) << p.error->error;
  EXPECT_FALSE(p.envelope);
  EXPECT_EQ(p.request->prompt,
            tiny_llama3_tokenizer()->encode("<|begin_of_text|>[user]\nhi<|eot_id|>[assistant]\nFalse", false));
  EXPECT_EQ(p.request->n, 4);
  EXPECT_EQ(p.request->sampling.top_logprobs, 3);
  EXPECT_TRUE(p.request->sampling.logprobs);  // implied by top_logprobs
  EXPECT_TRUE(p.request->sampling.prompt_logprobs);
  const auto error = [](const std::string& l, bool chat = true) {
    const ParsedLine e = parse_request_line(l, 2, native_rules(chat));
    EXPECT_FALSE(e.request) << l;
    return e.error ? e.error->error : "";
  };
  EXPECT_EQ(error(R"({"id":1,"messages":[{"role":"user","content":"x"}]})", false),
            "line 2: no template here");
  EXPECT_EQ(error(R"({"id":1,"messages":[{"role":"user","content":"x"}],"prompt":"y"})"),
            "line 2: give one of \"prompt_tokens\", \"prompt\" and \"messages\", not several");
  EXPECT_EQ(error(R"({"id":1,"messages":[{"role":"user","content":[{"type":"image_url"}]}]})"),
            "line 2: messages[0].content[0].type \"image_url\" is not supported: only text parts "
            "(it would change the prompt)");
  EXPECT_EQ(error(R"({"id":1,"prompt_tokens":[1],"n":129})"),
            "line 2: \"n\" must be an integer in [1, 128], got 129");
  EXPECT_EQ(error(R"({"id":1,"prompt_tokens":[1],"top_logprobs":21})"),
            "line 2: \"top_logprobs\" must be an integer in [0, 20], got 21");
  EXPECT_EQ(error(R"({"id":1,"prompt_tokens":[1],"prompt_logprobs":1})"),
            "line 2: \"prompt_logprobs\" must be true or false, not an integer");
  // A long conversation is held to the context like any prompt.
  std::string many = R"({"id":1,"messages":[)";
  for (int i = 0; i < 40; ++i)
    many += std::string(i ? "," : "") + R"({"role":"user","content":"hello"})";
  EXPECT_NE(error(many + "]}").find("tokens; the model's context is 64"), std::string::npos);
}

}  // namespace
}  // namespace tpinfer
