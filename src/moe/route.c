/* clmoe_route: router GEMM (grouped kernel or CLBlast), then softmax, policy,
 * capacity, compaction, expert-major grouping and stats, all on the device. */
#include "moe/route.h"
#include "moe/blas.h"
#include "moe/dispatch_combine.h"
#include "moe/grouped_gemm.h"
#include "moe/routing_result.h"

#include <limits.h>
#include <math.h>
#include <stdio.h>

typedef struct route_call {
  clmoe_router *r;
  clmoe_routing *rt;
  clmoe_context *ctx;
  int T, E, kcap;
  cl_mem logits;     /* [T, E] */
  cl_mem x;          /* [T, d] or NULL (logits given) */
  cl_mem importance; /* [T] or NULL */
} route_call;

static int uses_mask(const clmoe_router *r) {
  return r->policy == CLMOE_POLICY_RESONANCE ||
         r->policy == CLMOE_POLICY_EXPERT_CHOICE || r->capacity_factor > 0.0f;
}

static clmoe_status reserve_all(route_call *c) {
  clmoe_routing *rt = c->rt;
  size_t T = (size_t)c->T, E = (size_t)c->E, kcap = (size_t)c->kcap;
  size_t N = T * kcap; /* the most slots a route can produce */
  int block, nb;
  cm_group_blocks(c->T, &block, &nb);
  const struct {
    cm_routing_buffer b;
    size_t bytes;
  } need[] = {
      {CM_RB_COUNTS, T * 4},
      {CM_RB_TOKEN_OFFSETS, (T + 1) * 4},
      {CM_RB_EXPERT_IDS, N * 4},
      {CM_RB_GATES, N * 4},
      {CM_RB_EXPERT_OFFSETS, (E + 1) * 4},
      {CM_RB_SLOT_ROWS, N * 4},
      {CM_RB_ROW_TOKENS, N * 4},
      {CM_RB_LOGITS, c->x ? T * E * 4 : 4},
      {CM_RB_PROBS, T * E * 4},
      {CM_RB_ENTROPY, T * 4},
      {CM_RB_CAND_IDS, N * 4},
      {CM_RB_CAND_P, N * 4},
      {CM_RB_PROP_COUNTS, T * 4},
      {CM_RB_MASK, uses_mask(c->r) ? T * E : 4},
      {CM_RB_PROP_OFFSETS, (E + 1) * 4},
      {CM_RB_PROP_TOKENS, uses_mask(c->r) ? N * 4 : 4},
      {CM_RB_HIST, (E * (size_t)nb + 1) * 4},
      {CM_RB_PARTIALS, (CM_SCAN_MAX_CHUNKS + 1) * 4},
      {CM_RB_XNORM, T * 4},
      {CM_RB_BLOCK_SUMS, (size_t)nb * (E + 1) * 4},
      {CM_RB_STATS, (CM_ST_HEADER + 3 * E + 1) * 4},
      {CM_RB_HEAP, T * E * 8},
  };
  for (size_t i = 0; i < sizeof need / sizeof *need; ++i) {
    clmoe_status st = cm_routing_reserve(rt, need[i].b, need[i].bytes);
    if (st)
      return st;
  }
  return CLMOE_SUCCESS;
}

/* logits = x W on the grouped kernel, one group of T rows; its offsets are
 * filled on the queue (a pattern is copied at enqueue: no host sync, no
 * host memory to keep alive). */
