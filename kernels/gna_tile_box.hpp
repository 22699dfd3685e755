// GNA tile arithmetic shared by every compiled mainloop (Hopper now, Blackwell later): no architecture code here.
//
// Mirrors gna_diffusers/ops/tiles.py and ops/semantics.py. Tokens are in the tiled layout of ops/layout.py:
// dilation group (row-major over dims), then tile index (row-major), then position inside the tile (row-major).
// Q and KV tiles have shapes of their own; every tile side is a power of two (the tile volume is a power of two).
// A Q tile visits the box of KV tiles covering the union of its queries' windows; a visited KV tile needs the
// token-level mask unless it lies inside every one of those windows (the box's interior). The visiting order puts
// the interior first, then the border: the softmax is order-free, and a mainloop can then run the unmasked tiles in
// a loop with no mask code at all.
#pragma once

#include <cstdint>

#if defined(__CUDACC__)
#define GNA_HOST_DEVICE __host__ __device__ __forceinline__
#else
#define GNA_HOST_DEVICE inline
#endif

namespace gna {

constexpr int kMaxDims = 3;

GNA_HOST_DEVICE int imin(int a, int b) { return a < b ? a : b; }
GNA_HOST_DEVICE int imax(int a, int b) { return a > b ? a : b; }

// Division by a divisor fixed for a whole launch, as a multiply-high and a shift (the round-up method CUTLASS's
// FastDivmod uses too), set up on the host: a few instructions where an integer division takes about twenty. Exact
// for every dividend in [0, 2^31).
struct FastDivisor {
  int divisor;
  uint32_t multiplier;  // 0 for divisor 1
  int shift;

  static FastDivisor make(int d) {
    FastDivisor f{d, 0u, 0};
    if (d > 1) {
      int log2_up = 0;
      while ((int64_t(1) << log2_up) < d) ++log2_up;
      uint64_t p = 31 + log2_up;
      f.multiplier = static_cast<uint32_t>(((uint64_t(1) << p) + uint64_t(d) - 1) / uint64_t(d));
      f.shift = log2_up - 1;
    }
    return f;
  }

  GNA_HOST_DEVICE int div(int n) const {
#if defined(__CUDA_ARCH__)
    uint32_t high = __umulhi(static_cast<uint32_t>(n), multiplier);
#else
    uint32_t high = static_cast<uint32_t>((uint64_t(static_cast<uint32_t>(n)) * multiplier) >> 32);
#endif
    return multiplier == 0 ? n : static_cast<int>(high >> shift);
  }

  GNA_HOST_DEVICE int mod(int n) const { return n - div(n) * divisor; }
};

// One GNA problem as the kernel sees it. Unused trailing dimensions have length 1, window 1, tile 1. Filled on the
// host, then `finish()` derives the rest.
struct TileParams {
  int ndim;
  int length[kMaxDims];         // grid length per dimension
  int window[kMaxDims];
  int stride[kMaxDims];
  int dilation[kMaxDims];
  int causal[kMaxDims];         // 0 or 1
  int q_tile_log2[kMaxDims];       // Q tile side = 1 << q_tile_log2
  int q_tiles_per_dim[kMaxDims];   // Q tiles per dilation group along each dimension
  int q_tiles_per_group;           // product of q_tiles_per_dim
  int kv_tile_log2[kMaxDims];      // the same for the K and V tiles
  int kv_tiles_per_dim[kMaxDims];
  int kv_tiles_per_group;
  // The divisions of the tile arithmetic, by the fields of the same names.
  FastDivisor stride_div[kMaxDims], dilation_div[kMaxDims], q_tiles_per_dim_div[kMaxDims], q_tiles_per_group_div;

