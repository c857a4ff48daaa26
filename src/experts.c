/* Expert FFN weights and the per-expert CLBlast path of clmoe_experts_run. */
#include "experts.h"

#include <clblast_c.h>
#include <stdlib.h>
#include <string.h>

void clmoe_experts_desc_init(clmoe_experts_desc *desc) {
  if (!desc)
    return;
  memset(desc, 0, sizeof *desc);
  desc->struct_size = sizeof *desc;
  desc->activation = CLMOE_ACTIVATION_SWIGLU;
}

static int is_gated(clmoe_activation a) {
  return a == CLMOE_ACTIVATION_SWIGLU || a == CLMOE_ACTIVATION_GEGLU;
}

#define BAD(...)                                                               \
  cm_fail(CLMOE_ERROR_INVALID_ARGUMENT, "clmoe_experts_create: " __VA_ARGS__)

/* Host copy of one weight given as host memory or a tensor of `dims`. */
static clmoe_status fetch(clmoe_context *ctx, const float *host,
                          const clmoe_tensor *t, const char *name, int rank,
                          const int64_t *dims, float **out) {
  *out = NULL;
  if (host && t)
    return BAD("%s is given both as host memory and as a tensor", name);
  if (!host && !t)
    return CLMOE_SUCCESS;
  size_t n = 1;
  for (int i = 0; i < rank; ++i)
    n *= (size_t)dims[i];
  clmoe_status st;
  if (t && (st = cm_check_tensor(t, ctx, name, CLMOE_DTYPE_F32, rank, dims)))
    return st;
  float *buf = malloc(n * sizeof *buf);
  if (!buf)
    return cm_fail(CLMOE_ERROR_OUT_OF_HOST_MEMORY,
                   "clmoe_experts_create: out of host memory for %s", name);
  if (host)
    memcpy(buf, host, n * sizeof *buf);
  else if ((st = clmoe_tensor_read(t, buf, n * sizeof *buf))) {
    free(buf);
    return st;
  }
  *out = buf;
  return CLMOE_SUCCESS;
}

/* Element (i, j) of expert e's [rows, cols] matrix given in `layout`. */
static float at(const float *w, int layout, int e, int rows, int cols, int i,
                int j) {
  size_t base = (size_t)e * rows * cols;
  return layout == CLMOE_LAYOUT_IN_OUT ? w[base + (size_t)i * cols + j]
                                       : w[base + (size_t)j * rows + i];
}

static clmoe_status upload(clmoe_context *ctx, const float *host, size_t n,
                           cl_mem *out) {
  clmoe_status st = cm_buffer_create(ctx, n * sizeof *host, CL_MEM_READ_WRITE,
                                     out);
  if (st || !host)
    return st;
  cl_int err = clEnqueueWriteBuffer(ctx->queue, *out, CL_TRUE, 0,
                                    n * sizeof *host, host, 0, NULL, NULL);
  return err == CL_SUCCESS ? CLMOE_SUCCESS
                           : cm_cl_fail(err, "clEnqueueWriteBuffer(experts)");
}

static clmoe_status validate(const clmoe_experts_desc *d) {
  if (d->num_experts < 1 || d->num_experts > 1024)
    return BAD("num_experts = %d is outside 1..1024", d->num_experts);
  if (d->d_model < 1 || d->d_ff < 1)
    return BAD("d_model = %d and d_ff = %d must be >= 1", d->d_model, d->d_ff);
  if (d->activation < CLMOE_ACTIVATION_RELU ||
      d->activation > CLMOE_ACTIVATION_GEGLU)
    return BAD("unknown activation %d", (int)d->activation);
  if (d->layout != CLMOE_LAYOUT_IN_OUT && d->layout != CLMOE_LAYOUT_OUT_IN)
    return BAD("unknown layout %d", (int)d->layout);
  int has_w3 = d->w3_host || d->w3, has_b3 = d->b3_host || d->b3;
  if (!(d->w1_host || d->w1) || !(d->w2_host || d->w2))
    return BAD("w1 and w2 are required");
  if (is_gated(d->activation) && !has_w3)
    return BAD("the gated activation needs w3");
  if (!is_gated(d->activation) && (has_w3 || has_b3))
    return BAD("w3/b3 are only for gated activations (SWIGLU, GEGLU)");
  if ((int64_t)d->num_experts * d->d_model * d->d_ff * 2 > INT32_MAX)
    return cm_fail(CLMOE_ERROR_TOO_LARGE,
                   "clmoe_experts_create: E * d * 2f overflows 32-bit indices");
  return CLMOE_SUCCESS;
}

