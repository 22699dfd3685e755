// Hopper TMA addressing of GNA tiles in global memory, for both token orders the kernel reads and writes:
//
// - natural: [batch, grid..., heads, head_dim] exactly as the model holds it. A tile of the tiled layout is a box of
//   the grid, so one 5D TMA box (head_dim chunk, x, y, z, batch) loads it straight into the swizzled shared-memory
//   tile the tensor cores read; no permute in or out. Boxes past the grid's end read zeros and are not stored.
// - tiled: [batch, tiled tokens, heads, head_dim] (ops/layout.py), needed for dilation; the same view with a
//   one-dimensional "grid" of tiled tokens and 128-token tiles.
//
// Shared memory holds a tile as head_dim / 64 chunks of (rows x 64 elements), 128-byte swizzled: exactly what a TMA
// box with 64 elements innermost writes, and the K-major / MN-major layouts CUTLASS picks for the WGMMA operands.
#pragma once

#include <cstdint>

#include "cute/arch/copy_sm90_tma.hpp"
#include "cutlass/cuda_host_adapter.hpp"

#include "gna_tile_box.hpp"

namespace gna {

constexpr int kChunk = 64;  // elements of head_dim per TMA box (128 bytes, the swizzle span)

// The 3D view (z, y, x) the TMA boxes move in, and how a Q tile is split between the two consumer warpgroups.
struct TokenView {
  bool natural;
  int extent[kMaxDims];     // view length per dimension
  int tile_log2[kMaxDims];  // tile side per dimension in the view
  int split_dim;            // the dimension whose halves are the warpgroups' 64-row halves of a Q tile
  int heads, head_dim, batch;
  int tokens;               // tokens per batch element and head in this order (rows of the lse output)

  GNA_HOST_DEVICE int half_log2(int d) const { return tile_log2[d] - (d == split_dim ? 1 : 0); }

  // Box origin of a tile: natural order from its per-dimension tile index, tiled order from its linear index.
  GNA_HOST_DEVICE void origin(int linear, int const (&dims)[kMaxDims], int (&c)[kMaxDims]) const {
    for (int d = 0; d < kMaxDims; ++d) c[d] = natural ? dims[d] << tile_log2[d] : 0;
    if (!natural) c[kMaxDims - 1] = linear << tile_log2[kMaxDims - 1];
  }

  // Origin of warpgroup `wg`'s half of a Q tile.
  GNA_HOST_DEVICE void half_origin(int linear, int const (&dims)[kMaxDims], int wg, int (&c)[kMaxDims]) const {
    origin(linear, dims, c);
    for (int d = 0; d < kMaxDims; ++d) c[d] += d == split_dim ? wg << half_log2(d) : 0;  // no dynamic indexing
  }

  // Token index (in this order) of row `row` of warpgroup `wg`'s half-tile, or -1 if it lies past the grid.
  GNA_HOST_DEVICE int token(int linear, int const (&dims)[kMaxDims], int wg, int row) const {
    int c[kMaxDims];
    half_origin(linear, dims, wg, c);
    int shift = 0, index = 0, inner = 1;
    for (int d = kMaxDims - 1; d >= 0; --d) {
      int bits = half_log2(d);
      int pos = c[d] + ((row >> shift) & ((1 << bits) - 1));
      shift += bits;
      if (pos >= extent[d]) return -1;
      index += pos * inner;
      inner *= extent[d];
    }
    return index;
  }

  // The view of a problem. Natural order needs dilation 1 (a dilated group is not a box of the grid).
  static TokenView make(TileParams const& p, bool natural, int batch, int heads, int head_dim, int tiled_tokens) {
    TokenView v{};
    v.natural = natural;
    v.heads = heads;
    v.head_dim = head_dim;
    v.batch = batch;
    v.tokens = 1;
    for (int d = 0; d < kMaxDims; ++d) {
      v.extent[d] = natural ? p.length[d] : (d == kMaxDims - 1 ? tiled_tokens : 1);
      v.tile_log2[d] = natural ? p.tile_log2[d] : (d == kMaxDims - 1 ? 7 : 0);
      v.tokens *= v.extent[d];
    }
    v.split_dim = kMaxDims - 1;
    for (int d = 0; d < kMaxDims; ++d) {
      if (v.tile_log2[d] > 0) {
        v.split_dim = d;
        break;
      }
    }
    return v;
  }
};

// A TMA descriptor over one [batch, tokens, heads, head_dim] tensor seen through `view`; `half` selects the
// warpgroup half-tile box (Q and O) instead of the whole tile (K and V). Returns an error message or nullptr.
inline char const* make_descriptor(cute::TmaDescriptor* desc, void const* ptr, bool bf16, TokenView const& view,
                                   bool half) {
  uint64_t row_bytes = uint64_t(view.heads) * view.head_dim * 2;
  cuuint64_t dims[5] = {cuuint64_t(view.heads) * view.head_dim, cuuint64_t(view.extent[2]),
                        cuuint64_t(view.extent[1]), cuuint64_t(view.extent[0]), cuuint64_t(view.batch)};
  cuuint64_t strides[4] = {row_bytes, row_bytes * view.extent[2], row_bytes * view.extent[2] * view.extent[1],
                           row_bytes * view.extent[2] * view.extent[1] * view.extent[0]};
  auto side = [&](int d) { return cuuint32_t(1) << (half ? view.half_log2(d) : view.tile_log2[d]); };
  cuuint32_t box[5] = {kChunk, side(2), side(1), side(0), 1};
  cuuint32_t element_strides[5] = {1, 1, 1, 1, 1};
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
