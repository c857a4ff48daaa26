/* Element codes and clmoe's quantizers of the expert weight formats. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "quant/formats.h"

int cm_is_quant_dtype(clmoe_dtype dtype) {
  return dtype == CLMOE_DTYPE_F8_E4M3 || dtype == CLMOE_DTYPE_MXFP4 ||
         dtype == CLMOE_DTYPE_I8 || dtype == CLMOE_DTYPE_I4;
}

int cm_is_code_dtype(clmoe_dtype dtype) {
  return cm_is_quant_dtype(dtype) || dtype == CLMOE_DTYPE_F8_E5M2 ||
         dtype == CLMOE_DTYPE_U8 || dtype == CLMOE_DTYPE_E8M0;
}

int cm_code_bits(clmoe_dtype dtype) {
  return dtype == CLMOE_DTYPE_MXFP4 || dtype == CLMOE_DTYPE_I4 ? 4 : 8;
}

static float e4m3_value(uint8_t c) {
  int e = (c >> 3) & 15, m = c & 7;
  float v = (c & 0x7f) == 0x7f ? NAN
            : e == 0           ? ldexpf((float)m, -9)
                               : ldexpf(1.0f + (float)m / 8.0f, e - 7);
  return c & 0x80 ? -v : v;
}

static float e5m2_value(uint8_t c) {
  int e = (c >> 2) & 31, m = c & 3;
  float v = e == 31  ? (m ? NAN : INFINITY)
            : e == 0 ? ldexpf((float)m, -16)
                     : ldexpf(1.0f + (float)m / 4.0f, e - 15);
  return c & 0x80 ? -v : v;
}

static float e2m1_value(uint8_t n) {
  static const float mag[8] = {0.0f, 0.5f, 1.0f, 1.5f, 2.0f, 3.0f, 4.0f, 6.0f};
  return n & 8 ? -mag[n & 7] : mag[n & 7];
}

float cm_code_value(clmoe_dtype dtype, const void *codes, size_t i) {
  const uint8_t *b = codes;
  uint8_t c = cm_code_bits(dtype) == 4 ? (uint8_t)((b[i / 2] >> (4 * (i & 1))) & 15)
                                       : b[i];
  switch (dtype) {
  case CLMOE_DTYPE_F8_E4M3:
    return e4m3_value(c);
  case CLMOE_DTYPE_F8_E5M2:
    return e5m2_value(c);
  case CLMOE_DTYPE_MXFP4:
    return e2m1_value(c);
  case CLMOE_DTYPE_I8:
    return (float)(int8_t)c;
  case CLMOE_DTYPE_I4:
    return (float)(c & 8 ? (int)c - 16 : (int)c);
  case CLMOE_DTYPE_E8M0:
    return c == 255 ? NAN : ldexpf(1.0f, (int)c - 127);
  default: /* U8 */
    return (float)c;
  }
}

/* Round to nearest even of a >= 0 on a grid of `bits` mantissa bits with
 * exponents from emin (subnormals below): the code's magnitude bits
 * (exponent field << bits | mantissa), before saturation. */
static int minifloat_magnitude(float a, int bits, int bias) {
  int emin = 1 - bias; /* the smallest normal exponent */
  int e;
  frexpf(a, &e); /* a = f * 2^e, f in [0.5, 1) */
  e -= 1;        /* a = g * 2^e, g in [1, 2) */
  if (a == 0.0f || e < emin)
    e = emin; /* subnormal: the grid of the smallest exponent */
  /* a / 2^(e - bits) in [2^bits, 2^(bits + 1)) (or below, subnormal) */
  float t = rintf(ldexpf(a, bits - e));
  int field = e - emin + 1; /* exponent field of a normal value */
  if (t < ldexpf(1.0f, bits))
    return (int)t; /* subnormal (exponent field 0), or 0 */
  /* rounding may carry into the next exponent: t = 2^(bits + 1) */
  return (field << bits) + (int)t - (1 << bits);
}

uint8_t cm_e4m3_code(float v) {
  if (isnan(v))
    return 0x7f;
  uint8_t sign = signbit(v) ? 0x80 : 0;
  float a = fabsf(v);
  int mag = a >= 448.0f ? 0x7e : minifloat_magnitude(a, 3, 7);
  return (uint8_t)(sign | (mag > 0x7e ? 0x7e : mag));
}

uint8_t cm_e2m1_code(float v) {
  uint8_t sign = signbit(v) ? 8 : 0;
  float a = fabsf(v);
  int mag = a >= 6.0f || isnan(v) ? 7 : minifloat_magnitude(a, 1, 1);
  return (uint8_t)(sign | (mag > 7 ? 7 : mag));
}

int cm_quant_group(clmoe_dtype dtype, int in) {
  switch (dtype) {
  case CLMOE_DTYPE_F8_E4M3:
    return 128;
  case CLMOE_DTYPE_MXFP4:
  case CLMOE_DTYPE_I4:
    return 32;
  default:
    return in;
  }
}

