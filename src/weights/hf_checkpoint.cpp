// The safetensors files of a Hugging Face checkpoint directory.
#include <algorithm>
#include <filesystem>
#include <fstream>
#include <map>
#include <nlohmann/json.hpp>

#include "base/error.hpp"
#include "weights/hf_convert.hpp"

namespace tpinfer {

namespace fs = std::filesystem;

namespace {

constexpr const char* kSingleFile = "model.safetensors";
constexpr const char* kIndexFile = "model.safetensors.index.json";

// The shard files model.safetensors.index.json names, in first-use order, each
// with the tensors its weight_map assigns to it.
std::vector<std::pair<std::string, std::vector<std::string>>> read_index(const fs::path& index) {
  const std::string path = index.string();
  std::ifstream in(index);
  if (!in) throw ModelError("cannot open " + path);
  nlohmann::json j;
  try {
    j = nlohmann::json::parse(in);
  } catch (const nlohmann::json::exception& e) {
    throw ModelError(path + " is not valid JSON: " + e.what());
  }
  if (!j.is_object() || !j.contains("weight_map") || !j["weight_map"].is_object())
    throw ModelError(path + " has no \"weight_map\" object (rule: tensor name -> shard file)");
  std::vector<std::pair<std::string, std::vector<std::string>>> files;
  std::map<std::string, size_t> slot;
  for (const auto& [name, v] : j["weight_map"].items()) {
    if (!v.is_string())
      throw ModelError(path + ": weight_map entry for tensor " + name + " is not a file name");
    const std::string file = v.get<std::string>();
    // Shards live beside the index; a path could point anywhere.
    if (file.empty() || file.find('/') != std::string::npos || file == "." || file == "..")
      throw ModelError(path + ": weight_map maps tensor " + name + " to '" + file +
                       "' (rule: a file name in the same directory)");
    auto [it, added] = slot.emplace(file, files.size());
    if (added) files.push_back({file, {}});
    files[it->second].second.push_back(name);
  }
  if (files.empty()) throw ModelError(path + ": weight_map is empty");
  return files;
}

}  // namespace

const HfCheckpoint::Ref* HfCheckpoint::find(const std::string& name) const {
  auto it =
      std::lower_bound(tensors.begin(), tensors.end(), name,
                       [](const auto& entry, const std::string& n) { return entry.first < n; });
  return it != tensors.end() && it->first == name ? &it->second : nullptr;
}

HfCheckpoint open_hf_checkpoint(const std::string& dir) {
  const fs::path d(dir);
  std::error_code ec;
  if (!fs::is_directory(d, ec))
    throw ModelError("Hugging Face model directory " + dir +
                     (fs::exists(d, ec) ? " is not a directory" : " does not exist"));
  HfCheckpoint ck;
  ck.dir = dir;
  if (fs::exists(d / kSingleFile, ec)) {
    ck.source = kSingleFile;
    ck.files.emplace_back((d / kSingleFile).string());
  } else if (fs::exists(d / kIndexFile, ec)) {
    ck.source = kIndexFile;
    const fs::path index = d / kIndexFile;
    for (const auto& [file, names] : read_index(index)) {
      const fs::path shard = d / file;
      if (!fs::exists(shard, ec))
        throw ModelError(index.string() + " names shard " + file + " (for tensor " + names.front() +
                         "), which does not exist in " + dir);
      SafetensorsFile f(shard.string());
      for (const std::string& name : names)
        if (f.find(name) == nullptr)
          throw ModelError(index.string() + " maps tensor " + name + " to " + shard.string() +
                           ", which does not contain it");
      ck.files.push_back(std::move(f));
    }
  } else {
    const bool pickle = fs::exists(d / "pytorch_model.bin", ec) ||
                        fs::exists(d / "pytorch_model.bin.index.json", ec);
    throw ModelError(dir + " has neither " + kSingleFile + " nor " + kIndexFile +
                     (pickle ? " (pytorch_model.bin checkpoints are not read: save the model with "
                               "safe_serialization=True)"
                             : ""));
  }

  std::map<std::string, HfCheckpoint::Ref> all;
  for (size_t i = 0; i < ck.files.size(); ++i)
    for (const SafetensorsTensor& t : ck.files[i].tensors()) {
      auto [it, added] = all.emplace(t.name, HfCheckpoint::Ref{i, &t});
      if (!added)
        throw ModelError("tensor " + t.name + " is in both " + ck.files[it->second.file].path() +
                         " and " + ck.files[i].path() + " (rule: each tensor in one shard)");
    }
  ck.tensors.assign(all.begin(), all.end());
  return ck;
}

}  // namespace tpinfer
