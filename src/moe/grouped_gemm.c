/* The grouped GEMM's packed weight layout (cl/grouped_gemm.cl) and its launch.
 */
#include "moe/grouped_gemm.h"

int cm_panel_count(int cols, int vw, int gated) {
  int width = gated ? vw : 2 * vw;
  return (cols + width - 1) / width;
}

void cm_pack_panels(float *dst, const float *w, const float *w_hi, int gated,
                    int lay, int E, int rows, int cols, int vw) {
  int P = cm_panel_count(cols, vw, gated), tn = 2 * vw;
  for (int e = 0; e < E; ++e)
    for (int p = 0; p < P; ++p)
      for (int i = 0; i < rows; ++i)
        for (int c = 0; c < tn; ++c) {
          int j = gated ? p * vw + c % vw : p * tn + c;
          const float *src = (gated && c >= vw) ? w_hi : w;
          *dst++ = (j < cols && src)
                       ? cm_weight_at(src, lay, e, rows, cols, i, j)
                       : 0;
        }
}

int cm_gemm_tile_rows(const cm_tuning *t) {
  return t->local_kernel ? t->bm : t->rm;
}

int cm_gemm_tiles_per_item(const cm_tuning *t) {
  return t->local_kernel ? 1 : t->tc;
}

/* Tiles never straddle groups: at most ceil(rows / tile_rows) plus one per
 * group that has rows. */
static size_t tiles_bound(int E, int rows_bound, int tile_rows) {
  return (size_t)(rows_bound + tile_rows - 1) / (size_t)tile_rows +
         (size_t)(E < rows_bound ? E : rows_bound);
}

/* The program variant that widens `wdtype` panels, in either shape. */
static cm_kernel_id kernel_for(clmoe_dtype wdtype, int local) {
  static const struct {
    clmoe_dtype dtype;
    cm_kernel_id private_shape, local_shape;
  } k[] = {
      {CLMOE_DTYPE_F16, CM_K_GEMM_GROUPED_F16, CM_K_GEMM_GROUPED_LOCAL_F16},
      {CLMOE_DTYPE_BF16, CM_K_GEMM_GROUPED_BF16, CM_K_GEMM_GROUPED_LOCAL_BF16},
      {CLMOE_DTYPE_F8_E4M3, CM_K_GEMM_GROUPED_F8, CM_K_GEMM_GROUPED_LOCAL_F8},
      {CLMOE_DTYPE_MXFP4, CM_K_GEMM_GROUPED_MXFP4,
       CM_K_GEMM_GROUPED_LOCAL_MXFP4},
      {CLMOE_DTYPE_I8, CM_K_GEMM_GROUPED_I8, CM_K_GEMM_GROUPED_LOCAL_I8},
      {CLMOE_DTYPE_I4, CM_K_GEMM_GROUPED_I4, CM_K_GEMM_GROUPED_LOCAL_I4},
  };
  for (size_t i = 0; i < sizeof k / sizeof *k; ++i)
    if (k[i].dtype == wdtype)
      return local ? k[i].local_shape : k[i].private_shape;
  return local ? CM_K_GEMM_GROUPED_LOCAL : CM_K_GEMM_GROUPED;
}

/* The work-group kernel (cl/grouped_gemm_local.cl): a group per block of
 * BM rows x NP panels. */
static clmoe_status launch_local(clmoe_context *ctx, cm_kernels *kernels,
                                 clmoe_dtype wdtype, size_t tiles, int panels,
                                 const cm_arg *args, int nargs) {
  const cm_tuning *t = &ctx->tuning;
  cl_kernel k;
  clmoe_status st = cm_kernel(ctx, kernels, kernel_for(wdtype, 1), &k);
  if (st)
    return st;
  size_t local[2];
  cm_tuning_local_shape(t, local);
  size_t g[2] = {((size_t)panels + t->np - 1) / t->np * local[0],
                 tiles * local[1]};
  return cm_launch(ctx, k, "gemm_grouped_local", 2, g, local, args, nargs);
}

clmoe_status cm_gemm_grouped(clmoe_context *ctx, cm_kernels *kernels, int E,
                             int rows_bound, int K, int panels,
                             int tiles_per_item, cl_mem expert_offsets,
                             cl_mem tile_offsets, cl_mem A, cl_mem B,
                             clmoe_dtype wdtype, int epi, cl_mem bias, cl_mem C,
                             int n_out, const float *act,
                             const cm_gemm_scales *scales) {
  const cm_tuning *t = &ctx->tuning;
  int has_bias = bias != NULL;
  float lim = act ? act[0] : 0.0f, alpha = act ? act[1] : 0.0f;
  /* Unquantized: one group of all K, scales never read. */
  cl_mem sbuf = scales ? scales->buf : B;
  int qgroup = scales ? scales->group : (K > 0 ? K : 1);
  size_t tiles = tiles_bound(E, rows_bound, cm_gemm_tile_rows(t));
  /* Unused when has_bias = 0, but every argument must be a valid buffer. */
  cl_mem b = has_bias ? bias : B;
  if (t->local_kernel)
    return launch_local(ctx, kernels, wdtype, tiles, panels,
                        CM_ARGS(CM_ARG(E), CM_ARG(K), CM_ARG(panels),
                                CM_ARG(expert_offsets), CM_ARG(tile_offsets),
                                CM_ARG(A), CM_ARG(B), CM_ARG(epi),
                                CM_ARG(has_bias), CM_ARG(b), CM_ARG(C),
                                CM_ARG(n_out), CM_ARG(n_out), CM_ARG(lim),
                                CM_ARG(alpha), CM_ARG(sbuf), CM_ARG(qgroup)));
  cl_kernel k;
  clmoe_status st = cm_kernel(ctx, kernels, kernel_for(wdtype, 0), &k);
  if (st)
    return st;
  int lx = t->lx;
  /* No more units than tiles. */
  size_t g[2] = {tiles, ((size_t)panels + 1) / 2}; /* a pair of panels each */
  size_t local[2] = {(size_t)lx, 1};
  return cm_launch(ctx, k, "gemm_grouped", 2, g, lx ? local : NULL,
                   CM_ARGS(CM_ARG(E), CM_ARG(K), CM_ARG(panels),
                           CM_ARG(tiles_per_item), CM_ARG(expert_offsets),
                           CM_ARG(tile_offsets), CM_ARG(A), CM_ARG(B),
                           CM_ARG(epi), CM_ARG(has_bias), CM_ARG(b), CM_ARG(C),
                           CM_ARG(n_out), CM_ARG(n_out), CM_ARG(lim),
                           CM_ARG(alpha), CM_ARG(sbuf), CM_ARG(qgroup)));
}
