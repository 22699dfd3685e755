// Host entry point of one compiled GNA forward configuration (element type and head_dim fixed at build time).
#pragma once

#include "gna_tile_box.hpp"

namespace gna {

// Tensors are [batch, tokens, heads, head_dim] (contiguous): with `natural`, tokens in the grid's row-major order (with
// dilation: where every tile's box fits TMA, TokenView::fits_tma), else in the tiled layout (ops/layout.py). lse is
// [batch, heads, q_tokens] float32, in the same order. Every query also sees the first extra_counts[b] of the
// `extra_tokens` extra (text) keys and values of its batch entry b (extra_k, extra_v: [batch, extra_tokens, heads,
// head_dim], valid tokens first; extra_counts: int32 [batch] on the device); extra_k == nullptr: none. A persistent
// build launches one CTA per SM, or `max_ctas` if that is smaller and > 0. Returns nullptr on success, else a message
// saying what failed.
const char* forward_sm90(void const* q, void const* k, void const* v, void* out, float* lse, int batch, int heads,
                         int q_tokens, int kv_tokens, int head_dim, float scale, TileParams const& tiles, bool natural,
                         void const* extra_k, void const* extra_v, int const* extra_counts, int extra_tokens,
                         int max_ctas, void* cuda_stream);

// The compiled configuration: 16-bit element kind ("bfloat16" or "float16") and head_dim.
const char* element_name();
int head_dim();

}  // namespace gna
