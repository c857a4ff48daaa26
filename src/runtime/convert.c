/* Element conversions between float32 and the 16-bit storage types (IEEE
 * binary16 and bfloat16), on the host: round to nearest even, NaN stays NaN
 * (sign and leading payload bits kept, quiet bit set where the payload would
 * vanish), Inf stays Inf; a finite value that would round to Inf becomes
 * Inf in clmoe_convert (as IEEE rounds it) and is an error where a weight
 * is stored (cm_encode, cm_round_to_dtype) or CLMOE_CONVERT_STRICT asks.
 * Quantized element codes are decoded by quant/formats.c. */
#include <string.h>

#include "quant/formats.h"
#include "runtime/runtime.h"

static uint32_t f32_bits(float f) {
  uint32_t u;
  memcpy(&u, &f, sizeof u);
  return u;
}

static float bits_f32(uint32_t u) {
  float f;
  memcpy(&f, &u, sizeof f);
  return f;
}

/* Returns 0, or 1 when the finite input overflows to Inf. */
static int f32_to_bf16(float f, uint16_t *out) {
  uint32_t x = f32_bits(f);
  if ((x & 0x7fffffffu) > 0x7f800000u) { /* NaN */
    *out = (uint16_t)((x >> 16) | 0x0040u);
    return 0;
  }
  uint32_t r = x + 0x7fffu + ((x >> 16) & 1u);
  *out = (uint16_t)(r >> 16);
  return (x & 0x7fffffffu) < 0x7f800000u && (*out & 0x7fffu) == 0x7f80u;
}

static int f32_to_f16(float f, uint16_t *out) {
  uint32_t x = f32_bits(f), ax = x & 0x7fffffffu;
  uint16_t sign = (uint16_t)((x >> 16) & 0x8000u);
  if (ax >= 0x7f800000u) { /* Inf, or NaN with its leading payload bits */
    uint16_t payload = (uint16_t)((ax & 0x007fffffu) >> 13);
    if (ax > 0x7f800000u && !payload)
      payload = 0x0200u;
    *out = (uint16_t)(sign | 0x7c00u | payload);
    return 0;
  }
  if (ax >= 0x477ff000u) { /* >= 65520 rounds to Inf */
    *out = (uint16_t)(sign | 0x7c00u);
    return 1;
  }
  if (ax < 0x38800000u) {    /* below 2^-14: a subnormal half, or zero */
    if (ax <= 0x33000000u) { /* <= 2^-25 rounds to (even) zero */
      *out = sign;
      return 0;
    }
    uint32_t mant = (ax & 0x007fffffu) | 0x00800000u;
    int shift = 126 - (int)(ax >> 23); /* in units of 2^-24 */
    uint32_t q = mant >> shift, rem = mant & ((1u << shift) - 1);
    uint32_t half = 1u << (shift - 1);
    q += rem > half || (rem == half && (q & 1u));
    *out = (uint16_t)(sign | q);
    return 0;
  }
  uint32_t r = ax - 0x38000000u; /* rebias the exponent from 127 to 15 */
  uint32_t q = r >> 13, rem = r & 0x1fffu;
  q += rem > 0x1000u || (rem == 0x1000u && (q & 1u));
  *out = (uint16_t)(sign | q);
  return 0;
}

static float f16_to_f32(uint16_t h) {
  uint32_t sign = (uint32_t)(h & 0x8000u) << 16;
  uint32_t e = (h >> 10) & 0x1fu, m = h & 0x3ffu;
  if (e == 0x1f)
    return bits_f32(sign | 0x7f800000u | (m << 13));
  if (e)
    return bits_f32(sign | ((e + 112u) << 23) | (m << 13));
  if (!m)
    return bits_f32(sign);
  /* subnormal: m * 2^-24, exact in float */
  float v = (float)m * 5.9604644775390625e-8f;
  return sign ? -v : v;
}

static float bf16_to_f32(uint16_t b) { return bits_f32((uint32_t)b << 16); }

float cm_to_f32(clmoe_dtype dtype, const void *src, size_t i) {
  switch (dtype) {
  case CLMOE_DTYPE_F16:
    return f16_to_f32(((const uint16_t *)src)[i]);
  case CLMOE_DTYPE_BF16:
    return bf16_to_f32(((const uint16_t *)src)[i]);
  default:
    return ((const float *)src)[i];
  }
}