static clmoe_status router_gemm_grouped(route_call *c) {
  clmoe_router *r = c->r;
  clmoe_routing *rt = c->rt;
  clmoe_context *ctx = c->ctx;
  cl_int rows[2] = {0, c->T};
  int tile_rows = cm_gemm_tile_rows(&ctx->tuning);
  cl_int tiles[2] = {0, (c->T + tile_rows - 1) / tile_rows};
  clmoe_status st;
  if ((st = cm_routing_reserve(rt, CM_RB_ROUTER_ROWS, sizeof rows)) ||
      (st = cm_routing_reserve(rt, CM_RB_ROUTER_TILES, sizeof tiles)))
    return st;
  cl_int err =
      clEnqueueFillBuffer(ctx->queue, rt->ws.buf[CM_RB_ROUTER_ROWS], rows,
                          sizeof rows, 0, sizeof rows, 0, NULL, NULL);
  if (err == CL_SUCCESS)
    err = clEnqueueFillBuffer(ctx->queue, rt->ws.buf[CM_RB_ROUTER_TILES], tiles,
                              sizeof tiles, 0, sizeof tiles, 0, NULL, NULL);
  if (err != CL_SUCCESS)
    return cm_cl_fail(err, "clEnqueueFillBuffer(router GEMM offsets)");
  /* One tile per work-item: a single group of T rows needs them spread. */
  return cm_gemm_grouped(ctx, &rt->ws.kernels, 1, c->T, r->d, r->packed_panels,
                         1, rt->ws.buf[CM_RB_ROUTER_ROWS],
                         rt->ws.buf[CM_RB_ROUTER_TILES], c->x, r->packed,
                         CLMOE_DTYPE_F32, CM_EPI_NONE, NULL, c->logits, c->E,
                         NULL, NULL);
}

static clmoe_status router_gemm(route_call *c) {
  /* The packed weight serves a routing context with the same kernel shape
   * (contexts sharing a device normally share their tuning entry). */
  if (c->r->packed &&
      c->ctx->tuning.router_gemm == CLMOE_EXPERTS_PATH_GROUPED &&
      c->ctx->tuning.vw == c->r->packed_vw)
    return router_gemm_grouped(c);
  return cm_blas_sgemm(c->ctx, c->T, c->E, c->r->d, c->x, 0, c->r->weight, 0,
                       c->logits, 0, "clmoe_route: router logits");
}

static clmoe_status run_select(route_call *c) {
  clmoe_router *r = c->r;
  cl_kernel k;
  clmoe_status st =
      cm_kernel(c->ctx, &c->rt->ws.kernels, CM_K_ROUTE_SELECT, &k);
  if (st)
    return st;
  size_t global = (size_t)c->T;
  int has_bias = c->x && r->bias;
  cl_mem bias = has_bias ? r->bias : c->logits;
  cl_mem imp = c->importance ? c->importance : c->logits;
  int policy = r->policy,
      budget = r->policy == CLMOE_POLICY_IMPORTANCE && r->k_mean > 0.0f;
  int sigmoid = r->scoring == CLMOE_SCORING_SIGMOID;
  int has_sel_bias = r->selection_bias != NULL;
  cl_mem sel_bias = has_sel_bias ? r->selection_bias : c->logits;
  int group_score = r->group_score, gates_from_score = r->policy ==
                                                        CLMOE_POLICY_TOPK;
  return cm_launch(
      c->ctx, k, "route_select", 1, &global, NULL,
      CM_ARGS(CM_ARG(c->T), CM_ARG(c->E), CM_ARG(c->logits), CM_ARG(has_bias),
              CM_ARG(bias), CM_ARG(c->rt->ws.buf[CM_RB_PROBS]),
              CM_ARG(c->rt->ws.buf[CM_RB_ENTROPY]), CM_ARG(policy),
              CM_ARG(r->k), CM_ARG(r->p), CM_ARG(r->k_min), CM_ARG(r->k_max),
              CM_ARG(imp), CM_ARG(budget), CM_ARG(c->kcap),
              CM_ARG(c->rt->ws.buf[CM_RB_CAND_IDS]),
              CM_ARG(c->rt->ws.buf[CM_RB_CAND_P]),
              CM_ARG(c->rt->ws.buf[CM_RB_PROP_COUNTS]),
              CM_ARG(c->rt->ws.buf[CM_RB_STATS]),
              CM_ARG(c->rt->ws.buf[CM_RB_HEAP]), CM_ARG(sigmoid),
              CM_ARG(has_sel_bias), CM_ARG(sel_bias), CM_ARG(r->num_groups),
              CM_ARG(r->topk_groups), CM_ARG(group_score),
              CM_ARG(gates_from_score)));
}

