// Test driver for the kernels' arch-independent logic (kernels/gna_tile_box.hpp, gna_token_view.hpp,
// gna_tile_schedule.hpp, gna_softmax_rule.hpp) on the CPU.
// stdin: 27 ints (length, window, stride, dilation, causal, then tile_log2 and tiles_per_dim of the Q and of the KV
// tiles; 3 dims each, padded at the front). Tiles are seen in the model's token order (TokenView natural; with
// dilation, boxes of strided sub-grids). stdout: first "boxes" and the grid positions each box spans per dimension,
// then the element strides it takes them with, of the Q half-tile boxes, then the K/V tile boxes, then 1 if TMA can
// move them (TokenView::fits_tma of both views), else 0. Then per Q tile: "count interior t0 t1 ..." (KV tiles in
// visiting order, indices of the tiled KV sequence), then "tokens r0 r1 ... r127" (the model-order token of each row
// of warpgroup 0's then 1's half, -1 past the grid); per border KV tile of the first, middle and last Q tile "mask u w0 ... w511": per row, four 32-bit
// words of the keys it sees (KeyMask::tile_keys from RowEdges as the Hopper kernel's accumulator threads use them:
// l = base + e for base 0, 2, 4, 6 and e 0, 1), then "rowmask u w0 ... w511": the same from row_keys (gna_row_mask.hpp, a whole row per
// thread, as the Blackwell kernel uses it); per visited KV tile of those three Q tiles "kvorigin u c0 c1 c2": the grid
// position where the kernel's K/V load box of that tile starts, and per warpgroup of those Q tiles "qorigin wg c0 c1
// c2": where its Q load (and output store) box starts. With the argument --divisors it checks FastDivisor
// against integer division instead: prints "ok", or the first wrong quotient and exits with 4. With --first-keys it
// prints, for every key count 1..128 of a partial extra tile, "keys w0 w1 w2 w3": the keys each row sees
// (KeyMask::first_keys as the accumulator threads use it, the same four words as "mask"). With --schedule Q_TILES
// HEADS BATCH PERSISTENT MAX_CTAS it prints the CTAs' work tiles (gna_tile_schedule.hpp) as the kernels walk them: per
// CTA "cta c count: q,h,b q,h,b ..." (count: the tiles CtaTiles::count gives at the start, then each tile's coord).
// With --reference-moves it reads "reference running_max scale_log2" lines and prints whether the online softmax
// moves its reference max (gna_softmax_rule.hpp), 1 or 0 a line.
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>

#include "gna_row_mask.hpp"
#include "gna_softmax_rule.hpp"
#include "gna_tile_box.hpp"
#include "gna_tile_schedule.hpp"
#include "gna_token_view.hpp"

// Divisors 1..5000 and some large ones, each against small dividends, the multiples of it and their neighbours near
// the top of the range, and pseudo-random ones up to 2^31 - 1.
int check_divisors() {
  uint32_t state = 12345u;
  auto next = [&]() { return state = state * 1664525u + 1013904223u; };
  for (int d = 1; d < 5200; ++d) {
    int divisor = d < 5000 ? d : static_cast<int>(next() >> 1) | 1;
    gna::FastDivisor f = gna::FastDivisor::make(divisor);
    auto wrong = [&](int n) {
      if (f.div(n) == n / divisor && f.mod(n) == n % divisor) return false;
      std::printf("%d / %d: got %d\n", n, divisor, f.div(n));
      return true;
    };
    for (int n = 0; n < 3000; ++n)
      if (wrong(n)) return 4;
    for (int64_t q = INT32_MAX / divisor - 2; q <= INT32_MAX / divisor; ++q)
      for (int64_t e = -1; e <= 1; ++e) {
        int64_t n = q * divisor + e;
        if (n >= 0 && n <= INT32_MAX && wrong(static_cast<int>(n))) return 4;
      }
    for (int i = 0; i < 2000; ++i)
      if (wrong(static_cast<int>(next() >> 1))) return 4;
  }
  std::printf("ok\n");
  return 0;
}

// The four 32-bit words of the 128 keys a row sees, from the per-thread sets `make(base, sets)` builds for the
// thread columns 8k + base + e (base 0, 2, 4, 6; e 0, 1): bit 16e + k of sets[0] for column 8k + base + e.
template <class MakeSets>
void print_key_words(MakeSets&& make) {
  unsigned words[4] = {0, 0, 0, 0};
  for (int base = 0; base < 8; base += 2) {
    uint32_t sets[1];
    make(base, sets);
    for (int e = 0; e < 2; ++e)
      for (int k = 0; k < 16; ++k) {
        int col = 8 * k + base + e;
        if ((sets[0] >> (16 * e + k)) & 1u) words[col / 32] |= 1u << (col % 32);
      }
  }
  for (unsigned w : words) std::printf(" %u", w);
}

int print_first_keys() {
  for (int keys = 1; keys <= 128; ++keys) {
    std::printf("%d", keys);
    print_key_words([&](int base, uint32_t (&sets)[1]) { gna::KeyMask::first_keys(keys, base, sets); });
    std::printf("\n");
  }
  return 0;
}

int print_schedule(char** args) {
  int v[5];
  for (int i = 0; i < 5; ++i) v[i] = std::atoi(args[i]);
  gna::TileSchedule schedule = gna::TileSchedule::make(v[0], v[1], v[2]);
  int ctas = schedule.ctas(v[3] != 0, v[4]);
  for (int cta = 0; cta < ctas; ++cta) {
    auto tiles = schedule.of(cta, ctas);
    std::printf("cta %d %d:", cta, tiles.count());
    for (; tiles.valid(); tiles.advance()) {
      gna::TileCoord at = schedule.coord(tiles.tile);
      std::printf(" %d,%d,%d", at.q_linear, at.head, at.batch);
    }
    std::printf("\n");
  }
  return 0;
}

