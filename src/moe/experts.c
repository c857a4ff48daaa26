/* Expert FFN weights: validation, layout for the CLBlast path or panel
 * packing for the grouped kernel, upload. */
#include "moe/experts.h"

#include "clmoe/clmoe_train.h"
#include "moe/grouped_gemm.h"
#include "quant/formats.h"

#include <math.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>

void clmoe_experts_desc_init_sized(clmoe_experts_desc *desc, size_t size) {
  static const clmoe_experts_desc defaults = {.activation =
                                                  CLMOE_ACTIVATION_SWIGLU,
                                              .path = CLMOE_EXPERTS_PATH_AUTO,
                                              .weight_dtype = CLMOE_DTYPE_F32,
                                              .host_dtype = CLMOE_DTYPE_F32,
                                              .swiglu_limit = 7.0f,
                                              .swiglu_alpha = 1.702f};
  cm_init_struct(desc, &defaults, sizeof defaults, size);
}

void(clmoe_experts_desc_init)(clmoe_experts_desc *desc) {
  clmoe_experts_desc_init_sized(desc, offsetof(clmoe_experts_desc, path));
}

int cm_is_gated(clmoe_activation a) {
  return a == CLMOE_ACTIVATION_SWIGLU || a == CLMOE_ACTIVATION_GEGLU ||
         a == CLMOE_ACTIVATION_SWIGLU_OAI;
}

static const char *const FN = "clmoe_experts_create";

/* Float32 host copy of one array given as host memory (`host_dtype`) or as
 * a float32, float16 or bfloat16 tensor of `dims` (widened exactly). */
static clmoe_status fetch(clmoe_context *ctx, const void *host,
                          clmoe_dtype host_dtype, const clmoe_tensor *t,
                          const char *name, int rank, const int64_t *dims,
                          float **out) {
  *out = NULL;
  if (host && t)
    return cm_fail_at(CLMOE_ERROR_INVALID_ARGUMENT, FN,
                      "%s is given both as host memory and as a tensor", name);
  if (!host && !t)
    return CLMOE_SUCCESS;
  size_t n = 1;
  for (int i = 0; i < rank; ++i)
    n *= (size_t)dims[i];
  clmoe_status st;
  clmoe_dtype src_dtype = t ? t->dtype : host_dtype;
  if (t && !cm_is_float_dtype(t->dtype))
    return cm_fail_at(CLMOE_ERROR_DTYPE_MISMATCH, FN,
                      "%s is %s; weights must be float32, float16 or "
                      "bfloat16",
                      name, cm_dtype_name(t->dtype));
  if (t && (st = cm_check_tensor(t, ctx, name, t->dtype, rank, dims)))
    return st;
  float *buf = malloc(n * sizeof *buf);
  if (!buf)
    return cm_fail(CLMOE_ERROR_OUT_OF_HOST_MEMORY,
                   "clmoe_experts_create: out of host memory for %s", name);
  /* A 16-bit source is read into the buffer's upper half and widened from
   * the front: element i is read before any write reaches it. */
  size_t esize = cm_dtype_size(src_dtype);
  void *raw = (char *)buf + n * (sizeof *buf - esize);
  if (host)
    memcpy(raw, host, n * esize);
  else if ((st = clmoe_tensor_read(t, raw, n * esize))) {
    free(buf);
    return st;
  }
  for (size_t i = 0; src_dtype != CLMOE_DTYPE_F32 && i < n; ++i)
    buf[i] = cm_to_f32(src_dtype, raw, i);
  *out = buf;
  return CLMOE_SUCCESS;
}

static clmoe_status upload(clmoe_context *ctx, const float *host, size_t n,
                           cl_mem *out) {
  return cm_buffer_upload(ctx, host, NULL, n * sizeof *host, "experts", out);
}

/* Uploads n packed weights in the storage dtype. The values are already
 * representable in it; a 16-bit copy is narrowed in place from the front
 * (each element is written at or below its float, after it was read; an
 * interleaved pair at 2j, 2j + 1 lies below the floats j and vw + j it
 * comes from, or is them).
 * bfloat16 tile rows of 2 * vw are interleaved as cl/grouped_gemm.cl reads
 * them: element 2j holds column j, element 2j + 1 column vw + j. */
