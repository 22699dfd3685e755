// Hopper (sm90a) GNA mainloop: TMA loads of Q and of the K/V tiles in each Q tile's box, then of the extra (text)
// K/V tiles every query sees, WGMMA for QK^T and PV, online softmax, the token-level neighborhood mask only on
// partially covered KV tiles and a key-count cut on a partial last extra tile.
//
// The kernel (gna_kernel_sm90.hpp) runs `load` on its producer thread and `compute` on each of its two consumer
// warpgroups (64 query rows each). The WGMMA shared-memory layouts and the accumulator helpers come from CUTLASS
// (its collective builder and the 88_hopper_fmha example's collective/fmha_common.hpp); the TMA boxes
// (gna_tma_sm90.hpp), the box of KV tiles (gna_tile_box.hpp), the mask, the software pipeline and the softmax are
// ours.
#pragma once

#include "cutlass/cutlass.h"
#include "cutlass/gemm/collective/collective_builder.hpp"
#include "cutlass/numeric_conversion.h"

#include "collective/fmha_common.hpp"

#include <type_traits>

#include "gna_softmax_rule.hpp"
#include "gna_tile_box.hpp"
#include "gna_tma_sm90.hpp"

namespace gna {

using namespace cute;

// Strides of a [batch, tokens, heads, head_dim] tensor seen as (token, head_dim, (batch, head)); only picks the
// operand majorness for the collective builder.
using TokenMajorStride = cute::tuple<int, _1, cute::tuple<int, int>>;

// kQTilesInFlight: work tiles whose Q halves the producer may hold at once (2 for a persistent kernel, which loads
// the next tile's Q while the current one computes; 1 otherwise).
template <class Element_, class TileShape_, int kQTilesInFlight>
struct MainloopSm90 {
  using Element = Element_;
  using ElementAccumulatorQK = float;
  using ElementAccumulatorPV = float;
  using TileShape = TileShape_;  // (query rows per CTA, keys per KV tile, head_dim)
  static constexpr int kHeadDim = get<2>(TileShape{});

  static constexpr int NumMmaWarpGroups = 2;
  static constexpr int StageCountQ = kQTilesInFlight * NumMmaWarpGroups;
  static constexpr int StageCount = 5;  // K and V tiles take turns in one ring

  // Named barriers (CUTLASS user ids; add the warpgroup): the epilogue's staging and the ping-pong turns.
  static constexpr uint32_t kEpilogueBarrier = 0;
  static constexpr uint32_t kTurnBarrier = NumMmaWarpGroups;

  using StagesQ = cutlass::gemm::collective::StageCount<StageCountQ>;
  using Stages = cutlass::gemm::collective::StageCount<StageCount>;
  using ClusterShape = Shape<_1, _1, _1>;
  static constexpr int Alignment = 16 / sizeof(Element);

  // Each consumer warpgroup owns half of the CTA's query rows.
  using TileShapeQK = Shape<decltype(tuple_element_t<0, TileShape>{} / Int<NumMmaWarpGroups>{}),
                            tuple_element_t<1, TileShape>, tuple_element_t<2, TileShape>>;
  using TileShapePV = decltype(select<0, 2, 1>(TileShapeQK{}));
  static constexpr int kHalfRows = get<0>(TileShapeQK{});
  static constexpr int kTileRows = get<1>(TileShape{});

  using CollectiveMmaQK = typename cutlass::gemm::collective::CollectiveBuilder<
      cutlass::arch::Sm90, cutlass::arch::OpClassTensorOp, Element, TokenMajorStride, Alignment, Element,
      TokenMajorStride, Alignment, ElementAccumulatorQK, TileShapeQK, ClusterShape, Stages,
      cutlass::gemm::KernelTmaWarpSpecialized>::CollectiveOp;
  // P is the register operand of the PV product; only V's shared-memory layout comes from this builder.
  using CollectiveMmaPV = typename cutlass::gemm::collective::CollectiveBuilder<
      cutlass::arch::Sm90, cutlass::arch::OpClassTensorOp, Element, TokenMajorStride, Alignment, Element,
      decltype(select<1, 0, 2>(TokenMajorStride{})), Alignment, ElementAccumulatorPV, TileShapePV, ClusterShape,
      Stages, cutlass::gemm::KernelTmaWarpSpecialized>::CollectiveOp;

