/* clmoe_dispatch and clmoe_combine, and their launches shared with the
 * forward. */
#include "moe/dispatch_combine.h"

/* Work-items along a row of width d: CM_ROW_CHUNK columns each. */
static size_t row_chunks(int d) {
  return ((size_t)d + CM_ROW_CHUNK - 1) / CM_ROW_CHUNK;
}

clmoe_status cm_dispatch_rows(clmoe_routing *rt, int d, int rows, cl_mem x,
                              cl_mem xs) {
  cl_kernel k;
  clmoe_status st = cm_kernel(rt->ctx, &rt->ws.kernels, CM_K_DISPATCH_ROWS, &k);
  size_t g[2] = {row_chunks(d), (size_t)rows};
  return st ? st
            : cm_launch(rt->ctx, k, "dispatch_rows", 2, g, NULL,
                        CM_ARGS(CM_ARG(d), CM_ARG(rt->ws.buf[CM_RB_STATS]),
                                CM_ARG(rt->ws.buf[CM_RB_ROW_TOKENS]), CM_ARG(x),
                                CM_ARG(xs)));
}

clmoe_status cm_combine_rows(clmoe_routing *rt, int d, cl_mem ys, cl_mem y,
                             uint32_t flags) {
  cl_kernel k;
  clmoe_status st = cm_kernel(rt->ctx, &rt->ws.kernels, CM_K_COMBINE_ROWS, &k);
  int accumulate = (flags & CLMOE_COMBINE_ACCUMULATE) != 0;
  size_t g[2] = {row_chunks(d), (size_t)rt->T};
  return st ? st
            : cm_launch(rt->ctx, k, "combine_rows", 2, g, NULL,
                        CM_ARGS(CM_ARG(rt->T), CM_ARG(d),
                                CM_ARG(rt->ws.buf[CM_RB_STATS]),
                                CM_ARG(rt->ws.buf[CM_RB_TOKEN_OFFSETS]),
                                CM_ARG(rt->ws.buf[CM_RB_SLOT_ROWS]),
                                CM_ARG(rt->ws.buf[CM_RB_GATES]), CM_ARG(ys),
                                CM_ARG(accumulate), CM_ARG(y)));
}

clmoe_status clmoe_dispatch(clmoe_routing *routing, const clmoe_tensor *x,
                            clmoe_tensor *x_sorted, uint32_t num_wait,
                            const cl_event *wait, cl_event *out_event) {
  const char *fn = "clmoe_dispatch";
  if (out_event)
    *out_event = NULL;
  clmoe_status st = cm_check_routing(routing, fn);
  if (st || (st = cm_check_routing_rows(routing, x, "x", routing->T, -1)))
    return st;
  int64_t d = x->shape[1];
  if ((st = cm_check_routing_rows(routing, x_sorted, "x_sorted", routing->N,
                                  d)) ||
      (st = cm_enqueue_wait(routing->ctx, num_wait, wait, fn)) ||
      (st = cm_dispatch_rows(routing, (int)d, routing->N, x->mem,
                             x_sorted->mem)))
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
  if (st || (st = cm_check_routing_rows(routing, y, "y", routing->T, -1)))
    return st;
  int64_t d = y->shape[1];
  if ((st = cm_check_routing_rows(routing, y_sorted, "y_sorted", routing->N,
                                  d)) ||
      (st = cm_enqueue_wait(routing->ctx, num_wait, wait, fn)) ||
      (st = cm_combine_rows(routing, (int)d, y_sorted->mem, y->mem, flags)))
    return st;
  return cm_enqueue_done(routing->ctx, out_event);
}
