// PyTorch binding of one compiled GNA forward configuration for Blackwell: argument checks, then the raw-pointer
// launcher. The same Python signature as the Hopper binding (gna_binding.cpp); `max_ctas` is accepted and unused
// (the Blackwell kernel runs one Q tile per CTA).
#include <torch/extension.h>

#include <string>
#include <vector>

#include "gna_forward_sm100.h"
#include "gna_tile_params.hpp"

namespace {

void check_tensor(const at::Tensor& t, const char* name, at::ScalarType dtype, int64_t dims) {
  TORCH_CHECK(t.is_cuda(), name, " must be a CUDA tensor");
  TORCH_CHECK(t.scalar_type() == dtype, name, " has dtype ", t.scalar_type(), "; expected ", dtype);
  TORCH_CHECK(t.dim() == dims, name, " has ", t.dim(), " dims; expected ", dims);
  TORCH_CHECK(t.is_contiguous(), name, " must be contiguous");
}

// q, k, v, out: [batch, tokens, heads, head_dim], tokens in the grid's order (natural) or tiled; lse: [batch, heads,
// q_tokens] float32 in the same order; tile_params: gna_tile_params.hpp.
void forward(const at::Tensor& q, const at::Tensor& k, const at::Tensor& v, at::Tensor& out, at::Tensor& lse,
             const std::vector<int64_t>& tile_params, double scale, bool natural, int64_t max_ctas,
             int64_t cuda_stream) {
  (void)max_ctas;
  at::ScalarType dtype = std::string(gna::element_name()) == "bfloat16" ? at::kBFloat16 : at::kHalf;
  check_tensor(q, "query", dtype, 4);
  check_tensor(k, "key", dtype, 4);
  check_tensor(v, "value", dtype, 4);
  check_tensor(out, "out", dtype, 4);
  check_tensor(lse, "lse", at::kFloat, 3);
  TORCH_CHECK(k.sizes() == v.sizes(), "key and value shapes differ");
  TORCH_CHECK(out.sizes() == q.sizes(), "out must have query's shape");
  int64_t batch = q.size(0), q_tokens = q.size(1), heads = q.size(2), head_dim = q.size(3);
  TORCH_CHECK(k.size(0) == batch && k.size(2) == heads && k.size(3) == head_dim, "key shape does not match query");
  TORCH_CHECK(head_dim == gna::head_dim(), "head_dim ", head_dim, " differs from the compiled ", gna::head_dim());
  TORCH_CHECK(lse.size(0) == batch && lse.size(1) == heads && lse.size(2) == q_tokens, "lse must be [B, H, Nq]");
  TORCH_CHECK(static_cast<int>(tile_params.size()) == gna::kFlatTileParams, "tile_params must hold ",
              gna::kFlatTileParams, " ints");
  gna::TileParams p = gna::tile_params_from_flat(tile_params);
  const char* error = gna::forward_sm100(q.data_ptr(), k.data_ptr(), v.data_ptr(), out.data_ptr(),
                                         lse.data_ptr<float>(), static_cast<int>(batch), static_cast<int>(heads),
                                         static_cast<int>(q_tokens), static_cast<int>(k.size(1)),
                                         static_cast<int>(head_dim), static_cast<float>(scale), p, natural,
                                         reinterpret_cast<void*>(cuda_stream));
  TORCH_CHECK(error == nullptr, "GNA cutlass forward (sm100a): ", error);
}

}  // namespace

PYBIND11_MODULE(TORCH_EXTENSION_NAME, m) {
  m.def("forward", &forward, "GNA forward (Blackwell sm100a), natural or tiled token order");
  m.def("element_name", &gna::element_name);
  m.def("head_dim", &gna::head_dim);
}
