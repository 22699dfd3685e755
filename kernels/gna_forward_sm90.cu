// One GNA forward configuration for Hopper, chosen at build time by GNA_ELEMENT_BF16 (else fp16) and GNA_HEAD_DIM.
#include <cuda_runtime.h>

#include <type_traits>

#include "cutlass/cutlass.h"

#include "gna_build_config.hpp"
#include "gna_epilogue_sm90.hpp"
#include "gna_forward.h"
#include "gna_kernel_sm90.hpp"
#include "gna_launch.hpp"
#include "gna_mainloop_sm90.hpp"

namespace {

using gna::build::Element;
using gna::build::kElementName;
using gna::build::kPersistent;

// 128 query rows per CTA (two consumer warpgroups of 64), KV tiles of 128 keys: Q and KV tile volume 128.
using TileShape = cute::Shape<cute::_128, cute::_128, cute::Int<GNA_HEAD_DIM>>;

using Mainloop = gna::MainloopSm90<Element, TileShape, kPersistent ? 2 : 1>;
using Epilogue = gna::EpilogueSm90<Element, Mainloop>;
using Kernel = gna::KernelSm90<Mainloop, Epilogue, kPersistent>;

}  // namespace

namespace gna {

const char* element_name() { return kElementName; }
int head_dim() { return GNA_HEAD_DIM; }

const char* forward_sm90(void const* q, void const* k, void const* v, void* out, float* lse, int batch, int heads,
                         int q_tokens, int kv_tokens, int head_dim, float scale, TileParams const& tiles, bool natural,
                         void const* extra_k, void const* extra_v, int const* extra_counts, int extra_tokens,
                         int max_ctas, void* cuda_stream) {
  if (head_dim != GNA_HEAD_DIM) return "head_dim differs from the compiled configuration";
  if (extra_k != nullptr && (extra_v == nullptr || extra_counts == nullptr || extra_tokens < 1))
    return "extra tokens need keys, values, per-batch counts and at least one token";
  ProblemViews views;
  if (const char* error = problem_views(tiles, natural, /*strided_boxes=*/true, batch, heads, head_dim,
                                       q_tokens, kv_tokens, get<0>(TileShape{}), get<1>(TileShape{}), &views))
    return error;
  TokenView const &q_view = views.q, &kv_view = views.kv;
  constexpr bool kBf16 = std::is_same_v<Element, cutlass::bfloat16_t>;
  typename Kernel::Params params{};
  params.schedule = TileSchedule::make(views.q_tiles, heads, batch);
  params.mainloop.q_view = q_view;
  params.mainloop.kv_view = kv_view;
  params.mainloop.scale_softmax_log2 = scale * 1.4426950408889634f;
  params.mainloop.tiles = tiles;
  params.mainloop.key_mask = KeyMask::make(tiles);
  params.epilogue.lse = lse;
  params.epilogue.view = q_view;
  params.epilogue.tiles = tiles;
  char const* error = nullptr;
  auto describe = [&](cute::TmaDescriptor* desc, void const* ptr, TokenView const& view, bool half) {
    if (error == nullptr) error = make_descriptor(desc, ptr, kBf16, view, half);
  };
  describe(&params.mainloop.q, q, q_view, /*half=*/true);
  describe(&params.mainloop.k, k, kv_view, false);
  describe(&params.mainloop.v, v, kv_view, false);
  describe(&params.epilogue.o, out, q_view, true);
  if (extra_k != nullptr) {
    params.mainloop.extra_view = TokenView::sequence(batch, heads, head_dim, extra_tokens);
    params.mainloop.extra_counts = extra_counts;
    describe(&params.mainloop.extra_k, extra_k, params.mainloop.extra_view, false);
    describe(&params.mainloop.extra_v, extra_v, params.mainloop.extra_view, false);
  }
  if (error != nullptr) return error;
  return launch<Kernel>(params, max_ctas, cuda_stream);
}

}  // namespace gna
