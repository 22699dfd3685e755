// Hopper GNA epilogue: each consumer warpgroup writes its 64 normalized output rows through shared memory (its own,
// now idle, Q buffer) with one TMA store box per 64-element head_dim chunk, in the same token order the inputs came
// in (gna_tma_sm90.hpp): rows past the grid's end are clipped by the TMA unit, so they are never written. The
// log-sum-exp goes straight from registers to [batch, heads, tokens].
#pragma once

#include "cutlass/arch/barrier.h"
#include "cutlass/numeric_conversion.h"

#include "collective/fmha_common.hpp"

#include "gna_tile_box.hpp"
#include "gna_tma_sm90.hpp"

namespace gna {

using namespace cute;

template <class Element, class Mainloop>
struct EpilogueSm90 {
  struct Params {
    cute::TmaDescriptor o;  // half-tile box, like Q
    float* lse;             // [batch, heads, view.tokens]
    TokenView view;         // the Q tiles'
    TileParams tiles;
  };

  // Stores warpgroup `wg`'s rows of Q tile `at`: the normalized output accumulator `acc`, staged in `smem`, and the
  // log-sum-exp per row. Returns once the TMA store is issued: the staging buffer stays in use until
  // `wait_staging_read`.
  template <class Accumulator, class Lse>
  CUTLASS_DEVICE void operator()(TileCoord const& at, int wg, Accumulator const& acc, Lse const& lse, Element* smem,
                                 Params const& params) {
    int q_linear = at.q_linear, batch = at.batch, head = at.head;
    TileBox box = TileBox::make(params.tiles, q_linear);

    using TiledMma = typename Mainloop::TiledMmaPV;
    TiledMma tiled_mma;
    int thread_idx = threadIdx.x % cutlass::NumThreadsPerWarpGroup;
    auto thr_mma = tiled_mma.get_thread_slice(thread_idx);
    // Converted two at a time, written with stmatrix (eight elements per thread and instruction).
    Tensor tOrO = make_tensor_like<Element>(acc);
    auto acc_pairs = recast<cutlass::Array<float, 2>>(acc);
    auto out_pairs = recast<cutlass::Array<Element, 2>>(tOrO);
    cutlass::NumericArrayConverter<Element, float, 2, cutlass::FloatRoundStyle::round_to_nearest> to_element;
    CUTLASS_PRAGMA_UNROLL
    for (int i = 0; i < size(acc_pairs); ++i) out_pairs(i) = to_element(acc_pairs(i));
    Tensor sO = make_tensor(make_smem_ptr(smem), typename Mainloop::SmemLayoutQ{})(_, _, _0{});
    auto smem_copy = make_tiled_copy_C(Copy_Atom<SM90_U32x4_STSM_N, Element>{}, tiled_mma);
    auto thr_copy = smem_copy.get_thread_slice(thread_idx);
    cute::copy(smem_copy, thr_copy.retile_S(tOrO), thr_copy.partition_D(sO));
    cutlass::arch::fence_view_async_shared();  // make the writes visible to the TMA unit
    cutlass::arch::NamedBarrier::sync(cutlass::NumThreadsPerWarpGroup, Mainloop::kEpilogueBarrier + wg);
    if (threadIdx.x % cutlass::NumThreadsPerWarpGroup == 0) {
      int c[kMaxDims];
      params.view.half_origin(q_linear, box.q_tile, box.group, wg, c);
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
        int token = params.view.token(q_linear, box.q_tile, box.group, wg, get<0>(tOcO_mn(i, 0)));
        if (token >= 0) row_lse[token] = lse(i);
      }
    }
  }

  // Returns (in the thread that issued the warpgroup's stores) once the TMA unit has read their staging buffers.
  CUTLASS_DEVICE static void wait_staging_read() {
    if (threadIdx.x % cutlass::NumThreadsPerWarpGroup == 0) cute::tma_store_wait<0>();
  }
};

}  // namespace gna
