// The cuda backend: the Backend interface on one GPU in bf16 with fp32
// accumulation. This file holds the checks (the same rules as the cpu backend,
// so a bad call fails the same way on both) and the plumbing: memory arena,
// staging, per-step metadata, dispatch to the kernels, cuBLASLt and the
// collectives. Everything runs asynchronously on the backend's one stream;
// download is the only op that waits for the GPU.
#include "backend/cuda/cuda_backend.hpp"

#include <cuda_runtime.h>
#include <mpi.h>

#include <algorithm>
#include <climits>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <limits>
#include <memory>
#include <new>
#include <numbers>
#include <string>
#include <vector>

#include "backend/backend.hpp"
#include "backend/cuda/arena.hpp"
#include "backend/cuda/batch_state.hpp"
#include "backend/cuda/collectives.hpp"
#include "backend/cuda/cuda_check.hpp"
#include "backend/cuda/gemm.hpp"
#include "backend/cuda/host_convert.hpp"
#include "backend/cuda/kernels.hpp"
#include "backend/cuda/op_timer.hpp"
#include "backend/cuda/resources.hpp"
#include "backend/cuda/step_graphs.hpp"
#include "backend/memory_retry.hpp"
#include "backend/op_checks.hpp"
#include "base/error.hpp"
#include "base/fp8.hpp"
#include "base/half.hpp"
#include "dist/world.hpp"

namespace tpinfer {
namespace {

using cuda::AttnItem;
using cuda::bf16;

constexpr size_t kStagingBytes = size_t{32} << 20;   // two halves, double-buffered
constexpr size_t kGemmWorkspace = size_t{32} << 20;  // what cuBLASLt asks for on Hopper
constexpr size_t kMaxReserve = size_t{256} << 20;    // per-step scratch headroom
// Batch-invariant mode: the most a step's split attention items may leave as
// chunk states (cuda::plan_key_chunks; Llama-3-8B at batch 256 splits up to
// 8 chunks, contexts of 4,096 keys, in 34 MB).
constexpr size_t kChunkStateBudget = size_t{64} << 20;

#define CUDA_BE_CHECK(cond, op, msg) TPINFER_OP_CHECK("cuda", cond, op, msg)

void check_storage(const Tensor& t, const char* op, const char* name) {
  CUDA_BE_CHECK(t.data != nullptr || t.numel() == 0, op, std::string(name) + " has no storage");
}

bf16* bf(const Tensor& t, const char* op, const char* name) {
  check_dtype_and_storage("cuda", t, DType::bf16, op, name, " (the cuda backend computes in bf16)");
  return static_cast<bf16*>(t.data);
}

void check_matrix(const Tensor& t, int64_t rows, int64_t cols, const char* op, const char* name) {
  tpinfer::check_matrix("cuda", t, rows, cols, op, name);
}

void check_attention_shape(const AttentionShape& a, const char* op) {
  tpinfer::check_attention_shape("cuda", a, op);
  CUDA_BE_CHECK(a.head_dim % 2 == 0, op,
                "head_dim " + std::to_string(a.head_dim) + " is odd (rotate-half needs pairs)");
  CUDA_BE_CHECK(a.q_heads <= INT_MAX / 2 && a.head_dim <= 4096, op, "attention shape too large");
}

// Bytes of one cached K or V element.
double kv_element_bytes(const Tensor& cache) {
  return cache.dtype == DType::fp8_e4m3 ? 1.0 : 2.0;
}

// The two caches of a layer: both bfloat16 or both float8_e4m3fn, of one
// [num_blocks, block_size, kv_heads, head_dim] shape. Returns num_blocks.
int64_t check_cache(const Tensor& k_cache, const Tensor& v_cache, int block_size,
                    const AttentionShape& a, const char* op) {
  CUDA_BE_CHECK(k_cache.dtype == v_cache.dtype &&
                    (k_cache.dtype == DType::bf16 || k_cache.dtype == DType::fp8_e4m3),
                op,
                std::string("k_cache is ") + dtype_name(k_cache.dtype) + " and v_cache " +
                    dtype_name(v_cache.dtype) + ": both bfloat16 or both float8_e4m3fn");
  check_storage(k_cache, op, "k_cache");
  check_storage(v_cache, op, "v_cache");
  return check_kv_cache_shapes("cuda", k_cache, v_cache, block_size, a, op);
}

class CudaBackend final : public Backend {
 public:
  CudaBackend(MPI_Comm tp_comm, const CudaBackendOptions& o) {
    const int devices = cuda_device_count();
    if (o.device < 0 || o.device >= devices)
      throw UsageError("cuda backend: device " + std::to_string(o.device) + " requested but " +
                       std::to_string(devices) + " CUDA device(s) are visible");
    if (!(o.memory_fraction > 0.0 && o.memory_fraction <= 1.0))
      throw UsageError("cuda backend: memory_fraction " + std::to_string(o.memory_fraction) +
                       " is outside (0, 1]");
    TPINFER_CUDA_CHECK(cudaSetDevice(o.device));
    comm_ = duplicate(tp_comm);
    tp_size_ = comm_.size();
    cudaDeviceProp prop{};
    TPINFER_CUDA_CHECK(cudaGetDeviceProperties(&prop, o.device));
    sms_ = prop.multiProcessorCount;
    // NCCL kernels can be recorded in a graph; host-staged MPI collectives cannot.
    graphs_allowed_ =
        o.graphs && (tp_size_ == 1 || o.collectives == CudaBackendOptions::Collectives::nccl);
    max_graph_batch_ = o.max_graph_batch;
    deterministic_ = o.deterministic;
    // Batch invariance: no GEMV for small row counts (its sums run in another
    // order than the GEMM's), and no IPC all-reduce (its order is its own).
    gemv_max_rows_ = o.deterministic ? 0 : o.gemv_max_rows;
    cuda::set_programmatic_launch(o.programmatic_launch && prop.major >= 9);
    stream_ = cuda::make_stream();
    if (o.attention_side_stream) {
      side_stream_ = cuda::make_stream();
      side_fork_ = cuda::make_event();
      side_join_ = cuda::make_event();
    }
    if (o.op_profile) {
      timer_ = std::make_unique<cuda::OpTimer>(stream_.get());
      graphs_allowed_ = false;  // a recorded step would hide its ops
    }
    // Everything that takes device memory of its own (NCCL's buffers, the
    // cuBLASLt handle, kernel attributes) comes before the arena measures what
    // is free.
    if (tp_size_ > 1)
      collectives_ = std::make_unique<cuda::Collectives>(
          comm_.get(), o.collectives, o.deterministic ? 0 : o.custom_all_reduce_bytes,
          stream_.get());
    gemm_ = std::make_unique<cuda::Gemm>(o.gemm_tune, o.deterministic);
    if (o.deterministic &&
        static_cast<size_t>(prop.sharedMemPerBlockOptin) < cuda::attention_folded_smem_bytes())
      throw Error("cuda backend: --deterministic needs " +
                      std::to_string(cuda::attention_folded_smem_bytes()) +
                      " bytes of shared memory per block for its attention; " + prop.name +
                      " allows " + std::to_string(prop.sharedMemPerBlockOptin),
                  kExitOther);
    cuda::attention_init(o.deterministic);
    // --cuda-prefill-attention wgmma: batch-invariant mode keeps its own tile order.
    using PA = CudaBackendOptions::PrefillAttention;
    prefill_wgmma_ =
        !o.deterministic && (o.prefill_attention == PA::wgmma ||
                             (o.prefill_attention == PA::automatic && prop.major == 9));
    if (prefill_wgmma_) {
      if (prop.major != 9)
        throw UsageError(std::string("--cuda-prefill-attention wgmma needs an sm_90 GPU (H100, "
                                     "H200); ") +
                         prop.name + " is sm_" + std::to_string(prop.major) +
                         std::to_string(prop.minor));
      cuda::attention_wgmma_init();
    }
    size_t free_bytes = 0, total_bytes = 0;
    TPINFER_CUDA_CHECK(cudaMemGetInfo(&free_bytes, &total_bytes));
    allocate_arena(o, free_bytes);
    gemm_->set_workspace(arena_->allocate_internal(kGemmWorkspace), kGemmWorkspace);
    staging_.reserve(kStagingBytes);
    for (auto& e : staging_done_) e = cuda::make_event();
    meta_copied_ = cuda::make_event();
    work_copied_ = cuda::make_event();
    sample_copied_ = cuda::make_event();
  }