static clmoe_status upload_weights(clmoe_experts *x, float *buf, size_t n,
                                   cl_mem *out) {
  if (x->wdtype == CLMOE_DTYPE_F32)
    return upload(x->ctx, buf, n, out);
  size_t half = (size_t)x->vw;
  if (x->wdtype == CLMOE_DTYPE_BF16)
    for (size_t row = 0; row < n; row += 2 * half)
      for (size_t j = 0; j < half; ++j) {
        float lo = buf[row + j], hi = buf[row + half + j];
        cm_from_f32(x->wdtype, lo, buf, row + 2 * j);
        cm_from_f32(x->wdtype, hi, buf, row + 2 * j + 1);
      }
  else
    for (size_t i = 0; i < n; ++i)
      cm_from_f32(x->wdtype, buf[i], buf, i);
  return cm_buffer_upload(x->ctx, buf, NULL, n * cm_dtype_size(x->wdtype),
                          "experts", out);
}

/* Sizes, activation and layout (not the weights). */
static clmoe_status validate_sizes(const clmoe_experts_desc *d) {
  if (d->num_experts < 1 || d->num_experts > 1024)
    return cm_fail_at(CLMOE_ERROR_INVALID_ARGUMENT, FN,
                      "num_experts = %d is outside 1..1024", d->num_experts);
  if (d->d_model < 1 || d->d_ff < 1)
    return cm_fail_at(CLMOE_ERROR_INVALID_ARGUMENT, FN,
                      "d_model = %d and d_ff = %d must be >= 1", d->d_model,
                      d->d_ff);
  if (d->activation < CLMOE_ACTIVATION_RELU ||
      d->activation > CLMOE_ACTIVATION_SWIGLU_OAI)
    return cm_fail_at(CLMOE_ERROR_INVALID_ARGUMENT, FN, "unknown activation %d",
                      (int)d->activation);
  if (d->activation == CLMOE_ACTIVATION_SWIGLU_OAI) {
    /* A caller too old for the fields cannot name SWIGLU_OAI either. */
    if (!CM_HAS_FIELD(d, clmoe_experts_desc, swiglu_alpha))
      return cm_fail_at(CLMOE_ERROR_INVALID_STRUCT_SIZE, FN,
                        "SWIGLU_OAI needs a desc with swiglu_limit and "
                        "swiglu_alpha (struct_size %zu)",
                        d->struct_size);
    if (!isfinite(d->swiglu_limit) || !(d->swiglu_limit > 0.0f))
      return cm_fail_at(CLMOE_ERROR_INVALID_ARGUMENT, FN,
                        "swiglu_limit = %g; it must be finite and > 0",
                        (double)d->swiglu_limit);
    if (!isfinite(d->swiglu_alpha))
      return cm_fail_at(CLMOE_ERROR_INVALID_ARGUMENT, FN,
                        "swiglu_alpha = %g is not finite",
                        (double)d->swiglu_alpha);
  }
  if (d->layout != CLMOE_LAYOUT_IN_OUT && d->layout != CLMOE_LAYOUT_OUT_IN)
    return cm_fail_at(CLMOE_ERROR_INVALID_ARGUMENT, FN, "unknown layout %d",
                      (int)d->layout);
  if ((int64_t)d->num_experts * d->d_model * d->d_ff * 2 > INT32_MAX)
    return cm_fail(CLMOE_ERROR_TOO_LARGE,
                   "clmoe_experts_create: E * d * 2f overflows 32-bit indices");
  return CLMOE_SUCCESS;
}

/* Whether the desc gives already-quantized codes (0.4 fields). */
static int has_codes(const clmoe_experts_desc *d) {
  return CM_HAS_FIELD(d, clmoe_experts_desc, w2_scales) &&
         (d->w1_codes || d->w3_codes || d->w2_codes || d->w1_scales ||
          d->w3_scales || d->w2_scales);
}

