/* Experts object internals shared by experts.c (create, pack),
 * experts_run.c (both expert paths) and forward.c. */
#ifndef CLMOE_EXPERTS_H
#define CLMOE_EXPERTS_H

#include "moe/routing_result.h"
#include "quant/formats.h"

struct clmoe_experts {
  clmoe_context *ctx;
  int E, d, f, F; /* F = f, or 2f for gated kinds ([W1 | W3]) */
  clmoe_activation activation;
  float act_params[2]; /* SWIGLU_OAI: {limit, alpha} */
  clmoe_experts_path path;
  /* CLBLAST path: w13 [E, d, F], w2 [E, f, d], biases as given.
   * GROUPED path: w13 and w2 packed in panels of 2 * vw columns
   * ([E][panels][K][2 * vw], see cl/grouped_gemm.cl), b13 and b2 likewise
   * ([E][panels][2 * vw]); panels_up / panels_down count them. */
  cl_mem w13, w2;
  cl_mem b1, b3, b2; /* CLBLAST path */
  cl_mem b13;        /* GROUPED path: b1 | b3 packed (b2 reuses b2) */
  /* Quantized weights: float32 scales per column and group of `group_*`
   * consecutive k, [E][panels][groups][2 * vw] (cl/weight_formats.cl). */
  cl_mem s13, s2;
  int group_up, group_down;
  int vw, panels_up, panels_down;
  clmoe_dtype wdtype; /* storage dtype of w13 and w2: F32, F16 or BF16 */
  int64_t weight_bytes, bias_bytes;
  unsigned version; /* counts clmoe_experts_update calls */
  /* Training on the grouped path (src/train/expert_grads.c): [W1 | W3] and
   * W2 transposed into panels, made on first use for `wt_version`;
   * wt_lock guards them (the object may be shared by threads). */
  cl_mem w13t, w2t;
  int wt_valid;
  unsigned wt_version;
  pthread_mutex_t wt_lock;
};

int cm_is_gated(clmoe_activation a);

/* The experts can run on the routing's context (same device, same kernel
 * shape); `fn` names the public call. */
clmoe_status cm_check_experts_ctx(const clmoe_experts *x,
                                  const clmoe_routing *rt, const char *fn);

/* ys[N, d] = FFN(xs[N, d]) per expert rows of a routing. `rows` >= N sizes
 * the launches: N itself for a completed routing, or an upper bound while
 * the route is still in flight (GROUPED path only: its kernels read N and
 * the route's status on the device). */
clmoe_status cm_experts_run(clmoe_experts *x, clmoe_routing *rt, cl_mem xs,
                            cl_mem ys, int rows);

/* The grouped path's pieces (experts_run.c): row tiles per expert into the
 * routing's CM_RB_TILE_OFFSETS, and one grouped launch
 * C[rows of e, :n_out] = epi(A[rows of e] * B_e + b_e) on x's dtype (S: a
 * quantized B's scales, NULL otherwise). */
clmoe_status cm_experts_tile_offsets(clmoe_routing *rt, int E);
clmoe_status cm_experts_gemm(clmoe_experts *x, clmoe_routing *rt, int rows,
                             int K, int panels, cl_mem A, cl_mem B, cl_mem S,
                             int group, int epi, cl_mem bias, cl_mem C,
                             int n_out);

/* The path (never AUTO) and storage dtype a descriptor resolves to, after
 * checking its sizes, activation and layout (not its weights). */
clmoe_status cm_experts_resolve(const clmoe_context *ctx,
                                const clmoe_experts_desc *desc,
                                clmoe_experts_path *path, clmoe_dtype *wdtype);

/* A new experts object with the descriptor's shape, no buffers yet. */
clmoe_status cm_experts_alloc(clmoe_context *ctx,
                              const clmoe_experts_desc *desc,
                              clmoe_experts_path path, clmoe_dtype wdtype,
                              clmoe_experts **out);

/* The grouped path's biases (float32 host b1, b3 [E, f], b2 [E, d]; any
 * may be NULL) packed like the weight panels and uploaded; sets
 * bias_bytes. panels_up / panels_down must be set. */
clmoe_status cm_experts_upload_biases(clmoe_experts *x, const float *b1,
                                      const float *b3, const float *b2);

/* Fills q (allocated by the caller with its dtype, out and in) with
 * expert e's matrix m (0 W1, 1 W3, 2 W2) in [out, in] form: one code per
 * element (unpacked) and the format's scales (cm_qmatrix). */
typedef clmoe_status (*cm_quant_source)(void *user, int m, int e,
                                        cm_qmatrix *q);

/* Quantized experts from a source, expert by expert (checkpoint loading:
 * the host holds one expert's matrices at a time). The desc gives shape,
 * activation, path, weight_dtype (a quantized one) and optional float32
 * host biases. */
clmoe_status cm_experts_create_quantized(clmoe_context *ctx,
                                         const clmoe_experts_desc *desc,
                                         cm_quant_source source, void *user,
                                         clmoe_experts **out);
clmoe_status cm_experts_upload_quantized_from(clmoe_experts *x,
                                              cm_quant_source source,
                                              void *user);

/* Quantized experts (experts_quant.c): W1, W3 [E, d, f] and W2 [E, f, d]
 * in `lay` as float32 host arrays (quantized by clmoe's rule), or, when
 * w1 is NULL, the desc's codes and scales; packed into the grouped
 * kernel's panels with their scales and uploaded. Sets weight_bytes. */
clmoe_status cm_experts_upload_quantized(clmoe_experts *x,
                                         const clmoe_experts_desc *desc,
                                         const float *w1, const float *w3,
                                         const float *w2, int lay);

/* Rows [row0, row0 + n) of matrix `m` (0: W1, the gate; 1: W3, the up; 2:
 * W2, the down projection) of expert e, stored [out, in] as PyTorch does,
 * as float32 into dst[n][in]. */
typedef clmoe_status (*cm_row_source)(void *user, int m, int e, int row0, int n,
                                      float *dst);

/* Experts created without ever holding a whole matrix on the host: each
 * panel of the grouped kernel's packed layout is built from the rows it
 * needs and written to the device through a bounded staging buffer. The
 * desc gives shape, activation, path and weight_dtype, and optionally
 * float32 host biases (b1_host, b3_host, b2_host; its weights and bias
 * tensors are ignored). UNSUPPORTED when the path resolves to CLBLAST
 * (its layout is transposed); the caller then loads arrays. */
clmoe_status cm_experts_create_from_rows(clmoe_context *ctx,
                                         const clmoe_experts_desc *desc,
                                         cm_row_source source, void *user,
                                         clmoe_experts **out);

#endif /* CLMOE_EXPERTS_H */