  // Free memory x memory_fraction in whole 2 MiB pages; a size the driver
  // refuses is retried smaller (memory_retry.hpp), saying so.
  void allocate_arena(const CudaBackendOptions& o, size_t free_bytes) {
    const auto attempts = arena_attempts(free_bytes, o.memory_fraction, o.min_arena_bytes);
    for (size_t i = 0; i < attempts.size(); ++i) {
      const size_t bytes = attempts[i].bytes;
      try {
        const size_t reserve = std::min(kMaxReserve, bytes / 8) / 256 * 256;
        arena_ = std::make_unique<cuda::DeviceArena>(bytes, reserve);
        return;
      } catch (const std::bad_alloc&) {
        if (i + 1 < attempts.size()) {
          const std::string line =
              arena_retry_line(o.rank, o.device, attempts[i], attempts[i + 1], free_bytes);
          std::fprintf(stderr, "%s\n", line.c_str());
          std::fflush(stderr);
        }
      }
    }
    throw RestartableError(
        arena_failure_message(o.device, attempts, free_bytes, o.min_arena_bytes));
  }

  ~CudaBackend() override {
    if (capturing_) cuda::StepGraphs::abandon_capture(stream_.get());
    // Nothing may still run on memory the members are about to free.
    if (stream_) (void)cudaStreamSynchronize(stream_.get());
    if (side_stream_) (void)cudaStreamSynchronize(side_stream_.get());
  }

  std::string name() const override { return "cuda"; }
  DType compute_dtype() const override { return DType::bf16; }
  DType logits_dtype() const override { return deterministic_ ? DType::f32 : DType::bf16; }
  DeviceKind device_kind() const override { return DeviceKind::cuda; }
  MemoryInfo memory_info() const override {
    return {static_cast<int64_t>(arena_->used()), static_cast<int64_t>(arena_->available())};
  }

  Tensor alloc(const std::vector<int64_t>& shape, DType dtype) override {
    const int64_t n = checked_numel("cuda", shape);
    const size_t bytes = static_cast<size_t>(n) * static_cast<size_t>(dtype_bytes(dtype));
    void* p = arena_->allocate(bytes);  // std::bad_alloc when the arena is full
    // Zeroed, as on the cpu backend: a cache slot never written reads as 0.
    if (bytes > 0) TPINFER_CUDA_CHECK(cudaMemsetAsync(p, 0, bytes, stream_.get()));
    return Tensor{p, dtype, shape};
  }

  // Host fp32 -> dst's dtype: converted on the host into one half of the
  // pinned staging buffer while the other half's copy runs.
  void upload(const Tensor& dst, const float* src) override {
    check_storage(dst, "upload", "dst");
    CUDA_BE_CHECK(src != nullptr || dst.numel() == 0, "upload", "null source");
    staged_upload(dst, sizeof(float), [&](void* buf, size_t off, size_t c) {
      switch (dst.dtype) {
        case DType::f32:
          std::memcpy(buf, src + off, c * sizeof(float));
          break;
        case DType::bf16:
          cuda::floats_to_bf16(src + off, static_cast<uint16_t*>(buf), c);
          break;
        case DType::f16:
          cuda::floats_to_f16(src + off, static_cast<uint16_t*>(buf), c);
          break;
        case DType::fp8_e4m3:
          for (size_t k = 0; k < c; ++k)
            static_cast<uint8_t*>(buf)[k] = float_to_fp8_e4m3(src[off + k]);
          break;
      }
    });
  }

  // Bits of dst's own dtype are staged as they are; others go through float32.
  void upload_bits(const Tensor& dst, const uint16_t* src, DType src_dtype) override {
    check_storage(dst, "upload_bits", "dst");
    CUDA_BE_CHECK(src != nullptr || dst.numel() == 0, "upload_bits", "null source");
    CUDA_BE_CHECK(
        src_dtype == DType::bf16 || src_dtype == DType::f16, "upload_bits",
        std::string("source dtype ") + dtype_name(src_dtype) + " (rule: bfloat16 or float16 bits)");
    if (dst.dtype == src_dtype) {
      staged_upload(dst, sizeof(uint16_t), [&](void* buf, size_t off, size_t c) {
        std::memcpy(buf, src + off, c * sizeof(uint16_t));
      });
      return;
    }
    std::vector<float> wide(static_cast<size_t>(dst.numel()));
    widen_to_float(src_dtype, src, wide.data(), wide.size());
    upload(dst, wide.data());
  }

