/* clmoe_forward_train: the forward with everything its backward reads kept
 * in the routing, and the auxiliary losses. */
#include <stdlib.h>

#include "moe/dispatch_combine.h"
#include "moe/forward.h"
#include "moe/route.h"
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

clmoe_status clmoe_forward_train(clmoe_router *router, clmoe_experts *experts,
                                 const clmoe_tensor *x,
                                 const clmoe_tensor *importance,
                                 clmoe_tensor *y, clmoe_routing *routing,
                                 uint32_t flags, const clmoe_train_desc *train,
                                 clmoe_aux_losses *losses) {
  float coeff[3];
  clmoe_status st = cm_check_layer(router, experts, x, y, routing, FN);
  if (st || (st = cm_train_coeffs(train, coeff, FN)) ||
      (st = cm_train_check_experts(experts, FN)))
    return st;
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
  if ((st = cm_train_experts_forward(experts, routing, sv, x)) ||
      (routing->T > 0 &&
       (st = cm_combine_rows(routing, experts->d, sv->ws.buf[CM_SV_O],
                             CLMOE_DTYPE_F32, y->mem, y->dtype, flags,
                             NULL))) ||
      (routing->T > 0 && (st = cm_train_router_pass(router, routing, sv, 0, coeff))) ||
      (st = read_losses(routing, sv, losses)))
    goto fail;
  sv->valid = 1;
  sv->serial = routing->serial;
  sv->router = router;
  sv->experts = experts;
  return CLMOE_SUCCESS;
fail:
  cm_routing_clear(routing);
  return st;
}