clmoe_status clmoe_experts_create(clmoe_context *ctx,
                                  const clmoe_experts_desc *desc,
                                  clmoe_experts **out) {
  if (!out)
    return cm_fail(CLMOE_ERROR_NULL_POINTER,
                   "clmoe_experts_create: out is NULL");
  *out = NULL;
  if (!ctx)
    return cm_fail(CLMOE_ERROR_NULL_POINTER,
                   "clmoe_experts_create: ctx is NULL");
  clmoe_status st = cm_check_struct(desc, sizeof *desc, "experts desc");
  if (st || (st = validate(desc)))
    return st;
  int E = desc->num_experts, d = desc->d_model, f = desc->d_ff;
  int lay = desc->layout, in_out = lay == CLMOE_LAYOUT_IN_OUT;
  int64_t up[3] = {E, in_out ? d : f, in_out ? f : d};
  int64_t down[3] = {E, in_out ? f : d, in_out ? d : f};
  float *w1, *w3 = NULL, *w2 = NULL, *b1 = NULL, *b3 = NULL, *b2 = NULL;
  if ((st = fetch(ctx, desc->w1_host, desc->w1, "w1", 3, up, &w1)) ||
      (st = fetch(ctx, desc->w3_host, desc->w3, "w3", 3, up, &w3)) ||
      (st = fetch(ctx, desc->w2_host, desc->w2, "w2", 3, down, &w2)) ||
      (st = fetch(ctx, desc->b1_host, desc->b1, "b1", 2, (int64_t[]){E, f},
                  &b1)) ||
      (st = fetch(ctx, desc->b3_host, desc->b3, "b3", 2, (int64_t[]){E, f},
                  &b3)) ||
      (st = fetch(ctx, desc->b2_host, desc->b2, "b2", 2, (int64_t[]){E, d},
                  &b2)))
    goto done;
  clmoe_experts *x = calloc(1, sizeof *x);
  int F = is_gated(desc->activation) ? 2 * f : f;
  float *w13 = malloc(sizeof *w13 * (size_t)E * d * F);
  float *w2t = malloc(sizeof *w2t * (size_t)E * f * d);
  if (!x || !w13 || !w2t) {
    st = cm_fail(CLMOE_ERROR_OUT_OF_HOST_MEMORY,
                 "clmoe_experts_create: out of host memory");
  } else {
    /* Device layout: [E, in, out], with W3 beside W1 for gated kinds. */
    for (int e = 0; e < E; ++e)
      for (int i = 0; i < d; ++i)
        for (int j = 0; j < F; ++j)
          w13[((size_t)e * d + i) * F + j] =
              j < f ? at(w1, lay, e, d, f, i, j) : at(w3, lay, e, d, f, i, j - f);
    for (int e = 0; e < E; ++e)
      for (int i = 0; i < f; ++i)
        for (int j = 0; j < d; ++j)
          w2t[((size_t)e * f + i) * d + j] = at(w2, lay, e, f, d, i, j);
    x->ctx = ctx;
    x->E = E;
    x->d = d;
    x->f = f;
    x->F = F;
    x->activation = desc->activation;
    if (!(st = upload(ctx, w13, (size_t)E * d * F, &x->w13)) &&
        !(st = upload(ctx, w2t, (size_t)E * f * d, &x->w2)) &&
        !(st = b1 ? upload(ctx, b1, (size_t)E * f, &x->b1) : 0) &&
        !(st = b3 ? upload(ctx, b3, (size_t)E * f, &x->b3) : 0))
      st = b2 ? upload(ctx, b2, (size_t)E * d, &x->b2) : 0;
  }
  free(w13);
  free(w2t);
  if (st)
    clmoe_experts_destroy(x);
  else
    *out = x;
done:
  free(w1);
  free(w3);
  free(w2);
  free(b1);
  free(b3);
  free(b2);
  return st;
}

void clmoe_experts_destroy(clmoe_experts *experts) {
  if (!experts)
    return;
  cm_release_mem(&experts->w13);
  cm_release_mem(&experts->w2);
  cm_release_mem(&experts->b1);
  cm_release_mem(&experts->b3);
  cm_release_mem(&experts->b2);
  free(experts);
}

