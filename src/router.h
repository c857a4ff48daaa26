/* Router object shared by route.c (and later the forward pass). */
#ifndef CLMOE_ROUTER_H
#define CLMOE_ROUTER_H

#include "internal.h"

struct clmoe_router {
  clmoe_context *ctx;
  clmoe_policy policy;
  int E, d;
  int k, k_min, k_max; /* k_max resolved (0 -> E) */
  float p, k_mean;
  float capacity_factor; /* resolved (0 -> 1 for RESONANCE/EC) */
  clmoe_overflow overflow;
  int renorm; /* gates resolved from GATES_DEFAULT */
  clmoe_affinity affinity;
  clmoe_fallback fallback;
  cl_mem weight; /* [d, E] or NULL */
  cl_mem bias;   /* [E] or NULL */
  cl_mem wnorm;  /* [E] column norms of weight (COSINE), or NULL */
  /* On CPU devices whose tuning entry picks the grouped kernel: the weight
   * packed for it ([1][panels][d][2 * packed_vw], cl/gemm.cl), so the
   * router GEMM runs at the expert GEMMs' speed; NULL otherwise (CLBlast). */
  cl_mem packed;
  int packed_vw, packed_panels;
};

/* Checks the arguments and enqueues a route (exactly one of x and logits
 * set) without waiting for it; `fn` names the public call in error details.
 * *slots_bound (may be NULL) receives an upper bound on N. The routing stays
 * invalid until cm_route_finish. */
clmoe_status cm_route_enqueue(clmoe_router *router, const clmoe_tensor *x,
                              const clmoe_tensor *logits,
                              const clmoe_tensor *importance,
                              clmoe_routing *routing, uint32_t num_wait,
                              const cl_event *wait, const char *fn,
                              int *slots_bound);
/* Blocks for the route's 4-byte status: the routing becomes valid with its
 * sizes, or NONFINITE_INPUT / OPENCL (the caller clears the routing, as on
 * any error of a route). */
clmoe_status cm_route_finish(clmoe_router *router, clmoe_routing *routing,
                             const char *fn);

#endif /* CLMOE_ROUTER_H */