  void finish() {
    q_tiles_per_group = 1;
    kv_tiles_per_group = 1;
    for (int i = 0; i < kMaxDims; ++i) {
      q_tiles_per_group *= q_tiles_per_dim[i];
      kv_tiles_per_group *= kv_tiles_per_dim[i];
      stride_div[i] = FastDivisor::make(stride[i]);
      dilation_div[i] = FastDivisor::make(dilation[i]);
      q_tiles_per_dim_div[i] = FastDivisor::make(q_tiles_per_dim[i]);
    }
    q_tiles_per_group_div = FastDivisor::make(q_tiles_per_group);
  }
};

// One unit of kernel work: the Q tile `q_linear` (index in the tiled sequence) of one (batch, head).
struct TileCoord {
  int q_linear, head, batch;
};

// Per dimension [start, end) of the keys seen by a query at group position `pos` on an axis of `glen` positions.
GNA_HOST_DEVICE void window_bounds(int pos, int glen, int window, FastDivisor const& stride_div, bool causal,
                                   int& start, int& end) {
  int stride = stride_div.divisor;
  int group_first = stride_div.div(pos) * stride;
  if (causal) {
    int leader = imin(group_first + stride - 1, glen - 1);
    start = imax(leader - (window - 1), 0);
    end = imin(pos + 1, glen);
  } else {
    int leader = imin(group_first + stride / 2, glen - 1);
    start = imin(imax(leader - window / 2, 0), glen - window);
    end = start + window;
  }
}

// The KV-tile box one Q tile visits, and the inner box that needs no mask. Coordinates are tile indices inside the
// Q tile's dilation group; `group_base` is the group's first KV tile in the tiled KV sequence.
struct TileBox {
  int lo[kMaxDims], extent[kMaxDims];       // visited: [lo, lo + extent)
  int full_lo[kMaxDims], full_hi[kMaxDims]; // unmasked: [full_lo, full_hi)
  int q_tile[kMaxDims];                     // the Q tile's index per dimension
  int group_len[kMaxDims];                  // positions in this dilation group per dimension
  int group[kMaxDims];                      // this dilation group's offset per dimension: its first grid position
  int group_base;                           // tiled index of the group's first KV tile
  int count;                                // number of visited KV tiles (>= 1)
  int interior_count;                       // of which unmasked (visited first)

  // Builds the box of Q tile `q_tile_index` (a tile of the tiled sequence, padding tiles included).
  GNA_HOST_DEVICE static TileBox make(TileParams const& p, int q_tile_index) {
    TileBox b;
    int group = p.q_tiles_per_group_div.div(q_tile_index);
    int rest = q_tile_index - group * p.q_tiles_per_group;
    b.group_base = group * p.kv_tiles_per_group;
    b.count = 1;
    b.interior_count = 1;
    for (int i = kMaxDims - 1; i >= 0; --i) {
      int next_group = p.dilation_div[i].div(group);
      int g = group - next_group * p.dilation[i];
      group = next_group;
      b.group[i] = g;
      int next_rest = p.q_tiles_per_dim_div[i].div(rest);
      b.q_tile[i] = rest - next_rest * p.q_tiles_per_dim[i];
      rest = next_rest;
      int glen = p.dilation_div[i].div(p.length[i]) + (g < p.dilation_div[i].mod(p.length[i]) ? 1 : 0);
      b.group_len[i] = glen;
      int tile = 1 << p.q_tile_log2[i];
      // A tile of padding only still visits one (masked) KV tile, so every CTA runs the same pipeline shape.
      int first = imin(b.q_tile[i] * tile, glen - 1);
      int last = imin(b.q_tile[i] * tile + tile, glen) - 1;
      last = imax(last, first);
      int s_first, e_first, s_last, e_last;
      window_bounds(first, glen, p.window[i], p.stride_div[i], p.causal[i], s_first, e_first);
      window_bounds(last, glen, p.window[i], p.stride_div[i], p.causal[i], s_last, e_last);
      int kv_log2 = p.kv_tile_log2[i], kv_tile = 1 << kv_log2;
      int lo = s_first >> kv_log2;
      int hi = (e_last + kv_tile - 1) >> kv_log2;
      int full_lo = (s_last + kv_tile - 1) >> kv_log2;
      int full_hi = imax(imin(e_first, glen) >> kv_log2, full_lo);
      b.lo[i] = lo;
      b.extent[i] = hi - lo;
      b.full_lo[i] = full_lo;
      b.full_hi[i] = full_hi;
      b.count *= hi - lo;
      b.interior_count *= full_hi - full_lo;
    }
    return b;
  }

