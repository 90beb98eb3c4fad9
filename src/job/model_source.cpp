#include "job/model_source.hpp"

#include "base/error.hpp"
#include "base/random_fill.hpp"
#if TPINFER_HAVE_CUDA
#include "backend/cuda/cuda_backend.hpp"
#endif

namespace tpinfer {

ModelSource open_model_file(const World& w, const std::string& path, int tp, bool verify_weights) {
  ModelSource s;
  agree_on(w.world.get(), [&] {
    s.file = std::make_unique<WeightReader>(path, verify_weights);
    s.file->validate(tp);
    s.config = s.file->config();
    if (s.file->has_tokenizer())
      s.tokenizer =
          std::make_shared<const Tokenizer>(Tokenizer::from_json(s.file->tokenizer_json()));
  });
  s.fill = upload_stored(*s.file);
  return s;
}

ShardFiller upload_stored(const WeightReader& file) {
  // One host buffer, grown to the largest 16-bit shard and reused (the filler
  // runs one shard at a time).
  auto bits = std::make_shared<std::vector<uint16_t>>();
  const ShardFiller as_float = upload_from([&file](const TensorShard& t) { return file.read(t); });
  return [&file, bits, as_float](Backend& b, const Tensor& dst, const TensorShard& shard) {
    const DType stored = file.tensor_dtype(shard.name);
    if (stored != DType::bf16 && stored != DType::f16) return as_float(b, dst, shard);
    if (dst.numel() != shard.numel())
      throw ModelError("tensor " + shard.name + ": a shard of " + std::to_string(shard.numel()) +
                       " values for a tensor of " + std::to_string(dst.numel()));
    bits->resize(static_cast<size_t>(shard.numel()));
    file.read_into(shard, stored, bits->data());
    b.upload_bits(dst, bits->data(), stored);
  };
}

ModelSource random_model(const World& w, const std::string& config_json_path, int tp,
                         uint64_t seed) {
  ModelSource s;
  agree_on(w.world.get(), [&] {
    s.config = read_hf_config_file(config_json_path);
    check_tp_size(s.config, tp);
  });
  s.fill = random_weights(s.config, seed);
  return s;
}

ShardFiller random_weights(const ModelConfig& config, uint64_t seed) {
  return [config, seed](Backend& b, const Tensor& dst, const TensorShard& shard) {
    const RandomFill f = random_fill_of(config, shard, seed);
#if TPINFER_HAVE_CUDA
    if (b.device_kind() == DeviceKind::cuda) return cuda_fill_random(b, dst, f);
#endif
    const int64_t cols = dst.shape.size() > 1 ? dst.cols() : 1;
    b.upload(dst, random_fill_block(f, dst.rows(), cols).data());
  };
}

Replica load_replica(const World& w, ModelSource& source, const ReplicaOptions& o) {
  Replica r;
  agree_on(w.world.get(), [&] { r = make_replica(w, source.config, source.fill, o); });
  source.file.reset();
  return r;
}

World single_replica_world(int tp, const std::string& command) {
  World w;
  agree_on(MPI_COMM_WORLD, [&] { w = make_world(tp); });
  if (w.dp != 1)
    throw UsageError(command + " runs one replica: start it with as many ranks as --tp (" +
                     std::to_string(tp) + "), not " + std::to_string(w.size));
  return w;
}

}  // namespace tpinfer
