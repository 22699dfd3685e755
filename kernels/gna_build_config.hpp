// The build-time configuration each forward translation unit is compiled for (backends/cutlass.py kernel_flags):
// element type (GNA_ELEMENT_BF16, else fp16), head_dim (GNA_HEAD_DIM), and schedule (GNA_ONE_TILE_PER_CTA: one work
// tile per CTA, else persistent CTAs). Shared so both architectures read the flags the same way.
#pragma once

#include "cutlass/numeric_types.h"

#ifndef GNA_HEAD_DIM
#error "define GNA_HEAD_DIM (64 or 128)"
#endif

namespace gna::build {

#ifdef GNA_ELEMENT_BF16
using Element = cutlass::bfloat16_t;
constexpr char kElementName[] = "bfloat16";
#else
using Element = cutlass::half_t;
constexpr char kElementName[] = "float16";
#endif

#ifdef GNA_ONE_TILE_PER_CTA
constexpr bool kPersistent = false;
#else
constexpr bool kPersistent = true;
#endif

}  // namespace gna::build
