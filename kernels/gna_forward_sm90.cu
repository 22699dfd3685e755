// One GNA forward configuration for Hopper, chosen at build time by GNA_ELEMENT_BF16 (else fp16) and GNA_HEAD_DIM.
#include <cuda_runtime.h>

#include <type_traits>

#include "cutlass/cutlass.h"
#include "cutlass/device_kernel.h"

#include "gna_epilogue_sm90.hpp"
#include "gna_forward.h"
#include "gna_kernel_sm90.hpp"
#include "gna_mainloop_sm90.hpp"

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

// 128 query rows per CTA (two consumer warpgroups of 64), KV tiles of 128 keys: Q and KV tile volume 128.
using TileShape = cute::Shape<cute::_128, cute::_128, cute::Int<GNA_HEAD_DIM>>;

// GNA_ONE_TILE_PER_CTA (a build-time schedule variant): one work tile per CTA instead of persistent CTAs.
#ifdef GNA_ONE_TILE_PER_CTA
constexpr bool kPersistent = false;
#else
constexpr bool kPersistent = true;
#endif
using Mainloop = gna::MainloopSm90<Element, TileShape, kPersistent ? 2 : 1>;
using Epilogue = gna::EpilogueSm90<Element, Mainloop>;
using Kernel = gna::KernelSm90<Mainloop, Epilogue, kPersistent>;

}  // namespace

namespace gna {

const char* element_name() { return kElementName; }
int head_dim() { return GNA_HEAD_DIM; }

const char* forward_sm90(void const* q, void const* k, void const* v, void* out, float* lse, int batch, int heads,
                         int q_tokens, int kv_tokens, int head_dim, float scale, TileParams const& tiles, bool natural,
                         int max_ctas, void* cuda_stream) {
  if (head_dim != GNA_HEAD_DIM) return "head_dim differs from the compiled configuration";
  int tiled_tokens = tiles.tiles_per_group;
  for (int d = 0; d < kMaxDims; ++d) tiled_tokens *= tiles.dilation[d];
  tiled_tokens *= get<0>(TileShape{});
  if (natural) {
    for (int d = 0; d < kMaxDims; ++d)
      if (tiles.dilation[d] != 1) return "the natural token order needs dilation 1";
  } else if (q_tokens != tiled_tokens || kv_tokens != tiled_tokens) {
    return "tiled inputs must hold every tile of the layout";
  }
  TokenView view = TokenView::make(tiles, natural, batch, heads, head_dim, tiled_tokens);
  if (view.tokens != q_tokens || view.tokens != kv_tokens) return "token count does not match the grid";
  constexpr bool kBf16 = std::is_same_v<Element, cutlass::bfloat16_t>;
  typename Kernel::Params params{};
  params.q_tiles = tiled_tokens / get<0>(TileShape{});
  params.heads = heads;
  params.batch = batch;
  params.q_tiles_div = FastDivisor::make(params.q_tiles);
  params.heads_div = FastDivisor::make(heads);
  params.mainloop.view = view;
  params.mainloop.scale_softmax_log2 = scale * 1.4426950408889634f;
  params.mainloop.tiles = tiles;
  params.mainloop.key_mask = KeyMask::make(tiles);
  params.epilogue.lse = lse;
  params.epilogue.view = view;
  params.epilogue.tiles = tiles;
  char const* error = nullptr;
  auto describe = [&](cute::TmaDescriptor* desc, void const* ptr, bool half) {
    if (error == nullptr) error = make_descriptor(desc, ptr, kBf16, view, half);
  };
  describe(&params.mainloop.q, q, /*half=*/true);
  describe(&params.mainloop.k, k, false);
  describe(&params.mainloop.v, v, false);
  describe(&params.epilogue.o, out, true);
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