/* C[M, N] = A[M, K] * B[K, N] on buffer offsets (elements). */
static clmoe_status sgemm(clmoe_context *ctx, int M, int N, int K, cl_mem A,
                          size_t a_off, cl_mem B, size_t b_off, cl_mem C,
                          size_t c_off, int expert) {
  cl_command_queue q = ctx->queue;
  CLBlastStatusCode s = CLBlastSgemm(
      CLBlastLayoutRowMajor, CLBlastTransposeNo, CLBlastTransposeNo,
      (size_t)M, (size_t)N, (size_t)K, 1.0f, A, a_off, (size_t)K, B, b_off,
      (size_t)N, 0.0f, C, c_off, (size_t)N, &q, NULL);
  if (s == CLBlastSuccess)
    return CLMOE_SUCCESS;
  return cm_fail(s == CLBlastOpenCLOutOfResources ||
                         s == CLBlastTempBufferAllocFailure
                     ? CLMOE_ERROR_OUT_OF_DEVICE_MEMORY
                     : CLMOE_ERROR_CLBLAST,
                 "clmoe_experts_run: CLBlastSgemm for expert %d (%d x %d x "
                 "%d) failed with CLBlast status %d",
                 expert, M, N, K, (int)s);
}

clmoe_status cm_experts_run(clmoe_experts *x, clmoe_routing *rt, cl_mem xs,
                            cl_mem ys) {
  clmoe_context *ctx = x->ctx;
  int E = x->E, d = x->d, f = x->f, F = x->F, N = rt->N;
  clmoe_status st;
  if ((st = cm_routing_reserve(rt, CM_RB_FFN_H, (size_t)N * F * 4)) ||
      (st = cm_routing_reserve(rt, CM_RB_FFN_ACT, (size_t)N * f * 4)))
    return st;
  if (N == 0)
    return CLMOE_SUCCESS;
  int *off = malloc(sizeof *off * ((size_t)E + 1));
  if (!off)
    return cm_fail(CLMOE_ERROR_OUT_OF_HOST_MEMORY,
                   "clmoe_experts_run: out of host memory");
  cl_int err = clEnqueueReadBuffer(ctx->queue, rt->buf[CM_RB_EXPERT_OFFSETS],
                                   CL_TRUE, 0, sizeof *off * ((size_t)E + 1),
                                   off, 0, NULL, NULL);
  if (err != CL_SUCCESS) {
    free(off);
    return cm_cl_fail(err, "clmoe_experts_run: clEnqueueReadBuffer");
  }
  cl_mem h = rt->buf[CM_RB_FFN_H], act = rt->buf[CM_RB_FFN_ACT];
  for (int e = 0; e < E && !st; ++e) {
    int n = off[e + 1] - off[e];
    if (n > 0)
      st = sgemm(ctx, n, F, d, xs, (size_t)off[e] * d, x->w13,
                 (size_t)e * d * F, h, (size_t)off[e] * F, e);
  }
  cl_kernel k;
  int kind = x->activation, has_b1 = x->b1 != NULL, has_b3 = x->b3 != NULL;
  cl_mem b1 = has_b1 ? x->b1 : h, b3 = has_b3 ? x->b3 : h;
  size_t g[2] = {(size_t)f, (size_t)N};
  if (!st && !(st = cm_kernel(ctx, &rt->kernels, CM_K_EXPERT_ACTIVATION, &k)))
    st = cm_launch(ctx, k, "expert_activation", 2, g, NULL,
                   CM_ARGS(CM_ARG(N), CM_ARG(E), CM_ARG(f), CM_ARG(kind),
                           CM_ARG(rt->buf[CM_RB_EXPERT_OFFSETS]), CM_ARG(h),
                           CM_ARG(has_b1), CM_ARG(b1), CM_ARG(has_b3),
                           CM_ARG(b3), CM_ARG(act)));
  for (int e = 0; e < E && !st; ++e) {
    int n = off[e + 1] - off[e];
    if (n > 0)
      st = sgemm(ctx, n, d, f, act, (size_t)off[e] * f, x->w2,
                 (size_t)e * f * d, ys, (size_t)off[e] * d, e);
  }
  free(off);
  size_t gd[2] = {(size_t)d, (size_t)N};
  if (!st && x->b2 &&
      !(st = cm_kernel(ctx, &rt->kernels, CM_K_EXPERT_ADD_BIAS, &k)))
    st = cm_launch(ctx, k, "expert_add_bias", 2, gd, NULL,
                   CM_ARGS(CM_ARG(N), CM_ARG(E), CM_ARG(d),
                           CM_ARG(rt->buf[CM_RB_EXPERT_OFFSETS]),
                           CM_ARG(x->b2), CM_ARG(ys)));
  return st;
}
