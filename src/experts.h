/* Experts object internals shared by experts.c and ffn.c. */
#ifndef CLMOE_EXPERTS_H
#define CLMOE_EXPERTS_H

#include "routing.h"

struct clmoe_experts {
  clmoe_context *ctx;
  int E, d, f, F; /* F = f, or 2f for gated kinds ([W1 | W3]) */
  clmoe_activation activation;
  cl_mem w13; /* [E, d, F] */
  cl_mem w2;  /* [E, f, d] */
  cl_mem b1, b3, b2;
};

/* ys[N, d] = FFN(xs[N, d]) per expert rows of a completed routing. */
clmoe_status cm_experts_run(clmoe_experts *x, clmoe_routing *rt, cl_mem xs,
                            cl_mem ys);

#endif /* CLMOE_EXPERTS_H */
