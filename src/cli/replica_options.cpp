#include "cli/replica_options.hpp"

#include <initializer_list>
#include <string>

#include "base/error.hpp"

namespace tpinfer {

void add_replica_options(po::options_description& desc, ReplicaOptions& o) {
  desc.add_options()("backend", po::value(&o.backend)->default_value(o.backend),
                     "cpu | cuda | auto (cuda when this build has it and a GPU is visible)")(
      "collectives", po::value(&o.collectives)->default_value(o.collectives),
      "cuda TP collectives: nccl | mpi (host-staged) | auto (mpi exactly when a TP group's "
      "ranks share a GPU)")("cuda-graphs", po::value(&o.cuda_graphs)->default_value(o.cuda_graphs),
                            "cuda: run decode steps as CUDA graphs (on | off)")(
      "cuda-attention-streams",
      po::value(&o.cuda_attention_streams)->default_value(o.cuda_attention_streams),
      "cuda: 1 | 2: with 2, a step's decode rows' attention runs on a second stream beside its "
      "prefill rows' (pays beside the default --admission and --decode-step-tokens on mixed "
      "lengths; nothing alone)")(
      "cuda-prefill-attention",
      po::value(&o.cuda_prefill_attention)->default_value(o.cuda_prefill_attention),
      "cuda: auto | mma | wgmma: the kernel of prefill attention over a bf16 KV cache at "
      "head_dim 128 (wgmma: Hopper's warpgroup MMA, sm_90 only, 1.26x mma's TFLOP/s on an "
      "H100; auto: wgmma on sm_90, else mma; --deterministic, an fp8 cache and other head dims "
      "keep mma)")(
      "cuda-pdl", po::value(&o.cuda_pdl)->default_value(o.cuda_pdl),
      "cuda: launch each kernel as the one before it completes, before its memory flush "
      "(programmatic dependent launch, sm_90 and later; on | off)")(
      "cuda-gemm-tune", po::value(&o.cuda_gemm_tune)->default_value(o.cuda_gemm_tune),
      "cuda: time cuBLASLt's candidate algorithms for each weight shape and row-count bucket "
      "on first use and keep the fastest (on | off: the heuristic's first pick, the same in "
      "every run)")(
      "deterministic", po::bool_switch(&o.deterministic),
      "batch-invariant results: a request's tokens and logprobs are the same bits whatever "
      "else shares its steps, however its prompt is chunked, and after a kill and --resume "
      "(at one --tp). The cpu backend always is; on cuda it fixes one GEMM algorithm per "
      "shape, one attention tile order, rank-ordered all-reduces and float32 logits, at some "
      "speed (docs/PERF.md)")(
      "cuda-graph-max-batch",
      po::value(&o.cuda_graph_max_batch)->default_value(o.cuda_graph_max_batch),
      "cuda: decode steps of up to this many sequences run as CUDA graphs, one recorded per "
      "batch size (larger ones launch their kernels one by one)")(
      "cuda-gemv-rows", po::value(&o.cuda_gemv_rows)->default_value(o.cuda_gemv_rows),
      "cuda: linear layers over at most this many rows use tpinfer's GEMV kernel instead of "
      "cuBLASLt (0 = always cuBLASLt, at most 8)")(
      "custom-all-reduce-kb",
      po::value(&o.custom_all_reduce_kb)->default_value(o.custom_all_reduce_kb),
      "cuda: TP all-reduces of at most this many KiB run tpinfer's own CUDA IPC kernel instead "
      "of NCCL / MPI (a TP group's ranks on one node; 0 = off, the default until it is timed "
      "against NCCL on several GPUs)")(
      "memory-fraction", po::value(&o.memory_fraction)->default_value(o.memory_fraction),
      "cuda: share of free GPU memory to take (split among ranks on one GPU)")(
      "threads", po::value(&o.threads)->default_value(o.threads),
      "cpu backend threads per rank (0 = cores / ranks on this node)")(
      "block-size", po::value(&o.block_size)->default_value(o.block_size),
      "KV-cache block size in tokens")(
      "max-batch", po::value(&o.max_batch)->default_value(o.max_batch),
      "sequences in flight per data-parallel group (0 = 256 on cuda, 64 on cpu)")(
      "max-step-tokens", po::value(&o.max_step_tokens)->default_value(o.max_step_tokens),
      "tokens per forward step, prefill chunks + decodes (0 = 8192 on cuda, 512 on cpu)")(
      "kv-cache-mb", po::value(&o.kv_cache_mb)->default_value(o.kv_cache_mb),
      "cpu: KV-cache size per rank in MiB (0 = what --max-batch full-length sequences need, at "
      "most a quarter of this node's memory share)")(
      "kv-blocks", po::value(&o.kv_blocks)->default_value(o.kv_blocks),
      "KV-cache size per rank in blocks (overrides the sizing; for tests and tuning)")(
      "kv-cache-dtype", po::value(&o.kv_cache_dtype)->default_value(o.kv_cache_dtype),
      "KV-cache storage: auto (the compute dtype: bf16 on cuda, float32 on cpu) | fp8 "
      "(float8 e4m3, unscaled: half the bytes of bf16, so more sequences fit and decode reads "
      "half; values keep 3 mantissa bits)")(
      "decode-step-tokens", po::value(&o.decode_step_tokens)->default_value(o.decode_step_tokens),
      "tokens of a step that carries decodes, decodes + prompt chunks (0 = --max-step-tokens): "
      "smaller spreads prompts over more steps beside the decodes; a request with as many "
      "tokens to make as the longest running decode is not held back (docs/PERF.md)")(
      "admission", po::value(&o.admission)->default_value(o.admission),
      "arrival | longest-output: the order waiting requests start in (longest-output: most "
      "max_new_tokens first, so the longest decodes do not start last)")(
      "prefix-cache", po::value(&o.prefix_cache)->default_value(o.prefix_cache),
      "on | off: full KV blocks stay cached and sequences with the same prefix (few-shot "
      "preambles, system prompts, the n completions of one prompt) compute it once")(
      "verify-weights", po::value(&o.verify_weights)->default_value(o.verify_weights),
      "check every weight read from the model file against its stored checksums (on | off; "
      "off is for measuring load speed only)");
}

namespace {
// "--NAME VALUE is not one of A, B, C" unless value is one of them.
void check_one_of(const char* option, const std::string& value,
                  std::initializer_list<const char*> allowed) {
  std::string list;
  for (const char* a : allowed) {
    if (value == a) return;
    list += (list.empty() ? "" : ", ") + std::string(a);
  }
  throw UsageError(std::string("--") + option + " " + value + " is not one of " + list);
}
}  // namespace

void check_replica_options(const ReplicaOptions& o) {
  check_one_of("backend", o.backend, {"cpu", "cuda", "auto"});
  check_one_of("collectives", o.collectives, {"nccl", "mpi", "auto"});
  check_one_of("cuda-graphs", o.cuda_graphs, {"on", "off"});
  check_one_of("cuda-pdl", o.cuda_pdl, {"on", "off"});
  if (o.cuda_attention_streams != 1 && o.cuda_attention_streams != 2)
    throw UsageError("--cuda-attention-streams must be 1 or 2");
  check_one_of("cuda-prefill-attention", o.cuda_prefill_attention, {"auto", "mma", "wgmma"});
  check_one_of("cuda-gemm-tune", o.cuda_gemm_tune, {"on", "off"});
  check_one_of("verify-weights", o.verify_weights, {"on", "off"});
  if (o.deterministic && o.cuda_gemm_tune == "on")
    throw UsageError(
        "--deterministic with --cuda-gemm-tune on: tuning picks GEMM algorithms by timing, so "
        "two runs may sum in other orders; drop one of them");
  check_one_of("prefix-cache", o.prefix_cache, {"on", "off"});
  check_one_of("admission", o.admission, {"arrival", "longest-output"});
  if (o.cuda_graph_max_batch < 0)
    throw UsageError("--cuda-graph-max-batch must be >= 0 (0: no CUDA graphs for decode steps)");
  if (o.cuda_gemv_rows < 0 || o.cuda_gemv_rows > 8)
    throw UsageError("--cuda-gemv-rows " + std::to_string(o.cuda_gemv_rows) + " is not in 0..8");
  if (!(o.memory_fraction > 0 && o.memory_fraction <= 1))
    throw UsageError("--memory-fraction must be in (0, 1]");
  check_one_of("kv-cache-dtype", o.kv_cache_dtype, {"auto", "fp8"});
  if (o.block_size < 1) throw UsageError("--block-size must be >= 1");
  if (o.threads < 0) throw UsageError("--threads must be >= 0 (0 = cores / ranks on this node)");
  if (o.kv_cache_mb < 0) throw UsageError("--kv-cache-mb must be >= 0 (0 = sized from memory)");
  if (o.kv_blocks < 0) throw UsageError("--kv-blocks must be >= 0 (0 = sized from memory)");
  if (o.custom_all_reduce_kb < 0 || o.custom_all_reduce_kb > 65536)
    throw UsageError("--custom-all-reduce-kb " + std::to_string(o.custom_all_reduce_kb) +
                     " is not in 0..65536");
  if (o.decode_step_tokens < 0) throw UsageError("--decode-step-tokens must be >= 0");
  if (o.max_batch < 0 || o.max_step_tokens < 0)
    throw UsageError(
        "--max-batch and --max-step-tokens must be >= 1, or 0 for the backend's default");
#if !TPINFER_HAVE_CUDA
  if (o.backend == "cuda")
    throw UsageError(
        "--backend cuda: this build has no CUDA backend (configure with CUDA and "
        "NCCL installed, -DTPINFER_CUDA=ON)");
#endif
}

}  // namespace tpinfer
