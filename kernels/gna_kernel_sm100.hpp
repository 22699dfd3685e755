// Blackwell (sm100a) GNA forward kernel: per 128-query Q tile, its box of 128-key KV tiles (gna_tile_box.hpp) loaded
// by TMA in the model's own token order (gna_tma_sm90.hpp: the TMA unit and its boxes are Hopper's), products on
// tcgen05 tensor cores with the accumulators in tensor memory (TMEM), learnt from CUTLASS's examples/77_blackwell_fmha
// forward (its roles and TMEM plan), with a schedule of our own:
//
//   warp 0-3  softmax warpgroup: thread t owns query row t (TMEM lane t). Per KV step: reads the scores S from TMEM,
//             masks a border tile (gna_row_mask.hpp), updates the running max and sum, writes the probabilities P
//             (16-bit) back into TMEM over S, and rescales the output O in TMEM when the reference max moved
//             (gna_softmax_rule.hpp; after the previous PV product is in). At the end: normalizes O, stages it in
//             shared memory and stores it with the same TMA boxes as the load, and writes the log-sum-exp.
//   warp 4    MMA: one elected thread issues S = Q K^T (both from shared memory) and O += P V (P from TMEM); S is
//             double buffered, so the product of step i+1 runs while the softmax of step i does.
//   warp 5    load: one thread issues the TMA loads of Q and of K and V of every visited tile, in visiting order
//             (the box's unmasked interior first, then its border), into a ring of K/V stages.
//
// One tile per CTA, or persistent (kPersistent): one CTA per SM (or fewer, `max_ctas`) walks its work tiles
// (gna_tile_schedule.hpp, the Hopper kernel's split). Every role then runs its tiles as one stream, its pipeline
// states carried from tile to tile: the load thread fetches the next tile's Q as soon as the MMA thread is done with
// this one's and its K/V as ring stages free up; the MMA thread computes the next tile's first two score tiles while
// the softmax warpgroup writes this tile's output, and starts its output product once that output is out of TMEM.
//
// The GNA logic (box, visiting order, masks, token view, work split) is the arch-independent headers' and is shared
// with the Hopper kernel (gna_kernel_sm90.hpp).
#pragma once

#include "cute/arch/tmem_allocator_sm100.hpp"
#include "cute/tensor.hpp"
#include "cutlass/arch/barrier.h"
#include "cutlass/cutlass.h"
#include "cutlass/gemm/collective/collective_builder.hpp"
#include "cutlass/numeric_conversion.h"
#include "cutlass/pipeline/pipeline.hpp"

#include "collective/fmha_common.hpp"  // 77_blackwell_fmha's: gemm_zero_acc, to_tiled_mma_sm100_ts, unstageSmemLayout

#include "gna_row_mask.hpp"
#include "gna_softmax_rule.hpp"
#include "gna_tile_box.hpp"
#include "gna_tile_schedule.hpp"
#include "gna_tma_sm90.hpp"

namespace gna {

using namespace cute;

template <class Element_, int kHeadDim_, bool kPersistent>
struct KernelSm100 {
  using Element = Element_;
  static constexpr int kHeadDim = kHeadDim_;
  static constexpr int kTileRows = 128;  // queries per Q tile, keys per KV tile
  static constexpr int kKVStages = 3;    // K and V tiles take turns in one ring

  using TileShapeQK = Shape<_128, _128, Int<kHeadDim>>;  // (queries, keys, head_dim)
  using TileShapePV = Shape<_128, Int<kHeadDim>, _128>;  // (queries, head_dim, keys)
  // [batch, tokens, heads, head_dim] seen as (token, head_dim, (batch, head)): picks the operands' majorness only.
  using TokenMajorStride = cute::tuple<int, _1, cute::tuple<int, int>>;
  using ClusterShape = Shape<_1, _1, _1>;
  static constexpr int kAlignment = 16 / sizeof(Element);

