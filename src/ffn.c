/* Dispatch, combine, clmoe_experts_run's checks, and the whole forward. */
#include "experts.h"
#include "router.h"

/* Most slots per token for which a forward sizes its launches by the
 * policy's bound instead of waiting for the route's N. */
enum { CM_IN_FLIGHT_MAX_K = 8 };

static clmoe_status check_routing(const clmoe_routing *rt, const char *fn) {
  if (!rt)
    return cm_fail(CLMOE_ERROR_NULL_POINTER, "%s: routing is NULL", fn);
  if (!rt->valid)
    return cm_fail(CLMOE_ERROR_INVALID_ARGUMENT,
                   "%s: the routing holds no successful route", fn);
  return CLMOE_SUCCESS;
}

/* Work-items along a row of width d for dispatch_rows and combine_rows,
 * which copy ROW_CHUNK columns each (CM_ROW_CHUNK in cl/ffn.cl). */
enum { ROW_CHUNK = 16 };
static size_t row_chunks(int d) {
  return ((size_t)d + ROW_CHUNK - 1) / ROW_CHUNK;
}

/* `rows` >= N sizes the launch; the kernel reads N on the device. */
static clmoe_status dispatch_mem(clmoe_routing *rt, int d, int rows, cl_mem x,
                                 cl_mem xs) {
  cl_kernel k;
  clmoe_status st = cm_kernel(rt->ctx, &rt->kernels, CM_K_DISPATCH_ROWS, &k);
  size_t g[2] = {row_chunks(d), (size_t)rows};
  return st ? st
            : cm_launch(rt->ctx, k, "dispatch_rows", 2, g, NULL,
                        CM_ARGS(CM_ARG(d), CM_ARG(rt->buf[CM_RB_STATS]),
                                CM_ARG(rt->buf[CM_RB_ROW_TOKENS]), CM_ARG(x),
                                CM_ARG(xs)));
}

static clmoe_status combine_mem(clmoe_routing *rt, int d, cl_mem ys, cl_mem y,
                                uint32_t flags) {
  cl_kernel k;
  clmoe_status st = cm_kernel(rt->ctx, &rt->kernels, CM_K_COMBINE_ROWS, &k);
  int accumulate = (flags & CLMOE_COMBINE_ACCUMULATE) != 0;
  size_t g[2] = {row_chunks(d), (size_t)rt->T};
  return st ? st
            : cm_launch(rt->ctx, k, "combine_rows", 2, g, NULL,
                        CM_ARGS(CM_ARG(rt->T), CM_ARG(d),
                                CM_ARG(rt->buf[CM_RB_STATS]),
                                CM_ARG(rt->buf[CM_RB_TOKEN_OFFSETS]),
                                CM_ARG(rt->buf[CM_RB_SLOT_ROWS]),
                                CM_ARG(rt->buf[CM_RB_GATES]), CM_ARG(ys),
                                CM_ARG(accumulate), CM_ARG(y)));
}

/* Width of a [rows, d] float32 tensor, checked against the routing. */
static clmoe_status check_rows(const clmoe_routing *rt, const clmoe_tensor *t,
                               const char *name, int64_t rows, int64_t d) {
  return cm_check_tensor(t, rt->ctx, name, CLMOE_DTYPE_F32, 2,
                         (int64_t[]){rows, d});
}

clmoe_status clmoe_dispatch(clmoe_routing *routing, const clmoe_tensor *x,
                            clmoe_tensor *x_sorted, uint32_t num_wait,
                            const cl_event *wait, cl_event *out_event) {
  const char *fn = "clmoe_dispatch";
  if (out_event)
    *out_event = NULL;
  clmoe_status st = check_routing(routing, fn);
  if (st || (st = check_rows(routing, x, "x", routing->T, -1)))
    return st;
  int64_t d = x->shape[1];
  if ((st = check_rows(routing, x_sorted, "x_sorted", routing->N, d)) ||
      (st = cm_enqueue_wait(routing->ctx, num_wait, wait, fn)) ||
      (st = dispatch_mem(routing, (int)d, routing->N, x->mem, x_sorted->mem)))
    return st;
  return cm_enqueue_done(routing->ctx, out_event);
}

clmoe_status clmoe_combine(clmoe_routing *routing, const clmoe_tensor *y_sorted,
                           clmoe_tensor *y, uint32_t flags, uint32_t num_wait,
                           const cl_event *wait, cl_event *out_event) {
  const char *fn = "clmoe_combine";
  if (out_event)
    *out_event = NULL;
  clmoe_status st = check_routing(routing, fn);
  if (st || (st = check_rows(routing, y, "y", routing->T, -1)))
    return st;
  int64_t d = y->shape[1];
  if ((st = check_rows(routing, y_sorted, "y_sorted", routing->N, d)) ||
      (st = cm_enqueue_wait(routing->ctx, num_wait, wait, fn)) ||
      (st = combine_mem(routing, (int)d, y_sorted->mem, y->mem, flags)))
    return st;
  return cm_enqueue_done(routing->ctx, out_event);
}

