/* Quantized experts: each expert matrix quantized (or taken from the
 * caller's codes and scales) in its logical [out, in] form, then packed
 * into the grouped kernel's panels (codes per panel row, scales per column
 * and k group) as cl/weight_formats.cl reads them. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "moe/experts.h"
#include "moe/grouped_gemm.h"
#include "quant/formats.h"

static const char *const FN = "clmoe_experts_create";
static const char *const k_matrix[3] = {"w1", "w3", "w2"};

/* What the desc gives: float32 weights [E, d, f] / [E, f, d] in `lay`
 * (quantized by clmoe's rule), or its codes and scales. */
typedef struct desc_source {
  const clmoe_experts_desc *desc;
  const float *w[3];
  int lay;
} desc_source;

/* Expert e's matrix m from the desc (a cm_quant_source). */
static clmoe_status desc_matrix(void *user, int m, int e, cm_qmatrix *q) {
  const desc_source *ds = user;
  const float *w = ds->w[m];
  int out = q->out, in = q->in;
  size_t n = (size_t)out * in;
  if (w) { /* [E, in, out] (IN_OUT) or [E, out, in] */
    const float *we = w + (size_t)e * n;
    int64_t bad = ds->lay == CLMOE_LAYOUT_IN_OUT
                      ? cm_quantize(q, we, 1, (size_t)out)
                      : cm_quantize(q, we, (size_t)in, 1);
    if (bad >= 0)
      return cm_fail_at(CLMOE_ERROR_INVALID_ARGUMENT, FN,
                        "expert %d's %s[%lld] is not finite", e, k_matrix[m],
                        (long long)bad);
    return CLMOE_SUCCESS;
  }
  const clmoe_experts_desc *desc = ds->desc;
  const void *codes[3] = {desc->w1_codes, desc->w3_codes, desc->w2_codes};
  const void *scales[3] = {desc->w1_scales, desc->w3_scales, desc->w2_scales};
  int bits = cm_code_bits(q->dtype);
  const uint8_t *c = (const uint8_t *)codes[m] + (size_t)e * n * bits / 8;
  for (size_t i = 0; i < n; ++i)
    q->codes[i] =
        bits == 4 ? (uint8_t)((c[i / 2] >> (4 * (i & 1))) & 15) : c[i];
  size_t ns = cm_qmatrix_scale_count(q->dtype, out, in);
  for (size_t i = 0; i < ns; ++i)
    q->scales[i] =
        q->dtype == CLMOE_DTYPE_MXFP4
            ? cm_code_value(CLMOE_DTYPE_E8M0, scales[m], (size_t)e * ns + i)
            : ((const float *)scales[m])[(size_t)e * ns + i];
  return CLMOE_SUCCESS;
}

/* Expert e's matrix m from the source, checked: no NaN code (e4m3 0x7F /
 * 0xFF), no non-finite scale. */
static clmoe_status expert_matrix(const clmoe_experts *x,
                                  cm_quant_source source, void *user, int m,
                                  int e, cm_qmatrix *q) {
  int out = m == 2 ? x->d : x->f, in = m == 2 ? x->f : x->d;
  if (cm_qmatrix_alloc(q, x->wdtype, out, in))
    return cm_fail_at(CLMOE_ERROR_OUT_OF_HOST_MEMORY, FN,
                      "out of host memory for %s", k_matrix[m]);
  clmoe_status st = source(user, m, e, q);
  size_t n = (size_t)out * in, ns = cm_qmatrix_scale_count(x->wdtype, out, in);
  for (size_t i = 0; !st && x->wdtype == CLMOE_DTYPE_F8_E4M3 && i < n; ++i)
    if ((q->codes[i] & 0x7f) == 0x7f)
      st = cm_fail_at(CLMOE_ERROR_INVALID_ARGUMENT, FN,
                      "expert %d's %s code %zu is NaN (0x%02x)", e,
                      k_matrix[m], i, q->codes[i]);
  for (size_t i = 0; !st && i < ns; ++i)
    if (!isfinite(q->scales[i]))
      st = cm_fail_at(CLMOE_ERROR_INVALID_ARGUMENT, FN,
                      "expert %d's %s scale %zu is not finite", e,
                      k_matrix[m], i);
  return st;
}

/* One expert's panels of a matrix (lo: W1 or W2; hi: W3 when gated) into
 * codes (row_bytes per panel row) and scales ([panels][groups][2 * vw]). */
static void pack_expert(const clmoe_experts *x, const cm_qmatrix *lo,
                        const cm_qmatrix *hi, int group, uint8_t *codes,
                        float *scales) {
  int vw = x->vw, tn = 2 * vw, gated = hi != NULL, bits = cm_code_bits(x->wdtype);
  int cols = lo->out, K = lo->in, P = cm_panel_count(cols, vw, gated);
  int groups = (K + group - 1) / group;
  size_t row_bytes = (size_t)(bits == 4 ? vw : tn);
  for (int p = 0; p < P; ++p)
    for (int c = 0; c < tn; ++c) {
      int j = gated ? p * vw + c % vw : p * tn + c;
      const cm_qmatrix *src = gated && c >= vw ? hi : lo;
      int valid = j < cols;
      for (int k = 0; k < K; ++k) {
        uint8_t v = valid ? src->codes[(size_t)j * K + k] : 0;
        uint8_t *row = codes + ((size_t)p * K + k) * row_bytes;
        if (bits == 4)
          row[c % vw] |= (uint8_t)(c < vw ? v : v << 4);
        else
          row[c] = v;
      }
      for (int g = 0; g < groups; ++g)
        scales[((size_t)p * groups + g) * tn + c] =
            valid ? cm_qmatrix_scale_at(src, j, g * group) : 0.0f;
    }
}

