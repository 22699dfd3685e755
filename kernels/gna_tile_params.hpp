// The flat tile parameters the Python backend passes (backends/cutlass.py `_plan`) as TileParams: 9 rows of kMaxDims
// ints (length, window, stride, dilation, causal, then tile_log2 and tiles_per_dim of the Q tiles and of the K/V
// tiles), dims padded at the front with length-1 dimensions. Host code, shared by the torch bindings.
#pragma once

#include <cstdint>
#include <vector>

#include "gna_tile_box.hpp"

namespace gna {

constexpr int kFlatTileParams = 9 * kMaxDims;

// `flat` must hold kFlatTileParams ints (the binding checks).
inline TileParams tile_params_from_flat(std::vector<int64_t> const& flat) {
  TileParams p{};
  p.ndim = kMaxDims;
  int* rows[] = {p.length,      p.window,          p.stride,       p.dilation,      p.causal,
                 p.q_tile_log2, p.q_tiles_per_dim, p.kv_tile_log2, p.kv_tiles_per_dim};
  for (int r = 0; r < 9; ++r)
    for (int i = 0; i < kMaxDims; ++i) rows[r][i] = static_cast<int>(flat[r * kMaxDims + i]);
  p.finish();
  return p;
}

}  // namespace gna
