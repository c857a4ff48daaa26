/* Kernel launching and the shared device primitives (scan, grouping). */
#include <stdio.h>

#include "launch.h"

static const struct {
  cm_program_id prog;
  const char *name;
} k_kernels[CM_K_COUNT] = {
    [CM_K_SCAN_CHUNK_SUMS] = {CM_PROG_GROUP, "scan_chunk_sums"},
    [CM_K_SCAN_PARTIALS] = {CM_PROG_GROUP, "scan_partials"},
    [CM_K_SCAN_APPLY] = {CM_PROG_GROUP, "scan_apply"},
    [CM_K_GROUP_COUNT] = {CM_PROG_GROUP, "group_count"},
    [CM_K_GROUP_EXPERT_OFFSETS] = {CM_PROG_GROUP, "group_expert_offsets"},
    [CM_K_GROUP_PLACE] = {CM_PROG_GROUP, "group_place"},
    [CM_K_STATS_INIT] = {CM_PROG_ROUTE, "stats_init"},
    [CM_K_ROUTE_SELECT] = {CM_PROG_ROUTE, "route_select"},
    [CM_K_ROW_NORMS] = {CM_PROG_ROUTE, "row_norms"},
    [CM_K_SELECT_BY_EXPERT] = {CM_PROG_ROUTE, "select_by_expert"},
    [CM_K_IMPORTANCE_BUDGET] = {CM_PROG_ROUTE, "route_importance_budget"},
    [CM_K_COMPACT_COUNT] = {CM_PROG_ROUTE, "compact_count"},
    [CM_K_COMPACT_WRITE] = {CM_PROG_ROUTE, "compact_write"},
    [CM_K_STATS_TOKENS] = {CM_PROG_ROUTE, "stats_tokens"},
    [CM_K_STATS_BLOCK_SUMS] = {CM_PROG_ROUTE, "stats_block_sums"},
    [CM_K_STATS_FINALIZE] = {CM_PROG_ROUTE, "stats_finalize"},
    [CM_K_DISPATCH_ROWS] = {CM_PROG_FFN, "dispatch_rows"},
    [CM_K_EXPERT_ACTIVATION] = {CM_PROG_FFN, "expert_activation"},
    [CM_K_EXPERT_ADD_BIAS] = {CM_PROG_FFN, "expert_add_bias"},
    [CM_K_COMBINE_ROWS] = {CM_PROG_FFN, "combine_rows"},
    [CM_K_SCORE_PROB_COLUMNS] = {CM_PROG_SCORE, "score_prob_columns"},
    [CM_K_SCORE_FUSED_ROWS] = {CM_PROG_SCORE, "score_fused_rows"},
    [CM_K_SCORE_FUSED_COLUMNS] = {CM_PROG_SCORE, "score_fused_columns"},
    [CM_K_SCORE_AVERAGE] = {CM_PROG_SCORE, "score_average"},
    [CM_K_SCORE_NORMALIZE] = {CM_PROG_SCORE, "score_normalize"},
    [CM_K_GEMM_TILE_OFFSETS] = {CM_PROG_GEMM, "gemm_tile_offsets"},
    [CM_K_GEMM_GROUPED] = {CM_PROG_GEMM, "gemm_grouped"},
};

clmoe_status cm_kernel(clmoe_context *ctx, cm_kernels *ks, cm_kernel_id id,
                       cl_kernel *out) {
  if (!ks->k[id]) {
    clmoe_status st =
        cm_create_kernel(ctx, k_kernels[id].prog, k_kernels[id].name, &ks->k[id]);
    if (st)
      return st;
  }
  *out = ks->k[id];
  return CLMOE_SUCCESS;
}

void cm_kernels_release(cm_kernels *ks) {
  for (int i = 0; i < CM_K_COUNT; ++i)
    if (ks->k[i]) {
      clReleaseKernel(ks->k[i]);
      ks->k[i] = NULL;
    }
}

clmoe_status cm_launch(clmoe_context *ctx, cl_kernel kernel, const char *name,
                       int dims, const size_t *global, const size_t *local,
                       const cm_arg *args, int nargs) {
  size_t g[3];
  for (int d = 0; d < dims; ++d) {
    if (global[d] == 0)
      return CLMOE_SUCCESS;
    g[d] = local ? (global[d] + local[d] - 1) / local[d] * local[d] : global[d];
  }
  char what[160];
  for (int i = 0; i < nargs; ++i) {
    cl_int err = clSetKernelArg(kernel, (cl_uint)i, args[i].size, args[i].ptr);
    if (err != CL_SUCCESS) {
      snprintf(what, sizeof what, "clSetKernelArg(%s, %d)", name, i);
      return cm_cl_fail(err, what);
    }
  }
  cl_int err = clEnqueueNDRangeKernel(ctx->queue, kernel, (cl_uint)dims, NULL,
                                      g, local, 0, NULL, NULL);
  if (err != CL_SUCCESS) {
    snprintf(what, sizeof what, "clEnqueueNDRangeKernel(%s)", name);
    return cm_cl_fail(err, what);
  }
  return CLMOE_SUCCESS;
}