  // dst's elements in chunks of half the pinned staging buffer (measured in
  // source elements of src_bytes): fill(buf, first, count) writes a chunk in
  // dst's dtype into one half while the other half's copy runs.
  template <class Fill>
  void staged_upload(const Tensor& dst, size_t src_bytes, const Fill& fill) {
    const size_t esz = static_cast<size_t>(dtype_bytes(dst.dtype));
    const size_t n = static_cast<size_t>(dst.numel());
    const size_t chunk = kStagingBytes / 2 / std::max(src_bytes, esz);
    char* d = static_cast<char*>(dst.data);
    for (size_t off = 0, i = 0; off < n; off += chunk, ++i) {
      const size_t c = std::min(chunk, n - off);
      const int half = static_cast<int>(i & 1);
      TPINFER_CUDA_CHECK(cudaEventSynchronize(staging_done_[half].get()));
      void* buf = staging_half(half);
      fill(buf, off, c);
      TPINFER_CUDA_CHECK(
          cudaMemcpyAsync(d + off * esz, buf, c * esz, cudaMemcpyHostToDevice, stream_.get()));
      TPINFER_CUDA_CHECK(cudaEventRecord(staging_done_[half].get(), stream_.get()));
    }
  }

  void fill_random(const Tensor& dst, const RandomFill& f) {
    check_storage(dst, "fill_random", "dst");
    const int64_t rows = dst.rows(), cols = dst.shape.size() > 1 ? dst.cols() : 1;
    cuda::launch_fill_random(dst.data, dst.dtype, rows, cols, f, stream_.get());
  }

  // src's dtype -> host fp32. Chunk i+1 is copied while chunk i is converted;
  // returns after the stream has drained (so it also surfaces kernel faults).
  void download(const Tensor& src, float* dst) override {
    check_storage(src, "download", "src");
    CUDA_BE_CHECK(dst != nullptr || src.numel() == 0, "download", "null destination");
    const size_t esz = static_cast<size_t>(dtype_bytes(src.dtype));
    const size_t n = static_cast<size_t>(src.numel());
    const size_t chunk = kStagingBytes / 2 / sizeof(float);
    const char* s = static_cast<const char*>(src.data);
    // Until the host has converted the last chunk: the step waits for all of it.
    const cuda::OpScope scope(timer_.get(), "download to host", 0, 0, 0,
                              static_cast<double>(n * esz));
    auto convert = [&](size_t off, int half) {
      const size_t c = std::min(chunk, n - off);
      TPINFER_CUDA_CHECK(cudaEventSynchronize(staging_done_[half].get()));
      const void* buf = staging_half(half);
      switch (src.dtype) {
        case DType::f32:
          std::memcpy(dst + off, buf, c * sizeof(float));
          break;
        case DType::bf16:
          cuda::bf16_to_floats(static_cast<const uint16_t*>(buf), dst + off, c);
          break;
        case DType::f16:
          cuda::f16_to_floats(static_cast<const uint16_t*>(buf), dst + off, c);
          break;
        case DType::fp8_e4m3: {
          const auto& table = fp8_e4m3_table();
          for (size_t k = 0; k < c; ++k) dst[off + k] = table[static_cast<const uint8_t*>(buf)[k]];
          break;
        }
      }
    };
    size_t i = 0;
    for (size_t off = 0; off < n; off += chunk, ++i) {
      const size_t c = std::min(chunk, n - off);
      const int half = static_cast<int>(i & 1);
      // The stream orders this copy after any upload still reading the half.
      TPINFER_CUDA_CHECK(cudaMemcpyAsync(staging_half(half), s + off * esz, c * esz,
                                         cudaMemcpyDeviceToHost, stream_.get()));
      TPINFER_CUDA_CHECK(cudaEventRecord(staging_done_[half].get(), stream_.get()));
      if (i > 0) convert(off - chunk, static_cast<int>((i - 1) & 1));
    }
    if (i > 0) convert((i - 1) * chunk, static_cast<int>((i - 1) & 1));
    TPINFER_CUDA_CHECK(cudaStreamSynchronize(stream_.get()));
  }

  // One upload of the packed int arrays. The pinned copy is reused only after
  // its previous upload finished; the device copy grows from the arena's
  // reserve when a batch outgrows it (the old one is abandoned: kernels of the
  // previous step may still read it).
  void set_batch(const BatchLayout& b) override {
    if (capturing_) {  // an op threw while recording the last step
      cuda::StepGraphs::abandon_capture(stream_.get());
      capturing_ = false;
    }
    if (timer_) timer_->step(b.num_tokens() == b.num_seqs());
    const cuda::OpScope scope(timer_.get(), "set_batch upload");
    batch_.set(b);
    if (timer_) {  // the attention's bytes and FLOPs, for the op profile only
      kv_tokens_ = attended_ = 0;
      for (const int32_t c : b.context_len) kv_tokens_ += c;
      for (const int32_t p : b.positions) attended_ += p + 1;
    }
    // Decode steps (one token a sequence, each sampled) are recorded and replayed.
    graphable_ = graphs_allowed_ && b.num_tokens() == b.num_seqs() &&
                 static_cast<int64_t>(b.logit_rows.size()) == b.num_tokens() &&
                 b.num_tokens() <= max_graph_batch_;
    const auto& packed = batch_.packed();
    const size_t bytes = std::max<size_t>(packed.data.size(), 1) * sizeof(int32_t);
    TPINFER_CUDA_CHECK(cudaEventSynchronize(meta_copied_.get()));
    meta_host_.reserve(bytes);
    std::memcpy(meta_host_.data(), packed.data.data(), packed.data.size() * sizeof(int32_t));
    int32_t* dev = static_cast<int32_t*>(grow(meta_dev_, meta_cap_, bytes));
    TPINFER_CUDA_CHECK(
        cudaMemcpyAsync(dev, meta_host_.data(), bytes, cudaMemcpyHostToDevice, stream_.get()));
    TPINFER_CUDA_CHECK(cudaEventRecord(meta_copied_.get(), stream_.get()));
    d_.token_ids = dev + packed.token_ids;
    d_.positions = dev + packed.positions;
    d_.slot_mapping = dev + packed.slot_mapping;
    d_.query_start = dev + packed.query_start;
    d_.context_len = dev + packed.context_len;
    d_.block_tables = dev + packed.block_tables;
    d_.logit_rows = dev + packed.logit_rows;
    d_.token_seq = dev + packed.token_seq;
    work_group_ = 0;
    have_batch_ = true;
  }