  GNA_HOST_DEVICE bool in_interior(int const (&kv)[kMaxDims]) const {
    bool inside = true;
    for (int i = 0; i < kMaxDims; ++i) inside = inside && kv[i] >= full_lo[i] && kv[i] < full_hi[i];
    return inside;
  }
};

// Walks a TileBox in visiting order: the interior row-major, then the border row-major (box minus interior).
// Producer and consumers each walk their own cursor, so they agree on the order without sharing state.
struct TileCursor {
  int kv[kMaxDims];  // the current KV tile, per dimension

  // The first tile visited.
  GNA_HOST_DEVICE static TileCursor first(TileBox const& b) {
    return b.interior_count > 0 ? interior(b) : border(b);
  }

  // Moves from the tile visited at `loop - 1` to the one visited at `loop` (0 < loop < count).
  GNA_HOST_DEVICE void advance(TileBox const& b, int loop) {
    if (loop < b.interior_count) {
      next_interior(b);
    } else if (loop == b.interior_count) {
      *this = border(b);
    } else {
      next_border(b);
    }
  }

  GNA_HOST_DEVICE static TileCursor interior(TileBox const& b) {
    TileCursor c;
    for (int i = 0; i < kMaxDims; ++i) c.kv[i] = b.full_lo[i];
    return c;
  }

  // Only for a box with border tiles (count > interior_count).
  GNA_HOST_DEVICE static TileCursor border(TileBox const& b) {
    TileCursor c;
    for (int i = 0; i < kMaxDims; ++i) c.kv[i] = b.lo[i];
    c.skip_interior(b);
    return c;
  }

  GNA_HOST_DEVICE void next_interior(TileBox const& b) {
    for (int i = kMaxDims - 1; i >= 0; --i) {
      if (++kv[i] < b.full_hi[i]) return;
      kv[i] = b.full_lo[i];
    }
  }

  GNA_HOST_DEVICE void next_border(TileBox const& b) {
    step_in_box(b);
    skip_interior(b);
  }

  // Tile index in the tiled KV sequence.
  GNA_HOST_DEVICE int linear(TileParams const& p, TileBox const& b) const {
    int index = 0;
    for (int i = 0; i < kMaxDims; ++i) index = index * p.kv_tiles_per_dim[i] + kv[i];
    return b.group_base + index;
  }

 private:
  GNA_HOST_DEVICE void step_in_box(TileBox const& b) {
    for (int i = kMaxDims - 1; i >= 0; --i) {
      if (++kv[i] < b.lo[i] + b.extent[i]) return;
      kv[i] = b.lo[i];
    }
  }

  // Jumps over interior runs along the innermost dimension (one run per row of the box).
  GNA_HOST_DEVICE void skip_interior(TileBox const& b) {
    while (b.in_interior(kv)) {
      kv[kMaxDims - 1] = b.full_hi[kMaxDims - 1] - 1;
      step_in_box(b);
    }
  }
};

// The key positions a query row sees, per dimension, in group positions; the mask test for one key tile is then a
// comparison of the key's offset inside the tile against [start - tile_origin, end - tile_origin) (KeyMask below).
struct RowWindow {
  int start[kMaxDims], end[kMaxDims];