clmoe_status cm_scan(clmoe_context *ctx, cm_kernels *ks, cl_mem in, cl_mem out,
                     int n, cl_mem partials) {
  /* Chunks of at least 32 elements, at most CM_SCAN_MAX_CHUNKS of them. */
  int chunk = (n + CM_SCAN_MAX_CHUNKS - 1) / CM_SCAN_MAX_CHUNKS;
  if (chunk < 32)
    chunk = 32;
  int num_chunks = n > 0 ? (n + chunk - 1) / chunk : 1;
  cl_kernel k;
  clmoe_status st;
  size_t g = (size_t)num_chunks, one = 1;
  if ((st = cm_kernel(ctx, ks, CM_K_SCAN_CHUNK_SUMS, &k)) ||
      (st = cm_launch(ctx, k, "scan_chunk_sums", 1, &g, NULL,
                      CM_ARGS(CM_ARG(n), CM_ARG(chunk), CM_ARG(in),
                              CM_ARG(partials), CM_ARG(num_chunks)))))
    return st;
  if ((st = cm_kernel(ctx, ks, CM_K_SCAN_PARTIALS, &k)) ||
      (st = cm_launch(ctx, k, "scan_partials", 1, &one, NULL,
                      CM_ARGS(CM_ARG(num_chunks), CM_ARG(partials)))))
    return st;
  if ((st = cm_kernel(ctx, ks, CM_K_SCAN_APPLY, &k)))
    return st;
  return cm_launch(ctx, k, "scan_apply", 1, &g, NULL,
                   CM_ARGS(CM_ARG(n), CM_ARG(chunk), CM_ARG(in),
                           CM_ARG(partials), CM_ARG(num_chunks), CM_ARG(out)));
}

void cm_group_blocks(int T, int *block, int *num_blocks) {
  /* At least 64 tokens per work-item, at most 1024 blocks. */
  int b = (T + 1023) / 1024;
  if (b < 64)
    b = 64;
  *block = b;
  *num_blocks = T > 0 ? (T + b - 1) / b : 1;
}

clmoe_status cm_group(clmoe_context *ctx, cm_kernels *ks, int T, int E,
                      cl_mem ids, int stride, cl_mem offsets, cl_mem counts,
                      cl_mem hist, cl_mem partials, cl_mem expert_offsets,
                      cl_mem slot_rows, cl_mem row_tokens) {
  int block, nb;
  cm_group_blocks(T, &block, &nb);
  cl_kernel k;
  clmoe_status st;
  size_t g = (size_t)nb;
  if ((st = cm_kernel(ctx, ks, CM_K_GROUP_COUNT, &k)) ||
      (st = cm_launch(ctx, k, "group_count", 1, &g, NULL,
                      CM_ARGS(CM_ARG(T), CM_ARG(E), CM_ARG(block), CM_ARG(nb),
                              CM_ARG(ids), CM_ARG(stride), CM_ARG(offsets),
                              CM_ARG(counts), CM_ARG(hist)))))
    return st;
  if ((st = cm_scan(ctx, ks, hist, hist, E * nb, partials)))
    return st;
  size_t ge = (size_t)E + 1;
  if ((st = cm_kernel(ctx, ks, CM_K_GROUP_EXPERT_OFFSETS, &k)) ||
      (st = cm_launch(ctx, k, "group_expert_offsets", 1, &ge, NULL,
                      CM_ARGS(CM_ARG(E), CM_ARG(nb), CM_ARG(hist),
                              CM_ARG(expert_offsets)))))
    return st;
  int write_slot_rows = slot_rows != NULL;
  cl_mem rows = slot_rows ? slot_rows : row_tokens;
  if ((st = cm_kernel(ctx, ks, CM_K_GROUP_PLACE, &k)))
    return st;
  return cm_launch(ctx, k, "group_place", 1, &g, NULL,
                   CM_ARGS(CM_ARG(T), CM_ARG(block), CM_ARG(nb), CM_ARG(ids),
                           CM_ARG(stride), CM_ARG(offsets), CM_ARG(counts),
                           CM_ARG(hist), CM_ARG(write_slot_rows), CM_ARG(rows),
                           CM_ARG(row_tokens)));
}

clmoe_status cm_enqueue_wait(clmoe_context *ctx, uint32_t num_wait,
                             const cl_event *wait, const char *fn) {
  if (num_wait == 0)
    return CLMOE_SUCCESS;
  if (!wait)
    return cm_fail(CLMOE_ERROR_NULL_POINTER,
                   "%s: num_wait_events = %u but wait_events is NULL", fn,
                   num_wait);
  cl_int err = clEnqueueMarkerWithWaitList(ctx->queue, num_wait, wait, NULL);
  return err == CL_SUCCESS
             ? CLMOE_SUCCESS
             : cm_cl_fail(err, "clEnqueueMarkerWithWaitList(wait_events)");
}

clmoe_status cm_enqueue_done(clmoe_context *ctx, cl_event *out_event) {
  if (!out_event)
    return CLMOE_SUCCESS;
  cl_int err = clEnqueueMarkerWithWaitList(ctx->queue, 0, NULL, out_event);
  return err == CL_SUCCESS
             ? CLMOE_SUCCESS
             : cm_cl_fail(err, "clEnqueueMarkerWithWaitList(out_event)");
}