  using CollectiveMmaQK = typename cutlass::gemm::collective::CollectiveBuilder<
      cutlass::arch::Sm100, cutlass::arch::OpClassTensorOp, Element, TokenMajorStride, kAlignment, Element,
      TokenMajorStride, kAlignment, float, TileShapeQK, ClusterShape,
      cutlass::gemm::collective::StageCount<kKVStages>, cutlass::gemm::KernelTmaWarpSpecialized1SmSm100>::CollectiveOp;
  // P comes from TMEM; only V's shared-memory layout and the MMA's shape come from this builder.
  using CollectiveMmaPV = typename cutlass::gemm::collective::CollectiveBuilder<
      cutlass::arch::Sm100, cutlass::arch::OpClassTensorOp, Element, TokenMajorStride, kAlignment, Element,
      decltype(select<1, 0, 2>(TokenMajorStride{})), kAlignment, float, TileShapePV, ClusterShape,
      cutlass::gemm::collective::StageCount<kKVStages>, cutlass::gemm::KernelTmaWarpSpecialized1SmSm100>::CollectiveOp;
  using TiledMmaQK = typename CollectiveMmaQK::TiledMma;
  using TiledMmaPV = decltype(cutlass::fmha::collective::to_tiled_mma_sm100_ts(typename CollectiveMmaPV::TiledMma{}));

  using SmemLayoutQ =
      decltype(cutlass::fmha::collective::unstageSmemLayout(typename CollectiveMmaQK::SmemLayoutA{}, _1{}));
  using SmemLayoutK =
      decltype(cutlass::fmha::collective::unstageSmemLayout(typename CollectiveMmaQK::SmemLayoutB{}, Int<kKVStages>{}));
  using SmemLayoutV =
      decltype(cutlass::fmha::collective::unstageSmemLayout(typename CollectiveMmaPV::SmemLayoutB{}, Int<kKVStages>{}));
  // A tile in shared memory is head_dim / 64 chunks of (128 rows x 64 elements), 128-byte swizzled: what one TMA box
  // per chunk writes (load_tile), and the K-major (Q, K) and MN-major (V) layouts the builders pick.
  static constexpr int kTileElements = kTileRows * kHeadDim;
  static_assert(cosize_v<SmemLayoutQ> == kTileElements && cosize_v<SmemLayoutK> == kKVStages * kTileElements &&
                    cosize_v<SmemLayoutV> == kKVStages * kTileElements,
                "unexpected shared-memory tile layouts");

  // TMEM columns (32-bit, 128 lanes = query rows): two score buffers, the probabilities over their second half's
  // start (16-bit pairs, 64 columns), and the output.
  CUTLASS_HOST_DEVICE static constexpr uint32_t tmem_s(int buffer) { return buffer % 2 == 0 ? 0u : 128u; }
  static constexpr uint32_t kTmemP = 32;  // offset of P inside its S buffer, as in the 77 example
  static constexpr uint32_t kTmemO = 256;
  static constexpr int kTmemColumns = 512;  // allocations are powers of two
  static_assert(kTmemO + kHeadDim <= kTmemColumns, "TMEM plan exceeds the allocation");

  using PipelineQ = cutlass::PipelineTmaUmmaAsync<1, ClusterShape>;
  using PipelineKV = cutlass::PipelineTmaUmmaAsync<kKVStages, ClusterShape>;
  using PipelineS = cutlass::PipelineUmmaAsync<2>;  // MMA -> softmax: scores in; softmax -> MMA: P written
  using PipelineO = cutlass::PipelineUmmaAsync<1>;  // MMA -> softmax: a PV product done; softmax -> MMA: O rescaled

  static constexpr int kSoftmaxThreads = 128;
  static constexpr int kMmaWarp = 4;
  static constexpr int kLoadWarp = 5;
  static constexpr int MaxThreadsPerBlock = 6 * cutlass::NumThreadsPerWarp;
  static constexpr int MinBlocksPerMultiprocessor = 1;
  using ArchTag = cutlass::arch::Sm100;

