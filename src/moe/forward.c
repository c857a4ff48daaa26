/* clmoe_forward: route, dispatch, experts and combine in one call, with the
 * routing object as the workspace. */
#include "moe/forward.h"

#include "moe/dispatch_combine.h"
#include "moe/experts.h"
#include "moe/route.h"
#include "moe/shared.h"

static const char *const FN = "clmoe_forward";

clmoe_status cm_check_layer(const clmoe_router *router,
                                const clmoe_experts *experts,
                                const clmoe_tensor *x, const clmoe_tensor *y,
                                const clmoe_routing *routing, const char *fn) {
  if (!router || !experts || !routing)
    return cm_fail_at(CLMOE_ERROR_NULL_POINTER, fn,
                      "router, experts or routing is NULL");
  clmoe_context *ctx = routing->ctx; /* its queue runs the layer */
  clmoe_status st = cm_check_experts_ctx(experts, routing, fn);
  if (st)
    return st;
  if (!cm_same_device(router->ctx, ctx))
    return cm_fail_at(CLMOE_ERROR_CONTEXT_MISMATCH, fn,
                      "router and routing belong to contexts of different "
                      "cl_contexts or devices");
  if (router->E != experts->E || router->d != experts->d)
    return cm_fail_at(CLMOE_ERROR_SHAPE_MISMATCH, fn,
                      "the router is E = %d, d = %d but the experts are "
                      "E = %d, d = %d",
                      router->E, router->d, experts->E, experts->d);
  if ((st = cm_check_float_rows(ctx, x, "x", -1, router->d)) ||
      (st = cm_check_float_rows(ctx, y, "y", x->shape[0], router->d)))
    return st;
  if (x->dtype != y->dtype)
    return cm_fail_at(CLMOE_ERROR_DTYPE_MISMATCH, fn,
                      "x is %s but y is %s; they must match",
                      cm_dtype_name(x->dtype), cm_dtype_name(y->dtype));
  return CLMOE_SUCCESS;
}

/* Whether the layer is enqueued behind the route without waiting for its N:
 * the GROUPED path's kernels read N and the route's status on the device,
 * so the launches can be sized for the most slots the route can produce.
 * That pays only while the bound is tight (the device table's in-flight
 * thresholds): surplus work-items are not free. */
static int runs_in_flight(const clmoe_experts *experts,
                          const clmoe_context *ctx, int64_t T, int bound) {
  const cm_tuning *t = &ctx->tuning;
  size_t width = (size_t)(experts->d > experts->f ? experts->d : experts->f);
  size_t bound_bytes = (size_t)bound * width * sizeof(float);
  return experts->path == CLMOE_EXPERTS_PATH_GROUPED &&
         bound <= (int64_t)t->in_flight_max_k * T &&
         bound_bytes <= ((size_t)t->in_flight_max_mib << 20) &&
         bound_bytes <= ctx->info.max_alloc_bytes;
}

/* Dispatch, experts and combine over `rows` >= N rows of the workspace,
 * which are float32: 16-bit tokens are widened by dispatch and the output
 * rounded once by combine. */
static clmoe_status
enqueue_experts_stage(clmoe_experts *experts, clmoe_routing *routing,
                      const clmoe_tensor *x, clmoe_tensor *y, int rows,
                      uint32_t flags, const cm_shared_rows *shared) {
  size_t bytes = (size_t)rows * (size_t)experts->d * sizeof(float);
  clmoe_status st;
  if ((st = cm_routing_reserve(routing, CM_RB_X_SORTED, bytes)) ||
      (st = cm_routing_reserve(routing, CM_RB_Y_SORTED, bytes)))
    return st;
  cl_mem xs = routing->ws.buf[CM_RB_X_SORTED];
  cl_mem ys = routing->ws.buf[CM_RB_Y_SORTED];
  clmoe_dtype f32 = CLMOE_DTYPE_F32;
  if ((st = cm_dispatch_rows(routing, experts->d, rows, x->mem, x->dtype, xs,
                             f32)) ||
      (st = cm_experts_run(experts, routing, xs, ys, rows)))
    return st;
  return cm_combine_rows(routing, experts->d, ys, f32, y->mem, y->dtype, flags,
                         shared);
}

/* The layer, with shared experts when `shared` is given. */
static clmoe_status
forward(clmoe_router *router, clmoe_experts *experts, clmoe_experts *shared,
        const clmoe_tensor *shared_gate, const clmoe_tensor *x,
        const clmoe_tensor *importance, clmoe_tensor *y, clmoe_routing *routing,
        uint32_t flags, uint32_t num_wait, const cl_event *wait,
        const char *fn) {
  clmoe_status st = cm_check_layer(router, experts, x, y, routing, fn);
  if (st || (shared && (st = cm_check_shared(shared, shared_gate, routing,
                                             experts->d, fn))))
    return st;
  if (!shared && shared_gate)
    return cm_fail_at(CLMOE_ERROR_INVALID_ARGUMENT, fn,
                      "shared_gate is given without shared experts");
  int bound = 0;
  if ((st = cm_route_enqueue(router, x, NULL, importance, routing, num_wait,
                             wait, fn, &bound)))
    goto fail;
  /* Otherwise wait for the route's 4-byte status and size everything
   * exactly; in flight, one read at the end reports the route's outcome. */
  int in_flight = runs_in_flight(experts, routing->ctx, x->shape[0], bound);
  if (!in_flight && (st = cm_route_finish(router, routing, fn)))
    goto fail;
  int rows = in_flight ? bound : routing->N;
  cm_shared_rows sr;
  int with_shared = shared && x->shape[0] > 0;
  if ((with_shared &&
       (st = cm_shared_enqueue(routing, shared, shared_gate, x, &sr))) ||
      (st = enqueue_experts_stage(experts, routing, x, y, rows, flags,
                                  with_shared ? &sr : NULL)) ||
      (in_flight && (st = cm_route_finish(router, routing, fn))))
    goto fail;
  return CLMOE_SUCCESS;
fail:
  cm_routing_clear(routing);
  return st;
}

clmoe_status clmoe_forward(clmoe_router *router, clmoe_experts *experts,
                           const clmoe_tensor *x,
                           const clmoe_tensor *importance, clmoe_tensor *y,
                           clmoe_routing *routing, uint32_t flags,
                           uint32_t num_wait, const cl_event *wait,
                           cl_event *out_event) {
  if (out_event)
    *out_event = NULL;
  clmoe_status st = forward(router, experts, NULL, NULL, x, importance, y,
                            routing, flags, num_wait, wait, FN);
  return st ? st : cm_enqueue_done(routing->ctx, out_event);
}

clmoe_status clmoe_forward_shared(clmoe_router *router, clmoe_experts *experts,
                                  clmoe_experts *shared,
                                  const clmoe_tensor *shared_gate,
                                  const clmoe_tensor *x,
                                  const clmoe_tensor *importance,
                                  clmoe_tensor *y, clmoe_routing *routing,
                                  uint32_t flags, uint32_t num_wait,
                                  const cl_event *wait, cl_event *out_event) {
  if (out_event)
    *out_event = NULL;
  clmoe_status st =
      forward(router, experts, shared, shared_gate, x, importance, y, routing,
              flags, num_wait, wait, "clmoe_forward_shared");
  return st ? st : cm_enqueue_done(routing->ctx, out_event);
}
