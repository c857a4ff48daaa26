/* clmoe_dispatch and clmoe_combine, and their launches shared with the
 * forward; rows in float32, float16 or bfloat16, converted in the same
 * kernels. */
#include "moe/dispatch_combine.h"

/* Work-items along a row of width d: CM_ROW_CHUNK columns each. */
static size_t row_chunks(int64_t d) {
  return ((size_t)d + CM_ROW_CHUNK - 1) / CM_ROW_CHUNK;
}

clmoe_status cm_dispatch_rows(clmoe_routing *rt, int d, int rows, cl_mem x,
                              clmoe_dtype x_dt, cl_mem xs, clmoe_dtype xs_dt) {
  return cm_dispatch_rows_scaled(rt, d, rows, x, x_dt, xs, xs_dt,
                                 rt->gate_input);
}

clmoe_status cm_dispatch_rows_scaled(clmoe_routing *rt, int d, int rows,
                                     cl_mem x, clmoe_dtype x_dt, cl_mem xs,
                                     clmoe_dtype xs_dt, int scale_by_gate) {
  cl_kernel k;
  clmoe_status st = cm_kernel(rt->ctx, &rt->ws.kernels, CM_K_DISPATCH_ROWS, &k);
  size_t g[2] = {row_chunks(d), (size_t)rows};
  return st ? st
            : cm_launch(rt->ctx, k, "dispatch_rows", 2, g, NULL,
                        CM_ARGS(CM_ARG(d), CM_ARG(rt->ws.buf[CM_RB_STATS]),
                                CM_ARG(rt->ws.buf[CM_RB_ROW_TOKENS]), CM_ARG(x),
                                CM_ARG(x_dt), CM_ARG(xs), CM_ARG(xs_dt),
                                CM_ARG(scale_by_gate),
                                CM_ARG(rt->ws.buf[CM_RB_TOKEN_OFFSETS]),
                                CM_ARG(rt->ws.buf[CM_RB_SLOT_ROWS]),
                                CM_ARG(rt->ws.buf[CM_RB_GATES])));
}

clmoe_status cm_combine_rows(clmoe_routing *rt, int d, cl_mem ys,
                             clmoe_dtype ys_dt, cl_mem y, clmoe_dtype y_dt,
                             uint32_t flags, const cm_shared_rows *shared) {
  cl_kernel k;
  clmoe_status st = cm_kernel(rt->ctx, &rt->ws.kernels, CM_K_COMBINE_ROWS, &k);
  int accumulate = (flags & CLMOE_COMBINE_ACCUMULATE) != 0;
  int has_shared = shared != NULL;
  /* Without shared rows the kernel never reads them: any valid buffer. */
  cl_mem sg = has_shared ? shared->gates : ys,
         sr = has_shared ? shared->rows : ys;
  size_t g[2] = {row_chunks(d), (size_t)rt->T};
  return st ? st
            : cm_launch(rt->ctx, k, "combine_rows", 2, g, NULL,
                        CM_ARGS(CM_ARG(rt->T), CM_ARG(d),
                                CM_ARG(rt->ws.buf[CM_RB_STATS]),
                                CM_ARG(rt->ws.buf[CM_RB_TOKEN_OFFSETS]),
                                CM_ARG(rt->ws.buf[CM_RB_SLOT_ROWS]),
                                CM_ARG(rt->ws.buf[CM_RB_GATES]), CM_ARG(ys),
                                CM_ARG(ys_dt), CM_ARG(accumulate), CM_ARG(y),
                                CM_ARG(y_dt), CM_ARG(has_shared), CM_ARG(sg),
                                CM_ARG(sr), CM_ARG(rt->gate_input)));
}

clmoe_status cm_convert_elements(clmoe_context *ctx, cm_kernels *kernels,
                                 int64_t n, cl_mem src, clmoe_dtype src_dt,
                                 cl_mem dst, clmoe_dtype dst_dt) {
  cl_kernel k;
  clmoe_status st = cm_kernel(ctx, kernels, CM_K_CONVERT_ELEMENTS, &k);
  size_t g = row_chunks(n);
  cl_long count = n;
  return st ? st
            : cm_launch(ctx, k, "convert_elements", 1, &g, NULL,
                        CM_ARGS(CM_ARG(count), CM_ARG(src), CM_ARG(src_dt),
                                CM_ARG(dst), CM_ARG(dst_dt)));
}

clmoe_status clmoe_dispatch(clmoe_routing *routing, const clmoe_tensor *x,
                            clmoe_tensor *x_sorted, uint32_t num_wait,
                            const cl_event *wait, cl_event *out_event) {
  const char *fn = "clmoe_dispatch";
  if (out_event)
    *out_event = NULL;
  clmoe_status st = cm_check_routing(routing, fn);
  if (st || (st = cm_check_float_rows(routing->ctx, x, "x", routing->T, -1)))
    return st;
  int64_t d = x->shape[1];
  if ((st = cm_check_float_rows(routing->ctx, x_sorted, "x_sorted", routing->N,
                                d)) ||
      (st = cm_enqueue_wait(routing->ctx, num_wait, wait, fn)) ||
      (st = cm_dispatch_rows(routing, (int)d, routing->N, x->mem, x->dtype,
                             x_sorted->mem, x_sorted->dtype)))
    return st;
  return cm_enqueue_done(routing->ctx, out_event);
}

clmoe_status clmoe_combine(clmoe_routing *routing, const clmoe_tensor *y_sorted,
                           clmoe_tensor *y, uint32_t flags, uint32_t num_wait,
                           const cl_event *wait, cl_event *out_event) {
  const char *fn = "clmoe_combine";
  if (out_event)
    *out_event = NULL;
  clmoe_status st = cm_check_routing(routing, fn);
  if (st || (st = cm_check_float_rows(routing->ctx, y, "y", routing->T, -1)))
    return st;
  int64_t d = y->shape[1];
  if ((st = cm_check_float_rows(routing->ctx, y_sorted, "y_sorted", routing->N,
                                d)) ||
      (st = cm_enqueue_wait(routing->ctx, num_wait, wait, fn)) ||
      (st = cm_combine_rows(routing, (int)d, y_sorted->mem, y_sorted->dtype,
                            y->mem, y->dtype, flags, NULL)))
    return st;
  return cm_enqueue_done(routing->ctx, out_event);
}