  struct SharedStorage {
    cute::array_aligned<Element, cosize_v<SmemLayoutQ>, 1024> q;
    union {
      cute::array_aligned<Element, cosize_v<SmemLayoutK>, 1024> k;
      cute::array_aligned<Element, cosize_v<SmemLayoutV>, 1024> v;
    };
    // The output's staging for the TMA store, apart from Q so that the next tile's Q load overlaps this store.
    cute::array_aligned<Element, kTileElements, 1024> o;
    alignas(16) typename PipelineQ::SharedStorage pipe_q;
    alignas(16) typename PipelineKV::SharedStorage pipe_kv;
    alignas(16) typename PipelineS::SharedStorage pipe_s;
    alignas(16) typename PipelineO::SharedStorage pipe_o;
    uint32_t tmem_base;
  };
  static constexpr int SharedStorageSize = sizeof(SharedStorage);
  static_assert(SharedStorageSize <= 227 * 1024, "shared memory exceeds what one CTA may take");

  struct Params {
    cute::TmaDescriptor q, k, v, o;  // whole-tile boxes (make_descriptor with half = false)
    TokenView q_view, kv_view;
    TileParams tiles;
    KeyMask key_mask;  // KeyMask::make(tiles)
    float scale_softmax_log2;  // softmax scale times log2(e)
    float* lse;                // [batch, heads, q_view.tokens]
    TileSchedule schedule;
  };

  static dim3 grid_shape(Params const& p, int sm_count) { return dim3(p.schedule.ctas(kPersistent, sm_count), 1, 1); }

  // A pipeline of whole tiles that the load warp fills by TMA and the MMA warp consumes (Q, and K/V).
  template <class Pipeline>
  CUTLASS_DEVICE static Pipeline tile_pipeline(typename Pipeline::SharedStorage& storage, int warp, bool leader) {
    typename Pipeline::Params params;
    params.transaction_bytes = kTileElements * sizeof(Element);
    params.is_leader = warp == kLoadWarp && leader;
    params.num_consumers = cutlass::NumThreadsPerWarp;
    params.role = warp == kLoadWarp  ? Pipeline::ThreadCategory::Producer
                  : warp == kMmaWarp ? Pipeline::ThreadCategory::Consumer
                                     : Pipeline::ThreadCategory::NonParticipant;
    return Pipeline(storage, params, ClusterShape{}, cute::true_type{}, cute::false_type{});
  }