/* Codes and scales of a quantized desc: all of W1 and W2 (and W3 when
 * gated), no float weights beside them. */
static clmoe_status validate_codes(const clmoe_experts_desc *d, int gated) {
  if (d->w1_host || d->w1 || d->w3_host || d->w3 || d->w2_host || d->w2)
    return cm_fail_at(CLMOE_ERROR_INVALID_ARGUMENT, FN,
                      "give float weights or quantized codes, not both");
  if (!cm_is_quant_dtype(d->weight_dtype))
    return cm_fail_at(CLMOE_ERROR_INVALID_ARGUMENT, FN,
                      "codes need a quantized weight_dtype (F8_E4M3, "
                      "MXFP4, I8, I4); it is %d",
                      (int)d->weight_dtype);
  if (!d->w1_codes || !d->w1_scales || !d->w2_codes || !d->w2_scales)
    return cm_fail_at(CLMOE_ERROR_INVALID_ARGUMENT, FN,
                      "w1_codes, w1_scales, w2_codes and w2_scales are "
                      "required");
  if (gated ? !(d->w3_codes && d->w3_scales) : d->w3_codes || d->w3_scales)
    return cm_fail_at(CLMOE_ERROR_INVALID_ARGUMENT, FN,
                      gated ? "the gated activation needs w3_codes and "
                              "w3_scales"
                            : "w3 codes are only for gated activations");
  return CLMOE_SUCCESS;
}

static clmoe_status validate(const clmoe_experts_desc *d) {
  clmoe_status st = validate_sizes(d);
  if (st)
    return st;
  int has_w3 = d->w3_host || d->w3, has_b3 = d->b3_host || d->b3;
  if (has_codes(d)) {
    if ((st = validate_codes(d, cm_is_gated(d->activation))))
      return st;
    has_w3 = d->w3_codes != NULL;
  } else if (!(d->w1_host || d->w1) || !(d->w2_host || d->w2)) {
    return cm_fail_at(CLMOE_ERROR_INVALID_ARGUMENT, FN,
                      "w1 and w2 are required");
  }
  if (cm_is_gated(d->activation) && !has_w3)
    return cm_fail_at(CLMOE_ERROR_INVALID_ARGUMENT, FN,
                      "the gated activation needs w3");
  if (!cm_is_gated(d->activation) && (has_w3 || has_b3))
    return cm_fail_at(CLMOE_ERROR_INVALID_ARGUMENT, FN,
                      "w3/b3 are only for gated activations (SWIGLU, GEGLU, "
                   "SWIGLU_OAI)");
  return CLMOE_SUCCESS;
}

/* Expert e's [rows, cols] matrix in the CLBlast path's layout: [E, in, out]
 * with, for gated kinds, W3 beside W1 (cols = F). */
static void lay_out_plain(float *dst, const float *w, const float *w_hi,
                          int lay, int E, int rows, int cols) {
  int F = w_hi ? 2 * cols : cols;
  for (int e = 0; e < E; ++e)
    for (int i = 0; i < rows; ++i)
      for (int j = 0; j < F; ++j)
        dst[((size_t)e * rows + i) * F + j] =
            j < cols ? cm_weight_at(w, lay, e, rows, cols, i, j)
                     : cm_weight_at(w_hi, lay, e, rows, cols, i, j - cols);
}

/* Elements of the up ([W1|W3]) and down (W2) weight buffers in the path's
 * device layout (quantized: their codes' bytes are elements * bits / 8,
 * plus the scales). */
static void weight_elems(int E, int d, int f, int gated,
                         clmoe_experts_path path, int vw, size_t *up,
                         size_t *down) {
  if (path == CLMOE_EXPERTS_PATH_GROUPED) {
    *up = (size_t)E * cm_panel_count(f, vw, gated) * d * 2 * vw;
    *down = (size_t)E * cm_panel_count(d, vw, 0) * f * 2 * vw;
  } else {
    *up = (size_t)E * d * f * (gated ? 2 : 1);
    *down = (size_t)E * f * d;
  }
}

