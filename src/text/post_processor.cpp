// TemplateProcessing and friends: which special tokens surround the text.
#include "text/post_processor.hpp"

namespace tpinfer::tokenizer_detail {
namespace {

int32_t id_of(const json& pair, const std::string& where) {  // ["<s>", 1]
  if (!pair.is_array() || pair.size() != 2 || !pair[1].is_number_integer())
    bad(where + ": expected [token, id]");
  return pair[1].get<int32_t>();
}

}  // namespace

PostProcessor PostProcessor::from_json(const json& node,
                                       const std::function<int32_t(const std::string&)>& token_id) {
  PostProcessor out;
  for_each_component(
      node, "post_processor", "processors", [&](const json& p, const std::string& where) {
        const std::string t = type_of(p, where);
        std::vector<int32_t> pre, suf;
        if (t == "ByteLevel") return;
        if (t == "RobertaProcessing" || t == "BertProcessing") {
          pre.push_back(id_of(p.value("cls", json()), where + ".cls"));
          suf.push_back(id_of(p.value("sep", json()), where + ".sep"));
        } else if (t == "TemplateProcessing") {
          if (!p.contains("single") || !p["single"].is_array())
            bad(where + ".single: missing or not an array");
          bool seen_a = false;
          for (const json& item : p["single"]) {
            if (item.contains("Sequence")) {
              seen_a = true;
              continue;
            }
            if (!item.contains("SpecialToken") || !item["SpecialToken"].is_object())
              bad(where + ".single: an item is neither SpecialToken nor Sequence");
            const std::string name = item["SpecialToken"].value("id", "");
            std::vector<int32_t> ids;
            const json* st = p.contains("special_tokens") && p["special_tokens"].contains(name)
                                 ? &p["special_tokens"][name]
                                 : nullptr;
            if (st && st->contains("ids") && (*st)["ids"].is_array()) {
              for (const json& id : (*st)["ids"]) {
                if (!id.is_number_integer()) bad(where + ".special_tokens[\"" + name + "\"].ids");
                ids.push_back(id.get<int32_t>());
              }
            } else if (const int32_t id = token_id(name); id >= 0) {
              ids.push_back(id);
            } else {
              bad(where + ".single: special token \"" + name + "\" is neither in special_tokens " +
                  "nor a token");
            }
            auto& dst = seen_a ? suf : pre;
            dst.insert(dst.end(), ids.begin(), ids.end());
          }
        } else {
          bad(where + ".type \"" + t +
              "\" is not supported (TemplateProcessing, ByteLevel, RobertaProcessing, "
              "BertProcessing, Sequence)");
        }
        // A later processor wraps what the earlier ones made.
        out.prefix.insert(out.prefix.begin(), pre.begin(), pre.end());
        out.suffix.insert(out.suffix.end(), suf.begin(), suf.end());
      });
  return out;
}

}  // namespace tpinfer::tokenizer_detail
