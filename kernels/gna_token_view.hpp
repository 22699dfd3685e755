// Where the tiles of a GNA problem lie in a [batch, tokens, heads, head_dim] tensor, in either token order the
// kernels take: the model's own (natural: a tile is a box of the grid, or with dilation a box of its dilation group,
// which is a strided sub-grid: every dilation-th position from the group's offset) or the tiled layout of
// ops/layout.py (a tile is 128 consecutive tokens). Plain integer arithmetic shared by every architecture's data
// movement; the Hopper TMA calls that use it are in gna_tma_sm90.hpp.
#pragma once

#include "gna_tile_box.hpp"

namespace gna {

// The 3D view (z, y, x) the TMA boxes move in, and how a Q tile is split between the two consumer warpgroups.
struct TokenView {
  bool natural;
  int extent[kMaxDims];     // view length per dimension
  int tile_log2[kMaxDims];  // tile side per dimension in the view
  int dilation[kMaxDims];   // grid step between neighbouring positions of a tile (1 in the tiled order)
  int split_dim;            // the dimension whose halves are the warpgroups' 64-row halves of a Q tile
  int heads, head_dim, batch;
  int tokens;               // tokens per batch element and head in this order (rows of the lse output)

  GNA_HOST_DEVICE int half_log2(int d) const { return tile_log2[d] - (d == split_dim ? 1 : 0); }

  // Box origin of a tile: natural order from its per-dimension tile index inside its dilation group (`group`: the
  // group's offset per dimension, TileBox::group), tiled order from its linear index.
  GNA_HOST_DEVICE void origin(int linear, int const (&dims)[kMaxDims], int const (&group)[kMaxDims],
                              int (&c)[kMaxDims]) const {
    for (int d = 0; d < kMaxDims; ++d) c[d] = natural ? group[d] + (dims[d] << tile_log2[d]) * dilation[d] : 0;
    if (!natural) c[kMaxDims - 1] = linear << tile_log2[kMaxDims - 1];
  }

  // Origin of warpgroup `wg`'s half of a Q tile.
  GNA_HOST_DEVICE void half_origin(int linear, int const (&dims)[kMaxDims], int const (&group)[kMaxDims], int wg,
                                   int (&c)[kMaxDims]) const {
    origin(linear, dims, group, c);
    // no dynamic indexing
    for (int d = 0; d < kMaxDims; ++d) c[d] += d == split_dim ? (wg << half_log2(d)) * dilation[d] : 0;
  }

  // Token index (in this order) of row `row` of warpgroup `wg`'s half-tile, or -1 if it lies past the grid.
  GNA_HOST_DEVICE int token(int linear, int const (&dims)[kMaxDims], int const (&group)[kMaxDims], int wg,
                            int row) const {
    int c[kMaxDims];
    half_origin(linear, dims, group, wg, c);
    int shift = 0, index = 0, inner = 1;
    for (int d = kMaxDims - 1; d >= 0; --d) {
      int bits = half_log2(d);
      int pos = c[d] + ((row >> shift) & ((1 << bits) - 1)) * dilation[d];
      shift += bits;
      if (pos >= extent[d]) return -1;
      index += pos * inner;
      inner *= extent[d];
    }
    return index;
  }

  // The grid positions a load or store box spans along dimension d (a whole tile, or a warpgroup's `half`), taking
  // every dilation[d]-th: TMA reads side * dilation positions with element stride `dilation` (positions past the
  // grid's end, which a shorter dilation group has, read as zeros and are not stored).
  GNA_HOST_DEVICE int box_span(int d, bool half) const {
    return (1 << (half ? half_log2(d) : tile_log2[d])) * dilation[d];
  }

  // Whether the TMA unit can move these boxes: spans of at most 256 positions and element strides of at most 8.
  GNA_HOST_DEVICE bool fits_tma() const {
    bool fits = true;
    for (int d = 0; d < kMaxDims; ++d) fits = fits && box_span(d, false) <= 256 && dilation[d] <= 8;
    return fits;
  }

  // The view of a problem's Q or K/V tiles (`tile_log2`: their shape).
  static TokenView make(TileParams const& p, int const (&tile_log2)[kMaxDims], bool natural, int batch, int heads,
                        int head_dim, int tiled_tokens) {
    TokenView v{};
    v.natural = natural;
    v.heads = heads;
    v.head_dim = head_dim;
    v.batch = batch;
    v.tokens = 1;
    for (int d = 0; d < kMaxDims; ++d) {
      v.extent[d] = natural ? p.length[d] : (d == kMaxDims - 1 ? tiled_tokens : 1);
      v.tile_log2[d] = natural ? tile_log2[d] : (d == kMaxDims - 1 ? 7 : 0);
      v.dilation[d] = natural ? p.dilation[d] : 1;
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

  // A plain sequence of `tokens` tokens in 128-token tiles, the tiled layout's view: the extra (text) tokens.
  static TokenView sequence(int batch, int heads, int head_dim, int tokens) {
    TileParams unused{};
    return make(unused, unused.kv_tile_log2, false, batch, heads, head_dim, tokens);
  }
};

}  // namespace gna