  void embed(const Tensor& table, int64_t vocab_offset, Tensor& out) override {
    const char* op = "embed";
    require_batch(op);
    const bf16* tab = bf(table, op, "table");
    bf16* o = bf(out, op, "out");
    const int64_t n = batch_.layout().num_tokens();
    const auto [rows, h] = check_embed_shapes("cuda", table, n, out);
    const cuda::OpScope scope(timer_.get(), op, 0, 0, 0, 4.0 * n * h);
    cuda::launch_embed(tab, rows, h, vocab_offset, d_.token_ids, n, o, stream_.get());
  }

  void rmsnorm(const Tensor& x, const Tensor& w, float eps, Tensor& out) override {
    const char* op = "rmsnorm";
    const bf16* xp = bf(x, op, "x");
    const bf16* wp = bf(w, op, "w");
    bf16* o = bf(out, op, "out");
    const auto [n, h] = check_rmsnorm_shapes("cuda", x, w, out);
    const cuda::OpScope scope(timer_.get(), op, 0, 0, 0, 4.0 * n * h);
    cuda::launch_rmsnorm(xp, wp, eps, n, h, o, stream_.get());
  }

  void add_rmsnorm(Tensor& residual, const Tensor& x, const Tensor& w, float eps,
                   Tensor& out) override {
    const char* op = "add_rmsnorm";
    bf16* r = bf(residual, op, "residual");
    const bf16* xp = bf(x, op, "x");
    const bf16* wp = bf(w, op, "w");
    bf16* o = bf(out, op, "out");
    const auto [n, h] = check_add_rmsnorm_shapes("cuda", residual, x, w, out);
    const cuda::OpScope scope(timer_.get(), op, 0, 0, 0, 8.0 * n * h);
    cuda::launch_add_rmsnorm(r, xp, wp, eps, n, h, o, stream_.get());
  }

  void linear(const Tensor& x, const Tensor& w, const Tensor* bias, Tensor& out) override {
    const char* op = "linear";
    const bf16* xp = bf(x, op, "x");
    const bf16* wp = bf(w, op, "w");
    // out is bf16, or float32 for the logits (without a bias).
    const bool out_f32 = out.dtype == DType::f32 && bias == nullptr;
    if (out_f32)
      check_storage(out, op, "out");
    else
      bf(out, op, "out");
    const bf16* bp = bias != nullptr ? bf(*bias, op, "bias") : nullptr;
    const auto [n, k, m] = check_linear_shapes("cuda", x, w, bias, out);
    if (n == 0 || m == 0) return;
    // --deterministic: small weights take the kernel whose order of summation
    // is fixed by construction (cuBLASLt's picks for them vary with n; gemm.hpp).
    if (deterministic_ && k > 0 && m * k < cuda::kDeterministicGemvElements &&
        cuda::gemv_rows_applies(n, k, m, xp, wp)) {
      const cuda::OpScope scope(
          timer_.get(), op, k, m, 2.0 * n * k * m,
          2.0 * (static_cast<double>(k) * m + n * k) + (out_f32 ? 4.0 : 2.0) * n * m);
      cuda::launch_gemv_rows(xp, wp, bp, out.data, out_f32, n, k, m, stream_.get());
      return;
    }
    if (out_f32) {
      const cuda::OpScope scope(timer_.get(), op, k, m, 2.0 * n * k * m,
                                2.0 * static_cast<double>(k) * m + 2.0 * n * k + 4.0 * n * m);
      if (k == 0)
        TPINFER_CUDA_CHECK(
            cudaMemsetAsync(out.data, 0, static_cast<size_t>(n * m) * 4, stream_.get()));
      else
        gemm_->run(xp, wp, nullptr, out.data, n, k, m, stream_.get(), !capturing_, true);
      return;
    }
    bf16* o = static_cast<bf16*>(out.data);
    // The weights once, the rows in and out.
    const cuda::OpScope scope(timer_.get(), op, k, m, 2.0 * n * k * m,
                              2.0 * (static_cast<double>(k) * m + n * (k + m)));
    if (k == 0) {  // an empty sum: cuBLASLt rejects a zero inner dimension
      cuda::launch_fill_rows(bp, n, m, o, stream_.get());
      return;
    }
    if (cuda::gemv_applies(n, k, m, xp, wp, gemv_max_rows_))
      cuda::launch_gemv(xp, wp, bp, o, n, k, m, stream_.get());
    else
      gemm_->run(xp, wp, bp, o, n, k, m, stream_.get(), !capturing_);
  }

  void rope_write_kv(Tensor& qkv, const Tensor& inv_freq, const AttentionShape& a, Tensor& k_cache,
                     Tensor& v_cache) override {
    const char* op = "rope_write_kv";
    require_batch(op);
    check_attention_shape(a, op);
    bf16* x = bf(qkv, op, "qkv");
    check_dtype_and_storage("cuda", inv_freq, DType::f32, op, "inv_freq");
    const int64_t n = batch_.layout().num_tokens();
    check_qkv_shape("cuda", qkv, n, a, op);
    check_inv_freq_shape("cuda", inv_freq, a);
    const int bs = batch_.layout().block_size;
    const int64_t blocks = check_cache(k_cache, v_cache, bs, a, op);
    const int64_t slots = blocks * bs;
    cache_blocks_ = blocks;
    const double kv_bytes = (kv_element_bytes(k_cache) * 2.0) * a.kv_heads * a.head_dim;
    const cuda::OpScope scope(timer_.get(), op, 0, 0, 0, n * (2.0 * qkv.shape[1] * 2 + kv_bytes));
    CUDA_BE_CHECK(batch_.max_slot() < slots, op,
                  "a token's slot lies outside the cache's " + std::to_string(slots) + " slots");
    cuda::RopeParams p{};
    p.qkv = x;
    p.inv_freq = static_cast<const float*>(inv_freq.data);
    p.k_cache = k_cache.data;
    p.v_cache = v_cache.data;
    p.fp8_cache = k_cache.dtype == DType::fp8_e4m3;
    p.positions = d_.positions;
    p.slot_mapping = d_.slot_mapping;
    p.n_tokens = n;
    p.q_heads = static_cast<int>(a.q_heads);
    p.kv_heads = static_cast<int>(a.kv_heads);
    p.head_dim = static_cast<int>(a.head_dim);
    cuda::launch_rope_write_kv(p, stream_.get());
  }

