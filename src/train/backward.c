/* clmoe_backward: checks, then the expert stage's backward, the router's,
 * and the input gradient (docs/training.md). */
#include <limits.h>
#include <stdio.h>
#include <string.h>

#include "moe/dispatch_combine.h"
#include "moe/shared.h"
#include "train/saved.h"

static const char *const FN = "clmoe_backward";

/* A caller's float32 gradient tensor of `rank` dims (NULL passes). */
static clmoe_status check_grad(const clmoe_context *ctx, const clmoe_tensor *t,
                               const char *name, int rank,
                               const int64_t *dims) {
  return t ? cm_check_tensor(t, ctx, name, CLMOE_DTYPE_F32, rank, dims)
           : CLMOE_SUCCESS;
}

/* Expert gradients `name` (expert_grads, shared_grads) for experts x. */
static clmoe_status check_expert_grads(const clmoe_context *ctx,
                                       const clmoe_experts *x,
                                       const clmoe_expert_grads *eg,
                                       const char *name) {
  if (!eg)
    return CLMOE_SUCCESS;
  if (!x)
    return cm_fail_at(CLMOE_ERROR_INVALID_ARGUMENT, FN,
                      "%s is given without shared experts", name);
  int64_t E = x->E, d = x->d, f = x->f;
  const struct {
    const clmoe_tensor *t;
    const char *field;
    int rank;
    int64_t dims[3];
  } want[] = {{eg->w1, "w1", 3, {E, d, f}}, {eg->w3, "w3", 3, {E, d, f}},
              {eg->w2, "w2", 3, {E, f, d}}, {eg->b1, "b1", 2, {E, f}},
              {eg->b3, "b3", 2, {E, f}},    {eg->b2, "b2", 2, {E, d}}};
  clmoe_status st = cm_check_struct(eg, sizeof *eg, name);
  for (size_t i = 0; !st && i < sizeof want / sizeof *want; ++i) {
    char full[64];
    snprintf(full, sizeof full, "%s->%s", name, want[i].field);
    st = check_grad(ctx, want[i].t, full, want[i].rank, want[i].dims);
  }
  if (!st && !cm_is_gated(x->activation) && (eg->w3 || eg->b3))
    return cm_fail_at(CLMOE_ERROR_INVALID_ARGUMENT, FN,
                      "%s->w3 / b3 are given but the experts' activation has "
                      "no up projection",
                      name);
  return st;
}

static clmoe_status check_grads(const clmoe_context *ctx,
                                const clmoe_router *r, const clmoe_experts *x,
                                const clmoe_experts *shared,
                                const clmoe_router_grads *rg,
                                const clmoe_expert_grads *eg,
                                const clmoe_expert_grads *sg) {
  int64_t E = x->E, d = x->d;
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
  if ((st = check_expert_grads(ctx, x, eg, "expert_grads")))
    return st;
  return check_expert_grads(ctx, shared, sg, "shared_grads");
}

typedef struct backward_args {
  clmoe_router *router;
  clmoe_experts *experts, *shared;
  const clmoe_tensor *shared_gate;
  clmoe_routing *routing;
  const clmoe_tensor *x, *dy;
  clmoe_tensor *dx;
  clmoe_router_grads *rg;
  clmoe_expert_grads *eg, *sg;
  clmoe_tensor *sgate_grad;
} backward_args;

