/* The training state a routing keeps between clmoe_forward_train and
 * clmoe_backward, and the training descriptors' defaults. */
#include "train/saved.h"

#include <math.h>
#include <stdlib.h>

void clmoe_train_desc_init_sized(clmoe_train_desc *desc, size_t size) {
  static const clmoe_train_desc defaults = {0};
  cm_init_struct(desc, &defaults, sizeof defaults, size);
}

void clmoe_aux_losses_init_sized(clmoe_aux_losses *losses, size_t size) {
  static const clmoe_aux_losses defaults = {0};
  cm_init_struct(losses, &defaults, sizeof defaults, size);
}

void clmoe_expert_grads_init_sized(clmoe_expert_grads *g, size_t size) {
  static const clmoe_expert_grads defaults = {0};
  cm_init_struct(g, &defaults, sizeof defaults, size);
}

void clmoe_router_grads_init_sized(clmoe_router_grads *g, size_t size) {
  static const clmoe_router_grads defaults = {0};
  cm_init_struct(g, &defaults, sizeof defaults, size);
}

clmoe_status cm_saved_get(clmoe_routing *rt, cm_saved **out) {
  if (!rt->saved && !(rt->saved = calloc(1, sizeof *rt->saved)))
    return cm_fail(CLMOE_ERROR_OUT_OF_HOST_MEMORY,
                   "clmoe_forward_train: out of host memory");
  *out = rt->saved;
  return CLMOE_SUCCESS;
}

clmoe_status cm_saved_reserve(clmoe_routing *rt, cm_saved *sv, int which,
                              size_t bytes) {
  clmoe_status st = cm_workspace_reserve(rt->ctx, &sv->ws, which, bytes);
  if (!st)
    sv->used[which] = bytes;
  return st;
}

void cm_saved_free(cm_saved *sv) {
  if (!sv)
    return;
  cm_workspace_release(&sv->ws);
  free(sv);
}

clmoe_status clmoe_routing_saved_bytes(const clmoe_routing *routing,
                                       int64_t *bytes) {
  if (!routing || !bytes)
    return cm_fail(CLMOE_ERROR_NULL_POINTER,
                   "clmoe_routing_saved_bytes: routing or bytes is NULL");
  *bytes = 0;
  const cm_saved *sv = routing->saved;
  if (!sv || !sv->valid || sv->serial != routing->serial)
    return CLMOE_SUCCESS;
  for (int i = 0; i < CM_SV_KEPT; ++i)
    *bytes += (int64_t)sv->used[i];
  const cm_saved *dense = routing->dense ? routing->dense->saved : NULL;
  for (int i = 0; sv->shared && dense && i < CM_SV_KEPT; ++i)
    *bytes += (int64_t)dense->used[i];
  return CLMOE_SUCCESS;
}

clmoe_status cm_train_coeffs(const clmoe_train_desc *train, float c[3],
                             const char *fn) {
  c[0] = c[1] = c[2] = 0.0f;
  if (!train)
    return CLMOE_SUCCESS;
  clmoe_status st =
      cm_check_struct(train, sizeof(clmoe_train_desc), "train desc");
  if (st)
    return st;
  const float v[3] = {train->balance_coeff, train->z_loss_coeff,
                      train->entropy_coeff};
  static const char *const names[3] = {"balance_coeff", "z_loss_coeff",
                                       "entropy_coeff"};
  for (int i = 0; i < 3; ++i) {
    if (!isfinite(v[i]) || v[i] < 0.0f)
      return cm_fail_at(CLMOE_ERROR_INVALID_ARGUMENT, fn,
                        "%s = %g; it must be finite and >= 0", names[i],
                        (double)v[i]);
    c[i] = v[i];
  }
  return CLMOE_SUCCESS;
}

clmoe_status cm_train_check_experts(const clmoe_experts *x, const char *fn) {
  if (cm_is_quant_dtype(x->wdtype))
    return cm_fail_at(CLMOE_ERROR_UNSUPPORTED, fn,
                      "the experts are %s: quantized experts are "
                      "inference-only; train float32, float16 or bfloat16 "
                      "weights",
                      cm_dtype_name(x->wdtype));
  return CLMOE_SUCCESS;
}