  void attention(const Tensor& qkv, const Tensor& k_cache, const Tensor& v_cache,
                 const AttentionShape& a, Tensor& out) override {
    const char* op = "attention";
    require_batch(op);
    check_attention_shape(a, op);
    const bf16* x = bf(qkv, op, "qkv");
    bf16* o = bf(out, op, "out");
    const BatchLayout& b = batch_.layout();
    const int64_t n = b.num_tokens(), hd = a.head_dim;
    const int64_t row = check_qkv_shape("cuda", qkv, n, a, op);
    check_matrix(out, n, a.q_heads * hd, op, "out");
    CUDA_BE_CHECK(out.data != qkv.data || n == 0, op, "out must not alias qkv");
    const int64_t blocks = check_cache(k_cache, v_cache, b.block_size, a, op);
    CUDA_BE_CHECK(batch_.max_block() < blocks, op,
                  "a block table entry within a context lies outside the cache's " +
                      std::to_string(blocks) + " blocks");
    const bool mma = cuda::attention_mma_supported(static_cast<int>(hd));
    CUDA_BE_CHECK(mma || hd <= 256, op,
                  "head_dim " + std::to_string(hd) + " is not supported (at most 256)");
    if (n == 0) return;
    // QK^T and PV over every attended position; the KV of every context read once.
    const cuda::OpScope scope(
        timer_.get(), op, 0, 0, 4.0 * static_cast<double>(attended_) * a.q_heads * hd,
        static_cast<double>(kv_tokens_) * a.kv_heads * hd * 2.0 * kv_element_bytes(k_cache));

    cuda::AttentionParams p{};
    p.qkv = x;
    p.qkv_stride = row;
    p.k_cache = k_cache.data;
    p.v_cache = v_cache.data;
    p.fp8_cache = k_cache.dtype == DType::fp8_e4m3;
    p.out = o;
    p.positions = d_.positions;
    p.query_start = d_.query_start;
    p.block_tables = d_.block_tables;
    p.token_seq = d_.token_seq;
    p.n_tokens = n;
    p.table_stride = batch_.table_stride();
    p.block_size = b.block_size;
    p.q_heads = static_cast<int>(a.q_heads);
    p.kv_heads = static_cast<int>(a.kv_heads);
    p.head_dim = static_cast<int>(hd);
    p.scale_log2 = a.scale * std::numbers::log2e_v<float>;
    if (!mma) {
      generic_attention_seen_ = true;
      cuda::launch_attention_generic(p, stream_.get());
      return;
    }
    const cuda::AttentionPlan plan =
        attention_plan(static_cast<int>(a.q_heads / a.kv_heads), static_cast<int>(a.kv_heads),
                       static_cast<int>(hd));
    // Decode rows beside prefill rows: fork the side stream from the step's
    // stream and join it back (a graph records both branches).
    const bool beside = side_stream_ && plan.n_decode > 0 && plan.n_prefill > 0;
    if (beside) {
      TPINFER_CUDA_CHECK(cudaEventRecord(side_fork_.get(), stream_.get()));
      TPINFER_CUDA_CHECK(cudaStreamWaitEvent(side_stream_.get(), side_fork_.get(), 0));
    }
    try {
      cuda::launch_attention_mma(p, plan, stream_.get(),
                                 beside ? side_stream_.get() : stream_.get());
    } catch (...) {
      if (beside) {  // joined all the same, so that nothing runs on unawaited
        (void)cudaEventRecord(side_join_.get(), side_stream_.get());
        (void)cudaStreamWaitEvent(stream_.get(), side_join_.get(), 0);
      }
      throw;
    }
    if (beside) {
      TPINFER_CUDA_CHECK(cudaEventRecord(side_join_.get(), side_stream_.get()));
      TPINFER_CUDA_CHECK(cudaStreamWaitEvent(stream_.get(), side_join_.get(), 0));
      ++graph_stats_.beside;
    }
  }

  bool replay_step() override {
    if (!graphable_ || (work_group_seen_ == 0 && !generic_attention_seen_)) return false;
    // The tensor-core attention's items of this step go up before the graph
    // runs (record_begin planned them outside the recording, so the graph holds
    // no upload of its own). The generic kernel needs none.
    cuda::AttentionPlan plan{};
    if (work_group_seen_ != 0)
      plan = attention_plan(work_group_seen_, work_kv_heads_seen_, work_head_dim_seen_);
    const BatchLayout& b = batch_.layout();
    const cuda::StepShape shape = step_shape(work_group_seen_ != 0 ? &plan : nullptr);
    cuda::RecordedStep* r = graphs_.find(shape, signature());
    if (!r) return false;
    // The checks the ops would make, for what differs between steps of a shape.
    const char* op = "replay_step";
    CUDA_BE_CHECK(batch_.max_slot() < r->cache_blocks * b.block_size, op,
                  "a token's slot lies outside the cache's " +
                      std::to_string(r->cache_blocks * b.block_size) + " slots");
    CUDA_BE_CHECK(batch_.max_block() < r->cache_blocks, op,
                  "a block table entry within a context lies outside the cache's " +
                      std::to_string(r->cache_blocks) + " blocks");
    TPINFER_CUDA_CHECK(cudaGraphLaunch(r->exec.get(), stream_.get()));
    ++graph_stats_.replayed;
    return true;
  }

  void record_begin() override {
    if (!graphable_) return;
    // A buffer may grow only outside a recording (a growth synchronizes the
    // device, which a capture refuses), so the step's attention work is planned
    // and uploaded here, before the capture: the first step of an attention
    // shape runs unrecorded, and a later one sizes its buffers now. The graph
    // then holds no upload of its own; replay_step uploads before each launch.
    if (work_group_seen_ == 0 && !generic_attention_seen_) return;
    if (work_group_seen_ != 0)
      attention_plan(work_group_seen_, work_kv_heads_seen_, work_head_dim_seen_);
    // Thread-local: another thread's CUDA calls (say, a health monitor's) do
    // not invalidate the capture.
    TPINFER_CUDA_CHECK(cudaStreamBeginCapture(stream_.get(), cudaStreamCaptureModeThreadLocal));
    capturing_ = true;
  }