size_t cm_qmatrix_scale_count(clmoe_dtype dtype, int out, int in) {
  switch (dtype) {
  case CLMOE_DTYPE_F8_E4M3:
    return (size_t)((out + 127) / 128) * (size_t)((in + 127) / 128);
  case CLMOE_DTYPE_I8:
    return (size_t)out;
  default:
    return (size_t)out * (size_t)((in + 31) / 32);
  }
}

float cm_qmatrix_scale_at(const cm_qmatrix *q, int j, int k) {
  switch (q->dtype) {
  case CLMOE_DTYPE_F8_E4M3:
    return q->scales[(size_t)(j / 128) * ((q->in + 127) / 128) + k / 128];
  case CLMOE_DTYPE_I8:
    return q->scales[j];
  default:
    return q->scales[(size_t)j * ((q->in + 31) / 32) + k / 32];
  }
}

int cm_qmatrix_alloc(cm_qmatrix *q, clmoe_dtype dtype, int out, int in) {
  q->dtype = dtype;
  q->out = out;
  q->in = in;
  size_t n = (size_t)out * in, ns = cm_qmatrix_scale_count(dtype, out, in);
  q->codes = calloc(n ? n : 1, 1);
  q->scales = calloc(ns ? ns : 1, sizeof *q->scales);
  if (q->codes && q->scales)
    return 0;
  cm_qmatrix_free(q);
  return -1;
}

void cm_qmatrix_free(cm_qmatrix *q) {
  free(q->codes);
  free(q->scales);
  q->codes = NULL;
  q->scales = NULL;
}

/* The scale of one block of weights (rows j0..j1, columns k0..k1). */
static float block_scale(clmoe_dtype dtype, const float *w, size_t ldj,
                         size_t ldk, int j0, int j1, int k0, int k1) {
  float amax = 0.0f;
  for (int j = j0; j < j1; ++j)
    for (int k = k0; k < k1; ++k)
      amax = fmaxf(amax, fabsf(w[(size_t)j * ldj + (size_t)k * ldk]));
  switch (dtype) {
  case CLMOE_DTYPE_F8_E4M3:
    return amax > 0.0f ? amax / 448.0f : 1.0f;
  case CLMOE_DTYPE_I8:
    return amax > 0.0f ? amax / 127.0f : 1.0f;
  case CLMOE_DTYPE_I4:
    return amax > 0.0f ? amax / 7.0f : 1.0f;
  default: { /* MXFP4: a power of two, the e8m0 scale */
    int e = -127;
    if (amax > 0.0f) {
      int x;
      frexpf(amax, &x); /* floor(log2(amax)) = x - 1 */
      e = x - 1 - 2;
      e = e < -127 ? -127 : e > 127 ? 127 : e;
    }
    return ldexpf(1.0f, e);
  }
  }
}

static uint8_t code_of(clmoe_dtype dtype, float v) {
  switch (dtype) {
  case CLMOE_DTYPE_F8_E4M3:
    return cm_e4m3_code(v);
  case CLMOE_DTYPE_MXFP4:
    return cm_e2m1_code(v);
  case CLMOE_DTYPE_I8: {
    float r = rintf(v);
    r = r > 127.0f ? 127.0f : r < -127.0f ? -127.0f : r;
    return (uint8_t)(int8_t)r;
  }
  default: { /* I4 */
    float r = rintf(v);
    r = r > 7.0f ? 7.0f : r < -7.0f ? -7.0f : r;
    return (uint8_t)((int)r & 15);
  }
  }
}

int64_t cm_quantize(cm_qmatrix *q, const float *w, size_t ldj, size_t ldk) {
  for (int j = 0; j < q->out; ++j)
    for (int k = 0; k < q->in; ++k)
      if (!isfinite(w[(size_t)j * ldj + (size_t)k * ldk]))
        return (int64_t)j * q->in + k;
  int rows = q->dtype == CLMOE_DTYPE_F8_E4M3 ? 128 : 1;
  int cols = cm_quant_group(q->dtype, q->in);
  if (cols < 1)
    cols = 1;
  for (int j0 = 0; j0 < q->out; j0 += rows)
    for (int k0 = 0; k0 < q->in; k0 += cols) {
      int j1 = j0 + rows < q->out ? j0 + rows : q->out;
      int k1 = k0 + cols < q->in ? k0 + cols : q->in;
      float s = block_scale(q->dtype, w, ldj, ldk, j0, j1, k0, k1);
      size_t at = q->dtype == CLMOE_DTYPE_F8_E4M3
                      ? (size_t)(j0 / 128) * ((q->in + 127) / 128) + k0 / 128
                  : q->dtype == CLMOE_DTYPE_I8
                      ? (size_t)j0
                      : (size_t)j0 * ((q->in + 31) / 32) + k0 / 32;
      q->scales[at] = s;
      for (int j = j0; j < j1; ++j)
        for (int k = k0; k < k1; ++k)
          q->codes[(size_t)j * q->in + k] =
              code_of(q->dtype, w[(size_t)j * ldj + (size_t)k * ldk] / s);
    }
  return -1;
}
