/* Route on random logits (raw bits: NaN, Inf, denormals, huge values) with
 * random policy parameters. A successful route must be internally
 * consistent: counts sum to N, offsets are a CSR, expert ids are in range. */
#include "fuzz_common.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  fuzz_bytes b = {data, size};
  clmoe_context *ctx = fuzz_context();
  int T = fuzz_range(&b, 0, 64), E = fuzz_range(&b, 1, 40);
  clmoe_router_desc d;
  clmoe_router_desc_init(&d);
  d.num_experts = E;
  d.policy = fuzz_range(&b, 1, 5);
  d.gates = fuzz_range(&b, 0, 2);
  d.k = fuzz_range(&b, 0, E + 1);
  d.p = fuzz_f32(&b);
  d.k_min = fuzz_range(&b, 0, E);
  d.k_max = fuzz_range(&b, 0, E);
  d.k_mean = fuzz_range(&b, 0, 3) ? 0.0f : fuzz_f32(&b);
  d.capacity_factor = fuzz_range(&b, 0, 1) ? 0.0f : fuzz_f32(&b);
  d.overflow = fuzz_range(&b, 0, 1);
  d.fallback = fuzz_range(&b, 0, 1);
  /* The model families' fields: scores, groups, selection bias, scale,
   * gate position. */
  d.scoring = fuzz_range(&b, 0, 1);
  d.num_groups = fuzz_range(&b, 0, 1) ? 0 : fuzz_range(&b, 0, E);
  d.topk_groups = fuzz_range(&b, 0, d.num_groups);
  d.group_score = fuzz_range(&b, 0, 1);
  d.gate_scale = fuzz_range(&b, 0, 1) ? 1.0f : fuzz_f32(&b);
  d.gate_position = fuzz_range(&b, 0, 1);
  float *sel = fuzz_floats(&b, (size_t)E);
  d.selection_bias_host = fuzz_range(&b, 0, 1) ? sel : NULL;
  float *z = fuzz_floats(&b, (size_t)T * E);
  float *imp = fuzz_floats(&b, (size_t)T);
  clmoe_router *r = NULL;
  clmoe_routing *rt = NULL;
  clmoe_tensor *zt = NULL, *it = NULL;
  if (clmoe_router_create(ctx, &d, &r) == CLMOE_SUCCESS &&
      clmoe_routing_create(ctx, &rt) == CLMOE_SUCCESS &&
      clmoe_tensor_create(ctx, CLMOE_DTYPE_F32, 2, (int64_t[]){T, E}, z,
                          &zt) == CLMOE_SUCCESS &&
      clmoe_tensor_create(ctx, CLMOE_DTYPE_F32, 1, (int64_t[]){T}, imp,
                          &it) == CLMOE_SUCCESS &&
      clmoe_route_logits(r, zt, it, rt, 0, NULL, NULL) == CLMOE_SUCCESS) {
    int64_t N = 0;
    clmoe_routing_get_sizes(rt, NULL, NULL, &N);
    if (N < 0 || N > (int64_t)T * E)
      abort();
    int *off = malloc(sizeof *off * (size_t)(T + 1));
    int *ids = malloc(sizeof *ids * (size_t)(N + 1));
    const clmoe_tensor *v;
    clmoe_routing_get_array(rt, CLMOE_ROUTING_TOKEN_OFFSETS, &v);
    if (clmoe_tensor_read(v, off, sizeof *off * (size_t)(T + 1)))
      abort();
    clmoe_routing_get_array(rt, CLMOE_ROUTING_EXPERT_IDS, &v);
    if (clmoe_tensor_read(v, ids, sizeof *ids * (size_t)N))
      abort();
    if (off[0] != 0 || off[T] != N)
      abort();
    for (int t = 0; t < T; ++t)
      if (off[t + 1] < off[t])
        abort();
    for (int64_t s = 0; s < N; ++s)
      if (ids[s] < 0 || ids[s] >= E)
        abort();
    /* Group-limited: a token's experts lie in at most topk_groups groups. */
    int G = d.num_groups > 1 ? d.num_groups : 1;
    for (int t = 0; G > 1 && t < T; ++t) {
      unsigned long long seen[16] = {0};
      int groups = 0;
      for (int s = off[t]; s < off[t + 1]; ++s) {
        int g = ids[s] / (E / G);
        if (!(seen[g / 64] >> (g % 64) & 1)) {
          seen[g / 64] |= 1ull << (g % 64);
          ++groups;
        }
      }
      if (groups > (d.topk_groups ? d.topk_groups : G))
        abort();
    }
    clmoe_routing_stats st;
    clmoe_routing_stats_init(&st);
    if (clmoe_routing_read_stats(rt, &st) || st.num_slots != N)
      abort();
    free(off);
    free(ids);
  }
  clmoe_tensor_destroy(zt);
  clmoe_tensor_destroy(it);
  clmoe_routing_destroy(rt);
  clmoe_router_destroy(r);
  free(z);
  free(imp);
  free(sel);
  return 0;
}
