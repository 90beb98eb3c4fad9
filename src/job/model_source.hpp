#pragma once
// Where a replica's weights come from, opened the same way by `run`, `bench`
// and `logits`: a model file (its config, tokenizer and shards), or seeded
// random values for a config (benchmarks). Each step is agreed by every rank
// of the world (agree_on), so one rank's bad file stops all with its error.
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "dist/world.hpp"
#include "job/replica.hpp"
#include "model/model.hpp"
#include "text/tokenizer.hpp"
#include "weights/model_config.hpp"
#include "weights/weight_store.hpp"

namespace tpinfer {

struct ModelSource {
  ModelConfig config;
  std::shared_ptr<const Tokenizer> tokenizer;  // null: the file has none
  ShardFiller fill;
  std::unique_ptr<WeightReader> file;  // open until the replica has loaded; null: random
};

// Collective: opens and validates the file for `tp` ranks (checksums checked
// as read when verify_weights), and reads its tokenizer.
ModelSource open_model_file(const World& w, const std::string& path, int tp, bool verify_weights);
// Collective: a Hugging Face config.json and seeded random weights.
ModelSource random_model(const World& w, const std::string& config_json_path, int tp,
                         uint64_t seed);
// The file's shards: a 16-bit tensor goes to the backend as its stored bits
// (Backend::upload_bits: no float32 copy on the host), others as float32.
// `file` must outlive the filler.
ShardFiller upload_stored(const WeightReader& file);
// The seeded random weights of `config`, made where the tensor lives (on the
// GPU by its own kernel; on the host for the cpu backend).
ShardFiller random_weights(const ModelConfig& config, uint64_t seed);

// Collective: make_replica from the source, then closes its file.
Replica load_replica(const World& w, ModelSource& source, const ReplicaOptions& o);

// The world of a command that runs one replica (bench, logits): as many ranks
// as --tp, else a UsageError naming the command.
World single_replica_world(int tp, const std::string& command);

}  // namespace tpinfer
