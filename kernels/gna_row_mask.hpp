// The token-level mask of a border KV tile for kernels in which one thread holds a whole row of scores (Blackwell:
// a tensor-memory lane per query row, read by one thread), from the same per-tile key sets as the Hopper kernel's
// (KeyMask::tile_keys in gna_tile_box.hpp): no architecture code here, and the CPU driver (tests/tile_box_driver.cpp)
// checks it against the brute-force neighborhood.
#pragma once

#include <cstdint>

#include "gna_tile_box.hpp"

namespace gna {

// The keys query row `row` sees in KV tile `kv` of `box`: bit k of sets[l] stands for key 8k + l of the tile (the
// tile's 128 keys row-major over its shape). Bits above 15 carry no meaning. The per-dimension sets are worked out
// per tile from the row's window (KeyMask::window_keys), not from RowEdges held over the Q tile: a thread here would
// need those for all eight l.
GNA_HOST_DEVICE void row_keys(KeyMask const& mask, TileParams const& p, TileBox const& box, int const (&kv)[kMaxDims],
                              RowWindow const& row, uint32_t (&sets)[8]) {
  for (int base = 0; base < 8; base += 2) {
    uint32_t pair[1];
    KeyMask::tile_keys(box, kv, [&](int, int d, int t) { return mask.window_keys(p, row, d, t, base); }, pair);
    sets[base] = pair[0];
    sets[base + 1] = pair[0] >> 16;
  }
}

// Whether the row sees key `col` (0..127) of the tile, from `row_keys`' sets: with `col` known at compile time (an
// unrolled loop over a row's scores) this is one bit test.
GNA_HOST_DEVICE bool sees_key(uint32_t const (&sets)[8], int col) { return (sets[col & 7] >> (col >> 3)) & 1u; }

}  // namespace gna
