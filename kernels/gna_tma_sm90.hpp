// Hopper TMA addressing of GNA tiles in global memory, for both token orders the kernel reads and writes:
//
// - natural: [batch, grid..., heads, head_dim] exactly as the model holds it. A tile of the tiled layout is a box of
//   the grid, so one 5D TMA box (head_dim chunk, x, y, z, batch) loads it straight into the swizzled shared-memory
//   tile the tensor cores read; no permute in or out. With dilation a tile is a box of its dilation group, a strided
//   sub-grid: the box spans side * dilation positions per dimension with TMA element stride `dilation`. Boxes past
//   the grid's end (also those of a dilation group shorter than the others) read zeros and are not stored.
// - tiled: [batch, tiled tokens, heads, head_dim] (ops/layout.py), for dilated tiles too large for strided boxes
//   (TokenView::fits_tma); the same view with a one-dimensional "grid" of tiled tokens and 128-token tiles.
//
// Shared memory holds a tile as head_dim / 64 chunks of (rows x 64 elements), 128-byte swizzled: exactly what a TMA
// box with 64 elements innermost writes, and the K-major / MN-major layouts CUTLASS picks for the WGMMA operands.
#pragma once

#include <cstdint>

#include "cute/arch/copy_sm90_tma.hpp"
#include "cutlass/cuda_host_adapter.hpp"

#include "gna_token_view.hpp"

namespace gna {

constexpr int kChunk = 64;  // elements of head_dim per TMA box (128 bytes, the swizzle span)

// A TMA descriptor over one [batch, tokens, heads, head_dim] tensor seen through `view`; `half` selects the
// warpgroup half-tile box (Q and O) instead of the whole tile (K and V). Returns an error message or nullptr.
inline char const* make_descriptor(cute::TmaDescriptor* desc, void const* ptr, bool bf16, TokenView const& view,
                                   bool half) {
  uint64_t row_bytes = uint64_t(view.heads) * view.head_dim * 2;
  cuuint64_t dims[5] = {cuuint64_t(view.heads) * view.head_dim, cuuint64_t(view.extent[2]),
                        cuuint64_t(view.extent[1]), cuuint64_t(view.extent[0]), cuuint64_t(view.batch)};
  cuuint64_t strides[4] = {row_bytes, row_bytes * view.extent[2], row_bytes * view.extent[2] * view.extent[1],
                           row_bytes * view.extent[2] * view.extent[1] * view.extent[0]};
  auto span = [&](int d) { return cuuint32_t(view.box_span(d, half)); };
  cuuint32_t box[5] = {kChunk, span(2), span(1), span(0), 1};
  auto step = [&](int d) { return cuuint32_t(view.dilation[d]); };
  cuuint32_t element_strides[5] = {1, step(2), step(1), step(0), 1};
  CUresult result = CUTLASS_CUDA_DRIVER_WRAPPER_CALL(cuTensorMapEncodeTiled)(
      desc, bf16 ? CU_TENSOR_MAP_DATA_TYPE_BFLOAT16 : CU_TENSOR_MAP_DATA_TYPE_FLOAT16, 5, const_cast<void*>(ptr),
      dims, strides, box, element_strides, CU_TENSOR_MAP_INTERLEAVE_NONE, CU_TENSOR_MAP_SWIZZLE_128B,
      CU_TENSOR_MAP_L2_PROMOTION_L2_256B, CU_TENSOR_MAP_FLOAT_OOB_FILL_NONE);
  return result == CUDA_SUCCESS ? nullptr : "cuTensorMapEncodeTiled failed (pointer alignment or tensor strides)";
}

#if defined(__CUDACC__)
// Loads one tile (or half-tile) of `rows` rows of head `head`, batch `batch`, into `smem` (chunks `rows` x 64 apart).
template <int kHeadDim, int kRows, class Element>
CUTLASS_DEVICE void load_tile(cute::TmaDescriptor const* desc, uint64_t* barrier, Element* smem,
                              int const (&c)[kMaxDims], int head, int batch) {
  CUTLASS_PRAGMA_UNROLL
  for (int chunk = 0; chunk < kHeadDim / kChunk; ++chunk) {
    cute::SM90_TMA_LOAD_5D::copy(desc, barrier, uint64_t(cute::TMA::CacheHintSm90::EVICT_NORMAL),
                                 smem + chunk * kRows * kChunk, head * kHeadDim + chunk * kChunk, c[2], c[1], c[0],
                                 batch);
  }
}

template <int kHeadDim, int kRows, class Element>
CUTLASS_DEVICE void store_tile(cute::TmaDescriptor const* desc, Element const* smem, int const (&c)[kMaxDims],
                               int head, int batch) {
  CUTLASS_PRAGMA_UNROLL
  for (int chunk = 0; chunk < kHeadDim / kChunk; ++chunk) {
    cute::SM90_TMA_STORE_5D::copy(desc, smem + chunk * kRows * kChunk, head * kHeadDim + chunk * kChunk, c[2], c[1],
                                  c[0], batch);
  }
}
#endif

}  // namespace gna