int cm_from_f32(clmoe_dtype dtype, float v, void *dst, size_t i) {
  switch (dtype) {
  case CLMOE_DTYPE_F16:
    return f32_to_f16(v, &((uint16_t *)dst)[i]);
  case CLMOE_DTYPE_BF16:
    return f32_to_bf16(v, &((uint16_t *)dst)[i]);
  default:
    ((float *)dst)[i] = v;
    return 0;
  }
}

size_t cm_encode(clmoe_dtype dtype, const float *src, void *dst, size_t n) {
  uint16_t *h = dst;
  if (dtype == CLMOE_DTYPE_F16) {
    for (size_t i = 0; i < n; ++i)
      if (f32_to_f16(src[i], &h[i]))
        return i;
  } else if (dtype == CLMOE_DTYPE_BF16) {
    for (size_t i = 0; i < n; ++i)
      if (f32_to_bf16(src[i], &h[i]))
        return i;
  } else {
    memcpy(dst, src, n * sizeof *src);
  }
  return n;
}

int cm_is_float_dtype(clmoe_dtype dtype) {
  return dtype == CLMOE_DTYPE_F32 || dtype == CLMOE_DTYPE_F16 ||
         dtype == CLMOE_DTYPE_BF16;
}

clmoe_status cm_round_to_dtype(float *v, size_t n, clmoe_dtype dtype,
                               const char *what) {
  if (dtype == CLMOE_DTYPE_F32)
    return CLMOE_SUCCESS;
  int f16 = dtype == CLMOE_DTYPE_F16;
  for (size_t i = 0; i < n; ++i) {
    uint16_t h;
    if (f16 ? f32_to_f16(v[i], &h) : f32_to_bf16(v[i], &h))
      return cm_fail(CLMOE_ERROR_INVALID_ARGUMENT,
                     "%s[%zu] = %g overflows %s (it would round to Inf)", what,
                     i, (double)v[i], cm_dtype_name(dtype));
    v[i] = f16 ? f16_to_f32(h) : bf16_to_f32(h);
  }
  return CLMOE_SUCCESS;
}

clmoe_status clmoe_convert_ex(clmoe_dtype src_dtype, const void *src,
                              clmoe_dtype dst_dtype, void *dst, int64_t count,
                              uint32_t flags) {
  static const char *const fn = "clmoe_convert";
  int codes = cm_is_code_dtype(src_dtype);
  if (!(codes && dst_dtype == CLMOE_DTYPE_F32) &&
      (!cm_is_float_dtype(src_dtype) || !cm_is_float_dtype(dst_dtype)))
    return cm_fail_at(CLMOE_ERROR_INVALID_ARGUMENT, fn,
                      "dtypes %d and %d: both must be F32, F16 or BF16, or "
                      "a code dtype decoded to F32",
                      (int)src_dtype, (int)dst_dtype);
  if (count < 0)
    return cm_fail_at(CLMOE_ERROR_INVALID_ARGUMENT, fn, "count = %lld < 0",
                      (long long)count);
  if (count > 0 && (!src || !dst))
    return cm_fail_at(CLMOE_ERROR_NULL_POINTER, fn, "src or dst is NULL");
  if (flags & ~(uint32_t)CLMOE_CONVERT_STRICT)
    return cm_fail_at(CLMOE_ERROR_INVALID_ARGUMENT, fn, "unknown flags 0x%x",
                      (unsigned)flags);
  for (int64_t i = 0; codes && i < count; ++i)
    ((float *)dst)[i] = cm_code_value(src_dtype, src, (size_t)i);
  for (int64_t i = 0; !codes && i < count; ++i) {
    float v = cm_to_f32(src_dtype, src, (size_t)i);
    /* The narrowing functions store +-Inf on overflow and say so. */
    if (cm_from_f32(dst_dtype, v, dst, (size_t)i) &&
        (flags & CLMOE_CONVERT_STRICT))
      return cm_fail_at(CLMOE_ERROR_INVALID_ARGUMENT, fn,
                        "element %lld = %g overflows %s (it would round to "
                        "Inf)",
                        (long long)i, (double)v, cm_dtype_name(dst_dtype));
  }
  return CLMOE_SUCCESS;
}

clmoe_status clmoe_convert(clmoe_dtype src_dtype, const void *src,
                           clmoe_dtype dst_dtype, void *dst, int64_t count) {
  return clmoe_convert_ex(src_dtype, src, dst_dtype, dst, count, 0);
}
