// Host entry point of one compiled GNA forward configuration for Blackwell (element type and head_dim fixed at build
// time); the same contract as forward_sm90 (gna_forward.h) without the extra tokens.
#pragma once

#include "gna_tile_box.hpp"

namespace gna {

// Tensors are [batch, tokens, heads, head_dim] (contiguous): with `natural`, tokens in the grid's row-major order
// (dilation 1 only), else in the tiled layout (ops/layout.py). lse is [batch, heads, q_tokens] float32, in the same
// order. A persistent build launches one CTA per SM, or `max_ctas` if that is smaller and > 0. Returns nullptr on
// success, else a message saying what failed.
const char* forward_sm100(void const* q, void const* k, void const* v, void* out, float* lse, int batch, int heads,
                          int q_tokens, int kv_tokens, int head_dim, float scale, TileParams const& tiles,
                          bool natural, int max_ctas, void* cuda_stream);

// The compiled configuration: 16-bit element kind ("bfloat16" or "float16") and head_dim.
const char* element_name();
int head_dim();

}  // namespace gna