  using TiledMmaQK = typename CollectiveMmaQK::TiledMma;
  using TiledMmaPV = decltype(cutlass::fmha::collective::convert_to_gmma_rs(typename CollectiveMmaPV::TiledMma{}));

  using SmemLayoutQ = decltype(cutlass::fmha::collective::unstageSmemLayout(typename CollectiveMmaQK::SmemLayoutA{},
                                                                            Int<StagesQ::value>{}));
  using SmemLayoutK = typename CollectiveMmaQK::SmemLayoutB;
  using SmemLayoutV = typename CollectiveMmaPV::SmemLayoutB;
  // One stage of each holds head_dim / 64 chunks of (rows x 64) elements: what one TMA box per chunk writes.
  static constexpr int kQStage = kHalfRows * kHeadDim;
  static constexpr int kKVStage = kTileRows * kHeadDim;
  static_assert(cosize_v<SmemLayoutQ> == StageCountQ * kQStage && cosize_v<SmemLayoutK> == StageCount * kKVStage &&
                cosize_v<SmemLayoutV> == StageCount * kKVStage, "unexpected shared-memory tile layouts");

  using MainloopPipeline = cutlass::PipelineTmaAsync<Stages::value>;
  using MainloopPipelineQ = cutlass::PipelineTmaAsync<StagesQ::value>;
  using PipelineState = typename cutlass::PipelineState<MainloopPipeline::Stages>;
  using PipelineStateQ = typename cutlass::PipelineState<MainloopPipelineQ::Stages>;

  // What a thread keeps per query row over a work tile to build a border tile's key sets. The one-tile-per-CTA
  // schedule, which runs every problem with border tiles (backends/cutlass.py schedule_for), holds RowEdges: a few
  // compares and selects per straddled dimension and row. The persistent schedule runs problems without border tiles
  // unless forced to, and holds only the window (window_keys per tile): RowEdges' six more registers per row make
  // its build spill (ptxas 13.x: 40 bytes of stack).
  using RowKeys = std::conditional_t<kQTilesInFlight == 1, RowEdges, RowWindow>;

  static constexpr int kKVLoadBytes = kKVStage * sizeof(Element);
  static constexpr int kQLoadBytes = kQStage * sizeof(Element);

  struct SharedStorage {
    cute::array_aligned<Element, cute::cosize_v<SmemLayoutQ>, 1024> smem_q;
    union {  // K and V tiles take turns in the same stages
      cute::array_aligned<Element, cute::cosize_v<SmemLayoutK>, 1024> smem_k;
      cute::array_aligned<Element, cute::cosize_v<SmemLayoutV>, 1024> smem_v;
    };
  };

  struct Params {
    cute::TmaDescriptor q, k, v;  // half-tile box for Q, whole-tile box for K and V (make_descriptor)
    TokenView q_view, kv_view;  // Q tiles (split between the warpgroups) and K/V tiles
    float scale_softmax_log2;  // softmax scale applied to q.k, times log2(e)
    TileParams tiles;
    KeyMask key_mask;  // KeyMask::make(tiles)
    // Extra (text) tokens every query sees, [batch, extra tokens, heads, head_dim] with each batch entry's valid
    // tokens first: whole-tile boxes over extra_view (TokenView::sequence), and per batch entry the number of valid
    // ones. extra_counts is nullptr without extra tokens (the descriptors are then never used).
    cute::TmaDescriptor extra_k, extra_v;
    TokenView extra_view;
    int const* extra_counts;
  };

  CUTLASS_DEVICE static void prefetch_tma_descriptors(Params const& params) {
    cute::prefetch_tma_descriptor(&params.q);
    cute::prefetch_tma_descriptor(&params.k);
    cute::prefetch_tma_descriptor(&params.v);
    if (params.extra_counts != nullptr) {
      cute::prefetch_tma_descriptor(&params.extra_k);
      cute::prefetch_tma_descriptor(&params.extra_v);
    }
  }

  // Valid extra tokens of batch entry `batch` (0 without extra tokens), clipped to the extra tensors' length.
  CUTLASS_DEVICE static int extra_keys(Params const& params, int batch) {
    if (params.extra_counts == nullptr) return 0;
    return imin(imax(params.extra_counts[batch], 0), params.extra_view.tokens);
  }