  void record_end() override {
    if (!capturing_) return;
    capturing_ = false;
    cuda::RecordedStep& r = graphs_.finish_capture(
        stream_.get(), step_shape(work_group_ != 0 ? &plan_ : nullptr), signature(), cache_blocks_);
    TPINFER_CUDA_CHECK(cudaGraphLaunch(r.exec.get(), stream_.get()));
    ++graph_stats_.recorded;
  }

  CudaGraphStats graph_stats() const { return graph_stats_; }
  OpProfile take_op_profile() { return timer_ ? timer_->take() : OpProfile{}; }

  void silu_mul(const Tensor& gate_up, Tensor& out) override {
    const char* op = "silu_mul";
    const bf16* g = bf(gate_up, op, "gate_up");
    bf16* o = bf(out, op, "out");
    const auto [n, i] = check_silu_mul_shapes("cuda", gate_up, out);
    const cuda::OpScope scope(timer_.get(), op, 0, 0, 0, 6.0 * n * i);
    cuda::launch_silu_mul(g, n, i, o, stream_.get());
  }

  void gather_rows(const Tensor& x, Tensor& out) override {
    const char* op = "gather_rows";
    require_batch(op);
    const bf16* xp = bf(x, op, "x");
    bf16* o = bf(out, op, "out");
    const auto [m, c] =
        check_gather_rows_shapes("cuda", x, static_cast<int64_t>(batch_.layout().logit_rows.size()),
                                 batch_.max_logit_row(), out);
    const cuda::OpScope scope(timer_.get(), op, 0, 0, 0, 4.0 * m * c);
    cuda::launch_gather_rows(xp, c, d_.logit_rows, m, o, stream_.get());
  }

  void argmax_rows(const Tensor& logits, int64_t valid_cols, int64_t col_offset,
                   Tensor& out) override {
    const char* op = "argmax_rows";
    check_storage(logits, op, "logits");
    CUDA_BE_CHECK(logits.dtype == DType::bf16 || logits.dtype == DType::f32, op,
                  std::string("logits has dtype ") + dtype_name(logits.dtype) +
                      ", expected bfloat16 or float32");
    check_storage(out, op, "out");
    CUDA_BE_CHECK(out.dtype == DType::f32, op, "out must be float32");
    const auto [n, c] = check_argmax_rows_shapes("cuda", logits, valid_cols, out);
    const cuda::OpScope scope(timer_.get(), op, 0, 0, 0, 2.0 * n * c);
    cuda::launch_argmax_rows(logits.data, logits.dtype == DType::bf16, n, c, valid_cols, col_offset,
                             static_cast<float*>(out.data), stream_.get());
  }

  // The logits a sampling kernel reads, checked: fp32 or bf16, and not while a
  // step is recorded (the kernels' parameters are uploaded first).
  cuda::LogitsRows logits_rows(const char* op, const Tensor& logits, int64_t vocab,
                               const SampleRowsLayout& l) const {
    CUDA_BE_CHECK(logits.dtype == DType::f32 || logits.dtype == DType::bf16, op,
                  std::string("logits has dtype ") + dtype_name(logits.dtype) +
                      ", expected float32 or bfloat16");
    CUDA_BE_CHECK(!capturing_, op, "called while a step is recorded (it uploads its parameters)");
    return {logits.data, logits.dtype == DType::bf16, l.parts, l.n, l.cols, vocab};
  }

  // The rows' parameters of a sampling kernel, on the device (stream-ordered
  // before the kernel). The pinned copy is rewritten only after its previous
  // upload finished.
  const void* upload_row_params(const void* src, size_t bytes) {
    TPINFER_CUDA_CHECK(cudaEventSynchronize(sample_copied_.get()));
    sample_host_.reserve(bytes);
    std::memcpy(sample_host_.data(), src, bytes);
    void* dev = grow(sample_dev_, sample_cap_, bytes);
    TPINFER_CUDA_CHECK(
        cudaMemcpyAsync(dev, sample_host_.data(), bytes, cudaMemcpyHostToDevice, stream_.get()));
    TPINFER_CUDA_CHECK(cudaEventRecord(sample_copied_.get(), stream_.get()));
    return dev;
  }

  void sample_rows(const Tensor& logits, int64_t vocab, const std::vector<int32_t>& rows,
                   const std::vector<RowSampling>& params, Tensor& out) override {
    const char* op = "sample_rows";
    const cuda::LogitsRows in =
        logits_rows(op, logits, vocab, check_sample_rows("cuda", logits, vocab, rows, params, out));
    if (rows.empty()) return;
    const cuda::OpScope scope(timer_.get(), op);
    const size_t m = rows.size();
    std::vector<cuda::SampleRow> host(m);
    for (size_t i = 0; i < m; ++i) {
      const RowSampling& q = params[i];
      host[i] = {rows[i], q.logprobs ? 1 : 0, q.temperature, q.top_p, q.top_k, q.seed, q.position};
    }
    const auto* dev = static_cast<const cuda::SampleRow*>(
        upload_row_params(host.data(), m * sizeof(cuda::SampleRow)));
    cuda::SampleArgs a{};
    static_cast<cuda::LogitsRows&>(a) = in;
    a.rows = dev;
    a.m = static_cast<int64_t>(m);
    a.out = static_cast<float*>(out.data);
    cuda::launch_sample_rows(a, stream_.get());
  }

  void logprob_rows(const Tensor& logits, int64_t vocab, const std::vector<int32_t>& rows,
                    const std::vector<int32_t>& targets, int k, Tensor& out) override {
    const char* op = "logprob_rows";
    const cuda::LogitsRows in = logits_rows(
        op, logits, vocab, check_logprob_rows("cuda", logits, vocab, rows, targets, k, out));
    if (rows.empty()) return;
    const cuda::OpScope scope(timer_.get(), op);
    const size_t m = rows.size();
    std::vector<int32_t> host(rows);
    host.insert(host.end(), targets.begin(), targets.end());
    const auto* dev =
        static_cast<const int32_t*>(upload_row_params(host.data(), 2 * m * sizeof(int32_t)));
    cuda::LogprobArgs a{};
    static_cast<cuda::LogitsRows&>(a) = in;
    a.rows = dev;
    a.m = static_cast<int64_t>(m);
    a.k = k;
    a.out = static_cast<float*>(out.data);
    cuda::launch_logprob_rows(a, stream_.get());
  }

