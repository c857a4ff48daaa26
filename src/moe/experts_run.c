/* clmoe_experts_run's two paths: per-expert CLBlast SGEMMs (host reads
 * expert_offsets) and the grouped kernel (one launch per matrix, no host
 * sync). */
#include "moe/blas.h"
#include "moe/dispatch_combine.h"
#include "moe/experts.h"
#include "moe/grouped_gemm.h"

#include <stdio.h>

/* One expert's product on buffer offsets, named in errors. */
static clmoe_status expert_sgemm(clmoe_context *ctx, int M, int N, int K,
                                 cl_mem A, size_t a_off, cl_mem B, size_t b_off,
                                 cl_mem C, size_t c_off, int expert) {
  char what[64];
  snprintf(what, sizeof what, "clmoe_experts_run: expert %d", expert);
  return cm_blas_sgemm(ctx, M, N, K, A, a_off, B, b_off, C, c_off, what);
}

static clmoe_status run_clblast(clmoe_experts *x, clmoe_routing *rt, cl_mem xs,
                                cl_mem ys) {
  clmoe_context *ctx = rt->ctx;
  int E = x->E, d = x->d, f = x->f, F = x->F, N = rt->N;
  clmoe_status st;
  if ((st = cm_routing_reserve(rt, CM_RB_FFN_H, (size_t)N * F * 4)) ||
      (st = cm_routing_reserve(rt, CM_RB_FFN_ACT, (size_t)N * f * 4)) ||
      (st = cm_routing_host_offsets(rt, E)))
    return st;
  int *off = rt->host_offsets;
  cl_int err =
      clEnqueueReadBuffer(ctx->queue, rt->ws.buf[CM_RB_EXPERT_OFFSETS], CL_TRUE,
                          0, sizeof *off * ((size_t)E + 1), off, 0, NULL, NULL);
  if (err != CL_SUCCESS)
    return cm_cl_fail(err, "clmoe_experts_run: clEnqueueReadBuffer");
  cl_mem h = rt->ws.buf[CM_RB_FFN_H], act = rt->ws.buf[CM_RB_FFN_ACT];
  for (int e = 0; e < E && !st; ++e) {
    int n = off[e + 1] - off[e];
    if (n > 0)
      st = expert_sgemm(ctx, n, F, d, xs, (size_t)off[e] * d, x->w13,
                        (size_t)e * d * F, h, (size_t)off[e] * F, e);
  }
  cl_kernel k;
  int kind = x->activation, has_b1 = x->b1 != NULL, has_b3 = x->b3 != NULL;
  cl_mem b1 = has_b1 ? x->b1 : h, b3 = has_b3 ? x->b3 : h;
  size_t g[2] = {(size_t)f, (size_t)N};
  if (!st &&
      !(st = cm_kernel(ctx, &rt->ws.kernels, CM_K_EXPERT_ACTIVATION, &k)))
    st = cm_launch(ctx, k, "expert_activation", 2, g, NULL,
                   CM_ARGS(CM_ARG(N), CM_ARG(E), CM_ARG(f), CM_ARG(kind),
                           CM_ARG(rt->ws.buf[CM_RB_EXPERT_OFFSETS]), CM_ARG(h),
                           CM_ARG(has_b1), CM_ARG(b1), CM_ARG(has_b3),
                           CM_ARG(b3), CM_ARG(act), CM_ARG(x->act_params[0]),
                           CM_ARG(x->act_params[1])));
  for (int e = 0; e < E && !st; ++e) {
    int n = off[e + 1] - off[e];
    if (n > 0)
      st = expert_sgemm(ctx, n, d, f, act, (size_t)off[e] * f, x->w2,
                        (size_t)e * f * d, ys, (size_t)off[e] * d, e);
  }
  size_t gd[2] = {(size_t)d, (size_t)N};
  if (!st && x->b2 &&
      !(st = cm_kernel(ctx, &rt->ws.kernels, CM_K_EXPERT_ADD_BIAS, &k)))
    st = cm_launch(ctx, k, "expert_add_bias", 2, gd, NULL,
                   CM_ARGS(CM_ARG(N), CM_ARG(E), CM_ARG(d),
                           CM_ARG(rt->ws.buf[CM_RB_EXPERT_OFFSETS]),
                           CM_ARG(x->b2), CM_ARG(ys)));
  return st;
}