// stdin: lines "reference running_max scale_log2" (inf and -inf spelled so); stdout: 1 where the softmax moves its
// reference max, else 0, a line each.
int print_reference_moves() {
  char r[32], m[32], s[32];
  while (std::scanf("%31s %31s %31s", r, m, s) == 3) {
    float reference = std::strtof(r, nullptr), running_max = std::strtof(m, nullptr);
    std::printf("%d\n", gna::reference_moves(reference, running_max, std::strtof(s, nullptr)));
  }
  return 0;
}

int main(int argc, char** argv) {
  if (argc > 1 && std::strcmp(argv[1], "--divisors") == 0) return check_divisors();
  if (argc == 7 && std::strcmp(argv[1], "--schedule") == 0) return print_schedule(argv + 2);
  if (argc > 1 && std::strcmp(argv[1], "--first-keys") == 0) return print_first_keys();
  if (argc > 1 && std::strcmp(argv[1], "--reference-moves") == 0) return print_reference_moves();
  gna::TileParams p{};
  p.ndim = gna::kMaxDims;
  int* rows[] = {p.length,      p.window,          p.stride,       p.dilation,      p.causal,
                 p.q_tile_log2, p.q_tiles_per_dim, p.kv_tile_log2, p.kv_tiles_per_dim};
  for (int* row : rows)
    for (int i = 0; i < gna::kMaxDims; ++i)
      if (std::scanf("%d", &row[i]) != 1) return 2;
  p.finish();
  int groups = 1;
  for (int i = 0; i < gna::kMaxDims; ++i) groups *= p.dilation[i];
  int tiles = groups * p.q_tiles_per_group;
  gna::KeyMask key_mask = gna::KeyMask::make(p);
  gna::TokenView view = gna::TokenView::make(p, p.q_tile_log2, true, 1, 1, 64, tiles * 128);
  gna::TokenView kv_view = gna::TokenView::make(p, p.kv_tile_log2, true, 1, 1, 64, groups * p.kv_tiles_per_group * 128);
  std::printf("boxes");
  for (int d = 0; d < gna::kMaxDims; ++d) std::printf(" %d", view.box_span(d, true));
  for (int d = 0; d < gna::kMaxDims; ++d) std::printf(" %d", view.dilation[d]);
  for (int d = 0; d < gna::kMaxDims; ++d) std::printf(" %d", kv_view.box_span(d, false));
  for (int d = 0; d < gna::kMaxDims; ++d) std::printf(" %d", kv_view.dilation[d]);
  std::printf(" %d\n", view.fits_tma() && kv_view.fits_tma() ? 1 : 0);
  for (int t = 0; t < tiles; ++t) {
    gna::TileBox box = gna::TileBox::make(p, t);
    std::printf("%d %d", box.count, box.interior_count);
    gna::TileCursor cursor = gna::TileCursor::first(box);
    for (int loop = 0; loop < box.count; ++loop) {
      if (loop > 0) cursor.advance(box, loop);
      std::printf(" %d", cursor.linear(p, box));
    }
    std::printf("\n");
    bool sampled = t == 0 || t == tiles / 2 || t == tiles - 1;
    if (sampled) {
      gna::TileCursor at = gna::TileCursor::first(box);
      for (int loop = 0; loop < box.count; ++loop) {
        if (loop > 0) at.advance(box, loop);
        int c[gna::kMaxDims];
        kv_view.origin(at.linear(p, box), at.kv, box.group, c);
        std::printf("kvorigin %d %d %d %d\n", at.linear(p, box), c[0], c[1], c[2]);
      }
      for (int wg = 0; wg < 2; ++wg) {
        int c[gna::kMaxDims];
        view.half_origin(t, box.q_tile, box.group, wg, c);
        std::printf("qorigin %d %d %d %d\n", wg, c[0], c[1], c[2]);
      }
    }
    if (sampled) {
      gna::TileCursor border = gna::TileCursor::first(box);
      for (int loop = 0; loop < box.count; ++loop) {
        if (loop > 0) border.advance(box, loop);
        if (loop < box.interior_count) continue;
        std::printf("mask %d", border.linear(p, box));
        for (int row = 0; row < 128; ++row) {
          gna::RowWindow window = gna::RowWindow::make(p, box, row);
          print_key_words([&](int base, uint32_t (&sets)[1]) {
            gna::RowEdges edges[1] = {gna::RowEdges::make(key_mask, p, window, base)};
            gna::KeyMask::tile_keys(box, border.kv, [&](int i, int d, int t) { return edges[i].keys(d, t); }, sets);
          });
        }
        std::printf("\n");
        std::printf("rowmask %d", border.linear(p, box));
        for (int row = 0; row < 128; ++row) {
          uint32_t sets[8];
          gna::row_keys(key_mask, p, box, border.kv, gna::RowWindow::make(p, box, row), sets);
          unsigned words[4] = {0, 0, 0, 0};
          for (int col = 0; col < 128; ++col)
            if (gna::sees_key(sets, col)) words[col / 32] |= 1u << (col % 32);
          for (unsigned w : words) std::printf(" %u", w);
        }
        std::printf("\n");
      }
    }
    std::printf("tokens");
    for (int wg = 0; wg < 2; ++wg)
      for (int row = 0; row < 64; ++row) std::printf(" %d", view.token(t, box.q_tile, box.group, wg, row));
    std::printf("\n");
  }
  return 0;
}
