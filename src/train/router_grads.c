/* The router's training pass (kernel in cl/router_grads.cl): per-token
 * shares of the auxiliary losses and, in the backward, the gradient of the
 * logits from the gates' gradients and the losses. */
#include "train/saved.h"

clmoe_status cm_train_router_pass(clmoe_router *r, clmoe_routing *rt,
                                  cm_saved *sv, int with_grad,
                                  const float coeff[3]) {
  int T = rt->T, E = r->E;
  clmoe_status st;
  if ((st = cm_saved_reserve(rt, sv, CM_SV_LOSSES, (size_t)T * 3 * 4)) ||
      (with_grad &&
       (st = cm_saved_reserve(rt, sv, CM_SV_DZ, (size_t)T * E * 4))))
    return st;
  cl_kernel k;
  if ((st = cm_kernel(rt->ctx, &rt->ws.kernels, CM_K_TRAIN_ROUTER_GRAD, &k)))
    return st;
  cl_mem logits = rt->ws.buf[CM_RB_LOGITS];
  int has_bias = r->bias != NULL, sigmoid = r->scoring == CLMOE_SCORING_SIGMOID;
  int grouped = r->num_groups > 1, from_score = r->policy == CLMOE_POLICY_TOPK;
  /* compact_write's epsilon: sigmoid TOPK RENORM (DeepSeek-V3). */
  float eps = (sigmoid && from_score && r->renorm) ? 1e-20f : 0.0f;
  cl_mem bias = has_bias ? r->bias : logits;
  cl_mem dg = with_grad ? sv->ws.buf[CM_SV_DG] : logits;
  cl_mem dz = with_grad ? sv->ws.buf[CM_SV_DZ] : logits;
  if (!dg)
    dg = logits; /* N = 0: never read */
  size_t g = (size_t)T;
  return cm_launch(
      rt->ctx, k, "train_router_grad", 1, &g, NULL,
      CM_ARGS(CM_ARG(T), CM_ARG(E), CM_ARG(logits), CM_ARG(has_bias),
              CM_ARG(bias), CM_ARG(rt->ws.buf[CM_RB_PROBS]), CM_ARG(sigmoid),
              CM_ARG(grouped), CM_ARG(from_score), CM_ARG(r->renorm),
              CM_ARG(eps), CM_ARG(r->gate_scale),
              CM_ARG(rt->ws.buf[CM_RB_TOKEN_OFFSETS]),
              CM_ARG(rt->ws.buf[CM_RB_EXPERT_IDS]), CM_ARG(with_grad),
              CM_ARG(dg), CM_ARG(rt->ws.buf[CM_RB_EXPERT_OFFSETS]),
              CM_ARG(coeff[0]), CM_ARG(coeff[1]), CM_ARG(coeff[2]),
              CM_ARG(dz), CM_ARG(sv->ws.buf[CM_SV_LOSSES])));
}