static clmoe_status run_budget(route_call *c) {
  cl_kernel k;
  clmoe_status st =
      cm_kernel(c->ctx, &c->rt->ws.kernels, CM_K_IMPORTANCE_BUDGET, &k);
  if (st)
    return st;
  size_t one = 1;
  /* B = round(T * k_mean), half away from zero, in double. */
  cl_long budget = (cl_long)floor((double)c->T * c->r->k_mean + 0.5);
  return cm_launch(c->ctx, k, "route_importance_budget", 1, &one, NULL,
                   CM_ARGS(CM_ARG(c->T), CM_ARG(c->importance),
                           CM_ARG(c->r->k_min), CM_ARG(c->r->k_max),
                           CM_ARG(budget), CM_ARG(c->rt->ws.buf[CM_RB_STATS]),
                           CM_ARG(c->rt->ws.buf[CM_RB_PROP_COUNTS])));
}

static clmoe_status run_capacity(route_call *c) {
  clmoe_router *r = c->r;
  clmoe_context *ctx = c->ctx;
  clmoe_status st;
  int dense = r->policy == CLMOE_POLICY_EXPERT_CHOICE;
  int cosine = r->policy == CLMOE_POLICY_RESONANCE &&
               r->affinity == CLMOE_AFFINITY_COSINE;
  int by_order = r->policy != CLMOE_POLICY_RESONANCE && !dense &&
                 r->overflow == CLMOE_OVERFLOW_DROP_LATEST_TOKEN;
  cl_kernel k;
  if (!dense &&
      (st = cm_group(
           ctx, &c->rt->ws.kernels, c->T, c->E, c->rt->ws.buf[CM_RB_CAND_IDS],
           c->kcap, c->rt->ws.buf[CM_RB_PROP_COUNTS],
           c->rt->ws.buf[CM_RB_PROP_COUNTS], c->rt->ws.buf[CM_RB_HIST],
           c->rt->ws.buf[CM_RB_PARTIALS], c->rt->ws.buf[CM_RB_PROP_OFFSETS],
           NULL, c->rt->ws.buf[CM_RB_PROP_TOKENS])))
    return st;
  if (cosine) {
    size_t g = (size_t)c->T;
    if ((st = cm_kernel(ctx, &c->rt->ws.kernels, CM_K_ROW_NORMS, &k)) ||
        (st = cm_launch(ctx, k, "row_norms", 1, &g, NULL,
                        CM_ARGS(CM_ARG(c->T), CM_ARG(r->d), CM_ARG(c->x),
                                CM_ARG(c->rt->ws.buf[CM_RB_XNORM])))))
      return st;
  }
  if ((st = cm_kernel(ctx, &c->rt->ws.kernels, CM_K_SELECT_BY_EXPERT, &k)))
    return st;
  size_t global = (size_t)c->E;
  cl_mem wnorm = r->wnorm ? r->wnorm : c->rt->ws.buf[CM_RB_XNORM];
  return cm_launch(
      ctx, k, "select_by_expert", 1, &global, NULL,
      CM_ARGS(CM_ARG(c->T), CM_ARG(c->E), CM_ARG(dense),
              CM_ARG(r->capacity_factor), CM_ARG(c->T),
              CM_ARG(c->rt->ws.buf[CM_RB_PROP_OFFSETS]),
              CM_ARG(c->rt->ws.buf[CM_RB_PROP_TOKENS]), CM_ARG(by_order),
              CM_ARG(cosine), CM_ARG(c->rt->ws.buf[CM_RB_PROBS]),
              CM_ARG(c->logits), CM_ARG(c->rt->ws.buf[CM_RB_XNORM]),
              CM_ARG(wnorm), CM_ARG(c->rt->ws.buf[CM_RB_MASK])));
}

