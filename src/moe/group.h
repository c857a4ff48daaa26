/* Scans and expert-major grouping on the device (group.c, cl/group.cl). */
#ifndef CLMOE_GROUP_H
#define CLMOE_GROUP_H

#include "runtime/launch.h"

/* Scratch for cm_scan: partial sums of at most CM_SCAN_MAX_CHUNKS chunks. */
enum { CM_SCAN_MAX_CHUNKS = 4096 };

/* Exclusive scan of n ints: out[0..n] (out[n] = total). `partials` holds
 * CM_SCAN_MAX_CHUNKS + 1 ints. in and out may be the same buffer. */
clmoe_status cm_scan(clmoe_context *ctx, cm_kernels *ks, cl_mem in, cl_mem out,
                     int n, cl_mem partials);

/* Tokens per work-item in the grouping kernels; the number of blocks bounds
 * the histogram at E * blocks entries. */
void cm_group_blocks(int T, int *block, int *num_blocks);

/* Stable expert-major grouping of ragged slot lists (slot j of token t at
 * t*stride + j, or offsets[t] + j when stride = 0; j < counts[t]): fills
 * expert_offsets[E+1], row_tokens[N] and, when slot_rows is not NULL,
 * slot_rows. hist holds E * num_blocks + 1 ints. */
clmoe_status cm_group(clmoe_context *ctx, cm_kernels *ks, int T, int E,
                      cl_mem ids, int stride, cl_mem offsets, cl_mem counts,
                      cl_mem hist, cl_mem partials, cl_mem expert_offsets,
                      cl_mem slot_rows, cl_mem row_tokens);

#endif /* CLMOE_GROUP_H */