/* The experts can run on the routing's context (queue). */
static clmoe_status check_experts_ctx(const clmoe_experts *x,
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
  clmoe_status st = check_routing(rt, fn);
  if (st || (st = check_experts_ctx(x, rt, fn)))
    return st;
  if (rt->E != x->E && rt->T > 0)
    return cm_fail(CLMOE_ERROR_SHAPE_MISMATCH,
                   "%s: the routing has E = %d experts but the experts object "
                   "%d",
                   fn, rt->E, x->E);
  return CLMOE_SUCCESS;
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
      (st =
           check_rows(routing, x_sorted, "x_sorted", routing->N, experts->d)) ||
      (st =
           check_rows(routing, y_sorted, "y_sorted", routing->N, experts->d)) ||
      (st = cm_enqueue_wait(routing->ctx, num_wait, wait, fn)) ||
      (st = cm_experts_run(experts, routing, x_sorted->mem, y_sorted->mem,
                           routing->N)))
    return st;
  return cm_enqueue_done(routing->ctx, out_event);
}

clmoe_status clmoe_forward(clmoe_router *router, clmoe_experts *experts,
                           const clmoe_tensor *x,
                           const clmoe_tensor *importance, clmoe_tensor *y,
                           clmoe_routing *routing, uint32_t flags,
                           uint32_t num_wait, const cl_event *wait,
                           cl_event *out_event) {
  const char *fn = "clmoe_forward";
  if (out_event)
    *out_event = NULL;
  if (!router || !experts || !routing)
    return cm_fail(CLMOE_ERROR_NULL_POINTER,
                   "%s: router, experts or routing is NULL", fn);
  clmoe_context *ctx = routing->ctx; /* its queue runs the layer */
  clmoe_status st = check_experts_ctx(experts, routing, fn);
  if (st)
    return st;
  if (!cm_same_device(router->ctx, ctx))
    return cm_fail(CLMOE_ERROR_CONTEXT_MISMATCH,
                   "%s: router and routing belong to contexts of different "
                   "cl_contexts or devices",
                   fn);
  if (router->E != experts->E || router->d != experts->d)
    return cm_fail(CLMOE_ERROR_SHAPE_MISMATCH,
                   "%s: the router is E = %d, d = %d but the experts are "
                   "E = %d, d = %d",
                   fn, router->E, router->d, experts->E, experts->d);
  st = cm_check_tensor(x, ctx, "x", CLMOE_DTYPE_F32, 2,
                       (int64_t[]){-1, router->d});
  if (st || (st = cm_check_tensor(y, ctx, "y", CLMOE_DTYPE_F32, 2,
                                  (int64_t[]){x->shape[0], router->d})))
    return st;
  int bound = 0;
  if ((st = cm_route_enqueue(router, x, NULL, importance, routing, num_wait,
                             wait, fn, &bound)))
    goto fail;
  /* GROUPED path: dispatch, experts and combine read N and the route's
   * status on the device, so the layer is enqueued back to back, sized for
   * the most slots the route can produce, and one read at the end reports
   * the route's outcome. That pays only while the bound is tight (at most
   * CM_IN_FLIGHT_MAX_K slots per token, and buffers of at most 256 MiB):
   * surplus work-items are not free (top-p with k_max = E at T = 256,
   * E = 64 ran 8x slower sized by T * E). Otherwise wait for the route's
   * 4-byte status and size everything exactly. */
  size_t width = (size_t)(experts->d > experts->f ? experts->d : experts->f);
  size_t bound_bytes = (size_t)bound * width * 4;
  int64_t T = x->shape[0];
  int in_flight = experts->path == CLMOE_EXPERTS_PATH_GROUPED &&
                  bound <= CM_IN_FLIGHT_MAX_K * T &&
                  bound_bytes <= ((size_t)256 << 20) &&
                  bound_bytes <= ctx->info.max_alloc_bytes;
  if (!in_flight && (st = cm_route_finish(router, routing, fn)))
    goto fail;
  int rows = in_flight ? bound : routing->N;
  size_t bytes = (size_t)rows * (size_t)experts->d * 4;
  if ((st = cm_routing_reserve(routing, CM_RB_X_SORTED, bytes)) ||
      (st = cm_routing_reserve(routing, CM_RB_Y_SORTED, bytes)))
    goto fail;
  cl_mem xs = routing->buf[CM_RB_X_SORTED], ys = routing->buf[CM_RB_Y_SORTED];
  if ((st = dispatch_mem(routing, experts->d, rows, x->mem, xs)) ||
      (st = cm_experts_run(experts, routing, xs, ys, rows)) ||
      (st = combine_mem(routing, experts->d, ys, y->mem, flags)) ||
      (in_flight && (st = cm_route_finish(router, routing, fn))))
    goto fail;
  return cm_enqueue_done(ctx, out_event);
fail:
  cm_routing_clear(routing);
  return st;
}