static clmoe_status copy_word(route_call *c, cl_mem src, size_t src_word,
                              size_t dst_word) {
  cl_int err =
      clEnqueueCopyBuffer(c->ctx->queue, src, c->rt->ws.buf[CM_RB_STATS],
                          src_word * 4, dst_word * 4, 4, 0, NULL, NULL);
  return err == CL_SUCCESS ? CLMOE_SUCCESS
                           : cm_cl_fail(err, "clEnqueueCopyBuffer(stats)");
}

static clmoe_status run_compact(route_call *c) {
  clmoe_context *ctx = c->ctx;
  cm_kernels *ks = &c->rt->ws.kernels;
  int use_mask = uses_mask(c->r);
  int fallback = c->r->policy == CLMOE_POLICY_RESONANCE &&
                 c->r->fallback == CLMOE_FALLBACK_TOP1;
  size_t g = (size_t)c->T;
  cl_kernel k;
  clmoe_status st;
  if ((st = cm_kernel(ctx, ks, CM_K_COMPACT_COUNT, &k)) ||
      (st = cm_launch(
           ctx, k, "compact_count", 1, &g, NULL,
           CM_ARGS(CM_ARG(c->T), CM_ARG(c->E), CM_ARG(c->kcap),
                   CM_ARG(c->rt->ws.buf[CM_RB_PROP_COUNTS]),
                   CM_ARG(c->rt->ws.buf[CM_RB_CAND_IDS]), CM_ARG(use_mask),
                   CM_ARG(c->rt->ws.buf[CM_RB_MASK]), CM_ARG(fallback),
                   CM_ARG(c->rt->ws.buf[CM_RB_COUNTS])))))
    return st;
  if ((st = cm_scan(ctx, ks, c->rt->ws.buf[CM_RB_COUNTS],
                    c->rt->ws.buf[CM_RB_TOKEN_OFFSETS], c->T,
                    c->rt->ws.buf[CM_RB_PARTIALS])))
    return st;
  int renorm = c->r->renorm;
  /* DeepSeek-V3's normalisation of sigmoid top-k gates: w / (sum + 1e-20). */
  float eps = c->r->policy == CLMOE_POLICY_TOPK &&
                      c->r->scoring == CLMOE_SCORING_SIGMOID
                  ? 1e-20f
                  : 0.0f;
  if ((st = cm_kernel(ctx, ks, CM_K_COMPACT_WRITE, &k)) ||
      (st = cm_launch(ctx, k, "compact_write", 1, &g, NULL,
                      CM_ARGS(CM_ARG(c->T), CM_ARG(c->E), CM_ARG(c->kcap),
                              CM_ARG(c->rt->ws.buf[CM_RB_PROP_COUNTS]),
                              CM_ARG(c->rt->ws.buf[CM_RB_CAND_IDS]),
                              CM_ARG(c->rt->ws.buf[CM_RB_CAND_P]),
                              CM_ARG(use_mask),
                              CM_ARG(c->rt->ws.buf[CM_RB_MASK]), CM_ARG(renorm),
                              CM_ARG(c->rt->ws.buf[CM_RB_TOKEN_OFFSETS]),
                              CM_ARG(c->rt->ws.buf[CM_RB_EXPERT_IDS]),
                              CM_ARG(c->rt->ws.buf[CM_RB_GATES]), CM_ARG(eps),
                              CM_ARG(c->r->gate_scale)))))
    return st;
  /* Proposed assignments, for the dropped count: the proposal total when a
   * capacity step ran, else the kept total. */
  if (use_mask && c->T > 0 && c->r->policy != CLMOE_POLICY_EXPERT_CHOICE)
    return copy_word(c, c->rt->ws.buf[CM_RB_PROP_OFFSETS], (size_t)c->E,
                     CM_ST_N_PROPOSED);
  return copy_word(c, c->rt->ws.buf[CM_RB_TOKEN_OFFSETS], (size_t)c->T,
                   CM_ST_N_PROPOSED);
}

