// One GNA forward configuration for Blackwell (sm100a), chosen at build time by GNA_ELEMENT_BF16 (else fp16) and
// GNA_HEAD_DIM. With GNA_KERNEL_INFO_MAIN it is also a host program printing the kernel's launch shape and shared
// memory (scripts/sm100_build_record.py), which needs no GPU.
#include <cuda_runtime.h>

#include <type_traits>

#include "cutlass/cutlass.h"
#include "cutlass/device_kernel.h"

#include "gna_forward_sm100.h"
#include "gna_kernel_sm100.hpp"

#ifndef GNA_HEAD_DIM
#error "define GNA_HEAD_DIM (64 or 128)"
#endif

namespace {

#ifdef GNA_ELEMENT_BF16
using Element = cutlass::bfloat16_t;
constexpr char kElementName[] = "bfloat16";
#else
using Element = cutlass::half_t;
constexpr char kElementName[] = "float16";
#endif

// GNA_ONE_TILE_PER_CTA (a build-time schedule variant, as on Hopper): one work tile per CTA instead of persistent CTAs.
#ifdef GNA_ONE_TILE_PER_CTA
constexpr bool kPersistent = false;
#else
constexpr bool kPersistent = true;
#endif
using Kernel = gna::KernelSm100<Element, GNA_HEAD_DIM, kPersistent>;

}  // namespace

namespace gna {

const char* element_name() { return kElementName; }
int head_dim() { return GNA_HEAD_DIM; }

const char* forward_sm100(void const* q, void const* k, void const* v, void* out, float* lse, int batch, int heads,
                          int q_tokens, int kv_tokens, int head_dim, float scale, TileParams const& tiles,
                          bool natural, int max_ctas, void* cuda_stream) {
  if (head_dim != GNA_HEAD_DIM) return "head_dim differs from the compiled configuration";
  int groups = 1;
  for (int d = 0; d < kMaxDims; ++d) groups *= tiles.dilation[d];
  int q_tiled_tokens = tiles.q_tiles_per_group * groups * Kernel::kTileRows;
  int kv_tiled_tokens = tiles.kv_tiles_per_group * groups * Kernel::kTileRows;
  if (natural) {
    if (groups != 1) return "the natural token order needs dilation 1";
  } else if (q_tokens != q_tiled_tokens || kv_tokens != kv_tiled_tokens) {
    return "tiled inputs must hold every tile of the layout";
  }
  TokenView q_view = TokenView::make(tiles, tiles.q_tile_log2, natural, batch, heads, head_dim, q_tiled_tokens);
  TokenView kv_view = TokenView::make(tiles, tiles.kv_tile_log2, natural, batch, heads, head_dim, kv_tiled_tokens);
  if (q_view.tokens != q_tokens || kv_view.tokens != kv_tokens) return "token count does not match the grid";
  constexpr bool kBf16 = std::is_same_v<Element, cutlass::bfloat16_t>;
  typename Kernel::Params params{};
  params.q_view = q_view;
  params.kv_view = kv_view;
  params.tiles = tiles;
  params.key_mask = KeyMask::make(tiles);
  params.scale_softmax_log2 = scale * 1.4426950408889634f;
  params.lse = lse;
  params.schedule = TileSchedule::make(q_tiled_tokens / Kernel::kTileRows, heads, batch);
  char const* error = nullptr;
  auto describe = [&](cute::TmaDescriptor* desc, void const* ptr, TokenView const& view) {
    if (error == nullptr) error = make_descriptor(desc, ptr, kBf16, view, /*half=*/false);
  };
  describe(&params.q, q, q_view);
  describe(&params.k, k, kv_view);
  describe(&params.v, v, kv_view);
  describe(&params.o, out, q_view);
  if (error != nullptr) return error;
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

#ifdef GNA_KERNEL_INFO_MAIN
#include <cstdio>

int main() {
  std::printf("{\"element\": \"%s\", \"head_dim\": %d, \"persistent\": %s, \"threads\": %d, "
              "\"shared_storage_bytes\": %d, \"kv_stages\": %d, \"tmem_columns\": %d}\n",
              kElementName, GNA_HEAD_DIM, kPersistent ? "true" : "false", Kernel::MaxThreadsPerBlock,
              Kernel::SharedStorageSize, Kernel::kKVStages, Kernel::kTmemColumns);
  return 0;
}
#endif
