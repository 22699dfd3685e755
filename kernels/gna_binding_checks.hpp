// Argument checks both torch bindings (Hopper gna_binding.cpp, Blackwell gna_binding_sm100.cpp) run before their
// raw-pointer launchers: one place, so the two architectures refuse the same inputs with the same words. Host code.
#pragma once

#include <torch/extension.h>

#include <cstdint>
#include <string>
#include <vector>

#include "gna_tile_params.hpp"

namespace gna {

inline void check_tensor(const at::Tensor& t, const char* name, at::ScalarType dtype, int64_t dims) {
  TORCH_CHECK(t.is_cuda(), name, " must be a CUDA tensor");
  TORCH_CHECK(t.scalar_type() == dtype, name, " has dtype ", t.scalar_type(), "; expected ", dtype);
  TORCH_CHECK(t.dim() == dims, name, " has ", t.dim(), " dims; expected ", dims);
  TORCH_CHECK(t.is_contiguous(), name, " must be contiguous");
}

// The element type a build was compiled for, as a torch dtype.
inline at::ScalarType compiled_dtype(const char* element) {
  return std::string(element) == "bfloat16" ? at::kBFloat16 : at::kHalf;
}

struct Problem {
  int batch, heads, q_tokens, kv_tokens, head_dim;
  TileParams tiles;
};

// q, k, v, out: [batch, tokens, heads, head_dim] of the compiled dtype and head_dim, tokens in the grid's order
// (natural) or tiled; lse: [batch, heads, q_tokens] float32 in the same order; tile_params: gna_tile_params.hpp.
inline Problem check_problem(const at::Tensor& q, const at::Tensor& k, const at::Tensor& v, const at::Tensor& out,
                             const at::Tensor& lse, const std::vector<int64_t>& tile_params, at::ScalarType dtype,
                             int64_t compiled_head_dim) {
  check_tensor(q, "query", dtype, 4);
  check_tensor(k, "key", dtype, 4);
  check_tensor(v, "value", dtype, 4);
  check_tensor(out, "out", dtype, 4);
  check_tensor(lse, "lse", at::kFloat, 3);
  TORCH_CHECK(k.sizes() == v.sizes(), "key and value shapes differ");
  TORCH_CHECK(out.sizes() == q.sizes(), "out must have query's shape");
  int64_t batch = q.size(0), q_tokens = q.size(1), heads = q.size(2), head_dim = q.size(3);
  TORCH_CHECK(k.size(0) == batch && k.size(2) == heads && k.size(3) == head_dim, "key shape does not match query");
  TORCH_CHECK(head_dim == compiled_head_dim, "head_dim ", head_dim, " differs from the compiled ", compiled_head_dim);
  TORCH_CHECK(lse.size(0) == batch && lse.size(1) == heads && lse.size(2) == q_tokens, "lse must be [B, H, Nq]");
  TORCH_CHECK(static_cast<int64_t>(tile_params.size()) == kFlatTileParams, "tile_params must hold ", kFlatTileParams,
              " ints");
  return Problem{static_cast<int>(batch), static_cast<int>(heads), static_cast<int>(q_tokens),
                 static_cast<int>(k.size(1)), static_cast<int>(head_dim), tile_params_from_flat(tile_params)};
}

}  // namespace gna
