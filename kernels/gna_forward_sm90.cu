// One GNA forward configuration for Hopper, chosen at build time by GNA_ELEMENT_BF16 (else fp16) and GNA_HEAD_DIM.
#include <cuda_runtime.h>

#include "cutlass/cutlass.h"
#include "cutlass/kernel_hardware_info.h"

#include "collective/fmha_epilogue.hpp"
#include "device/device_universal.hpp"
#include "kernel/fmha_kernel_tma_warpspecialized.hpp"
#include "kernel/fmha_tile_scheduler.hpp"

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

// Schedule variants of the example's kernel, chosen at build time: GNA_PERSISTENT (one CTA per SM looping over
// tiles, Q loaded by its own warp) and GNA_LOCKED (consumer warpgroups take turns for the softmax).
template <class... Options>
struct Schedule {
  static constexpr bool kPersistent =
      cutlass::fmha::kernel::find_option_t<cutlass::fmha::kernel::Tag::kIsPersistent, cute::false_type,
                                           Options...>::value;
  using Mainloop = gna::MainloopSm90<Element, TileShape, Options...>;
  using Epilogue = cutlass::fmha::collective::FmhaFwdEpilogue<Element, float, typename Mainloop::TileShapePV>;
  using Scheduler = std::conditional_t<kPersistent, cutlass::fmha::kernel::PersistentTileScheduler,
                                       cutlass::fmha::kernel::IndividualTileScheduler>;
  using Kernel = cutlass::fmha::kernel::FmhaKernelTmaWarpSpecialized<Mainloop, Epilogue, Scheduler, Options...>;
};

using cutlass::fmha::kernel::Option;
using cutlass::fmha::kernel::Tag;
#if defined(GNA_PERSISTENT) && defined(GNA_LOCKED)
using Kernel = Schedule<Option<Tag::kIsPersistent, cute::true_type>, Option<Tag::kLoadsQSeparately, cute::true_type>,
                        Option<Tag::kIsMainloopLocked, cute::true_type>>::Kernel;
#elif defined(GNA_PERSISTENT)
using Kernel = Schedule<Option<Tag::kIsPersistent, cute::true_type>,
                        Option<Tag::kLoadsQSeparately, cute::true_type>>::Kernel;
#elif defined(GNA_LOCKED)
using Kernel = Schedule<Option<Tag::kIsMainloopLocked, cute::true_type>>::Kernel;
#else
using Kernel = Schedule<>::Kernel;
#endif
using Operation = cutlass::device::Universal<Kernel>;

}  // namespace

namespace gna {

const char* element_name() { return kElementName; }
int head_dim() { return GNA_HEAD_DIM; }

const char* forward_sm90(void const* q, void const* k, void const* v, void* out, float* lse, int batch, int heads,
                         int q_tokens, int kv_tokens, int head_dim, float scale, TileParams const& tiles,
                         void* cuda_stream) {
  if (head_dim != GNA_HEAD_DIM) return "head_dim differs from the compiled configuration";
  int row = heads * head_dim;  // elements between consecutive tokens
  TokenMajorStride dQ{row, cute::_1{}, cute::make_tuple(q_tokens * row, head_dim)};
  TokenMajorStride dKV{row, cute::_1{}, cute::make_tuple(kv_tokens * row, head_dim)};
  typename Kernel::Arguments args{
      {batch, heads, q_tokens, kv_tokens, head_dim},
      {static_cast<Element const*>(q), dQ, static_cast<Element const*>(k), dKV, static_cast<Element const*>(v), dKV,
       scale, tiles},
      {static_cast<Element*>(out), dQ, lse, cute::make_tuple(cute::_1{}, cute::make_tuple(heads * q_tokens, q_tokens))},
      cutlass::KernelHardwareInfo{}};
  Operation op;
  int device = 0;
  if (cudaGetDevice(&device) != cudaSuccess ||
      cudaDeviceGetAttribute(&args.hw_info.sm_count, cudaDevAttrMultiProcessorCount, device) != cudaSuccess)
    return "cannot read the device's multiprocessor count";
  if (op.can_implement(args) != cutlass::Status::kSuccess) return "problem shape not supported by the kernel";
  if (op.initialize(args, nullptr, static_cast<cudaStream_t>(cuda_stream)) != cutlass::Status::kSuccess)
    return "kernel initialization failed (shared memory attribute or TMA descriptors)";
  if (op.run(static_cast<cudaStream_t>(cuda_stream)) != cutlass::Status::kSuccess) return "kernel launch failed";
  return nullptr;
}

}  // namespace gna