static clmoe_status upload_packed(clmoe_experts *x, const float *w1,
                                  const float *w3, const float *w2,
                                  const float *b1, const float *b3,
                                  const float *b2, int lay) {
  int E = x->E, d = x->d, f = x->f, vw = x->vw;
  int gated = cm_is_gated(x->activation);
  x->panels_up = cm_panel_count(f, vw, gated);
  x->panels_down = cm_panel_count(d, vw, 0);
  size_t n13, n2;
  weight_elems(E, d, f, gated, CLMOE_EXPERTS_PATH_GROUPED, vw, &n13, &n2);
  size_t most = n13 > n2 ? n13 : n2;
  float *buf = malloc(sizeof *buf * most);
  if (!buf)
    return cm_fail(CLMOE_ERROR_OUT_OF_HOST_MEMORY,
                   "clmoe_experts_create: out of host memory");
  clmoe_status st;
  cm_pack_panels(buf, w1, w3, gated, lay, E, d, f, vw);
  if (!(st = upload_weights(x, buf, n13, &x->w13))) {
    cm_pack_panels(buf, w2, NULL, 0, lay, E, f, d, vw);
    st = upload_weights(x, buf, n2, &x->w2);
  }
  x->weight_bytes = (int64_t)((n13 + n2) * cm_dtype_size(x->wdtype));
  free(buf);
  return st ? st : cm_experts_upload_biases(x, b1, b3, b2);
}

clmoe_status cm_experts_upload_biases(clmoe_experts *x, const float *b1,
                                      const float *b3, const float *b2) {
  int E = x->E, vw = x->vw, gated = cm_is_gated(x->activation);
  size_t nb13 = (size_t)E * x->panels_up * 2 * vw;
  size_t nb2 = (size_t)E * x->panels_down * 2 * vw;
  x->bias_bytes = (int64_t)(((b1 || b3) ? nb13 : 0) + (b2 ? nb2 : 0)) * 4;
  if (!b1 && !b3 && !b2)
    return CLMOE_SUCCESS;
  float *buf = malloc(sizeof *buf * (nb13 > nb2 ? nb13 : nb2));
  if (!buf)
    return cm_fail(CLMOE_ERROR_OUT_OF_HOST_MEMORY,
                   "clmoe_experts_create: out of host memory");
  clmoe_status st = CLMOE_SUCCESS;
  if (b1 || b3) {
    cm_pack_panels(buf, b1, b3, gated, CLMOE_LAYOUT_IN_OUT, E, 1, x->f, vw);
    st = upload(x->ctx, buf, nb13, &x->b13);
  }
  if (!st && b2) {
    cm_pack_panels(buf, b2, NULL, 0, CLMOE_LAYOUT_IN_OUT, E, 1, x->d, vw);
    st = upload(x->ctx, buf, nb2, &x->b2);
  }
  free(buf);
  return st;
}

static clmoe_status upload_plain(clmoe_experts *x, const float *w1,
                                 const float *w3, const float *w2,
                                 const float *b1, const float *b3,
                                 const float *b2, int lay) {
  int E = x->E, d = x->d, f = x->f;
  size_t n13, n2;
  weight_elems(E, d, f, cm_is_gated(x->activation), CLMOE_EXPERTS_PATH_CLBLAST,
               x->vw, &n13, &n2);
  float *buf = malloc(sizeof *buf * (n13 > n2 ? n13 : n2));
  if (!buf)
    return cm_fail(CLMOE_ERROR_OUT_OF_HOST_MEMORY,
                   "clmoe_experts_create: out of host memory");
  clmoe_status st;
  lay_out_plain(buf, w1, cm_is_gated(x->activation) ? w3 : NULL, lay, E, d, f);
  if (!(st = upload(x->ctx, buf, n13, &x->w13))) {
    lay_out_plain(buf, w2, NULL, lay, E, f, d);
    st = upload(x->ctx, buf, n2, &x->w2);
  }
  free(buf);
  x->weight_bytes = (int64_t)((n13 + n2) * sizeof(float));
  x->bias_bytes =
      (int64_t)((b1 ? E * f : 0) + (b3 ? E * f : 0) + (b2 ? E * d : 0)) * 4;
  if (!st && b1)
    st = upload(x->ctx, b1, (size_t)E * f, &x->b1);
  if (!st && b3)
    st = upload(x->ctx, b3, (size_t)E * f, &x->b3);
  if (!st && b2)
    st = upload(x->ctx, b2, (size_t)E * d, &x->b2);
  return st;
}

