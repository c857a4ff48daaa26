/* clmoe_backward: checks, then the expert stage's backward, the router's,
 * and the input gradient (docs/training.md). */
#include <limits.h>
#include <string.h>

#include "moe/dispatch_combine.h"
#include "train/saved.h"

static const char *const FN = "clmoe_backward";

/* A caller's float32 gradient tensor of `rank` dims (NULL passes). */
static clmoe_status check_grad(const clmoe_context *ctx, const clmoe_tensor *t,
                               const char *name, int rank,
                               const int64_t *dims) {
  return t ? cm_check_tensor(t, ctx, name, CLMOE_DTYPE_F32, rank, dims)
           : CLMOE_SUCCESS;
}

static clmoe_status check_grads(const clmoe_context *ctx,
                                const clmoe_router *r, const clmoe_experts *x,
                                const clmoe_router_grads *rg,
                                const clmoe_expert_grads *eg) {
  int64_t E = x->E, d = x->d, f = x->f;
  int gated = cm_is_gated(x->activation);
  clmoe_status st;
  if (rg && ((st = cm_check_struct(rg, sizeof *rg, "router grads")) ||
             (st = check_grad(ctx, rg->weight, "router_grads->weight", 2,
                              (int64_t[]){d, E})) ||
             (st = check_grad(ctx, rg->bias, "router_grads->bias", 1,
                              (int64_t[]){E}))))
    return st;
  if (rg && rg->bias && !r->bias)
    return cm_fail_at(CLMOE_ERROR_INVALID_ARGUMENT, FN,
                      "router_grads->bias is given but the router has no "
                      "bias");
  if (!eg)
    return CLMOE_SUCCESS;
  if ((st = cm_check_struct(eg, sizeof *eg, "expert grads")) ||
      (st = check_grad(ctx, eg->w1, "expert_grads->w1", 3,
                       (int64_t[]){E, d, f})) ||
      (st = check_grad(ctx, eg->w3, "expert_grads->w3", 3,
                       (int64_t[]){E, d, f})) ||
      (st = check_grad(ctx, eg->w2, "expert_grads->w2", 3,
                       (int64_t[]){E, f, d})) ||
      (st = check_grad(ctx, eg->b1, "expert_grads->b1", 2,
                       (int64_t[]){E, f})) ||
      (st = check_grad(ctx, eg->b3, "expert_grads->b3", 2,
                       (int64_t[]){E, f})) ||
      (st = check_grad(ctx, eg->b2, "expert_grads->b2", 2, (int64_t[]){E, d})))
    return st;
  if (!gated && (eg->w3 || eg->b3))
    return cm_fail_at(CLMOE_ERROR_INVALID_ARGUMENT, FN,
                      "expert_grads->w3 / b3 are given but the experts' "
                      "activation has no up projection");
  return CLMOE_SUCCESS;
}

static clmoe_status check_call(clmoe_router *router, clmoe_experts *experts,
                               clmoe_routing *routing, const clmoe_tensor *x,
                               const clmoe_tensor *dy, const clmoe_tensor *dx,
                               const clmoe_router_grads *rg,
                               const clmoe_expert_grads *eg) {
  if (!router || !experts || !routing || !x || !dy)
    return cm_fail_at(CLMOE_ERROR_NULL_POINTER, FN,
                      "router, experts, routing, x or dy is NULL");
  const cm_saved *sv = routing->saved;
  if (!sv || !sv->valid || sv->serial != routing->serial || !routing->valid)
    return cm_fail_at(CLMOE_ERROR_INVALID_ARGUMENT, FN,
                      "the routing holds no training forward (call "
                      "clmoe_forward_train first; a later route into the "
                      "routing discards it)");
  if (sv->router != router || sv->experts != experts)
    return cm_fail_at(CLMOE_ERROR_INVALID_ARGUMENT, FN,
                      "the routing's training forward ran another %s",
                      sv->router != router ? "router" : "experts object");
  clmoe_context *ctx = routing->ctx;
  int64_t T = routing->T, d = experts->d;
  clmoe_status st;
  if ((st = cm_check_float_rows(ctx, x, "x", T, d)) ||
      (st = cm_check_float_rows(ctx, dy, "dy", T, d)) ||
      (dx && (st = cm_check_float_rows(ctx, dx, "dx", T, d))))
    return st;
  return check_grads(ctx, router, experts, rg, eg);
}

