// The online softmax's rule for its reference max, shared by the Hopper and Blackwell kernels: no architecture code
// here, and the CPU driver (tests/tile_box_driver.cpp) checks it.
//
// Probabilities are taken against a reference max per query row, not the running max itself. The reference moves
// to the running max only when that has risen past it by more than kRescaleThreshold (log2 units of the scaled
// scores). Until then every probability stays below 2^kRescaleThreshold, which bf16/fp16 hold exactly and float sums
// hold far from overflow, and the output accumulated so far needs no rescale. The log-sum-exp and the final
// normalization use the same reference, so the result is the same function.
#pragma once

#include "gna_tile_box.hpp"

namespace gna {

constexpr float kRescaleThreshold = 8.f;

// Whether a row whose reference is `reference` (-inf while it has seen no key) moves it to `running_max` (>= the
// reference; -inf while the row has seen no key). A first key always moves it; two -inf compare false (NaN).
GNA_HOST_DEVICE bool reference_moves(float reference, float running_max, float scale_log2) {
  return (running_max - reference) * scale_log2 > kRescaleThreshold;
}

}  // namespace gna
