// PyTorch binding of one compiled GNA forward configuration for Blackwell: argument checks (gna_binding_checks.hpp,
// shared with Hopper), then the raw-pointer launcher. The same Python signature as the Hopper binding minus the extra
// tokens (on sm100a the Python backend merges them by LSE). max_ctas: cap on a persistent build's CTAs (0: one per
// SM).
#include <torch/extension.h>

#include <vector>

#include "gna_binding_checks.hpp"
#include "gna_forward_sm100.h"

namespace {

void forward(const at::Tensor& q, const at::Tensor& k, const at::Tensor& v, at::Tensor& out, at::Tensor& lse,
             const std::vector<int64_t>& tile_params, double scale, bool natural, int64_t max_ctas,
             int64_t cuda_stream) {
  gna::Problem p = gna::check_problem(q, k, v, out, lse, tile_params, gna::compiled_dtype(gna::element_name()),
                                      gna::head_dim());
  const char* error = gna::forward_sm100(q.data_ptr(), k.data_ptr(), v.data_ptr(), out.data_ptr(),
                                         lse.data_ptr<float>(), p.batch, p.heads, p.q_tokens, p.kv_tokens, p.head_dim,
                                         static_cast<float>(scale), p.tiles, natural, static_cast<int>(max_ctas),
                                         reinterpret_cast<void*>(cuda_stream));
  TORCH_CHECK(error == nullptr, "GNA cutlass forward (sm100a): ", error);
}

}  // namespace

PYBIND11_MODULE(TORCH_EXTENSION_NAME, m) {
  m.def("forward", &forward, "GNA forward (Blackwell sm100a), natural or tiled token order");
  m.def("element_name", &gna::element_name);
  m.def("head_dim", &gna::head_dim);
}
