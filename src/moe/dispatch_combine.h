/* Dispatch (token rows into expert-major order) and combine (weighted sum
 * back per token) on a routing's queue (dispatch_combine.c, kernels in
 * cl/dispatch_combine.cl). */
#ifndef CLMOE_DISPATCH_COMBINE_H
#define CLMOE_DISPATCH_COMBINE_H

#include "moe/routing_result.h"

/* x_sorted[row] = x[row_tokens[row]] for rows < N; `rows` >= N sizes the
 * launch (the kernel reads N and the route's status on the device). */
clmoe_status cm_dispatch_rows(clmoe_routing *rt, int d, int rows, cl_mem x,
                              cl_mem x_sorted);
/* y[t] (+)= sum over t's slots of gate * y_sorted[slot row], in slot order. */
clmoe_status cm_combine_rows(clmoe_routing *rt, int d, cl_mem y_sorted,
                             cl_mem y, uint32_t flags);

#endif /* CLMOE_DISPATCH_COMBINE_H */
