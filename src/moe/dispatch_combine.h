/* Dispatch (token rows into expert-major order) and combine (weighted sum
 * back per token) on a routing's queue (dispatch_combine.c, kernels in
 * cl/dispatch_combine.cl). */
#ifndef CLMOE_DISPATCH_COMBINE_H
#define CLMOE_DISPATCH_COMBINE_H

#include "moe/routing_result.h"

/* x_sorted[row] = x[row_tokens[row]] for rows < N, converted between the
 * two dtypes (F32, F16, BF16); `rows` >= N sizes the launch (the kernel
 * reads N and the route's status on the device). */
clmoe_status cm_dispatch_rows(clmoe_routing *rt, int d, int rows, cl_mem x,
                              clmoe_dtype x_dt, cl_mem x_sorted,
                              clmoe_dtype xs_dt);
/* The same, each row multiplied by its slot's gate when scale_by_gate
 * (cm_dispatch_rows scales exactly for input-side gates). */
clmoe_status cm_dispatch_rows_scaled(clmoe_routing *rt, int d, int rows,
                                     cl_mem x, clmoe_dtype x_dt, cl_mem xs,
                                     clmoe_dtype xs_dt, int scale_by_gate);
/* Shared-expert rows for combine: rows [T, d] float32 and each token's
 * weight gates [T]. */
typedef struct cm_shared_rows {
  cl_mem rows, gates;
} cm_shared_rows;

/* y[t] (+)= sum over t's slots of gate * y_sorted[slot row], in slot order,
 * then (shared given) + shared->gates[t] * shared->rows[t], in float32,
 * rounded once into y's dtype. */
clmoe_status cm_combine_rows(clmoe_routing *rt, int d, cl_mem y_sorted,
                             clmoe_dtype ys_dt, cl_mem y, clmoe_dtype y_dt,
                             uint32_t flags, const cm_shared_rows *shared);
/* dst[0..n) = src[0..n) converted from src_dt to dst_dt (F32, F16, BF16). */
clmoe_status cm_convert_elements(clmoe_context *ctx, cm_kernels *kernels,
                                 int64_t n, cl_mem src, clmoe_dtype src_dt,
                                 cl_mem dst, clmoe_dtype dst_dt);

#endif /* CLMOE_DISPATCH_COMBINE_H */