static clmoe_status check_call(const backward_args *a) {
  clmoe_router *router = a->router;
  clmoe_experts *experts = a->experts;
  clmoe_routing *routing = a->routing;
  const clmoe_tensor *x = a->x, *dy = a->dy, *dx = a->dx;
  if (!router || !experts || !routing || !x || !dy)
    return cm_fail_at(CLMOE_ERROR_NULL_POINTER, FN,
                      "router, experts, routing, x or dy is NULL");
  const cm_saved *sv = routing->saved;
  if (!sv || !sv->valid || sv->serial != routing->serial || !routing->valid)
    return cm_fail_at(CLMOE_ERROR_INVALID_ARGUMENT, FN,
                      "the routing holds no training forward (call "
                      "clmoe_forward_train first; a later route into the "
                      "routing discards it)");
  if (sv->router != router || sv->experts != experts ||
      sv->shared != a->shared || sv->shared_gate != a->shared_gate)
    return cm_fail_at(CLMOE_ERROR_INVALID_ARGUMENT, FN,
                      "the routing's training forward ran another %s",
                      sv->router != router     ? "router"
                      : sv->experts != experts ? "experts object"
                                               : "shared experts or gate");
  clmoe_context *ctx = routing->ctx;
  int64_t T = routing->T, d = experts->d;
  clmoe_status st;
  /* Row counts other than the forward's T: tensors of another batch. */
  const clmoe_tensor *rows[3] = {x, dy, dx};
  static const char *const names[3] = {"x", "dy", "dx"};
  for (int i = 0; i < 3; ++i)
    if (rows[i] && rows[i]->rank >= 1 && rows[i]->shape[0] != T)
      return cm_fail_at(CLMOE_ERROR_INVALID_ARGUMENT, FN,
                        "%s has %lld rows but the training forward in the "
                        "routing had T = %lld tokens",
                        names[i], (long long)rows[i]->shape[0], (long long)T);
  if ((st = cm_check_float_rows(ctx, x, "x", T, d)) ||
      (st = cm_check_float_rows(ctx, dy, "dy", T, d)) ||
      (dx && (st = cm_check_float_rows(ctx, dx, "dx", T, d))) ||
      (st = check_grad(ctx, a->sgate_grad, "shared_gate_grad", 1,
                       (int64_t[]){d})))
    return st;
  if (a->sgate_grad && !a->shared_gate)
    return cm_fail_at(CLMOE_ERROR_INVALID_ARGUMENT, FN,
                      "shared_gate_grad is given without a shared gate");
  return check_grads(ctx, router, experts, a->shared, a->rg, a->eg, a->sg);
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
  cm_grad_job w = {T, d, E, x32, d, dz, E, E, E, E, NULL, NULL};
  cm_grad_job b = {T, 1, E, NULL, 0, dz, E, E, E, E, NULL, NULL};
  sv->packed_x = sv->packed_d = NULL; /* the expert stage's were packed */
  if (rg->weight) {
    w.G0 = rg->weight->mem;
    st = cm_train_weight_grad(rt, sv, 1, rows, &w, accumulate);
  }
  if (!st && rg->bias) {
    b.G0 = rg->bias->mem;
    st = cm_train_weight_grad(rt, sv, 1, rows, &b, accumulate);
  }
  return st;
}

/* dx = the experts' share (scattered back per token) + dz W_r^T + the
 * shared experts' share (dsv: their saved state, or NULL) and their gate's
 * (sgate, or NULL). */
static clmoe_status input_grad(clmoe_router *r, clmoe_experts *x,
                               clmoe_routing *rt, cm_saved *sv,
                               const cm_saved *dsv, const clmoe_tensor *sgate,
                               clmoe_tensor *dx, int accumulate) {
  cl_kernel k;
  int T = rt->T, d = x->d, E = r->E, has_router = 1, has_shared = dsv != NULL,
      has_sgate = sgate != NULL;
  cl_mem dxs = sv->ws.buf[CM_SV_DXS];
  cl_mem sdx = has_shared ? dsv->ws.buf[CM_SV_DXS] : dxs;
  cl_mem dgate = has_sgate ? dsv->ws.buf[CM_SV_DG] : dxs;
  cl_mem sg = has_sgate ? sgate->mem : dxs;
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
                                CM_ARG(sdx), CM_ARG(has_sgate), CM_ARG(dgate),
                                CM_ARG(sg), CM_ARG(dx->mem), CM_ARG(dx->dtype),
                                CM_ARG(accumulate)));
}

/* T = 0: every gradient is an empty sum. */
static clmoe_status zero_grads(const backward_args *a) {
  const clmoe_router_grads *rg = a->rg;
  const clmoe_expert_grads *eg = a->eg, *sg = a->sg;
  const clmoe_tensor *all[] = {
      rg ? rg->weight : NULL, rg ? rg->bias : NULL, eg ? eg->w1 : NULL,
      eg ? eg->w3 : NULL,     eg ? eg->w2 : NULL,   eg ? eg->b1 : NULL,
      eg ? eg->b3 : NULL,     eg ? eg->b2 : NULL,   sg ? sg->w1 : NULL,
      sg ? sg->w3 : NULL,     sg ? sg->w2 : NULL,   sg ? sg->b1 : NULL,
      sg ? sg->b3 : NULL,     sg ? sg->b2 : NULL,   a->sgate_grad};
  float zero = 0.0f;
  for (size_t i = 0; i < sizeof all / sizeof *all; ++i) {
    if (!all[i] || all[i]->numel == 0)
      continue;
    cl_int err = clEnqueueFillBuffer(a->routing->ctx->queue, all[i]->mem, &zero,
                                     sizeof zero, 0,
                                     (size_t)all[i]->numel * sizeof zero, 0,
                                     NULL, NULL);
    if (err != CL_SUCCESS)
      return cm_cl_fail(err, "clmoe_backward: clEnqueueFillBuffer");
  }
  return CLMOE_SUCCESS;
}

