/* Shared experts: the routing's dense sub-routing sends every token to
 * expert 0 (offsets {0, T}, a successful route's status), so the expert
 * paths run unchanged; float32 x is read in place, 16-bit x widened once. */
#include "moe/shared.h"

#include <limits.h>

clmoe_status cm_check_shared(const clmoe_experts *shared,
                             const clmoe_tensor *gate, const clmoe_routing *rt,
                             int d, const char *fn) {
  clmoe_status st = cm_check_experts_ctx(shared, rt, fn);
  if (st)
    return st;
  if (shared->E != 1 || shared->d != d)
    return cm_fail_at(CLMOE_ERROR_SHAPE_MISMATCH, fn,
                      "shared experts must be one expert of d = %d; got "
                      "E = %d, d = %d",
                      d, shared->E, shared->d);
  return gate ? cm_check_tensor(gate, rt->ctx, "shared_gate", CLMOE_DTYPE_F32,
                                1, (int64_t[]){d})
              : CLMOE_SUCCESS;
}

static clmoe_status fill_int(clmoe_context *ctx, cl_mem buf, size_t index,
                             cl_int value) {
  cl_int err =
      clEnqueueFillBuffer(ctx->queue, buf, &value, sizeof value,
                          index * sizeof value, sizeof value, 0, NULL, NULL);
  return err == CL_SUCCESS
             ? CLMOE_SUCCESS
             : cm_cl_fail(err, "shared experts: clEnqueueFillBuffer");
}

clmoe_status cm_shared_routing(clmoe_routing *rt, int T,
                               clmoe_routing **out) {
  clmoe_status st;
  if (!rt->dense && (st = clmoe_routing_create(rt->ctx, &rt->dense)))
    return st;
  clmoe_routing *dr = *out = rt->dense;
  if ((st = cm_routing_reserve(dr, CM_RB_EXPERT_OFFSETS, 2 * sizeof(cl_int))) ||
      (st = cm_routing_reserve(dr, CM_RB_STATS,
                               (CM_ST_HEADER + 4) * sizeof(cl_int))) ||
      (st = fill_int(rt->ctx, dr->ws.buf[CM_RB_EXPERT_OFFSETS], 0, 0)) ||
      (st = fill_int(rt->ctx, dr->ws.buf[CM_RB_EXPERT_OFFSETS], 1, T)) ||
      (st = fill_int(rt->ctx, dr->ws.buf[CM_RB_STATS], CM_ST_BAD_TOKEN,
                     INT_MAX)))
    return st;
  cm_routing_set_sizes(dr, T, 1, T);
  dr->valid = 1;
  return CLMOE_SUCCESS;
}

clmoe_status cm_shared_gates(clmoe_routing *dr, const clmoe_tensor *gate,
                             const clmoe_tensor *x) {
  cl_kernel k;
  int T = dr->T, d = (int)x->shape[1], has_gate = gate != NULL,
      x_dt = x->dtype;
  cl_mem w = has_gate ? gate->mem : dr->ws.buf[CM_RB_GATES];
  size_t g = (size_t)T;
  clmoe_status st =
      cm_kernel(dr->ctx, &dr->ws.kernels, CM_K_SHARED_GATE_VALUES, &k);
  return st ? st
            : cm_launch(dr->ctx, k, "shared_gate_values", 1, &g, NULL,
                        CM_ARGS(CM_ARG(T), CM_ARG(d), CM_ARG(x->mem),
                                CM_ARG(x_dt), CM_ARG(has_gate), CM_ARG(w),
                                CM_ARG(dr->ws.buf[CM_RB_GATES])));
}

clmoe_status cm_shared_enqueue(clmoe_routing *rt, clmoe_experts *shared,
                               const clmoe_tensor *gate, const clmoe_tensor *x,
                               cm_shared_rows *out) {
  int T = (int)x->shape[0], d = shared->d;
  size_t bytes = (size_t)T * d * sizeof(float);
  clmoe_routing *dr;
  clmoe_status st;
  if ((st = cm_shared_routing(rt, T, &dr)) ||
      (st = cm_routing_reserve(dr, CM_RB_Y_SORTED, bytes)) ||
      (st = cm_routing_reserve(dr, CM_RB_GATES, (size_t)T * sizeof(float))))
    return st;
  cl_mem xs = x->mem;
  if (x->dtype != CLMOE_DTYPE_F32) {
    if ((st = cm_routing_reserve(dr, CM_RB_X_SORTED, bytes)) ||
        (st = cm_convert_elements(rt->ctx, &dr->ws.kernels, (int64_t)T * d,
                                  x->mem, x->dtype, dr->ws.buf[CM_RB_X_SORTED],
                                  CLMOE_DTYPE_F32)))
      return st;
    xs = dr->ws.buf[CM_RB_X_SORTED];
  }
  if ((st = cm_experts_run(shared, dr, xs, dr->ws.buf[CM_RB_Y_SORTED], T)) ||
      (st = cm_shared_gates(dr, gate, x)))
    return st;
  out->rows = dr->ws.buf[CM_RB_Y_SORTED];
  out->gates = dr->ws.buf[CM_RB_GATES];
  return CLMOE_SUCCESS;
}