  // `row` is the query's offset inside its Q tile (row-major over the tile shape).
  GNA_HOST_DEVICE static RowWindow make(TileParams const& p, TileBox const& box, int row) {
    RowWindow w;
    int shift = 0;
    for (int i = kMaxDims - 1; i >= 0; --i) {
      int u = (row >> shift) & ((1 << p.q_tile_log2[i]) - 1);
      shift += p.q_tile_log2[i];
      int pos = imin((box.q_tile[i] << p.q_tile_log2[i]) + u, box.group_len[i] - 1);  // padding rows: any window
      window_bounds(pos, box.group_len[i], p.window[i], p.stride_div[i], p.causal[i], w.start[i], w.end[i]);
    }
    return w;
  }
};

// The bits of 16 at positions that are multiples of 2^log2 (log2 <= 4): no division.
GNA_HOST_DEVICE uint32_t every_nth_bit(int log2) {
  return (log2 > 0 ? 0x5555u : 0xFFFFu) & (log2 > 1 ? 0x3333u : 0xFFFFu) & (log2 > 2 ? 0x0F0Fu : 0xFFFFu) &
         (log2 > 3 ? 0x00FFu : 0xFFFFu);
}

// The token-level mask of a KV tile (volume 128, any shape), in the pattern a WGMMA accumulator thread holds its
// scores: a key's offset in the tile is col = 8k + l (k < 16, l < 8), and a thread holds, per row, the columns
// 8k + l of every k for two l that differ in bit 0 only. Tile dimension d holds bits [shift, shift + tile_log2) of
// col (row-major), so its offset u_d is `low_bits` bits of l below a field of k. For one row and one l, the k whose
// u_d lies in the row's window have that field in a run of values, which over k is a run of bits repeated every
// 2^period; the keys the row sees are the AND over the dimensions. So per row, l and dimension the mask is a 16-bit
// set over k built with a few integer operations, and testing a score is one bit test at a position known at
// compile time. A thread's two l share one 32-bit word (`pair_keys`): bit k for l = base, bit 16 + k for base + 1.
// Only the innermost dimension of nonzero side takes bit 0 of l (`per_l`): the others give one set for both l.
struct KeyMask {
  int shift[kMaxDims];        // position of u_d in col
  int low_bits[kMaxDims];     // bits of u_d taken from l
  int field_shift[kMaxDims];  // position of u_d's other bits in k
  int field_size[kMaxDims];   // values of those bits
  uint32_t repeat[kMaxDims];  // bits at the multiples of 2^period: where a run over the field repeats in k
  bool per_l[kMaxDims];       // the set depends on bit 0 of l

  GNA_HOST_DEVICE static KeyMask make(TileParams const& p) {
    KeyMask m;
    int shift = 0;
    for (int d = kMaxDims - 1; d >= 0; --d) {
      int bits = p.kv_tile_log2[d];
      m.shift[d] = shift;
      m.low_bits[d] = imin(imax(3 - shift, 0), bits);
      m.field_shift[d] = imax(shift - 3, 0);
      m.field_size[d] = 1 << (bits - m.low_bits[d]);
      m.repeat[d] = every_nth_bit(m.field_shift[d] + bits - m.low_bits[d]);
      m.per_l[d] = shift == 0 && bits > 0;
      shift += bits;
    }
    return m;
  }

  // The keys that dimension d alone lets the row see: bit k is set where it sees key 8k + l. [lo, hi) is the row's
  // window along d relative to the KV tile's origin (keys past the grid lie outside every window). Bits above 15
  // carry no meaning.
  GNA_HOST_DEVICE uint32_t dim_keys(int d, int lo, int hi, int l) const {
    int round = (1 << low_bits[d]) - 1;
    int part = (l >> shift[d]) & round;
    // the field values v with lo <= (v << low_bits) + part < hi, clipped to the field
    int a = imin(imax((lo - part + round) >> low_bits[d], 0), field_size[d]);
    int b = imin(imax((hi - part + round) >> low_bits[d], a), field_size[d]);
    return ((1u << (b << field_shift[d])) - (1u << (a << field_shift[d]))) * repeat[d];
  }

