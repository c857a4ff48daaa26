/* The one CLBlast entry point of the library (blas.c). */
#ifndef CLMOE_BLAS_H
#define CLMOE_BLAS_H

#include "runtime/runtime.h"

/* C[M, N] = A[M, K] * B[K, N], row-major, on buffer offsets (elements), on
 * the context's queue. `what` names the product in the error detail (e.g.
 * "clmoe_experts_run: expert 3"). Errors: OUT_OF_DEVICE_MEMORY, CLBLAST. */
clmoe_status cm_blas_sgemm(clmoe_context *ctx, int M, int N, int K, cl_mem A,
                           size_t a_off, cl_mem B, size_t b_off, cl_mem C,
                           size_t c_off, const char *what);
/* C[M, N] = A[M, K] * op(B), op(B) = B[K, N] or, with trans_b, B[N, K]
 * transposed; A's and B's row strides given (elements), C's is N. */
clmoe_status cm_blas_sgemm_t(clmoe_context *ctx, int trans_b, int M, int N,
                             int K, cl_mem A, size_t a_off, int lda, cl_mem B,
                             size_t b_off, int ldb, cl_mem C, size_t c_off,
                             const char *what);

#endif /* CLMOE_BLAS_H */
