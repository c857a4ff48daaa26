/* The route pipeline (route.c, kernels in cl/route.cl), split in an enqueue
 * and a finish so that the forward can enqueue the layer behind it. */
#ifndef CLMOE_ROUTE_H
#define CLMOE_ROUTE_H

#include "moe/router.h"
#include "moe/routing_result.h"

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

#endif /* CLMOE_ROUTE_H */