/* Refuses, before any copy, weights whose device buffers would exceed the
 * device's single-allocation limit (in the path's layout). */
static clmoe_status check_device_limit(const clmoe_context *ctx,
                                       const clmoe_experts_desc *d,
                                       clmoe_experts_path path,
                                       clmoe_dtype wdtype) {
  size_t up, down;
  weight_elems(d->num_experts, d->d_model, d->d_ff, cm_is_gated(d->activation),
               path, ctx->tuning.vw, &up, &down);
  size_t most = cm_is_quant_dtype(wdtype)
                    ? (up > down ? up : down) * cm_code_bits(wdtype) / 8
                    : (up > down ? up : down) * cm_dtype_size(wdtype);
  if (most > ctx->info.max_alloc_bytes)
    return cm_fail(CLMOE_ERROR_TOO_LARGE,
                   "clmoe_experts_create: a weight matrix needs %zu bytes in "
                   "one buffer but the device's CL_DEVICE_MAX_MEM_ALLOC_SIZE "
                   "is %llu",
                   most, (unsigned long long)ctx->info.max_alloc_bytes);
  return CLMOE_SUCCESS;
}

/* What a create call resolved from its descriptor. */
typedef struct create_args {
  clmoe_experts_path path; /* never AUTO */
  clmoe_dtype wdtype, host_dtype;
} create_args;

/* A dtype field newer than the caller's struct, or 0, means F32. */
static clmoe_dtype desc_dtype(const clmoe_experts_desc *desc, size_t offset) {
  clmoe_dtype v = 0;
  if (desc->struct_size >= offset + sizeof v)
    memcpy(&v, (const char *)desc + offset, sizeof v);
  return v ? v : CLMOE_DTYPE_F32;
}

static clmoe_status resolve(const clmoe_context *ctx,
                            const clmoe_experts_desc *desc, create_args *a) {
  a->path = CM_HAS_FIELD(desc, clmoe_experts_desc, path)
                ? desc->path
                : CLMOE_EXPERTS_PATH_AUTO;
  a->wdtype = desc_dtype(desc, offsetof(clmoe_experts_desc, weight_dtype));
  a->host_dtype = desc_dtype(desc, offsetof(clmoe_experts_desc, host_dtype));
  if (a->path < CLMOE_EXPERTS_PATH_AUTO || a->path > CLMOE_EXPERTS_PATH_GROUPED)
    return cm_fail_at(CLMOE_ERROR_INVALID_ARGUMENT, FN, "unknown path %d",
                      (int)a->path);
  int quant = cm_is_quant_dtype(a->wdtype);
  if ((!cm_is_float_dtype(a->wdtype) && !quant) ||
      !cm_is_float_dtype(a->host_dtype))
    return cm_fail_at(CLMOE_ERROR_DTYPE_MISMATCH, FN,
                      "weight_dtype %s must be F32, F16, BF16, F8_E4M3, "
                      "MXFP4, I8 or I4, and host_dtype %s F32, F16 or BF16",
                      cm_dtype_name(a->wdtype), cm_dtype_name(a->host_dtype));
  if ((a->wdtype == CLMOE_DTYPE_MXFP4 || a->wdtype == CLMOE_DTYPE_I4) &&
      (desc->d_model % 32 || desc->d_ff % 32))
    return cm_fail_at(CLMOE_ERROR_INVALID_ARGUMENT, FN,
                      "%s groups 32 input elements: d_model = %d and d_ff = "
                      "%d must be multiples of 32",
                      cm_dtype_name(a->wdtype), desc->d_model, desc->d_ff);
  if (a->path == CLMOE_EXPERTS_PATH_CLBLAST && a->wdtype != CLMOE_DTYPE_F32)
    return cm_fail_at(CLMOE_ERROR_UNSUPPORTED, FN,
                      "%s weights run on the grouped path only: CLBlast's "
                      "16-bit GEMM accumulates in half precision and needs "
                      "cl_khr_fp16",
                      cm_dtype_name(a->wdtype));
  if (a->path == CLMOE_EXPERTS_PATH_AUTO)
    a->path = a->wdtype != CLMOE_DTYPE_F32 ? CLMOE_EXPERTS_PATH_GROUPED
                                           : ctx->tuning.path;
  if (has_codes(desc) && !quant)
    return cm_fail_at(CLMOE_ERROR_INVALID_ARGUMENT, FN,
                      "codes need a quantized weight_dtype (F8_E4M3, MXFP4, "
                      "I8, I4)");
  return check_device_limit(ctx, desc, a->path, a->wdtype);
}