  void all_reduce_sum(Tensor& x) override {
    check_storage(x, "all_reduce_sum", "x");
    if (tp_size_ == 1) return;
    const cuda::OpScope scope(timer_.get(), "all_reduce_sum");
    if (deterministic_ && x.dtype == DType::bf16) {
      // Every rank's part gathered, then summed in rank order: the same sum
      // whatever the message size (NCCL's algorithm, and its order, depend on
      // it). In pieces of at most kGatherElements a rank, so the buffer stays
      // small next to the arena's reserve whatever the step and TP size; an
      // element's sum does not depend on the piece it falls in.
      const int64_t count = x.numel();
      const int64_t piece = std::min<int64_t>(count, kGatherElements);
      const size_t bytes = static_cast<size_t>(piece) * 2 * static_cast<size_t>(tp_size_);
      auto* parts = static_cast<bf16*>(grow(gather_dev_, gather_cap_, bytes));
      auto* data = static_cast<bf16*>(x.data);
      for (int64_t off = 0; off < count; off += piece) {
        const int64_t n = std::min(piece, count - off);
        collectives_->all_gather(data + off, parts, n, x.dtype);
        cuda::launch_sum_parts(parts, tp_size_, n, data + off, stream_.get());
      }
      return;
    }
    collectives_->all_reduce_sum(x.data, x.numel(), x.dtype);
  }

  void all_gather(const Tensor& local, Tensor& out) override {
    const char* op = "all_gather";
    check_storage(local, op, "local");
    check_storage(out, op, "out");
    check_all_gather_shapes("cuda", local, tp_size_, out);
    CUDA_BE_CHECK(
        out.dtype == local.dtype, op,
        std::string("out is ") + dtype_name(out.dtype) + ", local " + dtype_name(local.dtype));
    if (tp_size_ == 1) {
      const size_t bytes = static_cast<size_t>(local.numel()) * dtype_bytes(local.dtype);
      if (bytes > 0)
        TPINFER_CUDA_CHECK(
            cudaMemcpyAsync(out.data, local.data, bytes, cudaMemcpyDeviceToDevice, stream_.get()));
      return;
    }
    const cuda::OpScope scope(timer_.get(), op);
    collectives_->all_gather(local.data, out.data, local.numel(), local.dtype);
  }

 private:
  // Device copies of the current batch's arrays.
  struct DeviceBatch {
    const int32_t *token_ids = nullptr, *positions = nullptr, *slot_mapping = nullptr,
                  *query_start = nullptr, *context_len = nullptr, *block_tables = nullptr,
                  *logit_rows = nullptr, *token_seq = nullptr;
  };

  void* staging_half(int half) const {
    return static_cast<char*>(staging_.data()) + static_cast<size_t>(half) * (kStagingBytes / 2);
  }

  void require_batch(const char* op) const {
    CUDA_BE_CHECK(have_batch_, op, "called before set_batch");
  }

  // A scratch buffer of at least `bytes` from the arena's reserve, doubling.
  void* grow(void*& ptr, size_t& cap, size_t bytes) {
    if (bytes > cap) {
      const size_t want = std::max(bytes, 2 * cap);
      ptr = arena_->allocate_internal(want);
      cap = want;
    }
    return ptr;
  }

  // The tensor-core work of this step for `group` q heads per kv head: built
  // and uploaded at the step's first attention call, reused by the other layers.
  cuda::AttentionPlan attention_plan(int group, int kv_heads, int head_dim) {
    if (work_group_ != group || work_kv_heads_ != kv_heads || work_head_dim_ != head_dim) {
      const cuda::AttentionWork& w = batch_.attention_work(group, deterministic_);
      const int splits = cuda::choose_decode_splits(w.n_decode, kv_heads, w.max_decode_kv, sms_);
      // Batch-invariant mode: every item is a prefill item; its key chunks.
      cuda::ChunkPlan chunks;
      if (deterministic_) {
        // What the states may take: the buffer there is, or what a growth
        // (to twice it, or more) can get from half of what the reserve still
        // holds (the rest stays for the other scratch buffers); items that do
        // not fit fold in registers instead, to the same bits.
        const size_t half = arena_->internal_available() / 2;
        const size_t can = 2 * partial_cap_ <= half ? half : partial_cap_;
        chunks = cuda::plan_key_chunks(w.items.data(), static_cast<int>(w.items.size()),
                                       cuda::kDetChunkKeys, kv_heads, head_dim,
                                       std::min(kChunkStateBudget, can));
      }
      const std::vector<AttnItem>& items = deterministic_ ? chunks.items : w.items;
      const size_t item_bytes = std::max<size_t>(items.size(), 1) * sizeof(AttnItem);
      // While recording, the event is not waited for or recorded (a captured
      // event cannot be waited on later); the last step's download drained the stream.
      if (!capturing_) TPINFER_CUDA_CHECK(cudaEventSynchronize(work_copied_.get()));
      work_host_.reserve(item_bytes);
      std::memcpy(work_host_.data(), items.data(), items.size() * sizeof(AttnItem));
      auto* dev = static_cast<AttnItem*>(grow(work_dev_, work_cap_, item_bytes));
      TPINFER_CUDA_CHECK(cudaMemcpyAsync(dev, work_host_.data(), item_bytes, cudaMemcpyHostToDevice,
                                         stream_.get()));
      if (!capturing_) TPINFER_CUDA_CHECK(cudaEventRecord(work_copied_.get(), stream_.get()));
      plan_ = cuda::AttentionPlan{};
      plan_.decode_items = dev;
      plan_.n_decode = w.n_decode;
      plan_.prefill_items = dev + w.n_decode;
      plan_.n_prefill = w.n_prefill;
      plan_.splits = splits;
      // The kv heads of one sequence in consecutive blocks: a cache block
      // interleaves them, so blocks running side by side share DRAM rows.
      plan_.head_major = w.n_decode <= 65535 ? 1 : 0;  // gridDim.y's limit
      plan_.prefill_wgmma = prefill_wgmma_ ? 1 : 0;
      if (splits > 1) {
        const size_t rows = static_cast<size_t>(w.n_decode) * kv_heads * cuda::kDecodeRows *
                            static_cast<size_t>(splits);
        auto* part = static_cast<float*>(
            grow(partial_dev_, partial_cap_, rows * (static_cast<size_t>(head_dim) + 1) * 4));
        plan_.partial_o = part;
        plan_.partial_lse = part + rows * static_cast<size_t>(head_dim);
        // Zero once when it grows; the decode kernel leaves every count zero.
        const size_t counts = static_cast<size_t>(w.n_decode) * kv_heads * sizeof(int);
        if (counts > counts_cap_) {
          grow(counts_dev_, counts_cap_, counts);
          TPINFER_CUDA_CHECK(cudaMemsetAsync(counts_dev_, 0, counts_cap_, stream_.get()));
        }
        plan_.split_counts = static_cast<int*>(counts_dev_);
      }
      if (deterministic_) {
        // No decode items in this mode, so the decode splits' buffer holds the chunk states.
        plan_.chunk_keys = cuda::kDetChunkKeys;
        plan_.n_split = chunks.n_split;
        plan_.split_chunks = chunks.split_chunks;
        plan_.split_row_stride = chunks.split_row_stride;
        plan_.others_chunked = chunks.others_chunked ? 1 : 0;
        if (chunks.n_split > 0)
          plan_.chunk_state =
              static_cast<float*>(grow(partial_dev_, partial_cap_, chunks.state_bytes));
      }
      work_group_ = work_group_seen_ = group;
      work_kv_heads_ = work_kv_heads_seen_ = kv_heads;
      work_head_dim_ = work_head_dim_seen_ = head_dim;
    }
    return plan_;
  }

