/* The router object (router.c), read by route.c and forward.c. */
#ifndef CLMOE_ROUTER_H
#define CLMOE_ROUTER_H

#include "runtime/runtime.h"

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
  /* Since 0.4 (resolved): scoring, group-limited selection, gate scale and
   * position. num_groups is 1 without groups; allowed = the experts the
   * kept groups hold (E without groups). */
  clmoe_scoring scoring;
  int num_groups, topk_groups, allowed;
  clmoe_group_score group_score;
  float gate_scale;
  clmoe_gate_position gate_position;
  cl_mem selection_bias; /* [E] or NULL */
  cl_mem weight; /* [d, E] or NULL */
  cl_mem bias;   /* [E] or NULL */
  cl_mem wnorm;  /* [E] column norms of weight (COSINE), or NULL */
  /* When the device's tuning entry runs the router GEMM on the grouped
   * kernel (ROUTER=grouped): the weight packed for it
   * ([1][panels][d][2 * packed_vw], cl/grouped_gemm.cl); NULL otherwise
   * (CLBlast). */
  cl_mem packed;
  int packed_vw, packed_panels;
};

#endif /* CLMOE_ROUTER_H */
