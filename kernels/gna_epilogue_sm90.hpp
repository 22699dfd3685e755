// Hopper GNA epilogue: each consumer warpgroup writes its 64 normalized output rows through shared memory (its own,
// now idle, Q buffer) with one TMA store box per 64-element head_dim chunk, in the same token order the inputs came
// in (gna_tma_sm90.hpp): rows past the grid's end are clipped by the TMA unit, so they are never written. The
// log-sum-exp goes straight from registers to [batch, heads, tokens].
#pragma once

#include "cutlass/arch/barrier.h"
#include "cutlass/pipeline/pipeline.hpp"

#include "collective/fmha_common.hpp"

#include "gna_tile_box.hpp"
#include "gna_tma_sm90.hpp"

namespace gna {

using namespace cute;

template <class Element, class Mainloop>
struct EpilogueSm90 {
  // The kernel builds an epilogue load pipeline and per-warpgroup storage; this epilogue needs neither.
  using LoadPipeline = cutlass::PipelineTransactionAsync<1>;
  using PipelineStorage = typename LoadPipeline::SharedStorage;
  struct TensorStorage {};
  static constexpr int TmaTransactionBytes = 0;

  struct Arguments {
    cute::TmaDescriptor o;  // half-tile box, like Q
    float* lse;             // [batch, heads, view.tokens]
    TokenView view;
    TileParams tiles;
  };
  using Params = Arguments;

  template <class ProblemShape>
  static Params to_underlying_arguments(ProblemShape const&, Arguments const& args, void* = nullptr) {
    return args;
  }

  template <class TileShape, class BlkCoord, class ResultTuple, class TiledMma, class ProblemShape>
  CUTLASS_DEVICE void operator()(TileShape const&, BlkCoord const& wg_coord, ResultTuple const& result,
                                 TiledMma const& tiled_mma, ProblemShape const&, Params const& params, LoadPipeline,
                                 TensorStorage&) {
    auto const& acc = get<0>(result);
    auto const& lse = get<1>(result);
    Element* smem = get<2>(result);
    constexpr int kWarpGroups = Mainloop::NumMmaWarpGroups;
    int wg = get<0>(wg_coord) % kWarpGroups;
    int q_linear = get<0>(wg_coord) / kWarpGroups;
    int batch = get<2, 0>(wg_coord), head = get<2, 1>(wg_coord);
    TileBox box = TileBox::make(params.tiles, q_linear);

    auto thr_mma = tiled_mma.get_thread_slice(threadIdx.x);
    Tensor sO = make_tensor(make_smem_ptr(smem), typename Mainloop::SmemLayoutQ{})(_, _, _0{});
    Tensor tOsO = thr_mma.partition_C(sO);
    Tensor tOrO = make_fragment_like<Element>(tOsO);
    CUTLASS_PRAGMA_UNROLL
    for (int i = 0; i < size(acc); ++i) tOrO(i) = Element(acc(i));
    cute::copy(tOrO, tOsO);
    cutlass::arch::fence_view_async_shared();  // make the writes visible to the TMA unit
    cutlass::arch::NamedBarrier::sync(cutlass::NumThreadsPerWarpGroup,
                                      int(cutlass::arch::ReservedNamedBarriers::FirstUserBarrier) + wg);
    if (threadIdx.x % cutlass::NumThreadsPerWarpGroup == 0) {
      int c[kMaxDims];
      params.view.half_origin(q_linear, box.q_tile, wg, c);
      store_tile<Mainloop::kHeadDim, Mainloop::kHalfRows>(&params.o, smem, c, head, batch);
      cute::tma_store_arrive();
    }

    Tensor cO = make_identity_tensor(take<0, 2>(typename Mainloop::TileShapePV{}));
    Tensor tOcO = thr_mma.partition_C(cO);
    auto tOcO_mn = make_tensor(tOcO.data(), cutlass::fmha::collective::layout_acc_mn(tiled_mma, tOcO.layout()));
    if (get<1>(tOcO_mn(0, 0)) == 0) {  // one thread of each row's quad
      float* row_lse = params.lse + (int64_t(batch) * params.view.heads + head) * params.view.tokens;
      CUTLASS_PRAGMA_UNROLL
      for (int i = 0; i < size<0>(tOcO_mn); ++i) {
        int token = params.view.token(q_linear, box.q_tile, wg, get<0>(tOcO_mn(i, 0)));
        if (token >= 0) row_lse[token] = lse(i);
      }
    }
    if (threadIdx.x % cutlass::NumThreadsPerWarpGroup == 0) cute::tma_store_wait<0>();
  }
};

}  // namespace gna