static clmoe_status run_stats(route_call *c) {
  clmoe_context *ctx = c->ctx;
  cm_kernels *ks = &c->rt->ws.kernels;
  int block, nb;
  cm_group_blocks(c->T, &block, &nb);
  size_t g = (size_t)c->T, g2[2] = {(size_t)nb, (size_t)c->E + 1}, one = 1;
  cl_kernel k;
  clmoe_status st;
  if ((st = cm_kernel(ctx, ks, CM_K_STATS_TOKENS, &k)) ||
      (st = cm_launch(ctx, k, "stats_tokens", 1, &g, NULL,
                      CM_ARGS(CM_ARG(c->T), CM_ARG(c->rt->ws.buf[CM_RB_COUNTS]),
                              CM_ARG(c->rt->ws.buf[CM_RB_STATS])))))
    return st;
  if (c->T > 0 &&
      ((st = cm_kernel(ctx, ks, CM_K_STATS_BLOCK_SUMS, &k)) ||
       (st = cm_launch(ctx, k, "stats_block_sums", 2, g2, NULL,
                       CM_ARGS(CM_ARG(c->T), CM_ARG(c->E), CM_ARG(block),
                               CM_ARG(c->rt->ws.buf[CM_RB_PROBS]),
                               CM_ARG(c->rt->ws.buf[CM_RB_ENTROPY]),
                               CM_ARG(c->rt->ws.buf[CM_RB_BLOCK_SUMS]))))))
    return st;
  int blocks_used = c->T > 0 ? nb : 0;
  if ((st = cm_kernel(ctx, ks, CM_K_STATS_FINALIZE, &k)))
    return st;
  return cm_launch(ctx, k, "stats_finalize", 1, &one, NULL,
                   CM_ARGS(CM_ARG(c->T), CM_ARG(c->E), CM_ARG(blocks_used),
                           CM_ARG(c->rt->ws.buf[CM_RB_BLOCK_SUMS]),
                           CM_ARG(c->rt->ws.buf[CM_RB_EXPERT_OFFSETS]),
                           CM_ARG(c->rt->ws.buf[CM_RB_TOKEN_OFFSETS]),
                           CM_ARG(c->rt->ws.buf[CM_RB_STATS])));
}

static clmoe_status run_pipeline(route_call *c) {
  clmoe_context *ctx = c->ctx;
  cm_kernels *ks = &c->rt->ws.kernels;
  clmoe_router *r = c->r;
  clmoe_status st;
  cl_kernel k;
  size_t gs = CM_ST_HEADER + (size_t)c->E + 1;
  if ((st = cm_kernel(ctx, ks, CM_K_STATS_INIT, &k)) ||
      (st = cm_launch(
           ctx, k, "stats_init", 1, &gs, NULL,
           CM_ARGS(CM_ARG(c->E), CM_ARG(c->rt->ws.buf[CM_RB_STATS])))))
    return st;
  if (c->x && c->T > 0 && (st = router_gemm(c)))
    return st;
  if (c->T > 0 && (st = run_select(c)))
    return st;
  if (r->policy == CLMOE_POLICY_IMPORTANCE && r->k_mean > 0.0f && c->T > 0 &&
      (st = run_budget(c)))
    return st;
  if (uses_mask(r) && c->T > 0 && (st = run_capacity(c)))
    return st;
  if ((st = run_compact(c)))
    return st;
  if ((st = cm_group(
           ctx, ks, c->T, c->E, c->rt->ws.buf[CM_RB_EXPERT_IDS], 0,
           c->rt->ws.buf[CM_RB_TOKEN_OFFSETS], c->rt->ws.buf[CM_RB_COUNTS],
           c->rt->ws.buf[CM_RB_HIST], c->rt->ws.buf[CM_RB_PARTIALS],
           c->rt->ws.buf[CM_RB_EXPERT_OFFSETS], c->rt->ws.buf[CM_RB_SLOT_ROWS],
           c->rt->ws.buf[CM_RB_ROW_TOKENS])))
    return st;
  return run_stats(c);
}

