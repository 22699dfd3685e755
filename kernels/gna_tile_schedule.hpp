// Which CTA runs which work tile, shared by the Hopper and Blackwell kernels: no architecture code here.
//
// A work tile is one Q tile of one (batch, head). Tiles are numbered with the Q tile fastest, then the head, then the
// batch entry, so the CTAs running at once work on neighboring Q tiles of one head and share most of their K/V tiles
// in L2. One tile per CTA launches a CTA per tile; the persistent schedule launches at most one per SM (or a cap) and
// CTA c walks tiles c, c + ctas, c + 2 ctas, ... (the hardware then never schedules CTAs: each tile's start and end
// can overlap its neighbours' work inside the CTA).
#pragma once

#include "gna_tile_box.hpp"

namespace gna {

struct TileSchedule {
  int q_tiles, heads, batch;
  FastDivisor q_tiles_div, heads_div;

  static TileSchedule make(int q_tiles, int heads, int batch) {
    return TileSchedule{q_tiles, heads, batch, FastDivisor::make(q_tiles), FastDivisor::make(heads)};
  }

  GNA_HOST_DEVICE int tiles() const { return q_tiles * heads * batch; }

  // The CTAs a launch takes: one per tile, or (persistent) one per tile up to `max_ctas`.
  int ctas(bool persistent, int max_ctas) const { return persistent ? imin(tiles(), max_ctas) : tiles(); }

  GNA_HOST_DEVICE TileCoord coord(int tile) const {
    int rest = q_tiles_div.div(tile);
    int b = heads_div.div(rest);
    return TileCoord{tile - rest * q_tiles, rest - b * heads, b};
  }

  // The tiles CTA `cta` of `ctas` runs, in order: for (CtaTiles t = s.of(cta, ctas); t.valid(); t.advance()).
  // It reads the tile count from the schedule at each step rather than holding it: in a kernel the schedule sits in
  // the parameter space, where reading it costs no register.
  struct CtaTiles {
    TileSchedule const& schedule;
    int tile, step;
    GNA_HOST_DEVICE bool valid() const { return tile < schedule.tiles(); }
    GNA_HOST_DEVICE void advance() { tile += step; }
    // tiles left, this one included
    GNA_HOST_DEVICE int count() const { return (schedule.tiles() - tile + step - 1) / step; }
  };

  GNA_HOST_DEVICE CtaTiles of(int cta, int ctas) const { return CtaTiles{*this, cta, ctas}; }
};

}  // namespace gna
