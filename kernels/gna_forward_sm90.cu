// One GNA forward configuration for Hopper, chosen at build time by GNA_ELEMENT_BF16 (else fp16) and GNA_HEAD_DIM.
#include <cuda_runtime.h>

#include <type_traits>

#include "cutlass/cutlass.h"
#include "cutlass/kernel_hardware_info.h"

#include "device/device_universal.hpp"
#include "kernel/fmha_kernel_tma_warpspecialized.hpp"
#include "kernel/fmha_tile_scheduler.hpp"

#include "gna_epilogue_sm90.hpp"
#include "gna_forward.h"
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

// GNA_LOCKED (a build-time schedule variant): the consumer warpgroups take turns issuing their matrix products.
template <class... Options>
struct Schedule {
  using Mainloop = gna::MainloopSm90<Element, TileShape, Options...>;
  using Epilogue = gna::EpilogueSm90<Element, Mainloop>;
  using Kernel = cutlass::fmha::kernel::FmhaKernelTmaWarpSpecialized<
      Mainloop, Epilogue, cutlass::fmha::kernel::IndividualTileScheduler, Options...>;
};

#ifdef GNA_LOCKED
using Kernel = Schedule<cutlass::fmha::kernel::Option<cutlass::fmha::kernel::Tag::kIsMainloopLocked,
                                                      cute::true_type>>::Kernel;
#else
using Kernel = Schedule<>::Kernel;
#endif
using Operation = cutlass::device::Universal<Kernel>;

}  // namespace

namespace gna {

const char* element_name() { return kElementName; }
int head_dim() { return GNA_HEAD_DIM; }

const char* forward_sm90(void const* q, void const* k, void const* v, void* out, float* lse, int batch, int heads,
                         int q_tokens, int kv_tokens, int head_dim, float scale, TileParams const& tiles, bool natural,
                         void* cuda_stream) {
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
  typename Kernel::Arguments args{{batch, heads, tiled_tokens, tiled_tokens, head_dim}, {}, {}, {}};
  args.mainloop.view = view;
  args.mainloop.scale = scale;
  args.mainloop.tiles = tiles;
  args.epilogue.lse = lse;
  args.epilogue.view = view;
  args.epilogue.tiles = tiles;
  char const* error = nullptr;
  auto describe = [&](cute::TmaDescriptor* desc, void const* ptr, bool half) {
    if (error == nullptr) error = make_descriptor(desc, ptr, kBf16, view, half);
  };
  describe(&args.mainloop.q, q, /*half=*/true);
  describe(&args.mainloop.k, k, false);
  describe(&args.mainloop.v, v, false);
  describe(&args.epilogue.o, out, true);
  if (error != nullptr) return error;
  Operation op;
  int device = 0;
  if (cudaGetDevice(&device) != cudaSuccess ||
      cudaDeviceGetAttribute(&args.hw_info.sm_count, cudaDevAttrMultiProcessorCount, device) != cudaSuccess)
    return "cannot read the device's multiprocessor count";
  if (op.can_implement(args) != cutlass::Status::kSuccess) return "problem shape not supported by the kernel";
  if (op.initialize(args, nullptr, static_cast<cudaStream_t>(cuda_stream)) != cutlass::Status::kSuccess)
    return "kernel initialization failed (shared memory attribute)";
  if (op.run(static_cast<cudaStream_t>(cuda_stream)) != cutlass::Status::kSuccess) return "kernel launch failed";
  return nullptr;
}

}  // namespace gna