/* Checks the route's inputs (the routing already cleared); *T receives the
 * token count. */
static clmoe_status
check_inputs(const clmoe_router *router, const clmoe_context *ctx,
             const clmoe_tensor *x, const clmoe_tensor *logits,
             const clmoe_tensor *importance, const char *fn, int64_t *T) {
  if (x && !router->weight)
    return cm_fail_at(CLMOE_ERROR_UNSUPPORTED, fn,
                      "the router has no weight; use clmoe_route_logits");
  const clmoe_tensor *in = x ? x : logits;
  clmoe_status st = x ? cm_check_float_rows(ctx, x, "x", -1, router->d)
                      : cm_check_tensor(logits, ctx, "logits", CLMOE_DTYPE_F32,
                                        2, (int64_t[]){-1, router->E});
  if (st)
    return st;
  if (!x && router->policy == CLMOE_POLICY_RESONANCE &&
      router->affinity == CLMOE_AFFINITY_COSINE)
    return cm_fail_at(CLMOE_ERROR_UNSUPPORTED, fn,
                      "COSINE affinity needs x, not logits");
  *T = in->shape[0];
  if (*T > INT32_MAX - 1 || *T * router->E > INT32_MAX)
    return cm_fail_at(CLMOE_ERROR_TOO_LARGE, fn,
                      "T * E = %lld * %d overflows 32-bit indices",
                      (long long)*T, router->E);
  if (router->policy == CLMOE_POLICY_IMPORTANCE)
    return cm_check_tensor(importance, ctx, "importance", CLMOE_DTYPE_F32, 1,
                           (int64_t[]){*T});
  return CLMOE_SUCCESS;
}

/* Candidates per token the policy can keep: the slot bound is T * kcap. */
static int candidates_per_token(const clmoe_router *r) {
  switch (r->policy) {
  case CLMOE_POLICY_TOPK:
  case CLMOE_POLICY_RESONANCE:
    return r->k;
  case CLMOE_POLICY_TOPP:
  case CLMOE_POLICY_IMPORTANCE:
    return r->k_max;
  default:
    return r->allowed;
  }
}

clmoe_status cm_route_enqueue(clmoe_router *router, const clmoe_tensor *x,
                              const clmoe_tensor *logits,
                              const clmoe_tensor *importance,
                              clmoe_routing *routing, uint32_t num_wait,
                              const cl_event *wait, const char *fn,
                              int *slots_bound) {
  if (!router || !routing)
    return cm_fail_at(CLMOE_ERROR_NULL_POINTER, fn,
                      "router or routing is NULL");
  clmoe_context *ctx = routing->ctx; /* its queue runs the route */
  if (!cm_same_device(router->ctx, ctx))
    return cm_fail_at(CLMOE_ERROR_CONTEXT_MISMATCH, fn,
                      "routing and router belong to contexts of different "
                      "cl_contexts or devices");
  cm_routing_clear(routing);
  int64_t T = 0;
  clmoe_status st = check_inputs(router, ctx, x, logits, importance, fn, &T);
  if (st)
    return st;
  route_call c = {router, routing,   ctx,
                  (int)T, router->E, candidates_per_token(router),
                  NULL,   NULL,      NULL};
  c.x = x ? x->mem : NULL;
  c.importance =
      router->policy == CLMOE_POLICY_IMPORTANCE ? importance->mem : NULL;
  if ((st = reserve_all(&c)))
    return st;
  if (x && x->dtype != CLMOE_DTYPE_F32) {
    /* The router GEMM reads float32: 16-bit tokens are widened once. */
    int64_t n = T * router->d;
    if ((st = cm_routing_reserve(routing, CM_RB_X_F32,
                                 (size_t)n * sizeof(float))) ||
        (st = cm_enqueue_wait(ctx, num_wait, wait, fn)) ||
        (st = cm_convert_elements(ctx, &routing->ws.kernels, n, x->mem,
                                  x->dtype, routing->ws.buf[CM_RB_X_F32],
                                  CLMOE_DTYPE_F32)))
      return st;
    c.x = routing->ws.buf[CM_RB_X_F32];
    num_wait = 0;
  }
  c.logits = x ? routing->ws.buf[CM_RB_LOGITS] : logits->mem;
  if ((st = cm_enqueue_wait(ctx, num_wait, wait, fn)) ||
      (st = run_pipeline(&c)))
    return st;
  routing->T = c.T; /* still invalid: cm_route_finish completes it */
  routing->E = c.E;
  routing->gate_input = router->gate_position == CLMOE_GATE_INPUT;
  if (slots_bound)
    *slots_bound = c.T * c.kcap;
  return CLMOE_SUCCESS;
}

