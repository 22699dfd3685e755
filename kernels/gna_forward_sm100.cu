// One GNA forward configuration for Blackwell (sm100a), chosen at build time by GNA_ELEMENT_BF16 (else fp16) and
// GNA_HEAD_DIM. With GNA_KERNEL_INFO_MAIN it is also a host program printing the kernel's launch shape and shared
// memory (scripts/sm100_build_record.py), which needs no GPU.
#include <cuda_runtime.h>

#include <type_traits>

#include "cutlass/cutlass.h"

#include "gna_build_config.hpp"
#include "gna_forward_sm100.h"
#include "gna_kernel_sm100.hpp"
#include "gna_launch.hpp"

namespace {

using gna::build::Element;
using gna::build::kElementName;
using gna::build::kPersistent;
using Kernel = gna::KernelSm100<Element, GNA_HEAD_DIM, kPersistent>;

}  // namespace

namespace gna {

const char* element_name() { return kElementName; }
int head_dim() { return GNA_HEAD_DIM; }

const char* forward_sm100(void const* q, void const* k, void const* v, void* out, float* lse, int batch, int heads,
                          int q_tokens, int kv_tokens, int head_dim, float scale, TileParams const& tiles,
                          bool natural, int max_ctas, void* cuda_stream) {
  if (head_dim != GNA_HEAD_DIM) return "head_dim differs from the compiled configuration";
  ProblemViews views;
  if (const char* error = problem_views(tiles, natural, /*strided_boxes=*/false, batch, heads, head_dim,
                                       q_tokens, kv_tokens, Kernel::kTileRows, Kernel::kTileRows, &views))
    return error;
  TokenView const &q_view = views.q, &kv_view = views.kv;
  constexpr bool kBf16 = std::is_same_v<Element, cutlass::bfloat16_t>;
  typename Kernel::Params params{};
  params.q_view = q_view;
  params.kv_view = kv_view;
  params.tiles = tiles;
  params.key_mask = KeyMask::make(tiles);
  params.scale_softmax_log2 = scale * 1.4426950408889634f;
  params.lse = lse;
  params.schedule = TileSchedule::make(views.q_tiles, heads, batch);
  char const* error = nullptr;
  auto describe = [&](cute::TmaDescriptor* desc, void const* ptr, TokenView const& view) {
    if (error == nullptr) error = make_descriptor(desc, ptr, kBf16, view, /*half=*/false);
  };
  describe(&params.q, q, q_view);
  describe(&params.k, k, kv_view);
  describe(&params.v, v, kv_view);
  describe(&params.o, out, q_view);
  if (error != nullptr) return error;
  return launch<Kernel>(params, max_ctas, cuda_stream);
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