  // KV steps of a work tile: its box's tiles, then ceil(extra_keys / 128) extra tiles.
  CUTLASS_HOST_DEVICE static int extra_tiles(int extra_keys) { return (extra_keys + kTileRows - 1) / kTileRows; }

  // Producer (the kernel's one load thread): both warpgroups' Q halves, then K and V of every tile in the
  // box (TileBox::make of the Q tile) in loop order, with Q's second half after the first K so the first product
  // can start early, then K and V of the batch entry's extra tiles (`extra_keys` valid extra tokens).
  CUTLASS_DEVICE void load(TileCoord const& at, TileBox const& box, int extra_keys, Params const& params,
                           MainloopPipeline& pipeline, PipelineState& smem_pipe_write, MainloopPipelineQ& pipeline_q,
                           PipelineStateQ& smem_pipe_write_q, SharedStorage& storage) {
    int q_linear = at.q_linear, batch = at.batch, head = at.head;

    auto load_q = [&](int wg) {
      pipeline_q.producer_acquire(smem_pipe_write_q);
      int c[kMaxDims];
      params.q_view.half_origin(q_linear, box.q_tile, box.group, wg, c);
      load_tile<kHeadDim, kHalfRows>(&params.q, pipeline_q.producer_get_barrier(smem_pipe_write_q),
                                     storage.smem_q.data() + smem_pipe_write_q.index() * kQStage, c, head, batch);
      ++smem_pipe_write_q;
    };
    TileCursor cursor = TileCursor::first(box);
    // K or V of tile `linear` of `view` (the grid's K/V tiles, or the extra tokens').
    auto load_kv = [&](cute::TmaDescriptor const* desc, Element* base, TokenView const& view, int linear) {
      int c[kMaxDims];
      view.origin(linear, cursor.kv, box.group, c);
      pipeline.producer_acquire(smem_pipe_write);
      load_tile<kHeadDim, kTileRows>(desc, pipeline.producer_get_barrier(smem_pipe_write),
                                     base + smem_pipe_write.index() * kKVStage, c, head, batch);
      ++smem_pipe_write;
    };
    auto load_grid_kv = [&](cute::TmaDescriptor const* desc, Element* base) {
      load_kv(desc, base, params.kv_view, cursor.linear(params.tiles, box));
    };

    load_q(0);
    load_grid_kv(&params.k, storage.smem_k.data());
    load_q(1);
    load_grid_kv(&params.v, storage.smem_v.data());
    CUTLASS_PRAGMA_NO_UNROLL
    for (int loop = 1; loop < box.count; ++loop) {
      cursor.advance(box, loop);
      load_grid_kv(&params.k, storage.smem_k.data());
      load_grid_kv(&params.v, storage.smem_v.data());
    }
    CUTLASS_PRAGMA_NO_UNROLL
    for (int tile = 0; tile < extra_tiles(extra_keys); ++tile) {
      load_kv(&params.extra_k, storage.smem_k.data(), params.extra_view, tile);
      load_kv(&params.extra_v, storage.smem_v.data(), params.extra_view, tile);
    }
  }

  // Sets the scores of keys outside each query's neighborhood to -inf: one bit test per score. `keys` holds this
  // thread's key sets of the KV tile, one word per row (KeyMask::tile_keys, made before the scores arrive; bit
  // 16e + k for key base + 8k + e), `cS_mn` the (row, key) coordinates of its accumulator elements.
  template <class AccQK, class CoordMN, int kRows>
  CUTLASS_DEVICE static void apply_mask(AccQK& acc_qk, CoordMN const& cS_mn, uint32_t const (&keys)[kRows]) {
    Tensor acc_mn = make_tensor(acc_qk.data(), cutlass::fmha::collective::layout_acc_mn(TiledMmaQK{}, acc_qk.layout()));
    // In the WGMMA accumulator layout this thread's columns are base + 8k + e for every k and e = 0, 1 (base even):
    // the offsets from base fold to constants, so k and e are known at compile time. The tests go one set at a time,
    // in bit order, which lets ptxas move seven bits at once into predicates (R2P) instead of testing each bit on its
    // own.
    int base = get<1>(cS_mn(0, 0));
    CUTLASS_PRAGMA_UNROLL
    for (int i = 0; i < kRows; i++) {
      CUTLASS_PRAGMA_UNROLL
      for (int e = 0; e < 2; e++) {
        CUTLASS_PRAGMA_UNROLL
        for (int j = 0; j < size<1>(acc_mn); j++) {
          int offset = get<1>(cS_mn(i, j)) - base;
          if ((offset & 1) == e && !((keys[i] >> (16 * e + (offset >> 3))) & 1u)) acc_mn(i, j) = -INFINITY;
        }
      }
    }
  }