  // dim_keys for a thread's two l, base (even) and base + 1, in one word: bits 0-15 for base, 16-31 for base + 1.
  GNA_HOST_DEVICE uint32_t pair_keys(int d, int lo, int hi, int base) const {
    uint32_t even = dim_keys(d, lo, hi, base) & 0xFFFFu;
    return per_l[d] ? even | (dim_keys(d, lo, hi, base + 1) << 16) : even * 0x10001u;
  }

  // The keys a row whose window is `w` sees along d alone in the KV tile of index t along d, packed as pair_keys
  // packs them: tile_keys' `seen` worked out per tile from the window alone.
  GNA_HOST_DEVICE uint32_t window_keys(TileParams const& p, RowWindow const& w, int d, int t, int base) const {
    int origin = t << p.kv_tile_log2[d];
    return pair_keys(d, w.start[d] - origin, w.end[d] - origin, base);
  }

  // The keys each of kRows rows sees in KV tile `kv` of `box`, packed as pair_keys packs them, from `seen(i, d, t)`:
  // the keys row i sees along dimension d alone in the tile of index t along d. A dimension along which the tile lies
  // inside the box's unmasked range lets every row see the tile's whole extent and is skipped, so a border tile pays
  // only for the dimensions it straddles.
  template <int kRows, class Seen>
  GNA_HOST_DEVICE static void tile_keys(TileBox const& box, int const (&kv)[kMaxDims], Seen&& seen,
                                        uint32_t (&sets)[kRows]) {
    for (int i = 0; i < kRows; i++) sets[i] = ~0u;
    for (int d = 0; d < kMaxDims; d++) {
      if (kv[d] >= box.full_lo[d] && kv[d] < box.full_hi[d]) continue;
      for (int i = 0; i < kRows; i++) sets[i] &= seen(i, d, kv[d]);
    }
  }

  // The same sets for a tile of which only the first `keys` keys exist (0 < keys <= 128: the extra tokens' last
  // tile), which every row sees: the bit for key 8k + base + e is set where that key is below `keys`.
  template <int kRows>
  GNA_HOST_DEVICE static void first_keys(int keys, int base, uint32_t (&sets)[kRows]) {
    uint32_t seen = 0;
    for (int e = 0; e < 2; e++) seen |= ((1u << imin(imax((keys - base - e + 7) >> 3, 0), 16)) - 1u) << (16 * e);
    for (int i = 0; i < kRows; i++) sets[i] = seen;
  }
};

// One query row's window as key sets, for a thread's two l (pair_keys), worked out once per Q tile so that a border
// tile's mask costs a few compares and selects per straddled dimension instead of window_keys' arithmetic. Along d, KV
// tiles before `first` or after `last` hold no key the row sees, tiles between hold only such keys, and the two edge
// tiles hold `head` (tile `first`: the keys from the window's start on) and `tail` (tile `last`: the keys before its
// end); a window inside one tile takes both.
struct RowEdges {
  int first[kMaxDims], last[kMaxDims];
  uint32_t head[kMaxDims], tail[kMaxDims];

  GNA_HOST_DEVICE static RowEdges make(KeyMask const& mask, TileParams const& p, RowWindow const& w, int base) {
    RowEdges r;
    for (int d = 0; d < kMaxDims; d++) {
      int log2 = p.kv_tile_log2[d];
      r.first[d] = w.start[d] >> log2;
      r.last[d] = (w.end[d] - 1) >> log2;  // windows are never empty
      r.head[d] = mask.pair_keys(d, w.start[d] - (r.first[d] << log2), 1 << log2, base);
      r.tail[d] = mask.pair_keys(d, 0, w.end[d] - (r.last[d] << log2), base);
    }
    return r;
  }

  // The keys the row sees along d alone in the KV tile of index t along d (KeyMask::tile_keys' `seen`).
  GNA_HOST_DEVICE uint32_t keys(int d, int t) const {
    uint32_t edges = (t == first[d] ? head[d] : ~0u) & (t == last[d] ? tail[d] : ~0u);
    return t < first[d] || t > last[d] ? 0u : edges;
  }
};

}  // namespace gna