/* The caller's arrays as float32 host copies, weights rounded to the
 * storage dtype. */
typedef struct host_arrays {
  float *w1, *w3, *w2, *b1, *b3, *b2;
} host_arrays;

static void free_arrays(host_arrays *h) {
  free(h->w1);
  free(h->w3);
  free(h->w2);
  free(h->b1);
  free(h->b3);
  free(h->b2);
}

static clmoe_status fetch_all(clmoe_context *ctx,
                              const clmoe_experts_desc *desc,
                              const create_args *a, host_arrays *h) {
  int E = desc->num_experts, d = desc->d_model, f = desc->d_ff;
  int in_out = desc->layout == CLMOE_LAYOUT_IN_OUT;
  int64_t up[3] = {E, in_out ? d : f, in_out ? f : d};
  int64_t down[3] = {E, in_out ? f : d, in_out ? d : f};
  size_t n = (size_t)E * d * f;
  clmoe_dtype hd = a->host_dtype, f32 = CLMOE_DTYPE_F32;
  clmoe_status st;
  if ((st = fetch(ctx, desc->w1_host, hd, desc->w1, "w1", 3, up, &h->w1)) ||
      (st = fetch(ctx, desc->w3_host, hd, desc->w3, "w3", 3, up, &h->w3)) ||
      (st = fetch(ctx, desc->w2_host, hd, desc->w2, "w2", 3, down, &h->w2)) ||
      (st = fetch(ctx, desc->b1_host, f32, desc->b1, "b1", 2, (int64_t[]){E, f},
                  &h->b1)) ||
      (st = fetch(ctx, desc->b3_host, f32, desc->b3, "b3", 2, (int64_t[]){E, f},
                  &h->b3)) ||
      (st = fetch(ctx, desc->b2_host, f32, desc->b2, "b2", 2, (int64_t[]){E, d},
                  &h->b2)) ||
      cm_is_quant_dtype(a->wdtype) /* quantized by its own rule */ ||
      (st = cm_round_to_dtype(h->w1, n, a->wdtype, "clmoe_experts_create: w1")))
    return st;
  if (h->w3 &&
      (st = cm_round_to_dtype(h->w3, n, a->wdtype, "clmoe_experts_create: w3")))
    return st;
  return cm_round_to_dtype(h->w2, n, a->wdtype, "clmoe_experts_create: w2");
}

clmoe_status cm_experts_alloc(clmoe_context *ctx,
                              const clmoe_experts_desc *desc,
                              clmoe_experts_path path, clmoe_dtype wdtype,
                              clmoe_experts **out) {
  clmoe_experts *x = *out = calloc(1, sizeof *x);
  if (!x)
    return cm_fail(CLMOE_ERROR_OUT_OF_HOST_MEMORY,
                   "clmoe_experts_create: out of host memory");
  x->ctx = ctx;
  x->E = desc->num_experts;
  x->d = desc->d_model;
  x->f = desc->d_ff;
  x->F = cm_is_gated(desc->activation) ? 2 * x->f : x->f;
  x->activation = desc->activation;
  if (desc->activation == CLMOE_ACTIVATION_SWIGLU_OAI) {
    x->act_params[0] = desc->swiglu_limit;
    x->act_params[1] = desc->swiglu_alpha;
  }
  x->path = path;
  x->wdtype = wdtype;
  x->vw = ctx->tuning.vw;
  pthread_mutex_init(&x->wt_lock, NULL);
  return CLMOE_SUCCESS;
}

