// PyTorch binding of one compiled GNA forward configuration: argument checks, then the raw-pointer launcher.
#include <torch/extension.h>

#include <optional>
#include <vector>

#include "gna_forward.h"

namespace {

void check_tensor(const at::Tensor& t, const char* name, at::ScalarType dtype, int64_t dims) {
  TORCH_CHECK(t.is_cuda(), name, " must be a CUDA tensor");
  TORCH_CHECK(t.scalar_type() == dtype, name, " has dtype ", t.scalar_type(), "; expected ", dtype);
  TORCH_CHECK(t.dim() == dims, name, " has ", t.dim(), " dims; expected ", dims);
  TORCH_CHECK(t.is_contiguous(), name, " must be contiguous");
}

// q, k, v, out: [batch, tokens, heads, head_dim], tokens in the grid's order (natural) or tiled; lse: [batch, heads,
// q_tokens] float32 in the same order.
// tile_params: 9 rows of 3 ints (length, window, stride, dilation, causal, then tile_log2 and tiles_per_dim of the Q
// tiles and of the K/V tiles), dims padded at the front with length-1 dimensions. extra_key, extra_value: [batch, M,
// heads, head_dim] extra (text) tokens every query sees, each batch entry's valid ones first, and extra_counts
// (int32 [batch]) how many are valid; all three or none. max_ctas: cap on a persistent build's CTAs (0: one per SM).
void forward(const at::Tensor& q, const at::Tensor& k, const at::Tensor& v, at::Tensor& out, at::Tensor& lse,
             const std::vector<int64_t>& tile_params, double scale, bool natural,
             const std::optional<at::Tensor>& extra_key, const std::optional<at::Tensor>& extra_value,
             const std::optional<at::Tensor>& extra_counts, int64_t max_ctas, int64_t cuda_stream) {
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
  TORCH_CHECK(tile_params.size() == 9 * gna::kMaxDims, "tile_params must hold 9 x ", gna::kMaxDims, " ints");
  TORCH_CHECK(extra_key.has_value() == extra_value.has_value() && extra_key.has_value() == extra_counts.has_value(),
              "extra_key, extra_value and extra_counts must be given together");
  void const *extra_k = nullptr, *extra_v = nullptr;
  int const* counts = nullptr;
  int64_t extra_tokens = 0;
  if (extra_key.has_value()) {
    check_tensor(*extra_key, "extra_key", dtype, 4);
    check_tensor(*extra_value, "extra_value", dtype, 4);
    check_tensor(*extra_counts, "extra_counts", at::kInt, 1);
    extra_tokens = extra_key->size(1);
    TORCH_CHECK(extra_key->sizes() == extra_value->sizes(), "extra_key and extra_value shapes differ");
    TORCH_CHECK(extra_key->size(0) == batch && extra_key->size(2) == heads && extra_key->size(3) == head_dim,
                "extra_key has shape ", extra_key->sizes(), "; expected [", batch, ", M, ", heads, ", ", head_dim, "]");
    TORCH_CHECK(extra_tokens >= 1, "extra_key has M = 0 tokens; pass none instead");
    TORCH_CHECK(extra_counts->size(0) == batch, "extra_counts has ", extra_counts->size(0), " entries; expected ",
                batch);
    extra_k = extra_key->data_ptr();
    extra_v = extra_value->data_ptr();
    counts = extra_counts->data_ptr<int>();
  }
  gna::TileParams p{};
  p.ndim = gna::kMaxDims;
  for (int i = 0; i < gna::kMaxDims; ++i) {
    p.length[i] = static_cast<int>(tile_params[0 * gna::kMaxDims + i]);
    p.window[i] = static_cast<int>(tile_params[1 * gna::kMaxDims + i]);
    p.stride[i] = static_cast<int>(tile_params[2 * gna::kMaxDims + i]);
    p.dilation[i] = static_cast<int>(tile_params[3 * gna::kMaxDims + i]);
    p.causal[i] = static_cast<int>(tile_params[4 * gna::kMaxDims + i]);
    p.q_tile_log2[i] = static_cast<int>(tile_params[5 * gna::kMaxDims + i]);
    p.q_tiles_per_dim[i] = static_cast<int>(tile_params[6 * gna::kMaxDims + i]);
    p.kv_tile_log2[i] = static_cast<int>(tile_params[7 * gna::kMaxDims + i]);
    p.kv_tiles_per_dim[i] = static_cast<int>(tile_params[8 * gna::kMaxDims + i]);
  }
  p.finish();
  const char* error = gna::forward_sm90(q.data_ptr(), k.data_ptr(), v.data_ptr(), out.data_ptr(),
                                        lse.data_ptr<float>(), static_cast<int>(batch), static_cast<int>(heads),
                                        static_cast<int>(q_tokens), static_cast<int>(k.size(1)),
                                        static_cast<int>(head_dim), static_cast<float>(scale), p, natural, extra_k,
                                        extra_v, counts, static_cast<int>(extra_tokens), static_cast<int>(max_ctas),
                                        reinterpret_cast<void*>(cuda_stream));
  TORCH_CHECK(error == nullptr, "GNA cutlass forward: ", error);
}

}  // namespace

PYBIND11_MODULE(TORCH_EXTENSION_NAME, m) {
  m.def("forward", &forward, "GNA forward (Hopper), natural or tiled token order");
  m.def("element_name", &gna::element_name);
  m.def("head_dim", &gna::head_dim);
}
