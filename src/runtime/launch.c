/* Kernel objects, argument setting and launches, and queue ordering. */
#include <stdio.h>

#include "runtime/launch.h"

static const struct {
  cm_program_id prog;
  const char *name;
} k_kernels[CM_K_COUNT] = {
    [CM_K_SCAN_CHUNK_SUMS] = {CM_PROG_GROUP, "scan_chunk_sums"},
    [CM_K_SCAN_PARTIALS] = {CM_PROG_GROUP, "scan_partials"},
    [CM_K_SCAN_APPLY] = {CM_PROG_GROUP, "scan_apply"},
    [CM_K_SCAN_LOCAL] = {CM_PROG_GROUP, "scan_local"},
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
    [CM_K_DISPATCH_ROWS] = {CM_PROG_DISPATCH_COMBINE, "dispatch_rows"},
    [CM_K_EXPERT_ACTIVATION] = {CM_PROG_EXPERTS_RUN, "expert_activation"},
    [CM_K_EXPERT_ADD_BIAS] = {CM_PROG_EXPERTS_RUN, "expert_add_bias"},
    [CM_K_COMBINE_ROWS] = {CM_PROG_DISPATCH_COMBINE, "combine_rows"},
    [CM_K_CONVERT_ELEMENTS] = {CM_PROG_DISPATCH_COMBINE, "convert_elements"},
    [CM_K_SHARED_GATE_VALUES] = {CM_PROG_DISPATCH_COMBINE,
                                 "shared_gate_values"},
    [CM_K_SCORE_SEQUENCES] = {CM_PROG_SCORE, "score_sequences"},
    [CM_K_SCORE_PROB_COLUMNS] = {CM_PROG_SCORE, "score_prob_columns"},
    [CM_K_SCORE_PACK] = {CM_PROG_SCORE, "score_pack"},
    [CM_K_SCORE_ROW_LSE] = {CM_PROG_SCORE, "score_row_lse"},
    [CM_K_SCORE_COL_SUMS] = {CM_PROG_SCORE, "score_col_sums"},
    [CM_K_SCORE_AVERAGE] = {CM_PROG_SCORE, "score_average"},
    [CM_K_SCORE_NORMALIZE] = {CM_PROG_SCORE, "score_normalize"},
    [CM_K_SCORE_ROW_LSE_LOCAL] = {CM_PROG_SCORE, "score_row_lse_local"},
    [CM_K_SCORE_COL_SUMS_LOCAL] = {CM_PROG_SCORE, "score_col_sums_local"},
    [CM_K_GEMM_TILE_OFFSETS] = {CM_PROG_GROUPED_GEMM, "gemm_tile_offsets"},
    [CM_K_GEMM_GROUPED] = {CM_PROG_GROUPED_GEMM, "gemm_grouped"},
    [CM_K_GEMM_GROUPED_F16] = {CM_PROG_GROUPED_GEMM_F16, "gemm_grouped"},
    [CM_K_GEMM_GROUPED_BF16] = {CM_PROG_GROUPED_GEMM_BF16, "gemm_grouped"},
    [CM_K_GEMM_GROUPED_LOCAL] = {CM_PROG_GROUPED_GEMM, "gemm_grouped_local"},
    [CM_K_GEMM_GROUPED_LOCAL_F16] = {CM_PROG_GROUPED_GEMM_F16,
                                     "gemm_grouped_local"},
    [CM_K_GEMM_GROUPED_LOCAL_BF16] = {CM_PROG_GROUPED_GEMM_BF16,
                                      "gemm_grouped_local"},
    [CM_K_GEMM_GROUPED_F8] = {CM_PROG_GROUPED_GEMM_F8, "gemm_grouped"},
    [CM_K_GEMM_GROUPED_MXFP4] = {CM_PROG_GROUPED_GEMM_MXFP4, "gemm_grouped"},
    [CM_K_GEMM_GROUPED_I8] = {CM_PROG_GROUPED_GEMM_I8, "gemm_grouped"},
    [CM_K_GEMM_GROUPED_I4] = {CM_PROG_GROUPED_GEMM_I4, "gemm_grouped"},
    [CM_K_GEMM_GROUPED_LOCAL_F8] = {CM_PROG_GROUPED_GEMM_F8,
                                    "gemm_grouped_local"},
    [CM_K_GEMM_GROUPED_LOCAL_MXFP4] = {CM_PROG_GROUPED_GEMM_MXFP4,
                                       "gemm_grouped_local"},
    [CM_K_GEMM_GROUPED_LOCAL_I8] = {CM_PROG_GROUPED_GEMM_I8,
                                    "gemm_grouped_local"},
    [CM_K_GEMM_GROUPED_LOCAL_I4] = {CM_PROG_GROUPED_GEMM_I4,
                                    "gemm_grouped_local"},
    [CM_K_TRAIN_ACT_FORWARD] = {CM_PROG_EXPERT_GRADS, "train_act_forward"},
    [CM_K_TRAIN_ACT_BACKWARD] = {CM_PROG_EXPERT_GRADS, "train_act_backward"},
    [CM_K_TRAIN_WEIGHT_GRAD] = {CM_PROG_EXPERT_GRADS, "train_weight_grad"},
    [CM_K_TRAIN_GATE_GRADS] = {CM_PROG_EXPERT_GRADS, "train_gate_grads"},
    [CM_K_TRAIN_INPUT_GRAD] = {CM_PROG_EXPERT_GRADS, "train_input_grad"},
    [CM_K_TRAIN_FIND_NONFINITE] = {CM_PROG_EXPERT_GRADS,
                                   "train_find_nonfinite"},
    [CM_K_TRAIN_TRANSPOSE_PANELS32] = {CM_PROG_EXPERT_GRADS,
                                       "train_transpose_panels32"},
    [CM_K_TRAIN_TRANSPOSE_PANELS16] = {CM_PROG_EXPERT_GRADS,
                                       "train_transpose_panels16"},
    [CM_K_TRAIN_ROUTER_GRAD] = {CM_PROG_ROUTER_GRADS, "train_router_grad"},
    [CM_K_TRAIN_SHARED_ROWS] = {CM_PROG_EXPERT_GRADS, "train_shared_rows"},
    [CM_K_TRAIN_PACK_PANELS16] = {CM_PROG_EXPERT_GRADS, "train_pack_panels16"},
};

clmoe_status cm_kernel(clmoe_context *ctx, cm_kernels *ks, cm_kernel_id id,
                       cl_kernel *out) {
  if (!ks->k[id]) {
    clmoe_status st = cm_create_kernel(ctx, k_kernels[id].prog,
                                       k_kernels[id].name, &ks->k[id]);
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
