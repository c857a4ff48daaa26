/* The contract between host code and kernels. Every constant both sides use
 * is defined here (or in the public header) once and reaches the OpenCL
 * compiler as a -D option built by cm_kernel_defines, so the .cl files hold
 * no copies that could drift. */
#ifndef CLMOE_KERNEL_ABI_H
#define CLMOE_KERNEL_ABI_H

#include <stddef.h>

/* Word offsets in a routing's stats buffer (32-bit words). The layer kernels
 * after route read ST_N and ST_BAD_TOKEN on the device, so a forward needs no
 * host sync between route and combine. */
enum {
  CM_ST_N = 0,
  CM_ST_N_PROPOSED = 1,
  CM_ST_MIN_K = 2,
  CM_ST_MAX_K = 3,
  CM_ST_BAD_TOKEN = 4,    /* INT_MAX unless a token had a non-finite input */
  CM_ST_BALANCE_LOSS = 5, /* float bits */
  CM_ST_ENTROPY = 6,      /* float bits */
  CM_ST_HEADER = 8        /* then hist[E+1], load[E], mean_prob[E] */
};

/* Columns per work-item of the row copies (dispatch_rows, combine_rows): one
 * 16-wide vector load and store per chunk, which the kernels spell as
 * vload16/float16, so the value is fixed at 16. */
enum { CM_ROW_CHUNK = 16 };

/* Columns per work-item of score_prob_columns: one 16-wide vector load per
 * row of the attention probabilities (vload16/float16), so fixed at 16. */
enum { CM_PROB_COLS = 16 };

/* The grouped GEMM's epilogue without an activation (the others are the
 * clmoe_activation values). */
enum { CM_EPI_NONE = 0 };

/* Writes the -D options that define every shared constant (stats layout,
 * policy ids, activation kinds, row chunk, probability columns, epilogue ids,
 * dtypes) into out.
 * Returns the length written, or the length needed when it does not fit.
 * Activation dtypes reach kernels as DT_F32, DT_F16, DT_BF16 (clmoe_dtype
 * values). */
size_t cm_kernel_defines(char *out, size_t len);

#endif /* CLMOE_KERNEL_ABI_H */
