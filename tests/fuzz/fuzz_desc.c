/* Router, experts and score descriptors with random fields and struct_size
 * values. Weight arrays are given at the size the fields ask for (the
 * caller's contract) when that is small, else left NULL. */
#include "fuzz_common.h"

enum { MAX_WEIGHTS = 1 << 16 };

static void router(fuzz_bytes *b) {
  clmoe_router_desc d;
  clmoe_router_desc_init(&d);
  d.struct_size = (size_t)fuzz_range(b, 0, (int32_t)(2 * sizeof d));
  d.num_experts = fuzz_i32(b) % 2048;
  d.d_model = fuzz_i32(b) % 4096;
  d.policy = fuzz_range(b, -1, 7);
  d.gates = fuzz_range(b, -1, 3);
  d.k = fuzz_i32(b) % 2048;
  d.p = fuzz_f32(b);
  d.k_min = fuzz_i32(b) % 2048;
  d.k_max = fuzz_i32(b) % 2048;
  d.k_mean = fuzz_f32(b);
  d.capacity_factor = fuzz_f32(b);
  d.overflow = fuzz_range(b, -1, 3);
  d.affinity = fuzz_range(b, -1, 3);
  d.fallback = fuzz_range(b, -1, 3);
  d.weight_dtype = fuzz_range(b, -1, 5);
  int64_t n = (int64_t)d.num_experts * d.d_model;
  float *w = n > 0 && n <= MAX_WEIGHTS ? fuzz_floats(b, (size_t)n) : NULL;
  float *bias = d.num_experts > 0 && d.num_experts <= MAX_WEIGHTS
                    ? fuzz_floats(b, (size_t)d.num_experts)
                    : NULL;
  d.weight_host = fuzz_range(b, 0, 3) ? w : NULL;
  d.bias_host = fuzz_range(b, 0, 1) ? bias : NULL;
  /* Since 0.4: the model families' router fields. */
  d.scoring = fuzz_range(b, -1, 2);
  d.selection_bias_host = fuzz_range(b, 0, 1) ? bias : NULL;
  d.num_groups = fuzz_range(b, -1, 70);
  d.topk_groups = fuzz_range(b, -1, 70);
  d.group_score = fuzz_range(b, -1, 2);
  d.gate_scale = fuzz_f32(b);
  d.gate_position = fuzz_range(b, -1, 2);
  clmoe_router *r = (clmoe_router *)1;
  if (clmoe_router_create(fuzz_context(), &d, &r) == CLMOE_SUCCESS)
    clmoe_router_destroy(r);
  else if (r)
    abort(); /* failed creates must leave the handle NULL */
  free(w);
  free(bias);
}

static void experts(fuzz_bytes *b) {
  clmoe_experts_desc d;
  clmoe_experts_desc_init(&d);
  d.struct_size = (size_t)fuzz_range(b, 0, (int32_t)(2 * sizeof d));
  d.num_experts = fuzz_i32(b) % 64;
  d.d_model = fuzz_i32(b) % 64;
  d.d_ff = fuzz_i32(b) % 64;
  d.activation = fuzz_range(b, -1, 7);
  d.swiglu_limit = fuzz_f32(b);
  d.swiglu_alpha = fuzz_f32(b);
  d.layout = fuzz_range(b, -1, 2);
  d.path = fuzz_range(b, -1, 3);
  d.weight_dtype = fuzz_range(b, -1, 5);
  d.host_dtype = fuzz_range(b, -1, 5); /* 16-bit reads half the arrays */
  int64_t n = (int64_t)d.num_experts * d.d_model * d.d_ff;
  int64_t nb = (int64_t)d.num_experts * (d.d_ff > d.d_model ? d.d_ff : d.d_model);
  int ok = n > 0 && n <= MAX_WEIGHTS && nb > 0;
  float *w1 = ok ? fuzz_floats(b, (size_t)n) : NULL;
  float *w3 = ok ? fuzz_floats(b, (size_t)n) : NULL;
  float *w2 = ok ? fuzz_floats(b, (size_t)n) : NULL;
  float *bias = ok ? fuzz_floats(b, (size_t)nb) : NULL;
  int mask = fuzz_range(b, 0, 63);
  d.w1_host = mask & 1 ? w1 : NULL;
  d.w3_host = mask & 2 ? w3 : NULL;
  d.w2_host = mask & 4 ? w2 : NULL;
  d.b1_host = mask & 8 ? bias : NULL;
  d.b3_host = mask & 16 ? bias : NULL;
  d.b2_host = mask & 32 ? bias : NULL;
  clmoe_experts *x = (clmoe_experts *)1;
  if (clmoe_experts_create(fuzz_context(), &d, &x) == CLMOE_SUCCESS)
    clmoe_experts_destroy(x);
  else if (x)
    abort();
  free(w1);
  free(w3);
  free(w2);
  free(bias);
}

static void score(fuzz_bytes *b) {
  clmoe_score_desc d;
  clmoe_score_desc_init(&d);
  d.struct_size = (size_t)fuzz_range(b, 0, (int32_t)(2 * sizeof d));
  d.mask = fuzz_range(b, -1, 2);
  d.norm = fuzz_range(b, -1, 2);
  d.scale = fuzz_f32(b);
  d.flags = (uint32_t)fuzz_i32(b);
  int T = fuzz_range(b, 0, 8), H = fuzz_range(b, 1, 2);
  clmoe_context *ctx = fuzz_context();
  clmoe_tensor *probs = NULL, *imp = NULL;
  float *p = fuzz_floats(b, (size_t)H * T * T);
  if (!clmoe_tensor_create(ctx, CLMOE_DTYPE_F32, 3, (int64_t[]){H, T, T}, p,
                           &probs) &&
      !clmoe_tensor_create(ctx, CLMOE_DTYPE_F32, 1, (int64_t[]){T}, NULL,
                           &imp))
    clmoe_score_attention(ctx, &d, probs, NULL, NULL, imp, 0, NULL, NULL);
  clmoe_tensor_destroy(probs);
  clmoe_tensor_destroy(imp);
  free(p);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  fuzz_bytes b = {data, size};
  switch (fuzz_range(&b, 0, 2)) {
  case 0:
    router(&b);
    break;
  case 1:
    experts(&b);
    break;
  default:
    score(&b);
  }
  return 0;
}