  // plan: the tensor-core attention's of this step; none for the generic kernel.
  cuda::StepShape step_shape(const cuda::AttentionPlan* plan) const {
    const BatchLayout& b = batch_.layout();
    cuda::StepShape shape{b.num_tokens(), b.num_seqs(), batch_.table_stride(),
                          static_cast<int64_t>(b.logit_rows.size())};
    if (plan) {
      shape.splits = plan->splits;
      shape.n_split = plan->n_split;
      shape.split_chunks = plan->split_chunks;
      shape.split_row_stride = plan->split_row_stride;
      shape.others_chunked = plan->others_chunked;
    }
    return shape;
  }

  cuda::Signature signature() const {
    return {meta_dev_, work_dev_, work_host_.data(), partial_dev_, gather_dev_, counts_dev_};
  }

  Comm comm_;  // the backend's own duplicate of the TP communicator
  int tp_size_ = 1;
  int sms_ = 1;
  cuda::Stream stream_;
  // --cuda-attention-streams 2: decode attention's stream, forked and joined per call.
  cuda::Stream side_stream_;
  cuda::Event side_fork_, side_join_;
  std::unique_ptr<cuda::Collectives> collectives_;
  std::unique_ptr<cuda::Gemm> gemm_;
  std::unique_ptr<cuda::DeviceArena> arena_;
  cuda::PinnedBuffer staging_;
  cuda::Event staging_done_[2];

  cuda::BatchState batch_;
  bool have_batch_ = false;
  cuda::PinnedBuffer meta_host_;
  cuda::Event meta_copied_;
  void* meta_dev_ = nullptr;
  size_t meta_cap_ = 0;
  DeviceBatch d_;

  cuda::PinnedBuffer work_host_;
  cuda::Event work_copied_;
  void* work_dev_ = nullptr;
  size_t work_cap_ = 0;
  void* partial_dev_ = nullptr;
  size_t partial_cap_ = 0;
  void* counts_dev_ = nullptr;  // AttentionPlan::split_counts
  size_t counts_cap_ = 0;
  // --deterministic all-reduces: every rank's part, gathered.
  void* gather_dev_ = nullptr;
  size_t gather_cap_ = 0;
  static constexpr int64_t kGatherElements = int64_t{4} << 20;  // 8 MiB of bf16 a rank
  bool deterministic_ = false;
  bool prefill_wgmma_ = false;  // --cuda-prefill-attention wgmma (never with deterministic_)
  int work_group_ = 0, work_kv_heads_ = 0, work_head_dim_ = 0;

  // sample_rows' parameters, as uploaded.
  cuda::PinnedBuffer sample_host_;
  cuda::Event sample_copied_;
  void* sample_dev_ = nullptr;
  size_t sample_cap_ = 0;
  // The attention shape of the model (the last one seen), for replays.
  int work_group_seen_ = 0, work_kv_heads_seen_ = 0, work_head_dim_seen_ = 0;
  cuda::AttentionPlan plan_{};

  bool generic_attention_seen_ = false;
  bool graphs_allowed_ = false, graphable_ = false, capturing_ = false;
  int64_t max_graph_batch_ = 0;
  int gemv_max_rows_ = 0;
  int64_t cache_blocks_ = 0;  // of the KV cache the last rope_write_kv wrote
  cuda::StepGraphs graphs_;
  CudaGraphStats graph_stats_;
  std::unique_ptr<cuda::OpTimer> timer_;  // op_profile only
  // op_profile only: this step's contexts and attended positions, summed.
  int64_t kv_tokens_ = 0, attended_ = 0;
};

}  // namespace

std::unique_ptr<Backend> make_cuda_backend(MPI_Comm tp_comm, const CudaBackendOptions& options) {
  return std::make_unique<CudaBackend>(tp_comm, options);
}

std::string cuda_pci_bus_id(int device) {
  char id[32] = {0};
  if (cudaDeviceGetPCIBusId(id, sizeof id, device) != cudaSuccess) {
    (void)cudaGetLastError();
    return "";
  }
  return id;
}

void cuda_fill_random(Backend& backend, const Tensor& dst, const RandomFill& f) {
  auto* cuda = dynamic_cast<CudaBackend*>(&backend);
  TPINFER_ASSERT(cuda, "cuda_fill_random on a " + backend.name() + " backend");
  cuda->fill_random(dst, f);
}

CudaGraphStats cuda_graph_stats(const Backend& backend) {
  const auto* cuda = dynamic_cast<const CudaBackend*>(&backend);
  return cuda ? cuda->graph_stats() : CudaGraphStats{};
}

OpProfile take_cuda_op_profile(Backend& backend) {
  auto* cuda = dynamic_cast<CudaBackend*>(&backend);
  return cuda ? cuda->take_op_profile() : OpProfile{};
}

int cuda_device_count() {
  int n = 0;
  if (cudaGetDeviceCount(&n) != cudaSuccess) {
    (void)cudaGetLastError();  // no driver / no device: not an error here
    return 0;
  }
  return n;
}

}  // namespace tpinfer