  // Online softmax over this thread's rows of the accumulator. Scores arrive unscaled; everything is kept in the
  // log2 domain (one FFMA and one MUFU.EX2 per score). Row sums stay per thread until the tail.
  //
  // Each row's max and sum run as kChains independent chains over the thread's columns. In the one-tile build four
  // chains take about 1% off the border cases (the path from the scores to the next products is shorter); in the
  // persistent build they cost the recipes about 1.5%, so it keeps one chain
  // (bench/results/kernel_variants_softmax_chains_h200_2026-12-02.json).
  static constexpr int kSoftmaxChains = kQTilesInFlight == 1 ? 4 : 1;

  template <int kRows, int kChains = kSoftmaxChains>
  struct OnlineSoftmax {
    float row_max[kRows];  // reference max of the raw scores (gna_softmax_rule.hpp; -inf while a row has seen no key)
    float row_sum[kRows];  // this thread's share of the running sum of exp
    float scale_log2;

    CUTLASS_DEVICE static float exp2_approx(float x) {
      float y;
      asm("ex2.approx.ftz.f32 %0, %1;" : "=f"(y) : "f"(x));
      return y;
    }

    // Max over the quad of threads that share a row of the WGMMA accumulator.
    CUTLASS_DEVICE static float quad_max(float x) {
      x = fmaxf(x, __shfl_xor_sync(0xffffffffu, x, 1));
      return fmaxf(x, __shfl_xor_sync(0xffffffffu, x, 2));
    }

    CUTLASS_DEVICE static float quad_sum(float x) {
      x += __shfl_xor_sync(0xffffffffu, x, 1);
      return x + __shfl_xor_sync(0xffffffffu, x, 2);
    }

    // Combines the chains pairwise into the first.
    template <class Op>
    CUTLASS_DEVICE static float combine(float (&chain)[kChains], Op op) {
      static_assert((kChains & (kChains - 1)) == 0, "a power of two of chains");
      CUTLASS_PRAGMA_UNROLL
      for (int width = 1; width < kChains; width *= 2) {
        CUTLASS_PRAGMA_UNROLL
        for (int c = 0; c < kChains; c += 2 * width) chain[c] = op(chain[c], chain[c + width]);
      }
      return chain[0];
    }

    // Max of row i of `s` (this thread's columns), and of `init` where kWithInit.
    template <bool kWithInit, class AccMN>
    CUTLASS_DEVICE static float row_max_of(AccMN const& s, int i, float init = 0.f) {
      constexpr int kCols = decltype(size<1>(s))::value;
      static_assert(kCols % kChains == 0, "the chains split the row evenly");
      float m[kChains];
      CUTLASS_PRAGMA_UNROLL
      for (int c = 0; c < kChains; c++) m[c] = s(i, c);
      if constexpr (kWithInit) m[0] = fmaxf(init, m[0]);
      CUTLASS_PRAGMA_UNROLL
      for (int j = kChains; j < kCols; j++) m[j % kChains] = fmaxf(m[j % kChains], s(i, j));
      return combine(m, [](float a, float b) { return fmaxf(a, b); });
    }

    // Probabilities of row i of `s` against `offset` (the scaled log2 reference), written in place; returns their sum.
    template <class AccMN>
    CUTLASS_DEVICE float exponentiate_row(AccMN& s, int i, float offset) const {
      constexpr int kCols = decltype(size<1>(s))::value;
      float sum[kChains];
      CUTLASS_PRAGMA_UNROLL
      for (int c = 0; c < kChains; c++) sum[c] = 0.f;
      CUTLASS_PRAGMA_UNROLL
      for (int j = 0; j < kCols; j++) {
        s(i, j) = exp2_approx(fmaf(s(i, j), scale_log2, -offset));
        sum[j % kChains] += s(i, j);
      }
      return combine(sum, [](float a, float b) { return a + b; });
    }

