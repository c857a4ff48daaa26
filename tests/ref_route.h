/* Plain-C host reference of the routing policies, written from docs/policies.md
 * "Policies - exact semantics", independent of the kernels. */
#ifndef CLMOE_REF_ROUTE_H
#define CLMOE_REF_ROUTE_H

#include "clmoe/clmoe.h"

typedef struct ref_params {
  clmoe_policy policy;
  int k, k_min, k_max;              /* k_max resolved (not 0) */
  float p, k_mean, capacity_factor; /* capacity resolved (RES/EC: not 0) */
  clmoe_overflow overflow;
  int renorm;
  int fallback_top1;
  /* [T] or NULL: TOPP proposals of token t are K + topp_adjust[t] (before
   * the k_min/k_max clamp); lets a test try the other side of a near-p cut. */
  const signed char *topp_adjust;
} ref_params;

typedef struct ref_result {
  int T, E, N, n_proposed;
  int *counts, *offsets, *ids, *expert_offsets, *slot_rows, *row_tokens;
  float *gates;
  float *probs; /* [T, E] */
  /* [T] TOPP only: 1 where a cumulative sum lies within CM_REF_NEAR_P of p,
   * so a device whose exp differs in the last bits (OpenCL allows 3 ulp)
   * may rightly keep one expert more or fewer there. */
  unsigned char *near_p;
  /* stats */
  int min_k, max_k;
  long long *k_hist; /* [E+1] */
  double *load, *mean_prob;
  double balance_loss, mean_entropy;
} ref_result;

/* The reference parameters a router descriptor means: k_max 0 -> E,
 * capacity_factor 0 -> 1 for RESONANCE / EXPERT_CHOICE, default gates. */
#define CM_REF_NEAR_P 1e-5f

ref_params ref_params_from_desc(const clmoe_router_desc *d);

/* logits[T, E]; importance[T] for IMPORTANCE; affinity[T, E] replaces P as
 * the expert-side ranking for RESONANCE when not NULL (cosine). */
void ref_route(const ref_params *rp, int T, int E, const float *logits,
               const float *importance, const float *affinity, ref_result *out);
void ref_free(ref_result *r);

#endif /* CLMOE_REF_ROUTE_H */
