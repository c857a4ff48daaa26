/* clmoe_routing_set_groups: a routing of rows that arrive already grouped
 * by expert (expert parallelism, a caller's own router): row i is token i,
 * sent with gate 1 to its group's expert, so x_sorted is x itself. */
#include <limits.h>
#include <stdlib.h>
#include <string.h>

#include "moe/routing_result.h"

static const char *const FN = "clmoe_routing_set_groups";

/* Writes n ints (or floats) into buffer `which`, grown to fit. */
static clmoe_status put(clmoe_routing *r, cm_routing_buffer which,
                        const void *data, size_t n) {
  clmoe_status st = cm_routing_reserve(r, which, n ? n * 4 : 4);
  if (st || !n)
    return st;
  cl_int err = clEnqueueWriteBuffer(r->ctx->queue, r->ws.buf[which], CL_TRUE, 0,
                                    n * 4, data, 0, NULL, NULL);
  return err == CL_SUCCESS
             ? CLMOE_SUCCESS
             : cm_cl_fail(err,
                          "clmoe_routing_set_groups: clEnqueueWriteBuffer");
}

clmoe_status clmoe_routing_set_groups(clmoe_routing *routing,
                                      int32_t num_experts,
                                      const int32_t *group_rows) {
  if (!routing || (num_experts > 0 && !group_rows))
    return cm_fail_at(CLMOE_ERROR_NULL_POINTER, FN,
                      "routing or group_rows is NULL");
  if (num_experts < 1 || num_experts > 1024)
    return cm_fail_at(CLMOE_ERROR_INVALID_ARGUMENT, FN,
                      "num_experts = %d is outside 1..1024", num_experts);
  int64_t n = 0;
  for (int e = 0; e < num_experts; ++e) {
    if (group_rows[e] < 0)
      return cm_fail_at(CLMOE_ERROR_INVALID_ARGUMENT, FN,
                        "group_rows[%d] = %d is negative", e, group_rows[e]);
    n += group_rows[e];
  }
  if (n > INT32_MAX / 2)
    return cm_fail_at(CLMOE_ERROR_TOO_LARGE, FN, "%lld rows in all",
                      (long long)n);
  int N = (int)n, E = num_experts;
  cm_routing_clear(routing);
  size_t words = CM_ST_HEADER + 3 * (size_t)E + 1;
  int32_t *ints = malloc(sizeof *ints * ((size_t)N + 1));
  int32_t *offsets = malloc(sizeof *offsets * ((size_t)E + 1));
  int32_t *stats = calloc(words, sizeof *stats);
  float *ones = malloc(sizeof *ones * ((size_t)N + 1));
  clmoe_status st = CLMOE_SUCCESS;
  if (!ints || !offsets || !stats || !ones)
    st = cm_fail_at(CLMOE_ERROR_OUT_OF_HOST_MEMORY, FN, "out of host memory");
  for (int i = 0; !st && i <= N; ++i)
    ints[i] = i < N ? 1 : 0;
  if (!st)
    st = put(routing, CM_RB_COUNTS, ints, (size_t)N);
  for (int i = 0; !st && i <= N; ++i)
    ints[i] = i; /* token_offsets, slot_rows, row_tokens: the identity */
  if (!st && !(st = put(routing, CM_RB_TOKEN_OFFSETS, ints, (size_t)N + 1)) &&
      !(st = put(routing, CM_RB_SLOT_ROWS, ints, (size_t)N)))
    st = put(routing, CM_RB_ROW_TOKENS, ints, (size_t)N);
  offsets[0] = 0;
  for (int e = 0, i = 0; !st && e < E; ++e) {
    offsets[e + 1] = offsets[e] + group_rows[e];
    for (; i < offsets[e + 1]; ++i)
      ints[i] = e;
  }
  for (int i = 0; !st && i < N; ++i)
    ones[i] = 1.0f;
  if (!st && !(st = put(routing, CM_RB_EXPERT_IDS, ints, (size_t)N)) &&
      !(st = put(routing, CM_RB_GATES, ones, (size_t)N)))
    st = put(routing, CM_RB_EXPERT_OFFSETS, offsets, (size_t)E + 1);
  if (!st) { /* stats: every row one slot; load = mean_prob = the shares */
    stats[CM_ST_N] = stats[CM_ST_N_PROPOSED] = N;
    stats[CM_ST_MIN_K] = stats[CM_ST_MAX_K] = N ? 1 : 0;
    stats[CM_ST_BAD_TOKEN] = INT_MAX;
    int32_t *hist = stats + CM_ST_HEADER;
    hist[N ? 1 : 0] = N;
    for (int e = 0; e < E; ++e) {
      float share = N ? (float)group_rows[e] / (float)N : 0.0f;
      memcpy(&hist[E + 1 + e], &share, sizeof share);
      memcpy(&hist[2 * E + 1 + e], &share, sizeof share);
    }
    st = put(routing, CM_RB_STATS, stats, words);
  }
  free(ints);
  free(offsets);
  free(stats);
  free(ones);
  if (st)
    return st;
  cm_routing_set_sizes(routing, N, E, N);
  routing->valid = 1;
  return CLMOE_SUCCESS;
}
