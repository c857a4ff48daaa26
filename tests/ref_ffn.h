/* Host reference of the expert FFNs and combine (double precision). */
#ifndef CLMOE_REF_FFN_H
#define CLMOE_REF_FFN_H

#include "ref_route.h"

typedef struct ref_experts {
  int E, d, f;
  clmoe_activation activation;
  const float *w1, *w3, *w2; /* [E,d,f], [E,d,f], [E,f,d] */
  const float *b1, *b3, *b2; /* optional [E,f], [E,f], [E,d] */
} ref_experts;

/* y[T, d] = sum over each token's slots of gate * FFN_expert(x_t); tokens
 * with K = 0 get 0 (or keep y's value with accumulate). */
void ref_moe(const ref_experts *x, const ref_result *routing,
             const float *in, int accumulate, double *y);

#endif /* CLMOE_REF_FFN_H */