    // Scores -> probabilities for the first KV tile.
    template <class AccMN>
    CUTLASS_DEVICE void first(AccMN& s) {
      CUTLASS_PRAGMA_UNROLL
      for (int i = 0; i < kRows; i++) {
        row_max[i] = quad_max(row_max_of<false>(s, i));
        row_sum[i] = exponentiate_row(s, i, row_max[i] == -INFINITY ? 0.f : row_max[i] * scale_log2);
      }
    }

    // Scores -> probabilities for a later KV tile. A row whose max rose past the threshold moves its reference to the
    // new max (reference_moves, gna_softmax_rule.hpp); `correction` is the factor by which its output accumulated so
    // far must shrink (1 for rows that kept theirs). Returns whether any row of the warp moved (a warp-uniform answer:
    // the rescale is then due).
    template <class AccMN>
    CUTLASS_DEVICE bool next(AccMN& s, float (&correction)[kRows]) {
      bool moved = false;
      CUTLASS_PRAGMA_UNROLL
      for (int i = 0; i < kRows; i++) {
        float m = quad_max(row_max_of<true>(s, i, row_max[i]));
        bool move = reference_moves(row_max[i], m, scale_log2);
        correction[i] = move ? exp2_approx((row_max[i] - m) * scale_log2) : 1.f;
        row_max[i] = move ? m : row_max[i];
        moved |= move;
        float sum = exponentiate_row(s, i, row_max[i] == -INFINITY ? 0.f : row_max[i] * scale_log2);
        row_sum[i] = row_sum[i] * correction[i] + sum;
      }
      return __any_sync(0xffffffffu, moved);
    }

    // Normalizes the output; returns the log-sum-exp (natural log, scaled scores) per row, -inf for a row with no key.
    template <class AccMN>
    CUTLASS_DEVICE void finish(AccMN& o, float (&lse)[kRows]) {
      CUTLASS_PRAGMA_UNROLL
      for (int i = 0; i < kRows; i++) {
        float sum = quad_sum(row_sum[i]);
        bool empty = sum == 0.f || sum != sum;
        float inv = empty ? 0.f : __frcp_rn(sum);
        lse[i] = empty ? -INFINITY : (row_max[i] * scale_log2 + __log2f(sum)) * 0.6931471805599453f;
        CUTLASS_PRAGMA_UNROLL
        for (int j = 0; j < size<1>(o); j++) o(i, j) *= inv;
      }
    }
  };

  // Ping-pong (as in FlashAttention-3): the two consumer warpgroups take turns issuing their products, so that
  // one's softmax and mask run while the other's products keep the tensor cores busy. Warpgroup `wg` waits for its
  // turn before issuing and passes it on after.
  CUTLASS_DEVICE static void wait_turn(int wg) {
    cutlass::arch::NamedBarrier::sync(2 * cutlass::NumThreadsPerWarpGroup, kTurnBarrier + wg);
  }
  CUTLASS_DEVICE static void pass_turn(int wg) {
    cutlass::arch::NamedBarrier::arrive(2 * cutlass::NumThreadsPerWarpGroup, kTurnBarrier + (1 - wg));
  }

  template <class AccMN, int kRows>
  CUTLASS_DEVICE static void rescale(AccMN& o, float const (&factor)[kRows]) {
    CUTLASS_PRAGMA_UNROLL
    for (int i = 0; i < kRows; i++) {
      CUTLASS_PRAGMA_UNROLL
      for (int j = 0; j < size<1>(o); j++) o(i, j) *= factor[i];
    }
  }

  // The probabilities as the register operand of the PV product, converted two at a time. For 16-bit elements the
  // operand holds the accumulator's values in the same register order (only the layout over them differs).
  template <class AccQK>
  CUTLASS_DEVICE static auto probabilities_operand(AccQK const& acc) {
    static_assert(sizeof(Element) == 2, "an 8-bit operand also permutes its values");
    Tensor op = make_fragment_like<Element>(cutlass::fmha::collective::convert_c_layout_to_a_layout(
        acc.layout(), shape<1>(typename TiledMmaPV::LayoutA_TV{})));
    auto from = recast<cutlass::Array<float, 2>>(make_tensor(acc.data(), make_layout(size(acc))));
    auto to = recast<cutlass::Array<Element, 2>>(make_tensor(op.data(), make_layout(size(op))));
    cutlass::NumericArrayConverter<Element, float, 2, cutlass::FloatRoundStyle::round_to_nearest> convert;
    CUTLASS_PRAGMA_UNROLL
    for (int i = 0; i < size(from); ++i) to(i) = convert(from(i));
    return op;
  }