  CUTLASS_DEVICE void operator()(Params const& params, char* smem) {
#if defined(CUTLASS_ARCH_MMA_SM100A_ENABLED) || defined(CUTLASS_ARCH_MMA_SM100F_ENABLED)
    auto& storage = *reinterpret_cast<SharedStorage*>(smem);
    int warp = cutlass::canonical_warp_idx_sync();
    bool leader = cute::elect_one_sync();

    PipelineQ pipe_q = tile_pipeline<PipelineQ>(storage.pipe_q, warp, leader);
    PipelineKV pipe_kv = tile_pipeline<PipelineKV>(storage.pipe_kv, warp, leader);
    typename PipelineS::Params s_params;
    s_params.producer_arv_count = 1;  // the MMA warp's commit
    s_params.consumer_arv_count = kSoftmaxThreads;
    s_params.role = warp == kMmaWarp ? PipelineS::ThreadCategory::Producer
                    : warp < 4       ? PipelineS::ThreadCategory::Consumer
                                     : PipelineS::ThreadCategory::NonParticipant;
    PipelineS pipe_s(storage.pipe_s, s_params, ClusterShape{}, cute::true_type{}, cute::false_type{});
    typename PipelineO::Params o_params;
    o_params.producer_arv_count = s_params.producer_arv_count;
    o_params.consumer_arv_count = s_params.consumer_arv_count;
    o_params.role = warp == kMmaWarp ? PipelineO::ThreadCategory::Producer
                    : warp < 4       ? PipelineO::ThreadCategory::Consumer
                                     : PipelineO::ThreadCategory::NonParticipant;
    PipelineO pipe_o(storage.pipe_o, o_params, ClusterShape{}, cute::true_type{}, cute::false_type{});
    __syncthreads();  // barriers initialized
    pipe_q.init_masks(ClusterShape{});
    pipe_kv.init_masks(ClusterShape{});
    pipe_s.init_masks(ClusterShape{});
    pipe_o.init_masks(ClusterShape{});

    cute::TMEM::Allocator1Sm tmem;
    if (warp == kMmaWarp) {
      tmem.allocate(kTmemColumns, &storage.tmem_base);
      tmem.release_allocation_lock();
    }
    __syncthreads();  // the allocation's address is visible to every role
    uint32_t tmem_base = storage.tmem_base;

    // Each role walks the CTA's tiles with its pipeline states carried across them (one tile per CTA: a stride of
    // all tiles ends the walk after the first); `first` counts the KV steps of the tiles before (the S buffers, the
    // K/V ring and the S pipeline go by this CTA-wide step).
    int ctas = kPersistent ? int(gridDim.x) : params.schedule.tiles();
    int first = 0;
    if (warp == kLoadWarp) {
      if (leader) {
        auto q_write = cutlass::make_producer_start_state<PipelineQ>();
        auto kv_write = cutlass::make_producer_start_state<PipelineKV>();
        for (auto tile = params.schedule.of(blockIdx.x, ctas); tile.valid(); tile.advance()) {
          TileCoord at = params.schedule.coord(tile.tile);
          load(params, at, TileBox::make(params.tiles, at.q_linear), storage, pipe_q, q_write, pipe_kv, kv_write);
        }
      }
    } else if (warp == kMmaWarp) {
      // The whole warp: CUTLASS's tcgen05 MMAs and commits elect one thread themselves (elect.sync needs the warp).
      typename PipelineQ::PipelineState q_read;
      auto o_write = cutlass::make_producer_start_state<PipelineO>();
      for (auto tile = params.schedule.of(blockIdx.x, ctas); tile.valid(); tile.advance()) {
        int count = TileBox::make(params.tiles, params.schedule.coord(tile.tile).q_linear).count;
        mma(count, first, tmem_base, storage, pipe_q, q_read, pipe_kv, pipe_s, pipe_o, o_write);
        first += count;
      }
    } else {
      typename PipelineS::PipelineState s_read;
      typename PipelineO::PipelineState o_read;
      for (auto tile = params.schedule.of(blockIdx.x, ctas); tile.valid(); tile.advance()) {
        TileCoord at = params.schedule.coord(tile.tile);
        TileBox box = TileBox::make(params.tiles, at.q_linear);
        softmax(params, at, box, first, tmem_base, storage, pipe_s, s_read, pipe_o, o_read);
        first += box.count;
      }
    }
    __syncthreads();  // every TMEM read and write is done
    if (warp == kMmaWarp) tmem.free(tmem_base, kTmemColumns);
#endif
  }

  // The load thread, per tile: Q (once the MMA thread is done with the previous tile's), then K and V of every
  // visited KV tile in visiting order.
  CUTLASS_DEVICE static void load(Params const& params, TileCoord const& at, TileBox const& box,
                                  SharedStorage& storage, PipelineQ& pipe_q, typename PipelineQ::PipelineState& q_write,
                                  PipelineKV& pipe_kv, typename PipelineKV::PipelineState& kv_write) {
    int c[kMaxDims];
    params.q_view.origin(at.q_linear, box.q_tile, box.group, c);
    pipe_q.producer_acquire(q_write);
    load_tile<kHeadDim, kTileRows>(&params.q, pipe_q.producer_get_barrier(q_write), storage.q.data(), c, at.head,
                                   at.batch);
    ++q_write;
    TileCursor cursor = TileCursor::first(box);
    auto load_kv = [&](cute::TmaDescriptor const* desc, Element* base) {
      params.kv_view.origin(cursor.linear(params.tiles, box), cursor.kv, box.group, c);
      pipe_kv.producer_acquire(kv_write);
      load_tile<kHeadDim, kTileRows>(desc, pipe_kv.producer_get_barrier(kv_write),
                                     base + kv_write.index() * kTileElements, c, at.head, at.batch);
      ++kv_write;
    };
    CUTLASS_PRAGMA_NO_UNROLL
    for (int loop = 0; loop < box.count; ++loop) {
      if (loop > 0) cursor.advance(box, loop);
      load_kv(&params.k, storage.k.data());
      load_kv(&params.v, storage.v.data());
    }
  }

