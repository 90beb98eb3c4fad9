#pragma once
// Normalizers: rewrite the text between added tokens before it is split
// (Hugging Face's normalizer). One struct per algorithm in normalizers.cpp;
// a Sequence runs them in order. Internal to src/text.
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "text/tokenizer_json.hpp"

namespace tpinfer::tokenizer_detail {

class Normalizer {
 public:
  virtual ~Normalizer() = default;
  virtual void apply(std::string& s) const = 0;
};

class Normalizers {
 public:
  static Normalizers from_json(const json& node);  // the file's "normalizer" (null: none)
  bool empty() const { return steps_.empty(); }
  std::string run(std::string_view text) const;

 private:
  std::vector<std::shared_ptr<const Normalizer>> steps_;
};

}  // namespace tpinfer::tokenizer_detail