  // One consumer warpgroup's pass over its work tiles (`tiles.count` of them, each a Q tile's box of KV tiles and its
  // batch entry's extra tiles, taken with `tiles.next(at, extra_keys)`, which returns the box), as one stream of KV
  // steps. The products are software-pipelined as in FlashAttention-3: QK^T of step i and PV of step i-1 are in flight
  // together, and the softmax of step i runs while PV(i-1) still computes. The stream does not stop between work tiles:
  // the next tile's first QK^T and softmax overlap the last PV of the one before, and that tile's epilogue
  // (`store_tile(at, output, lse, staging smem)`, which issues the store) runs while the next QK^T computes. The
  // staging buffer is the finished tile's Q stage; it goes back to the producer once `wait_staging_read()` returns,
  // which the warpgroup asks only after its next products are in, so the TMA unit's read of the buffer never holds up
  // an issue.
  template <class WorkTiles, class StoreTile, class WaitStagingRead>
  CUTLASS_DEVICE void compute(WorkTiles& tiles, int wg, Params const& params, MainloopPipeline& pipeline,
                              PipelineState& smem_pipe_read, MainloopPipelineQ& pipeline_q,
                              PipelineStateQ& smem_pipe_read_q, SharedStorage& storage, StoreTile&& store_tile,
                              WaitStagingRead&& wait_staging_read) {
    using namespace cutlass::fmha::collective;
    int thread_idx = int(threadIdx.x) % cutlass::NumThreadsPerWarpGroup;  // the products are per warpgroup

    TiledMmaQK tiled_mma_qk;
    auto thr_mma_qk = tiled_mma_qk.get_thread_slice(thread_idx);
    Tensor sQ = make_tensor(make_smem_ptr(storage.smem_q.data()), SmemLayoutQ{});
    Tensor sK = make_tensor(make_smem_ptr(storage.smem_k.data()), SmemLayoutK{});
    Tensor tSrQ = thr_mma_qk.make_fragment_A(thr_mma_qk.partition_A(sQ));
    Tensor tSrK = thr_mma_qk.make_fragment_B(thr_mma_qk.partition_B(sK));

    TiledMmaPV tiled_mma_pv;
    auto thr_mma_pv = tiled_mma_pv.get_thread_slice(thread_idx);
    Tensor sV = make_tensor(make_smem_ptr(storage.smem_v.data()), SmemLayoutV{});
    Tensor tOrV = thr_mma_pv.make_fragment_B(thr_mma_pv.partition_B(sV));

    Tensor cS = make_identity_tensor(take<0, 2>(TileShapeQK{}));
    Tensor tScS = thr_mma_qk.partition_C(cS);
    Tensor tScS_mn = make_tensor(tScS.data(), layout_acc_mn(tiled_mma_qk, tScS.layout()));
    constexpr int kRows = decltype(size<0>(tScS_mn))::value;
    int row_base = wg * get<0>(TileShapeQK{});

    // The current work tile: its box, which keys each of this thread's query rows sees (RowKeys, for its two key
    // columns per 8), and (while the box's border is visited) the coordinates of the next border tile to mask. KV tiles
    // come interior first (no mask), then border (gna_tile_box.hpp), then the extra tiles: whole ones unmasked, a
    // partial last one cut to its keys.
    int tile = 0;
    TileCoord at;
    TileBox box;  // a copy in registers: the border cursor reads it every border step
    int extra_keys;                 // valid extra tokens of the tile's batch entry
    int whole_end, steps;           // steps [box.count, whole_end) are whole extra tiles; a partial one ends `steps`
    RowKeys rows[kRows];
    int key_base = get<1>(tScS_mn(0, 0));  // this thread's first key column (the other is key_base + 1)
    TileCursor border;
    auto begin_tile = [&]() {
      box = tiles.next(at, extra_keys);
      whole_end = box.count + extra_keys / kTileRows;
      steps = box.count + extra_tiles(extra_keys);
      CUTLASS_PRAGMA_UNROLL
      for (int i = 0; i < kRows; i++) {
        RowWindow window = RowWindow::make(params.tiles, box, row_base + get<0>(tScS_mn(i, 0)));
        if constexpr (std::is_same_v<RowKeys, RowEdges>) {
          rows[i] = RowEdges::make(params.key_mask, params.tiles, window, key_base);
        } else {
          rows[i] = window;
        }
      }
      if (box.interior_count == 0) border = TileCursor::first(box);
      pipeline_q.consumer_wait(smem_pipe_read_q);
    };

    Tensor acc_pv = partition_fragment_C(tiled_mma_pv, take<0, 2>(TileShapePV{}));
    Tensor acc_pv_mn = make_tensor(acc_pv.data(), layout_acc_mn(tiled_mma_pv, acc_pv.layout()));
    static_assert(decltype(size<0>(acc_pv_mn))::value == kRows, "QK and PV accumulators must share rows");
    OnlineSoftmax<kRows> softmax{{}, {}, params.scale_softmax_log2};

    // The finished tile whose last PV is in flight or whose output is still to be stored.
    TileCoord done_at;
    PipelineStateQ done_q;
    OnlineSoftmax<kRows> done_softmax;
    PipelineStateQ staging_q;  // the Q stage of the last store: the producer gets it back after the TMA unit's read
    auto store = [&]() {
      float lse_rows[kRows];
      done_softmax.finish(acc_pv_mn, lse_rows);
      Tensor lse = make_tensor<float>(Int<kRows>{});
      CUTLASS_PRAGMA_UNROLL
      for (int i = 0; i < kRows; i++) lse(i) = lse_rows[i];
      store_tile(done_at, acc_pv, lse, storage.smem_q.data() + done_q.index() * kQStage);
      staging_q = done_q;
    };
    auto release_staging = [&]() {
      wait_staging_read();
      pipeline_q.consumer_release(staging_q);
    };
    // Step `loop`'s mask (a border step's or a partial extra tile's) and the cursor moved on to the next step's
    // tile, done while the step's products compute, so that only the bit tests wait for the scores.
    uint32_t mask[kRows];
    auto is_masked = [&](int loop) { return (loop >= box.interior_count && loop < box.count) || loop >= whole_end; };
    auto prepare_mask = [&](int loop, bool masked) {
      if (masked) {
        if (loop < box.count) {
          KeyMask::tile_keys(box, border.kv, [&](int i, int d, int t) {
            if constexpr (std::is_same_v<RowKeys, RowEdges>) {
              return rows[i].keys(d, t);
            } else {
              return params.key_mask.window_keys(params.tiles, rows[i], d, t, key_base);
            }
          }, mask);
        } else {
          KeyMask::first_keys(extra_keys % kTileRows, key_base, mask);
        }
      }
      if (loop + 1 < box.count && loop + 1 >= box.interior_count) border.advance(box, loop + 1);
    };

    // Step 0 of the first tile: scores and probabilities; its PV product is issued with the next step's scores.
    begin_tile();
    Tensor acc_qk = partition_fragment_C(tiled_mma_qk, take<0, 2>(TileShapeQK{}));
    Tensor acc_qk_mn = make_tensor(acc_qk.data(), layout_acc_mn(tiled_mma_qk, acc_qk.layout()));
    PipelineState k_read = smem_pipe_read;
    pipeline.consumer_wait(k_read);
    static_assert(NumMmaWarpGroups == 2, "ping-pong takes two consumer warpgroups");
    if (wg == 1) pass_turn(1);  // warpgroup 0 goes first
    wait_turn(wg);
    warpgroup_fence_operand(acc_qk);
    warpgroup_arrive();
    gemm_zero_acc(tiled_mma_qk, tSrQ(_, _, _, smem_pipe_read_q.index()), tSrK(_, _, _, k_read.index()), acc_qk);
    warpgroup_commit_batch();
    pass_turn(wg);
    prepare_mask(0, box.interior_count == 0);
    warpgroup_wait<0>();
    warpgroup_fence_operand(acc_qk);
    pipeline.consumer_release(k_read);
    PipelineState v_read = k_read;
    ++v_read;  // V of step 0
    if (box.interior_count == 0) apply_mask(acc_qk, tScS_mn, mask);
    softmax.first(acc_qk_mn);
    Tensor p_op = probabilities_operand(acc_qk);

    float correction[kRows];  // the output's rescale for the reference max of the step whose PV is pending
    bool rescale_due = false; // some row of this warp moved its reference at that step
    bool pv_first = true;     // the pending PV is its tile's first: it overwrites the accumulator
    bool store_due = false;   // done_* holds a tile whose output is complete in acc_pv
    // Issues the pending PV (its V is in, the turn is held). Overwrite or accumulate is the WGMMA's runtime scale-d
    // operand, not a branch: a branch around WGMMAs makes ptxas serialize them (warning C7519).
    auto issue_pv = [&]() {
      warpgroup_fence_operand(acc_pv);
      warpgroup_fence_operand(p_op);
      warpgroup_arrive();
      tiled_mma_pv.accumulate_ = pv_first ? GMMA::ScaleOut::Zero : GMMA::ScaleOut::One;
      gemm_reset_zero_acc(tiled_mma_pv, p_op, tOrV(_, _, _, v_read.index()), acc_pv);
      warpgroup_commit_batch();
    };

    int loop = 1;  // KV step inside the current tile
    CUTLASS_PRAGMA_NO_UNROLL
    while (true) {
      if (loop == steps) {  // the next step is the next work tile's first
        if (tile + 1 == tiles.count) break;
        done_at = at;
        done_q = smem_pipe_read_q;
        ++tile;
        smem_pipe_read_q.advance(NumMmaWarpGroups);  // this warpgroup's next Q stage
        begin_tile();
        loop = 0;
      }
      bool masked = is_masked(loop);

      k_read = v_read;
      ++k_read;  // K of this step
      pipeline.consumer_wait(k_read);
      wait_turn(wg);
      warpgroup_fence_operand(acc_qk);
      warpgroup_arrive();
      gemm_zero_acc(tiled_mma_qk, tSrQ(_, _, _, smem_pipe_read_q.index()), tSrK(_, _, _, k_read.index()), acc_qk);
      warpgroup_commit_batch();
      bool stored = store_due;
      if (store_due) store();  // while QK^T computes; the pending PV (a new tile's first) overwrites acc_pv
      store_due = false;
      if (!pv_first && rescale_due) rescale(acc_pv_mn, correction);
      pipeline.consumer_wait(v_read);
      issue_pv();
      pass_turn(wg);
      prepare_mask(loop, masked);

      warpgroup_wait<1>();  // scores of this step are in
      warpgroup_fence_operand(acc_qk);
      pipeline.consumer_release(k_read);
      if (masked) apply_mask(acc_qk, tScS_mn, mask);
      if (loop == 0) {
        done_softmax = softmax;
        softmax.first(acc_qk_mn);
      } else {
        rescale_due = softmax.next(acc_qk_mn, correction);
      }

      warpgroup_wait<0>();  // the pending PV is in: for a new tile, the finished one's output is complete
      warpgroup_fence_operand(acc_pv);
      pipeline.consumer_release(v_read);
      if (stored) release_staging();  // read by now: the products took longer than the TMA unit's read
      v_read = k_read;
      ++v_read;
      p_op = probabilities_operand(acc_qk);
      pv_first = loop == 0;
      store_due = loop == 0;
      // A one-step tile: the next step already needs the Q stage this store frees (two per warpgroup).
      if (store_due && steps == 1) {
        store();
        release_staging();
        store_due = false;
      }
      ++loop;
    }

    // PV of the last step, then the last output. No earlier store is due here: the loop leaves only at a tile's end,
    // and every tile before has been stored by its successor's second step (or at once after a one-step tile).
    if (!pv_first && rescale_due) rescale(acc_pv_mn, correction);
    pipeline.consumer_wait(v_read);
    wait_turn(wg);
    issue_pv();
    pass_turn(wg);
    warpgroup_wait<0>();
    warpgroup_fence_operand(acc_pv);
    pipeline.consumer_release(v_read);
    smem_pipe_read = v_read;
    ++smem_pipe_read;
    done_at = at;
    done_q = smem_pipe_read_q;
    done_softmax = softmax;
    store();
    release_staging();  // also keeps the CTA alive until its shared memory has been read
    smem_pipe_read_q.advance(NumMmaWarpGroups);
  }
};

}  // namespace gna