clmoe_status cm_experts_resolve(const clmoe_context *ctx,
                                const clmoe_experts_desc *desc,
                                clmoe_experts_path *path, clmoe_dtype *wdtype) {
  create_args a;
  clmoe_status st;
  if ((st = validate_sizes(desc)) || (st = resolve(ctx, desc, &a)))
    return st;
  *path = a.path;
  *wdtype = a.wdtype;
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
  create_args a;
  clmoe_status st =
      cm_check_struct(desc, offsetof(clmoe_experts_desc, path), "experts desc");
  if (st || (st = validate(desc)) || (st = resolve(ctx, desc, &a)))
    return st;
  host_arrays h = {0};
  clmoe_experts *x = NULL;
  if ((st = fetch_all(ctx, desc, &a, &h)) ||
      (st = cm_experts_alloc(ctx, desc, a.path, a.wdtype, &x)))
    goto done;
  if (cm_is_quant_dtype(a.wdtype)) {
    if (!(st = cm_experts_upload_quantized(x, desc, h.w1, h.w3, h.w2,
                                           desc->layout)))
      st = cm_experts_upload_biases(x, h.b1, h.b3, h.b2);
  } else {
    st = x->path == CLMOE_EXPERTS_PATH_GROUPED
             ? upload_packed(x, h.w1, h.w3, h.w2, h.b1, h.b3, h.b2,
                             desc->layout)
             : upload_plain(x, h.w1, h.w3, h.w2, h.b1, h.b3, h.b2,
                            desc->layout);
  }
  if (st)
    clmoe_experts_destroy(x);
  else
    *out = x;
done:
  free_arrays(&h);
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
  cm_release_mem(&experts->b13);
  cm_release_mem(&experts->s13);
  cm_release_mem(&experts->s2);
  cm_release_mem(&experts->w13t);
  cm_release_mem(&experts->w2t);
  pthread_mutex_destroy(&experts->wt_lock);
  free(experts);
}

clmoe_status clmoe_experts_get_path(const clmoe_experts *experts,
                                    clmoe_experts_path *path) {
  if (!experts || !path)
    return cm_fail(CLMOE_ERROR_NULL_POINTER,
                   "clmoe_experts_get_path: experts or path is NULL");
  *path = experts->path;
  return CLMOE_SUCCESS;
}

clmoe_status clmoe_experts_get_bytes(const clmoe_experts *experts,
                                     int64_t *weight_bytes,
                                     int64_t *bias_bytes) {
  if (!experts)
    return cm_fail(CLMOE_ERROR_NULL_POINTER,
                   "clmoe_experts_get_bytes: experts is NULL");
  if (weight_bytes)
    *weight_bytes = experts->weight_bytes;
  if (bias_bytes)
    *bias_bytes = experts->bias_bytes;
  return CLMOE_SUCCESS;
}

clmoe_status clmoe_experts_get_weight_dtype(const clmoe_experts *experts,
                                            clmoe_dtype *dtype) {
  if (!experts || !dtype)
    return cm_fail(CLMOE_ERROR_NULL_POINTER,
                   "clmoe_experts_get_weight_dtype: experts or dtype is NULL");
  *dtype = experts->wdtype;
  return CLMOE_SUCCESS;
}

