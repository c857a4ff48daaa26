/* Row-major SGEMM through CLBlast, with its status mapped to clmoe's. */
#include "moe/blas.h"

#include <clblast_c.h>

clmoe_status cm_blas_sgemm(clmoe_context *ctx, int M, int N, int K, cl_mem A,
                           size_t a_off, cl_mem B, size_t b_off, cl_mem C,
                           size_t c_off, const char *what) {
  return cm_blas_sgemm_t(ctx, 0, M, N, K, A, a_off, K, B, b_off, N, C, c_off,
                         what);
}

clmoe_status cm_blas_sgemm_t(clmoe_context *ctx, int trans_b, int M, int N,
                             int K, cl_mem A, size_t a_off, int lda, cl_mem B,
                             size_t b_off, int ldb, cl_mem C, size_t c_off,
                             const char *what) {
  cl_command_queue q = ctx->queue;
  CLBlastStatusCode s = CLBlastSgemm(
      CLBlastLayoutRowMajor, CLBlastTransposeNo,
      trans_b ? CLBlastTransposeYes : CLBlastTransposeNo, (size_t)M, (size_t)N,
      (size_t)K, 1.0f, A, a_off, (size_t)lda, B, b_off, (size_t)ldb, 0.0f, C,
      c_off, (size_t)N, &q, NULL);
  if (s == CLBlastSuccess)
    return CLMOE_SUCCESS;
  return cm_fail(
      s == CLBlastOpenCLOutOfResources || s == CLBlastTempBufferAllocFailure
          ? CLMOE_ERROR_OUT_OF_DEVICE_MEMORY
          : CLMOE_ERROR_CLBLAST,
      "%s: CLBlastSgemm (%d x %d x %d) failed with CLBlast status %d", what, M,
      N, K, (int)s);
}
