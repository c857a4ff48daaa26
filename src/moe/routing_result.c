/* Routing objects: result buffers that grow and are reused, tensor views,
 * and the stats read. */
#include <stdlib.h>
#include <string.h>

#include "moe/routing_result.h"

clmoe_status clmoe_routing_create(clmoe_context *ctx, clmoe_routing **out) {
  if (!out)
    return cm_fail(CLMOE_ERROR_NULL_POINTER,
                   "clmoe_routing_create: out is NULL");
  *out = NULL;
  if (!ctx)
    return cm_fail(CLMOE_ERROR_NULL_POINTER,
                   "clmoe_routing_create: ctx is NULL");
  clmoe_routing *r = calloc(1, sizeof *r);
  if (!r)
    return cm_fail(CLMOE_ERROR_OUT_OF_HOST_MEMORY,
                   "clmoe_routing_create: out of host memory");
  r->ctx = ctx;
  /* Every array starts with a valid (tiny) buffer so that views of an empty
   * routing are usable tensors. */
  for (int i = 0; i <= CLMOE_ROUTING_ROW_TOKENS; ++i) {
    clmoe_status st = cm_routing_reserve(r, (cm_routing_buffer)i, 4);
    if (st) {
      clmoe_routing_destroy(r);
      return st;
    }
  }
  cm_routing_clear(r);
  *out = r;
  return CLMOE_SUCCESS;
}

void clmoe_routing_destroy(clmoe_routing *routing) {
  if (!routing)
    return;
  clmoe_routing_destroy(routing->dense);
  cm_saved_free(routing->saved);
  cm_workspace_release(&routing->ws);
  free(routing->host_offsets);
  free(routing);
}

clmoe_status cm_routing_host_offsets(clmoe_routing *r, int E) {
  if (r->host_offsets_cap >= E + 1)
    return CLMOE_SUCCESS;
  int *p = realloc(r->host_offsets, sizeof *p * ((size_t)E + 1));
  if (!p)
    return cm_fail(CLMOE_ERROR_OUT_OF_HOST_MEMORY,
                   "clmoe_experts_run: out of host memory");
  r->host_offsets = p;
  r->host_offsets_cap = E + 1;
  return CLMOE_SUCCESS;
}

clmoe_status cm_check_routing(const clmoe_routing *rt, const char *fn) {
  if (!rt)
    return cm_fail_at(CLMOE_ERROR_NULL_POINTER, fn, "routing is NULL");
  if (!rt->valid)
    return cm_fail_at(CLMOE_ERROR_INVALID_ARGUMENT, fn,
                      "the routing holds no successful route");
  return CLMOE_SUCCESS;
}

clmoe_status cm_check_float_rows(const clmoe_context *ctx,
                                 const clmoe_tensor *t, const char *name,
                                 int64_t rows, int64_t d) {
  if (t && !cm_is_float_dtype(t->dtype))
    return cm_fail(CLMOE_ERROR_DTYPE_MISMATCH,
                   "%s is %s; rows must be float32, float16 or bfloat16", name,
                   cm_dtype_name(t->dtype));
  return cm_check_tensor(t, ctx, name, t ? t->dtype : CLMOE_DTYPE_F32, 2,
                         (int64_t[]){rows, d});
}

clmoe_status cm_routing_reserve(clmoe_routing *r, cm_routing_buffer which,
                                size_t bytes) {
  return cm_workspace_reserve(r->ctx, &r->ws, (int)which, bytes);
}

void cm_routing_clear(clmoe_routing *r) {
  cm_routing_set_sizes(r, 0, 0, 0);
  r->valid = 0;
  r->gate_input = 0;
}

void cm_routing_set_sizes(clmoe_routing *r, int T, int E, int N) {
  ++r->serial;
  r->T = T;
  r->E = E;
  r->N = N;
  const int64_t lens[] = {[CLMOE_ROUTING_COUNTS] = T,
                          [CLMOE_ROUTING_TOKEN_OFFSETS] = T + 1,
                          [CLMOE_ROUTING_EXPERT_IDS] = N,
                          [CLMOE_ROUTING_GATES] = N,
                          [CLMOE_ROUTING_EXPERT_OFFSETS] = E + 1,
                          [CLMOE_ROUTING_SLOT_ROWS] = N,
                          [CLMOE_ROUTING_ROW_TOKENS] = N};
  for (int i = 0; i <= CLMOE_ROUTING_ROW_TOKENS; ++i) {
    /* An empty routing shows T+1 and E+1 arrays as 0-length, not 1. */
    int64_t len = (T == 0 && E == 0) ? 0 : lens[i];
    cm_tensor_view(&r->views[i], r->ctx, r->ws.buf[i],
                   i == CLMOE_ROUTING_GATES ? CLMOE_DTYPE_F32 : CLMOE_DTYPE_I32,
                   1, &len);
  }
}

