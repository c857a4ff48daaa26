/* What the forward calls share with the training forward (forward.c). */
#ifndef CLMOE_FORWARD_H
#define CLMOE_FORWARD_H

#include "moe/router.h"
#include "moe/routing_result.h"

/* Everything a forward can check before enqueueing work: the objects are
 * given and fit together, x and y are [T, d] float rows of one dtype. */
clmoe_status cm_check_layer(const clmoe_router *router,
                            const clmoe_experts *experts,
                            const clmoe_tensor *x, const clmoe_tensor *y,
                            const clmoe_routing *routing, const char *fn);

#endif /* CLMOE_FORWARD_H */