/* All experts' panels of W1|W3 (up) or W2 (down), one expert at a time:
 * quantized (or read), packed and written at its offset, so the host never
 * holds more than one expert's matrices. */
static clmoe_status upload_matrix(clmoe_experts *x, cm_quant_source source,
                                  void *user, int up, cl_mem *codes_out,
                                  cl_mem *scales_out) {
  int gated = up && cm_is_gated(x->activation);
  int K = up ? x->d : x->f;
  int P = up ? x->panels_up : x->panels_down;
  int group = cm_quant_group(x->wdtype, K), groups = (K + group - 1) / group;
  size_t row_bytes = (size_t)(cm_code_bits(x->wdtype) == 4 ? x->vw : 2 * x->vw);
  size_t per_codes = (size_t)P * K * row_bytes,
         per_scales = (size_t)P * groups * 2 * x->vw * sizeof(float);
  uint8_t *codes = malloc(per_codes + 1);
  float *scales = malloc(per_scales + 1);
  clmoe_status st = CLMOE_SUCCESS;
  if (!codes || !scales)
    st = cm_fail_at(CLMOE_ERROR_OUT_OF_HOST_MEMORY, FN,
                    "out of host memory for the packed weights");
  if (!st)
    st = cm_buffer_create(x->ctx, (size_t)x->E * per_codes, CL_MEM_READ_ONLY,
                          codes_out);
  if (!st)
    st = cm_buffer_create(x->ctx, (size_t)x->E * per_scales, CL_MEM_READ_ONLY,
                          scales_out);
  for (int e = 0; !st && e < x->E; ++e) {
    cm_qmatrix lo = {0}, hi = {0};
    memset(codes, 0, per_codes);
    if (!(st = expert_matrix(x, source, user, up ? 0 : 2, e, &lo)) &&
        !(gated && (st = expert_matrix(x, source, user, 1, e, &hi)))) {
      pack_expert(x, &lo, gated ? &hi : NULL, group, codes, scales);
      cl_int err = clEnqueueWriteBuffer(x->ctx->queue, *codes_out, CL_TRUE,
                                        (size_t)e * per_codes, per_codes,
                                        codes, 0, NULL, NULL);
      if (err == CL_SUCCESS)
        err = clEnqueueWriteBuffer(x->ctx->queue, *scales_out, CL_TRUE,
                                   (size_t)e * per_scales, per_scales, scales,
                                   0, NULL, NULL);
      if (err != CL_SUCCESS)
        st = cm_cl_fail(err, "clmoe_experts_create: clEnqueueWriteBuffer");
    }
    cm_qmatrix_free(&lo);
    cm_qmatrix_free(&hi);
  }
  if (!st)
    x->weight_bytes += (int64_t)(x->E * (per_codes + per_scales));
  if (up)
    x->group_up = group;
  else
    x->group_down = group;
  free(codes);
  free(scales);
  return st;
}

clmoe_status cm_experts_upload_quantized_from(clmoe_experts *x,
                                              cm_quant_source source,
                                              void *user) {
  int gated = cm_is_gated(x->activation);
  x->panels_up = cm_panel_count(x->f, x->vw, gated);
  x->panels_down = cm_panel_count(x->d, x->vw, 0);
  x->weight_bytes = 0;
  clmoe_status st = upload_matrix(x, source, user, 1, &x->w13, &x->s13);
  return st ? st : upload_matrix(x, source, user, 0, &x->w2, &x->s2);
}

clmoe_status cm_experts_upload_quantized(clmoe_experts *x,
                                         const clmoe_experts_desc *desc,
                                         const float *w1, const float *w3,
                                         const float *w2, int lay) {
  desc_source ds = {desc, {w1, w3, w2}, lay};
  return cm_experts_upload_quantized_from(x, desc_matrix, &ds);
}

clmoe_status cm_experts_create_quantized(clmoe_context *ctx,
                                         const clmoe_experts_desc *desc,
                                         cm_quant_source source, void *user,
                                         clmoe_experts **out) {
  *out = NULL;
  clmoe_experts_path path;
  clmoe_dtype wdtype;
  clmoe_status st = cm_experts_resolve(ctx, desc, &path, &wdtype);
  if (st)
    return st;
  if (!cm_is_quant_dtype(wdtype))
    return cm_fail_at(CLMOE_ERROR_INVALID_ARGUMENT, FN,
                      "weight_dtype %d is not a quantized format",
                      (int)wdtype);
  clmoe_experts *x = NULL;
  if ((st = cm_experts_alloc(ctx, desc, path, wdtype, &x)))
    return st;
  if (!(st = cm_experts_upload_quantized_from(x, source, user)))
    st = cm_experts_upload_biases(x, desc->b1_host, desc->b3_host,
                                  desc->b2_host);
  if (st)
    clmoe_experts_destroy(x);
  else
    *out = x;
  return st;
}
