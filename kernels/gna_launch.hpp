// Host code both forward entry points (gna_forward_sm90.cu, gna_forward_sm100.cu) share: the problem's token views
// checked against the token counts, and the launch (the CTA count from the device's SMs, capped by max_ctas > 0, the
// kernel's dynamic shared memory, the launch and its error check).
#pragma once

#include <cuda_runtime.h>

#include "cutlass/device_kernel.h"
#include "gna_tile_box.hpp"
#include "gna_token_view.hpp"

namespace gna {

struct ProblemViews {
  TokenView q, kv;
  int q_tiles;  // Q work tiles per (batch, head): every tile of every dilation group's layout
};

// The Q and K/V token views of a problem whose Q and K/V tiles hold `q_tile_rows` and `kv_tile_rows` tokens, checked
// against the token counts the caller passed (natural: the model's own order; else the tiled layout, every tile
// present); an error, or nullptr. `strided_boxes`: the kernel reads a dilation group in place, as TMA boxes with
// element strides (sm90a); without it the natural order needs dilation 1.
inline const char* problem_views(TileParams const& tiles, bool natural, bool strided_boxes, int batch, int heads,
                                 int head_dim, int q_tokens, int kv_tokens, int q_tile_rows, int kv_tile_rows,
                                 ProblemViews* views) {
  int groups = 1;
  for (int d = 0; d < kMaxDims; ++d) groups *= tiles.dilation[d];
  int q_tiled_tokens = tiles.q_tiles_per_group * groups * q_tile_rows;
  int kv_tiled_tokens = tiles.kv_tiles_per_group * groups * kv_tile_rows;
  if (natural) {
    if (groups != 1 && !strided_boxes) return "the natural token order needs dilation 1";
  } else if (q_tokens != q_tiled_tokens || kv_tokens != kv_tiled_tokens) {
    return "tiled inputs must hold every tile of the layout";
  }
  views->q = TokenView::make(tiles, tiles.q_tile_log2, natural, batch, heads, head_dim, q_tiled_tokens);
  views->kv = TokenView::make(tiles, tiles.kv_tile_log2, natural, batch, heads, head_dim, kv_tiled_tokens);
  if (views->q.tokens != q_tokens || views->kv.tokens != kv_tokens) return "token count does not match the grid";
  if (!views->q.fits_tma() || !views->kv.fits_tma())
    return "dilated tiles in the natural order need tile side x dilation <= 256 and dilation <= 8 (TMA boxes)";
  views->q_tiles = q_tiled_tokens / q_tile_rows;
  return nullptr;
}

// An error message, or nullptr once the kernel is launched on `cuda_stream`.
template <class Kernel>
const char* launch(typename Kernel::Params const& params, int max_ctas, void* cuda_stream) {
  int device = 0, sm_count = 0;
  if (cudaGetDevice(&device) != cudaSuccess ||
      cudaDeviceGetAttribute(&sm_count, cudaDevAttrMultiProcessorCount, device) != cudaSuccess)
    return "cannot read the device's multiprocessor count";
  if (max_ctas > 0) sm_count = imin(sm_count, max_ctas);
  auto kernel = cutlass::device_kernel<Kernel>;
  if (cudaFuncSetAttribute(kernel, cudaFuncAttributeMaxDynamicSharedMemorySize, Kernel::SharedStorageSize) !=
      cudaSuccess)
    return "cannot set the kernel's shared-memory size";
  kernel<<<Kernel::grid_shape(params, sm_count), Kernel::MaxThreadsPerBlock, Kernel::SharedStorageSize,
           static_cast<cudaStream_t>(cuda_stream)>>>(params);
  if (cudaGetLastError() != cudaSuccess) return "kernel launch failed";
  return nullptr;
}

}  // namespace gna
