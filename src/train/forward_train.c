/* clmoe_forward_train: the forward with everything its backward reads kept
 * in the routing, and the auxiliary losses. */
#include <stdlib.h>

#include "moe/dispatch_combine.h"
#include "moe/forward.h"
#include "moe/route.h"
#include "moe/shared.h"
#include "train/saved.h"

static const char *const FN = "clmoe_forward_train";

/* Sums the per-token loss shares in token order, in double. */
static clmoe_status read_losses(clmoe_routing *rt, cm_saved *sv,
                                clmoe_aux_losses *out) {
  int T = rt->T;
  double sum[3] = {0, 0, 0};
  if (T > 0) {
    float *v = malloc(sizeof *v * 3 * (size_t)T);
    if (!v)
      return cm_fail_at(CLMOE_ERROR_OUT_OF_HOST_MEMORY, FN,
                        "out of host memory");
    cl_int err = clEnqueueReadBuffer(rt->ctx->queue, sv->ws.buf[CM_SV_LOSSES],
                                     CL_TRUE, 0, sizeof *v * 3 * (size_t)T, v,
                                     0, NULL, NULL);
    for (int t = 0; t < T && err == CL_SUCCESS; ++t)
      for (int i = 0; i < 3; ++i)
        sum[i] += v[3 * (size_t)t + i];
    free(v);
    if (err != CL_SUCCESS)
      return cm_cl_fail(err, "clmoe_forward_train: clEnqueueReadBuffer");
  }
  if (out) {
    out->balance = sum[0];
    out->z_loss = sum[1];
    out->entropy = sum[2];
    out->total = sv->coeff[0] * sum[0] + sv->coeff[1] * sum[1] +
                 sv->coeff[2] * sum[2];
  }
  return CLMOE_SUCCESS;
}

/* The shared experts' forward on the routing's dense sub-routing (its own
 * saved state) and each token's weight; *rows for combine. */
static clmoe_status shared_forward(clmoe_routing *rt, clmoe_experts *shared,
                                   const clmoe_tensor *gate,
                                   const clmoe_tensor *x, cm_shared_rows *rows) {
  int T = rt->T;
  clmoe_routing *dr;
  cm_saved *dsv;
  clmoe_status st;
  if ((st = cm_shared_routing(rt, T, &dr)) || (st = cm_saved_get(dr, &dsv)) ||
      (st = cm_routing_reserve(dr, CM_RB_GATES, (size_t)T * sizeof(float))) ||
      (st = cm_train_experts_forward(shared, dr, dsv, x, 1)) ||
      (st = cm_shared_gates(dr, gate, x)))
    return st;
  rows->rows = dsv->ws.buf[CM_SV_O];
  rows->gates = dr->ws.buf[CM_RB_GATES];
  return CLMOE_SUCCESS;
}

clmoe_status clmoe_forward_train(clmoe_router *router, clmoe_experts *experts,
                                 clmoe_experts *shared,
                                 const clmoe_tensor *shared_gate,
                                 const clmoe_tensor *x,
                                 const clmoe_tensor *importance,
                                 clmoe_tensor *y, clmoe_routing *routing,
                                 uint32_t flags, const clmoe_train_desc *train,
                                 clmoe_aux_losses *losses) {
  float coeff[3];
  clmoe_status st = cm_check_layer(router, experts, x, y, routing, FN);
  if (st || (st = cm_train_coeffs(train, coeff, FN)) ||
      (st = cm_train_check_experts(experts, FN)) ||
      (shared && ((st = cm_check_shared(shared, shared_gate, routing,
                                        experts->d, FN)) ||
                  (st = cm_train_check_experts(shared, FN)))))
    return st;
  if (!shared && shared_gate)
    return cm_fail_at(CLMOE_ERROR_INVALID_ARGUMENT, FN,
                      "shared_gate is given without shared experts");
  if (losses &&
      (st = cm_check_struct(losses, sizeof(clmoe_aux_losses), "aux losses")))
    return st;
  if (!router->weight)
    return cm_fail_at(CLMOE_ERROR_UNSUPPORTED, FN,
                      "the router has no weight (it routes logits only); "
                      "training needs x W_r");
  cm_saved *sv;
  if ((st = cm_saved_get(routing, &sv)))
    return st;
  sv->valid = 0;
  if ((st = cm_route_enqueue(router, x, NULL, importance, routing, 0, NULL, FN,
                             NULL)) ||
      (st = cm_route_finish(router, routing, FN)))
    goto fail;
  sv->coeff[0] = coeff[0];
  sv->coeff[1] = coeff[1];
  sv->coeff[2] = coeff[2];
  int T = routing->T;
  cm_shared_rows rows;
  if ((st = cm_train_experts_forward(experts, routing, sv, x, 0)) ||
      (shared && T > 0 &&
       (st = shared_forward(routing, shared, shared_gate, x, &rows))) ||
      (T > 0 &&
       (st = cm_combine_rows(routing, experts->d, sv->ws.buf[CM_SV_O],
                             CLMOE_DTYPE_F32, y->mem, y->dtype, flags,
                             shared ? &rows : NULL))) ||
      (T > 0 && (st = cm_train_router_pass(router, routing, sv, 0, coeff))) ||
      (st = read_losses(routing, sv, losses)))
    goto fail;
  sv->valid = 1;
  sv->serial = routing->serial;
  sv->router = router;
  sv->experts = experts;
  sv->shared = shared;
  sv->shared_gate = shared_gate;
  return CLMOE_SUCCESS;
fail:
  cm_routing_clear(routing);
  return st;
}