  // Position `pos` of the K/V ring (K of step i at 2i, V at 2i + 1, as the load thread fills it): the MMA thread
  // reads K(i+2) before V(i+1) is done with, so it addresses the ring by position.
  CUTLASS_DEVICE static typename PipelineKV::PipelineState kv_at(int pos) {
    return typename PipelineKV::PipelineState(pos % kKVStages, (pos / kKVStages) & 1, pos);
  }

  // The MMA thread's acquire of S stage `pos` % 2 at position `pos` (a producer state: its first round passes at
  // once) returns when the softmax has released step pos - 2: read S(pos - 2), written P(pos - 2), rescaled O.
  CUTLASS_DEVICE static typename PipelineS::PipelineState s_at(int pos) {
    return typename PipelineS::PipelineState(pos % 2, ((pos / 2) & 1) ^ 1, pos);
  }

  // The MMA warp (one elected thread issues), per tile of `count` KV steps from CTA-wide step `first`. Step i: S(i) =
  // Q K(i)^T into buffer i % 2 (issued two steps ahead), then, once the softmax has written P(i) over it and
  // rescaled O, O (+)= P(i) V(i). Products issued by one thread run in issue order, so S(i+2) overwrites the buffer
  // only after PV(i) has read P(i). The softmax's release of step i (acquired at position i + 2) both says P(i) is
  // written and frees the buffer for S(i+2). The first PV product of a tile overwrites O, so it waits (on the O
  // pipeline) until the softmax has read the previous tile's output.
  CUTLASS_DEVICE static void mma(int count, int first, uint32_t tmem_base, SharedStorage& storage, PipelineQ& pipe_q,
                                 typename PipelineQ::PipelineState& q_read, PipelineKV& pipe_kv, PipelineS& pipe_s,
                                 PipelineO& pipe_o, typename PipelineO::PipelineState& o_write) {
    TiledMmaQK mma_qk;
    TiledMmaPV mma_pv;
    auto thr_qk = mma_qk.get_slice(0);
    auto thr_pv = mma_pv.get_slice(0);
    Tensor tSrQ = thr_qk.make_fragment_A(make_tensor(make_smem_ptr(storage.q.data()), SmemLayoutQ{}));
    Tensor tSrK = thr_qk.make_fragment_B(make_tensor(make_smem_ptr(storage.k.data()), SmemLayoutK{}));
    Tensor tOrV = thr_pv.make_fragment_B(make_tensor(make_smem_ptr(storage.v.data()), SmemLayoutV{}));
    Tensor tStS = partition_fragment_C(mma_qk, select<0, 1>(TileShapeQK{}));
    Tensor tOtO = partition_fragment_C(mma_pv, select<0, 1>(TileShapePV{}));
    tOtO.data() = tmem_base + kTmemO;
    // P as the TMEM A operand of the PV product: 16-bit values laid out like a shared-memory A tile.
    Tensor tOrP = thr_pv.make_fragment_A(make_tensor(make_smem_ptr(static_cast<Element*>(nullptr)),
                                                     typename CollectiveMmaPV::SmemLayoutA{}))(_, _, _, _0{});

    pipe_q.consumer_wait(q_read);
    int last = first + count - 1;
    // S(step) into buffer step % 2; after the tile's last one, Q goes back to the load thread (the release fires when
    // the products issued so far are done reading it).
    auto issue_s = [&](int step) {
      pipe_s.producer_acquire(s_at(step));
      Tensor s = tStS;
      s.data() = tmem_base + tmem_s(step);
      auto k = kv_at(2 * step);
      pipe_kv.consumer_wait(k);
      cutlass::fmha::collective::gemm_zero_acc(mma_qk, tSrQ(_, _, _, _0{}), tSrK(_, _, _, k.index()), s);
      pipe_kv.consumer_release(k);  // the K stage returns once the product has read it
      pipe_s.producer_commit(s_at(step));
      if (step == last) {
        pipe_q.consumer_release(q_read);
        ++q_read;
      }
    };
    issue_s(first);
    if (count > 1) issue_s(first + 1);
    CUTLASS_PRAGMA_NO_UNROLL
    for (int step = first; step <= last; ++step) {
      pipe_s.producer_acquire(s_at(step + 2));  // P(step) is written and O rescaled
      pipe_o.producer_acquire(o_write);
      auto v = kv_at(2 * step + 1);
      pipe_kv.consumer_wait(v);
      Tensor p = tOrP;
      p.data() = tmem_base + tmem_s(step) + kTmemP;
      mma_pv.accumulate_ = step == first ? UMMA::ScaleOut::Zero : UMMA::ScaleOut::One;
      cutlass::fmha::collective::gemm_reset_zero_acc(mma_pv, p, tOrV(_, _, _, v.index()), tOtO);
      pipe_kv.consumer_release(v);
      pipe_o.producer_commit(o_write);
      ++o_write;
      if (step + 2 <= last) issue_s(step + 2);  // its acquire is the one above, already passed
    }
  }