clmoe_status clmoe_experts_get_shape(const clmoe_experts *experts,
                                     int32_t *num_experts, int32_t *d_model,
                                     int32_t *d_ff,
                                     clmoe_activation *activation) {
  if (!experts)
    return cm_fail(CLMOE_ERROR_NULL_POINTER,
                   "clmoe_experts_get_shape: experts is NULL");
  if (num_experts)
    *num_experts = experts->E;
  if (d_model)
    *d_model = experts->d;
  if (d_ff)
    *d_ff = experts->f;
  if (activation)
    *activation = experts->activation;
  return CLMOE_SUCCESS;
}

/* Buffers of an experts object that hold weights or biases. */
static cl_mem *weight_mems(clmoe_experts *x, int i) {
  cl_mem *all[] = {&x->w13, &x->w2, &x->b1, &x->b3, &x->b2, &x->b13};
  return i < (int)(sizeof all / sizeof *all) ? all[i] : NULL;
}

clmoe_status clmoe_experts_update(clmoe_experts *experts,
                                  const clmoe_experts_desc *desc) {
  const char *fn = "clmoe_experts_update";
  if (!experts || !desc)
    return cm_fail_at(CLMOE_ERROR_NULL_POINTER, fn, "experts or desc is NULL");
  clmoe_experts *x = experts;
  clmoe_status st =
      cm_check_struct(desc, offsetof(clmoe_experts_desc, path), "experts desc");
  if (st)
    return st;
  if (cm_is_quant_dtype(x->wdtype))
    return cm_fail_at(CLMOE_ERROR_UNSUPPORTED, fn,
                      "the experts are %s: quantized experts are "
                      "inference-only and cannot be updated",
                      cm_dtype_name(x->wdtype));
  if (desc->num_experts != x->E || desc->d_model != x->d ||
      desc->d_ff != x->f || desc->activation != x->activation)
    return cm_fail_at(CLMOE_ERROR_SHAPE_MISMATCH, fn,
                      "desc is E = %d, d = %d, f = %d, activation %d but the "
                      "experts are E = %d, d = %d, f = %d, activation %d",
                      desc->num_experts, desc->d_model, desc->d_ff,
                      (int)desc->activation, x->E, x->d, x->f,
                      (int)x->activation);
  /* The caller's weights with the object's own configuration. */
  clmoe_experts_desc d;
  clmoe_experts_desc_init(&d);
  memcpy(&d, desc,
         desc->struct_size < sizeof d ? desc->struct_size : sizeof d);
  d.struct_size = sizeof d;
  d.path = x->path;
  d.weight_dtype = x->wdtype;
  d.swiglu_limit = x->act_params[0];
  d.swiglu_alpha = x->act_params[1];
  d.w1_codes = d.w3_codes = d.w2_codes = NULL;
  d.w1_scales = d.w3_scales = d.w2_scales = NULL;
  create_args a;
  host_arrays h = {0};
  if ((st = validate(&d)) || (st = resolve(x->ctx, &d, &a)) ||
      (st = fetch_all(x->ctx, &d, &a, &h))) {
    free_arrays(&h);
    return st;
  }
  /* Uploaded into a copy first: on failure the object is unchanged. */
  clmoe_experts fresh = *x;
  for (int i = 0; weight_mems(&fresh, i); ++i)
    *weight_mems(&fresh, i) = NULL;
  st = x->path == CLMOE_EXPERTS_PATH_GROUPED
           ? upload_packed(&fresh, h.w1, h.w3, h.w2, h.b1, h.b3, h.b2, d.layout)
           : upload_plain(&fresh, h.w1, h.w3, h.w2, h.b1, h.b3, h.b2, d.layout);
  free_arrays(&h);
  clmoe_experts *drop = st ? &fresh : x;
  for (int i = 0; weight_mems(drop, i); ++i)
    cm_release_mem(weight_mems(drop, i));
  if (st)
    return st;
  /* Only the weights and biases change: the lock and the transposed
   * copies (stale from now on, rebuilt by the next backward) stay. */
  for (int i = 0; weight_mems(x, i); ++i)
    *weight_mems(x, i) = *weight_mems(&fresh, i);
  x->weight_bytes = fresh.weight_bytes;
  x->bias_bytes = fresh.bias_bytes;
  ++x->version;
  return CLMOE_SUCCESS;
}