clmoe_status cm_experts_gemm(clmoe_experts *x, clmoe_routing *rt, int rows,
                             int K, int panels, cl_mem A, cl_mem B, cl_mem S,
                             int group, int epi, cl_mem bias, cl_mem C,
                             int n_out) {
  cm_gemm_scales scales = {S, group};
  return cm_gemm_grouped(rt->ctx, &rt->ws.kernels, x->E, rows, K, panels,
                         cm_gemm_tiles_per_item(&rt->ctx->tuning),
                         rt->ws.buf[CM_RB_EXPERT_OFFSETS],
                         rt->ws.buf[CM_RB_TILE_OFFSETS], A, B, x->wdtype, epi,
                         bias, C, n_out, x->act_params, S ? &scales : NULL);
}

clmoe_status cm_experts_tile_offsets(clmoe_routing *rt, int E) {
  clmoe_context *ctx = rt->ctx;
  clmoe_status st =
      cm_routing_reserve(rt, CM_RB_TILE_OFFSETS, ((size_t)E + 1) * 4);
  cl_kernel k;
  size_t one = 1;
  int tile_rows = cm_gemm_tile_rows(&ctx->tuning),
      tiles_per_item = cm_gemm_tiles_per_item(&ctx->tuning);
  if (st || (st = cm_kernel(ctx, &rt->ws.kernels, CM_K_GEMM_TILE_OFFSETS, &k)))
    return st;
  return cm_launch(ctx, k, "gemm_tile_offsets", 1, &one, NULL,
                   CM_ARGS(CM_ARG(E), CM_ARG(tile_rows), CM_ARG(tiles_per_item),
                           CM_ARG(rt->ws.buf[CM_RB_STATS]),
                           CM_ARG(rt->ws.buf[CM_RB_EXPERT_OFFSETS]),
                           CM_ARG(rt->ws.buf[CM_RB_TILE_OFFSETS])));
}

static clmoe_status run_grouped(clmoe_experts *x, clmoe_routing *rt, cl_mem xs,
                                cl_mem ys, int N) {
  int d = x->d, f = x->f;
  clmoe_status st;
  if ((st = cm_routing_reserve(rt, CM_RB_FFN_ACT, (size_t)N * f * 4)) ||
      (st = cm_experts_tile_offsets(rt, x->E)))
    return st;
  cl_mem act = rt->ws.buf[CM_RB_FFN_ACT];
  if ((st = cm_experts_gemm(x, rt, N, d, x->panels_up, xs, x->w13, x->s13,
                            x->group_up, x->activation, x->b13, act, f)))
    return st;
  return cm_experts_gemm(x, rt, N, f, x->panels_down, act, x->w2, x->s2,
                         x->group_down, 0, x->b2, ys, d);
}

clmoe_status cm_experts_run(clmoe_experts *x, clmoe_routing *rt, cl_mem xs,
                            cl_mem ys, int rows) {
  if (rows == 0)
    return CLMOE_SUCCESS;
  return x->path == CLMOE_EXPERTS_PATH_GROUPED
             ? run_grouped(x, rt, xs, ys, rows)
             : run_clblast(x, rt, xs, ys);
}