clmoe_status clmoe_routing_get_sizes(clmoe_routing *routing,
                                     int64_t *num_tokens, int64_t *num_experts,
                                     int64_t *num_slots) {
  if (!routing)
    return cm_fail(CLMOE_ERROR_NULL_POINTER,
                   "clmoe_routing_get_sizes: routing is NULL");
  if (num_tokens)
    *num_tokens = routing->T;
  if (num_experts)
    *num_experts = routing->E;
  if (num_slots)
    *num_slots = routing->N;
  return CLMOE_SUCCESS;
}

clmoe_status clmoe_routing_get_array(clmoe_routing *routing,
                                     clmoe_routing_array which,
                                     const clmoe_tensor **view) {
  if (!routing || !view)
    return cm_fail(CLMOE_ERROR_NULL_POINTER,
                   "clmoe_routing_get_array: routing or view is NULL");
  if (which < CLMOE_ROUTING_COUNTS || which > CLMOE_ROUTING_ROW_TOKENS)
    return cm_fail(CLMOE_ERROR_INVALID_ARGUMENT,
                   "clmoe_routing_get_array: unknown array %d", (int)which);
  *view = &routing->views[which];
  return CLMOE_SUCCESS;
}

void clmoe_routing_stats_init(clmoe_routing_stats *stats) {
  if (!stats)
    return;
  memset(stats, 0, sizeof *stats);
  stats->struct_size = sizeof *stats;
}

clmoe_status clmoe_routing_read_stats(clmoe_routing *routing,
                                      clmoe_routing_stats *stats) {
  if (!routing)
    return cm_fail(CLMOE_ERROR_NULL_POINTER,
                   "clmoe_routing_read_stats: routing is NULL");
  clmoe_status st = cm_check_struct(stats, sizeof *stats, "routing stats");
  if (st)
    return st;
  int E = routing->E, T = routing->T;
  int want_arrays =
      stats->k_histogram || stats->expert_load || stats->mean_prob;
  if (want_arrays && stats->array_capacity < E + 1)
    return cm_fail(CLMOE_ERROR_INVALID_ARGUMENT,
                   "clmoe_routing_read_stats: array_capacity = %lld but the "
                   "arrays need %d entries (E + 1)",
                   (long long)stats->array_capacity, E + 1);
  int64_t *hist = stats->k_histogram;
  float *load = stats->expert_load, *prob = stats->mean_prob;
  int64_t cap = stats->array_capacity;
  size_t size = stats->struct_size;
  memset(stats, 0, sizeof *stats);
  stats->struct_size = size;
  stats->k_histogram = hist;
  stats->expert_load = load;
  stats->mean_prob = prob;
  stats->array_capacity = cap;
  if (!routing->valid || (T == 0 && E == 0)) {
    for (int64_t i = 0; hist && i < cap; ++i)
      hist[i] = 0;
    return CLMOE_SUCCESS;
  }
  size_t words = CM_ST_HEADER + (size_t)E + 1 + 2 * (size_t)E;
  int32_t *w = malloc(words * sizeof *w);
  if (!w)
    return cm_fail(CLMOE_ERROR_OUT_OF_HOST_MEMORY,
                   "clmoe_routing_read_stats: out of host memory");
  cl_int err =
      clEnqueueReadBuffer(routing->ctx->queue, routing->ws.buf[CM_RB_STATS],
                          CL_TRUE, 0, words * sizeof *w, w, 0, NULL, NULL);
  if (err != CL_SUCCESS) {
    free(w);
    return cm_cl_fail(err, "clmoe_routing_read_stats: clEnqueueReadBuffer");
  }
  float f;
  stats->num_tokens = T;
  stats->num_experts = E;
  stats->num_slots = w[CM_ST_N];
  stats->dropped =
      w[CM_ST_N_PROPOSED] > w[CM_ST_N] ? w[CM_ST_N_PROPOSED] - w[CM_ST_N] : 0;
  stats->mean_k = T ? (double)w[CM_ST_N] / T : 0.0;
  stats->min_k = w[CM_ST_MIN_K];
  stats->max_k = w[CM_ST_MAX_K];
  memcpy(&f, &w[CM_ST_BALANCE_LOSS], sizeof f);
  stats->balance_loss = f;
  memcpy(&f, &w[CM_ST_ENTROPY], sizeof f);
  stats->mean_entropy = f;
  const int32_t *h = w + CM_ST_HEADER;
  for (int i = 0; i <= E && hist; ++i)
    hist[i] = h[i];
  /* load[E] then mean_prob[E], stored as float bits after the histogram */
  if (load)
    memcpy(load, h + E + 1, (size_t)E * sizeof *load);
  if (prob)
    memcpy(prob, h + 2 * E + 1, (size_t)E * sizeof *prob);
  free(w);
  return CLMOE_SUCCESS;
}
