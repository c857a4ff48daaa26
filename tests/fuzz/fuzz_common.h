/* Shared by the libFuzzer harnesses: one context per process (pocl compiles
 * each program once) and a reader that turns fuzz bytes into values. Every
 * harness only asks that calls return a status: no crash, leak, hang or
 * sanitizer report. */
#ifndef CLMOE_FUZZ_COMMON_H
#define CLMOE_FUZZ_COMMON_H

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "clmoe/clmoe.h"

static inline clmoe_context *fuzz_context(void) {
  static clmoe_context *ctx;
  if (!ctx && clmoe_context_create(NULL, &ctx) != CLMOE_SUCCESS)
    abort();
  return ctx;
}

typedef struct fuzz_bytes {
  const uint8_t *p;
  size_t n;
} fuzz_bytes;

/* Next `size` bytes (zeros once the input is used up). */
static inline void fuzz_take(fuzz_bytes *b, void *out, size_t size) {
  size_t k = size < b->n ? size : b->n;
  memcpy(out, b->p, k);
  memset((uint8_t *)out + k, 0, size - k);
  b->p += k;
  b->n -= k;
}

static inline int32_t fuzz_i32(fuzz_bytes *b) {
  int32_t v;
  fuzz_take(b, &v, sizeof v);
  return v;
}

/* An int in [lo, hi]. */
static inline int32_t fuzz_range(fuzz_bytes *b, int32_t lo, int32_t hi) {
  uint32_t v = (uint32_t)fuzz_i32(b);
  return lo + (int32_t)(v % (uint32_t)(hi - lo + 1));
}

static inline float fuzz_f32(fuzz_bytes *b) {
  float v;
  fuzz_take(b, &v, sizeof v);
  return v;
}

/* n floats from the input (raw bits: NaN, Inf, denormals, huge values). */
static inline float *fuzz_floats(fuzz_bytes *b, size_t n) {
  float *v = malloc(sizeof *v * (n ? n : 1));
  if (!v)
    abort();
  for (size_t i = 0; i < n; ++i)
    v[i] = fuzz_f32(b);
  return v;
}

#endif /* CLMOE_FUZZ_COMMON_H */