clmoe_status cm_route_finish(clmoe_router *router, clmoe_routing *routing,
                             const char *fn) {
  clmoe_context *ctx = routing->ctx;
  int T = routing->T, E = routing->E;
  cl_int header[CM_ST_HEADER];
  cl_int err =
      clEnqueueReadBuffer(ctx->queue, routing->ws.buf[CM_RB_STATS], CL_TRUE, 0,
                          sizeof header, header, 0, NULL, NULL);
  if (err != CL_SUCCESS)
    return cm_cl_fail(err, "clEnqueueReadBuffer(route status)");
  if (header[CM_ST_BAD_TOKEN] != INT_MAX)
    return cm_fail(CLMOE_ERROR_NONFINITE_INPUT,
                   "%s: token %d has a non-finite router logit%s (NaN or "
                   "Inf); nothing was routed",
                   fn, header[CM_ST_BAD_TOKEN],
                   router->policy == CLMOE_POLICY_IMPORTANCE ? " or importance"
                                                             : "");
  cm_routing_set_sizes(routing, T, E, header[CM_ST_N]);
  routing->valid = 1;
  return CLMOE_SUCCESS;
}

static clmoe_status
route_call_public(clmoe_router *router, const clmoe_tensor *x,
                  const clmoe_tensor *logits, const clmoe_tensor *importance,
                  clmoe_routing *routing, uint32_t num_wait,
                  const cl_event *wait, cl_event *out_event, const char *fn) {
  if (out_event)
    *out_event = NULL;
  clmoe_status st = cm_route_enqueue(router, x, logits, importance, routing,
                                     num_wait, wait, fn, NULL);
  if (st || (st = cm_route_finish(router, routing, fn))) {
    if (routing)
      cm_routing_clear(routing);
    return st;
  }
  return cm_enqueue_done(routing->ctx, out_event);
}

clmoe_status clmoe_route(clmoe_router *router, const clmoe_tensor *x,
                         const clmoe_tensor *importance, clmoe_routing *routing,
                         uint32_t num_wait_events, const cl_event *wait_events,
                         cl_event *out_event) {
  if (!x)
    return cm_fail(CLMOE_ERROR_NULL_POINTER, "clmoe_route: x is NULL");
  return route_call_public(router, x, NULL, importance, routing,
                           num_wait_events, wait_events, out_event,
                           "clmoe_route");
}

clmoe_status
clmoe_route_logits(clmoe_router *router, const clmoe_tensor *logits,
                   const clmoe_tensor *importance, clmoe_routing *routing,
                   uint32_t num_wait_events, const cl_event *wait_events,
                   cl_event *out_event) {
  if (!logits)
    return cm_fail(CLMOE_ERROR_NULL_POINTER,
                   "clmoe_route_logits: logits is NULL");
  return route_call_public(router, NULL, logits, importance, routing,
                           num_wait_events, wait_events, out_event,
                           "clmoe_route_logits");
}