/* NONFINITE_INPUT naming dy's first NaN or Inf (one 4-byte read). */
static clmoe_status check_dy(clmoe_routing *rt, cm_saved *sv,
                             const clmoe_tensor *dy, int d) {
  int64_t n = (int64_t)rt->T * d;
  if (n == 0)
    return CLMOE_SUCCESS;
  cl_mem bad = sv->ws.buf[CM_SV_BAD];
  cl_int none = INT_MAX, err = clEnqueueWriteBuffer(
                                 rt->ctx->queue, bad, CL_TRUE, 0, sizeof none,
                                 &none, 0, NULL, NULL);
  if (err != CL_SUCCESS)
    return cm_cl_fail(err, "clmoe_backward: clEnqueueWriteBuffer");
  cl_kernel k;
  int count = (int)n;
  size_t g = (size_t)n;
  clmoe_status st =
      cm_kernel(rt->ctx, &rt->ws.kernels, CM_K_TRAIN_FIND_NONFINITE, &k);
  if (st || (st = cm_launch(rt->ctx, k, "train_find_nonfinite", 1, &g, NULL,
                            CM_ARGS(CM_ARG(count), CM_ARG(dy->mem),
                                    CM_ARG(dy->dtype), CM_ARG(bad)))))
    return st;
  cl_int first = INT_MAX;
  err = clEnqueueReadBuffer(rt->ctx->queue, bad, CL_TRUE, 0, sizeof first,
                            &first, 0, NULL, NULL);
  if (err != CL_SUCCESS)
    return cm_cl_fail(err, "clmoe_backward: clEnqueueReadBuffer");
  if (first != INT_MAX)
    return cm_fail_at(CLMOE_ERROR_NONFINITE_INPUT, FN,
                      "dy[%d, %d] is NaN or Inf", first / d, first % d);
  return CLMOE_SUCCESS;
}

/* The constants the kernels read: {1.0f} (the ones of column sums) and
 * {0, T} (the router's one group of rows). */
static clmoe_status write_consts(clmoe_routing *rt, cm_saved *sv) {
  clmoe_status st;
  if ((st = cm_saved_reserve(rt, sv, CM_SV_CONST, 4)) ||
      (st = cm_saved_reserve(rt, sv, CM_SV_ROWS, 2 * 4)) ||
      (st = cm_saved_reserve(rt, sv, CM_SV_BAD, 4)))
    return st;
  float one = 1.0f;
  cl_int rows[2] = {0, rt->T};
  cl_int err = clEnqueueWriteBuffer(rt->ctx->queue, sv->ws.buf[CM_SV_CONST],
                                    CL_TRUE, 0, sizeof one, &one, 0, NULL,
                                    NULL);
  if (err == CL_SUCCESS)
    err = clEnqueueWriteBuffer(rt->ctx->queue, sv->ws.buf[CM_SV_ROWS], CL_TRUE,
                               0, sizeof rows, rows, 0, NULL, NULL);
  return err == CL_SUCCESS
             ? CLMOE_SUCCESS
             : cm_cl_fail(err, "clmoe_backward: clEnqueueWriteBuffer");
}

/* The router weight's gradient x^T dz and the bias's column sums of dz,
 * over the one group of T rows. */
static clmoe_status router_weight_grads(clmoe_router *r, clmoe_routing *rt,
                                        cm_saved *sv, const clmoe_tensor *x,
                                        const clmoe_router_grads *rg,
                                        int accumulate) {
  int T = rt->T, E = r->E, d = r->d;
  cl_mem dz = sv->ws.buf[CM_SV_DZ], rows = sv->ws.buf[CM_SV_ROWS];
  cl_mem x32 = x->mem;
  clmoe_status st = CLMOE_SUCCESS;
  if (rg->weight && x->dtype != CLMOE_DTYPE_F32) {
    if ((st = cm_saved_reserve(rt, sv, CM_SV_X32, (size_t)T * d * 4)) ||
        (st = cm_convert_elements(rt->ctx, &rt->ws.kernels, (int64_t)T * d,
                                  x->mem, x->dtype, sv->ws.buf[CM_SV_X32],
                                  CLMOE_DTYPE_F32)))
      return st;
    x32 = sv->ws.buf[CM_SV_X32];
  }
  if (rg->weight)
    st = cm_train_weight_grad(rt, sv, 1, rows, d, E, x32, d, dz, E, E, E, 0,
                              rg->weight->mem, accumulate);
  if (!st && rg->bias)
    st = cm_train_weight_grad(rt, sv, 1, rows, 1, E, NULL, 0, dz, E, E, E, 0,
                              rg->bias->mem, accumulate);
  return st;
}

