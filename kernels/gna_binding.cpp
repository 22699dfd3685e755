// PyTorch binding of one compiled GNA forward configuration for Hopper: argument checks (gna_binding_checks.hpp,
// shared with Blackwell, plus the extra tokens'), then the raw-pointer launcher.
#include <torch/extension.h>

#include <optional>
#include <vector>

#include "gna_binding_checks.hpp"
#include "gna_forward.h"

namespace {

// extra_key, extra_value: [batch, M, heads, head_dim] extra (text) tokens every query sees, each batch entry's valid
// ones first, and extra_counts (int32 [batch]) how many are valid; all three or none. max_ctas: cap on a persistent
// build's CTAs (0: one per SM). The rest: gna::check_problem.
void forward(const at::Tensor& q, const at::Tensor& k, const at::Tensor& v, at::Tensor& out, at::Tensor& lse,
             const std::vector<int64_t>& tile_params, double scale, bool natural,
             const std::optional<at::Tensor>& extra_key, const std::optional<at::Tensor>& extra_value,
             const std::optional<at::Tensor>& extra_counts, int64_t max_ctas, int64_t cuda_stream) {
  at::ScalarType dtype = gna::compiled_dtype(gna::element_name());
  gna::Problem p = gna::check_problem(q, k, v, out, lse, tile_params, dtype, gna::head_dim());
  TORCH_CHECK(extra_key.has_value() == extra_value.has_value() && extra_key.has_value() == extra_counts.has_value(),
              "extra_key, extra_value and extra_counts must be given together");
  void const *extra_k = nullptr, *extra_v = nullptr;
  int const* counts = nullptr;
  int64_t extra_tokens = 0;
  if (extra_key.has_value()) {
    gna::check_tensor(*extra_key, "extra_key", dtype, 4);
    gna::check_tensor(*extra_value, "extra_value", dtype, 4);
    gna::check_tensor(*extra_counts, "extra_counts", at::kInt, 1);
    extra_tokens = extra_key->size(1);
    TORCH_CHECK(extra_key->sizes() == extra_value->sizes(), "extra_key and extra_value shapes differ");
    TORCH_CHECK(extra_key->size(0) == p.batch && extra_key->size(2) == p.heads && extra_key->size(3) == p.head_dim,
                "extra_key has shape ", extra_key->sizes(), "; expected [", p.batch, ", M, ", p.heads, ", ",
                p.head_dim, "]");
    TORCH_CHECK(extra_tokens >= 1, "extra_key has M = 0 tokens; pass none instead");
    TORCH_CHECK(extra_counts->size(0) == p.batch, "extra_counts has ", extra_counts->size(0), " entries; expected ",
                p.batch);
    extra_k = extra_key->data_ptr();
    extra_v = extra_value->data_ptr();
    counts = extra_counts->data_ptr<int>();
  }
  const char* error = gna::forward_sm90(q.data_ptr(), k.data_ptr(), v.data_ptr(), out.data_ptr(),
                                        lse.data_ptr<float>(), p.batch, p.heads, p.q_tokens, p.kv_tokens, p.head_dim,
                                        static_cast<float>(scale), p.tiles, natural, extra_k, extra_v, counts,
                                        static_cast<int>(extra_tokens), static_cast<int>(max_ctas),
                                        reinterpret_cast<void*>(cuda_stream));
  TORCH_CHECK(error == nullptr, "GNA cutlass forward: ", error);
}

}  // namespace

PYBIND11_MODULE(TORCH_EXTENSION_NAME, m) {
  m.def("forward", &forward, "GNA forward (Hopper), natural or tiled token order");
  m.def("element_name", &gna::element_name);
  m.def("head_dim", &gna::head_dim);
}