/* The shared experts' backward on the dense sub-routing: their weight
 * gradients, their dXs, and the gate's logit gradients (kept in the dense
 * state for dx) reduced into the gate vector's gradient. */
static clmoe_status shared_backward(const backward_args *a, int accumulate,
                                    cm_saved **dsv_out) {
  clmoe_routing *dr = a->routing->dense;
  cm_saved *dsv = dr->saved;
  *dsv_out = dsv;
  int has_gate = a->shared_gate != NULL, d = a->experts->d;
  clmoe_status st = cm_train_experts_backward(
      a->shared, dr, dsv, a->x, a->dy, a->sg, accumulate,
      dr->ws.buf[CM_RB_GATES], has_gate);
  if (st || !a->sgate_grad)
    return st;
  cm_saved *sv = a->routing->saved;
  cl_mem x32 = a->x->mem;
  if (a->x->dtype != CLMOE_DTYPE_F32)
    x32 = dsv->ws.buf[CM_SV_XS]; /* the dense rows are x widened */
  /* d(shared_gate)[c] = sum_t x[t, c] * dgate[t]: one group of T rows. */
  cm_grad_job job = {a->routing->T, d, 1, x32, d, dsv->ws.buf[CM_SV_DG],
                     1, 1, 1, 1, a->sgate_grad->mem, NULL};
  sv->packed_x = sv->packed_d = NULL;
  return cm_train_weight_grad(a->routing, sv, 1, sv->ws.buf[CM_SV_ROWS], &job,
                              accumulate);
}

clmoe_status clmoe_backward(clmoe_router *router, clmoe_experts *experts,
                            clmoe_experts *shared,
                            const clmoe_tensor *shared_gate,
                            clmoe_routing *routing, const clmoe_tensor *x,
                            const clmoe_tensor *dy, clmoe_tensor *dx,
                            clmoe_router_grads *router_grads,
                            clmoe_expert_grads *expert_grads,
                            clmoe_expert_grads *shared_grads,
                            clmoe_tensor *shared_gate_grad,
                            const clmoe_train_desc *aux, uint32_t flags) {
  backward_args a = {router,     experts,          shared,       shared_gate,
                     routing,    x,                dy,           dx,
                     router_grads, expert_grads,   shared_grads, shared_gate_grad};
  clmoe_status st = check_call(&a);
  if (st)
    return st;
  cm_saved *sv = routing->saved, *dsv = NULL;
  float coeff[3] = {sv->coeff[0], sv->coeff[1], sv->coeff[2]};
  if (aux && (st = cm_train_coeffs(aux, coeff, FN)))
    return st;
  int accumulate = (flags & CLMOE_BACKWARD_ACCUMULATE) != 0;
  if ((st = write_consts(routing, sv)) ||
      (st = check_dy(routing, sv, dy, experts->d)))
    return st;
  if (routing->T == 0)
    return accumulate ? CLMOE_SUCCESS : zero_grads(&a);
  if ((st = cm_train_experts_backward(experts, routing, sv, x, dy,
                                      expert_grads, accumulate, NULL, 0)) ||
      (shared && (st = shared_backward(&a, accumulate, &dsv))) ||
      (st = cm_train_router_pass(router, routing, sv, 1, coeff)) ||
      (router_grads && (st = router_weight_grads(router, routing, sv, x,
                                                  router_grads, accumulate))) ||
      (dx && (st = input_grad(router, experts, routing, sv, dsv, shared_gate,
                              dx, (flags & CLMOE_BACKWARD_ACCUMULATE_DX) != 0))))
    return st;
  return CLMOE_SUCCESS;
}