/* dx = the experts' share (scattered back per token) + dz W_r^T. */
static clmoe_status input_grad(clmoe_router *r, clmoe_experts *x,
                               clmoe_routing *rt, cm_saved *sv,
                               clmoe_tensor *dx, int accumulate) {
  cl_kernel k;
  int T = rt->T, d = x->d, E = r->E, has_router = 1, has_shared = 0;
  cl_mem dxs = sv->ws.buf[CM_SV_DXS];
  size_t g[2] = {(size_t)d, (size_t)T};
  clmoe_status st = cm_kernel(rt->ctx, &rt->ws.kernels, CM_K_TRAIN_INPUT_GRAD, &k);
  return st ? st
            : cm_launch(rt->ctx, k, "train_input_grad", 2, g, NULL,
                        CM_ARGS(CM_ARG(T), CM_ARG(d), CM_ARG(E),
                                CM_ARG(rt->ws.buf[CM_RB_TOKEN_OFFSETS]),
                                CM_ARG(rt->ws.buf[CM_RB_SLOT_ROWS]),
                                CM_ARG(rt->ws.buf[CM_RB_GATES]),
                                CM_ARG(rt->gate_input), CM_ARG(dxs),
                                CM_ARG(has_router),
                                CM_ARG(sv->ws.buf[CM_SV_DZ]),
                                CM_ARG(r->weight), CM_ARG(has_shared),
                                CM_ARG(dxs), CM_ARG(dx->mem), CM_ARG(dx->dtype),
                                CM_ARG(accumulate)));
}

/* T = 0: every gradient is an empty sum. */
static clmoe_status zero_grads(clmoe_routing *rt, const clmoe_router_grads *rg,
                               const clmoe_expert_grads *eg) {
  const clmoe_tensor *all[] = {rg ? rg->weight : NULL, rg ? rg->bias : NULL,
                               eg ? eg->w1 : NULL,     eg ? eg->w3 : NULL,
                               eg ? eg->w2 : NULL,     eg ? eg->b1 : NULL,
                               eg ? eg->b3 : NULL,     eg ? eg->b2 : NULL};
  float zero = 0.0f;
  for (size_t i = 0; i < sizeof all / sizeof *all; ++i) {
    if (!all[i] || all[i]->numel == 0)
      continue;
    cl_int err = clEnqueueFillBuffer(rt->ctx->queue, all[i]->mem, &zero,
                                     sizeof zero, 0,
                                     (size_t)all[i]->numel * sizeof zero, 0,
                                     NULL, NULL);
    if (err != CL_SUCCESS)
      return cm_cl_fail(err, "clmoe_backward: clEnqueueFillBuffer");
  }
  return CLMOE_SUCCESS;
}

clmoe_status clmoe_backward(clmoe_router *router, clmoe_experts *experts,
                            clmoe_routing *routing, const clmoe_tensor *x,
                            const clmoe_tensor *dy, clmoe_tensor *dx,
                            clmoe_router_grads *router_grads,
                            clmoe_expert_grads *expert_grads,
                            const clmoe_train_desc *aux, uint32_t flags) {
  clmoe_status st = check_call(router, experts, routing, x, dy, dx,
                               router_grads, expert_grads);
  if (st)
    return st;
  cm_saved *sv = routing->saved;
  float coeff[3] = {sv->coeff[0], sv->coeff[1], sv->coeff[2]};
  if (aux && (st = cm_train_coeffs(aux, coeff, FN)))
    return st;
  int accumulate = (flags & CLMOE_BACKWARD_ACCUMULATE) != 0;
  if ((st = write_consts(routing, sv)) ||
      (st = check_dy(routing, sv, dy, experts->d)))
    return st;
  if (routing->T == 0)
    return accumulate ? CLMOE_SUCCESS
                      : zero_grads(routing, router_grads, expert_grads);
  if ((st = cm_train_experts_backward(experts, routing, sv, x, dy,
                                      expert_grads, accumulate)) ||
      (st = cm_train_router_pass(router, routing, sv, 1, coeff)) ||
      (router_grads && (st = router_weight_grads(router, routing, sv, x,
                                                  router_grads, accumulate))) ||
      (dx && (st = input_grad(router, experts, routing, sv, dx,
                              (flags & CLMOE_BACKWARD_ACCUMULATE_DX) != 0))))
    return st;
  return CLMOE_SUCCESS;
}