  CUTLASS_DEVICE static float exp2_approx(float x) {
    float y;
    asm("ex2.approx.ftz.f32 %0, %1;" : "=f"(y) : "f"(x));
    return y;
  }

  // The softmax warpgroup, per tile (KV steps from CTA-wide step `first`): thread t owns query row t. Per step: scores
  // in from TMEM, mask on border tiles, running max and sum, P out to TMEM, O rescaled where the reference max moved
  // (gna_softmax_rule.hpp); then the output and the log-sum-exp.
  CUTLASS_DEVICE static void softmax(Params const& params, TileCoord const& at, TileBox const& box, int first,
                                     uint32_t tmem_base, SharedStorage& storage, PipelineS& pipe_s,
                                     typename PipelineS::PipelineState& s_read, PipelineO& pipe_o,
                                     typename PipelineO::PipelineState& o_read) {
    int thread = int(threadIdx.x) % kSoftmaxThreads;
    TiledMmaQK mma_qk;
    Tensor tStS = partition_fragment_C(mma_qk, select<0, 1>(TileShapeQK{}));
    Tensor tScS = mma_qk.get_slice(0).partition_C(make_identity_tensor(select<0, 1>(TileShapeQK{})));
    auto tiled_load_s = make_tmem_copy(SM100_TMEM_LOAD_32dp32b32x{}, tStS);
    auto load_s = tiled_load_s.get_slice(thread);
    Tensor tLcS = load_s.partition_D(tScS);
    // P: the same rows as 16-bit pairs in 64 columns.
    constexpr int kPColumns = kTileRows * sizeof(Element) / sizeof(float);
    Tensor tStP = tStS.compose(make_layout(make_shape(_128{}, Int<kPColumns>{})));
    Tensor tScP = tScS.compose(make_layout(make_shape(_128{}, Int<kPColumns>{})));
    auto tiled_store_p = make_tmem_copy(SM100_TMEM_STORE_32dp32b32x{}, tStP);
    auto store_p = tiled_store_p.get_slice(thread);
    Tensor tPcP = store_p.partition_S(tScP);
    // O in chunks of 32 columns (a whole row would take as many registers again as the scores).
    constexpr int kOChunk = 32;
    typename CollectiveMmaPV::TiledMma mma_pv;
    Tensor tOtO = partition_fragment_C(mma_pv, select<0, 1>(TileShapePV{}));
    Tensor tOcO = mma_pv.get_slice(0).partition_C(make_identity_tensor(select<0, 1>(TileShapePV{})));
    Tensor tOtO_c = tOtO.compose(make_layout(make_shape(_128{}, Int<kOChunk>{})));
    Tensor tOcO_c = tOcO.compose(make_layout(make_shape(_128{}, Int<kOChunk>{})));
    auto tiled_load_o = make_tmem_copy(SM100_TMEM_LOAD_32dp32b32x{}, tOtO_c);
    auto tiled_store_o = make_tmem_copy(SM100_TMEM_STORE_32dp32b32x{}, tOtO_c);
    auto load_o = tiled_load_o.get_slice(thread);
    auto store_o = tiled_store_o.get_slice(thread);
    Tensor tLcO = load_o.partition_D(tOcO_c);

    int row = get<0>(tLcS(0));
    RowWindow window = RowWindow::make(params.tiles, box, row);
    float scale = params.scale_softmax_log2;
    float row_max = -INFINITY, row_sum = 0.f;  // the reference max (gna_softmax_rule.hpp) and the sum against it
    TileCursor cursor = TileCursor::first(box);

    // O's chunk `chunk` of this thread's row, in or out of TMEM.
    auto o_chunk = [&](int chunk) {
      Tensor t = tOtO_c;
      t.data() = tmem_base + kTmemO + uint32_t(chunk * kOChunk);
      return t;
    };

    CUTLASS_PRAGMA_NO_UNROLL
    for (int i = 0; i < box.count; ++i) {
      if (i > 0) cursor.advance(box, i);
      Tensor s_tmem = tStS;
      s_tmem.data() = tmem_base + tmem_s(first + i);
      Tensor scores = make_tensor<float>(shape(tLcS));
      pipe_s.consumer_wait(s_read);
      copy(tiled_load_s, load_s.partition_S(s_tmem), scores);
      cutlass::arch::fence_view_async_tmem_load();
      if (i >= box.interior_count) {  // a border tile: keys outside the row's neighborhood get -inf
        uint32_t sets[8];
        row_keys(params.key_mask, params.tiles, box, cursor.kv, window, sets);
        CUTLASS_PRAGMA_UNROLL
        for (int j = 0; j < size(scores); ++j) {
          if (!sees_key(sets, get<1>(tLcS(j)))) scores(j) = -INFINITY;
        }
      }
      float running_max = row_max;
      CUTLASS_PRAGMA_UNROLL
      for (int j = 0; j < size(scores); ++j) running_max = fmaxf(running_max, scores(j));
      // The reference moves only past the threshold (gna_softmax_rule.hpp): most later steps keep it, and O in TMEM
      // then needs no rescale.
      bool move = reference_moves(row_max, running_max, scale);
      float correction = move ? exp2_approx((row_max - running_max) * scale) : 1.f;
      float new_max = move ? running_max : row_max;
      float offset = new_max == -INFINITY ? 0.f : new_max * scale;
      Tensor p = make_tensor<uint32_t>(shape(tPcP));
      auto p_pairs = recast<cutlass::Array<Element, 2>>(p);
      cutlass::NumericArrayConverter<Element, float, 2, cutlass::FloatRoundStyle::round_to_nearest> convert;
      float sum = 0.f;
      CUTLASS_PRAGMA_UNROLL
      for (int j = 0; j < size(scores); j += 2) {
        cutlass::Array<float, 2> pair;
        pair[0] = exp2_approx(fmaf(scores(j), scale, -offset));
        pair[1] = exp2_approx(fmaf(scores(j + 1), scale, -offset));
        sum += pair[0] + pair[1];
        p_pairs(j / 2) = convert(pair);
      }
      Tensor p_tmem = tStP;
      p_tmem.data() = tmem_base + tmem_s(first + i) + kTmemP;
      copy(tiled_store_p, p, store_p.partition_D(p_tmem));
      row_sum = i == 0 ? sum : row_sum * correction + sum;
      bool moved = i > 0 && move;
      row_max = new_max;
      if (i > 0) {  // O holds PV(0..i-1): rescale it before PV(i) adds on
        pipe_o.consumer_wait(o_read);
        if (__any_sync(0xffffffffu, moved)) {  // TMEM loads and stores are per warp
          CUTLASS_PRAGMA_UNROLL
          for (int chunk = 0; chunk < kHeadDim / kOChunk; ++chunk) {
            Tensor o = make_tensor<float>(shape(tLcO));
            copy(tiled_load_o, load_o.partition_S(o_chunk(chunk)), o);
            cutlass::arch::fence_view_async_tmem_load();
            CUTLASS_PRAGMA_UNROLL
            for (int j = 0; j < size(o); ++j) o(j) *= correction;
            copy(tiled_store_o, o, store_o.partition_D(o_chunk(chunk)));
          }
        }
        pipe_o.consumer_release(o_read);
        ++o_read;
      }
      cutlass::arch::fence_view_async_tmem_store();  // P and O written before the MMA thread reads them
      pipe_s.consumer_release(s_read);
      ++s_read;
    }

    // The last PV product is in. The staging buffer is free: thread 0 waited for the previous tile's store to read it
    // before it released any step of this tile, and the MMA thread waited for those releases before that product.
    pipe_o.consumer_wait(o_read);
    bool empty = row_sum == 0.f || row_sum != row_sum;
    float inv = empty ? 0.f : __frcp_rn(row_sum);
    // Shared memory as the TMA store reads it: head_dim / 64 chunks of 128 rows x 128 bytes, 128-byte swizzled (the
    // 16-byte group g of row r sits at g ^ (r % 8)).
    char* staging = reinterpret_cast<char*>(storage.o.data());
    CUTLASS_PRAGMA_UNROLL
    for (int chunk = 0; chunk < kHeadDim / kOChunk; ++chunk) {
      Tensor o = make_tensor<float>(shape(tLcO));
      copy(tiled_load_o, load_o.partition_S(o_chunk(chunk)), o);
      cutlass::arch::fence_view_async_tmem_load();
      cutlass::NumericArrayConverter<Element, float, 8, cutlass::FloatRoundStyle::round_to_nearest> convert8;
      CUTLASS_PRAGMA_UNROLL
      for (int g = 0; g < kOChunk / 8; ++g) {
        cutlass::Array<float, 8> in;
        CUTLASS_PRAGMA_UNROLL
        for (int e = 0; e < 8; ++e) in[e] = o(g * 8 + e) * inv;
        cutlass::Array<Element, 8> out = convert8(in);
        int col = chunk * kOChunk + get<1>(tLcO(g * 8));  // the first of 8 consecutive columns
        int group = (col % kChunk) / 8;
        int offset = (col / kChunk) * kTileRows * 128 + row * 128 + ((group ^ (row % 8)) * 16);
        *reinterpret_cast<uint4*>(staging + offset) = *reinterpret_cast<uint4 const*>(&out);
      }
    }
    pipe_o.consumer_release(o_read);  // O is read (each TMEM load waited on): the next tile's products may overwrite it
    ++o_read;
    cutlass::arch::fence_view_async_shared();  // the writes are visible to the TMA unit
    cutlass::arch::NamedBarrier::sync(kSoftmaxThreads, 1);
    if (thread == 0) {
      int c[kMaxDims];
      params.q_view.origin(at.q_linear, box.q_tile, box.group, c);
      store_tile<kHeadDim, kTileRows>(&params.o, storage.o.data(), c, at.head, at.batch);
      cute::tma_store_arrive();
    }
    int token = params.q_view.token(at.q_linear, box.q_tile, box.group, row >> 6, row & 63);
    if (token >= 0) {
      float lse = empty ? -INFINITY : (row_max * scale + __log2f(row_sum)) * 0.6931471805599453f;
      params.lse[(int64_t(at.batch) * params.schedule.heads + at.head) * params.q_view.tokens + token] = lse;
    }
    if (thread == 0) cute::tma_store_wait<0>();  // the staging is read (and the CTA's shared memory stays till then)
  }
};

}  // namespace gna