/* The experts can run on the routing's context (queue). */
clmoe_status cm_check_experts_ctx(const clmoe_experts *x,
                                  const clmoe_routing *rt, const char *fn) {
  if (!cm_same_device(x->ctx, rt->ctx))
    return cm_fail(CLMOE_ERROR_CONTEXT_MISMATCH,
                   "%s: experts and routing belong to contexts of different "
                   "cl_contexts or devices",
                   fn);
  if (x->path == CLMOE_EXPERTS_PATH_GROUPED && x->vw != rt->ctx->tuning.vw)
    return cm_fail(CLMOE_ERROR_CONTEXT_MISMATCH,
                   "%s: the experts were packed for vector width %d but the "
                   "routing's context runs the grouped kernel with %d "
                   "(different tuning tables)",
                   fn, x->vw, rt->ctx->tuning.vw);
  return CLMOE_SUCCESS;
}

static clmoe_status check_pair(const clmoe_experts *x, const clmoe_routing *rt,
                               const char *fn) {
  if (!x)
    return cm_fail(CLMOE_ERROR_NULL_POINTER, "%s: experts is NULL", fn);
  clmoe_status st = cm_check_routing(rt, fn);
  if (st || (st = cm_check_experts_ctx(x, rt, fn)))
    return st;
  if (rt->E != x->E && rt->T > 0)
    return cm_fail(CLMOE_ERROR_SHAPE_MISMATCH,
                   "%s: the routing has E = %d experts but the experts object "
                   "%d",
                   fn, rt->E, x->E);
  return CLMOE_SUCCESS;
}

/* Runs the experts on 16-bit rows: widened into the workspace, run in
 * float32, rounded once into y_sorted's dtype. */
static clmoe_status run_converted(clmoe_experts *x, clmoe_routing *rt,
                                  const clmoe_tensor *xs,
                                  const clmoe_tensor *ys) {
  int64_t n = (int64_t)rt->N * x->d;
  size_t bytes = (size_t)n * sizeof(float);
  clmoe_status st;
  if ((st = cm_routing_reserve(rt, CM_RB_X_SORTED, bytes)) ||
      (st = cm_routing_reserve(rt, CM_RB_Y_SORTED, bytes)))
    return st;
  cl_mem xf = rt->ws.buf[CM_RB_X_SORTED], yf = rt->ws.buf[CM_RB_Y_SORTED];
  if ((st = cm_convert_elements(rt->ctx, &rt->ws.kernels, n, xs->mem, xs->dtype,
                                xf, CLMOE_DTYPE_F32)) ||
      (st = cm_experts_run(x, rt, xf, yf, rt->N)))
    return st;
  return cm_convert_elements(rt->ctx, &rt->ws.kernels, n, yf, CLMOE_DTYPE_F32,
                             ys->mem, ys->dtype);
}

clmoe_status clmoe_experts_run(clmoe_experts *experts, clmoe_routing *routing,
                               const clmoe_tensor *x_sorted,
                               clmoe_tensor *y_sorted, uint32_t num_wait,
                               const cl_event *wait, cl_event *out_event) {
  const char *fn = "clmoe_experts_run";
  if (out_event)
    *out_event = NULL;
  clmoe_status st = check_pair(experts, routing, fn);
  if (st ||
      (st = cm_check_float_rows(routing->ctx, x_sorted, "x_sorted", routing->N,
                                experts->d)) ||
      (st = cm_check_float_rows(routing->ctx, y_sorted, "y_sorted", routing->N,
                                experts->d)))
    return st;
  if (x_sorted->dtype != y_sorted->dtype)
    return cm_fail_at(CLMOE_ERROR_DTYPE_MISMATCH, fn,
                      "x_sorted is %s but y_sorted is %s; they must match",
                      cm_dtype_name(x_sorted->dtype),
                      cm_dtype_name(y_sorted->dtype));
  if ((st = cm_enqueue_wait(routing->ctx, num_wait, wait, fn)))
    return st;
  st = x_sorted->dtype == CLMOE_DTYPE_F32
           ? cm_experts_run(experts, routing, x_sorted->mem, y_sorted->mem,
                            routing->N)
           : run_converted(experts, routing, x_sorted, y_sorted);
  return st ? st : cm_enqueue_done(routing->ctx, out_event);
}
