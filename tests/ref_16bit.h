/* The tests' own float16 / bfloat16 rounding (the compiler's _Float16
 * conversion and a frexp/rint bfloat16), independent of the library's, for
 * building 16-bit inputs and the references computed from them. */
#ifndef CLMOE_TEST_REF_16BIT_H
#define CLMOE_TEST_REF_16BIT_H

#include <math.h>
#include <stdint.h>
#include <string.h>

#include "clmoe/clmoe.h"

static inline float round_f16(float v) { return (float)(_Float16)v; }

/* bfloat16 keeps 8 significant bits of a normal float: round to nearest
 * even with rint (the default rounding mode). */
static inline float round_bf16(float v) {
  if (v == 0 || !isfinite(v))
    return v;
  int e;
  double m = frexp(v, &e);
  return (float)ldexp(rint(ldexp(m, 8)), e - 8);
}

static inline float round_to(clmoe_dtype dt, float v) {
  return dt == CLMOE_DTYPE_F16    ? round_f16(v)
         : dt == CLMOE_DTYPE_BF16 ? round_bf16(v)
                                  : v;
}

/* 16-bit bits of an already rounded value. */
static inline uint16_t bits16(clmoe_dtype dt, float v) {
  uint16_t h;
  if (dt == CLMOE_DTYPE_F16) {
    _Float16 x = (_Float16)v;
    memcpy(&h, &x, 2);
  } else {
    uint32_t u;
    memcpy(&u, &v, 4);
    h = (uint16_t)(u >> 16);
  }
  return h;
}

static inline float widen16(clmoe_dtype dt, uint16_t h) {
  if (dt == CLMOE_DTYPE_F16) {
    _Float16 x;
    memcpy(&x, &h, 2);
    return (float)x;
  }
  uint32_t u = (uint32_t)h << 16;
  float f;
  memcpy(&f, &u, 4);
  return f;
}

#endif /* CLMOE_TEST_REF_16BIT_H */
