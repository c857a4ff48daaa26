/* Minimal test harness: CHECK macros, a per-process shared context (pocl
 * compiles every program once per context, so tests share one) and a seeded
 * random generator. */
#ifndef CLMOE_TEST_HARNESS_H
#define CLMOE_TEST_HARNESS_H

#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "clmoe/clmoe.h"

static int g_failures = 0;

#define CHECK(cond)                                                            \
  do {                                                                         \
    if (!(cond)) {                                                             \
      fprintf(stderr, "%s:%d: CHECK failed: %s\n", __FILE__, __LINE__, #cond); \
      ++g_failures;                                                            \
    }                                                                          \
  } while (0)

/* Expects a call to return `want` and, on error, a non-empty detail. */
#define CHECK_STATUS(call, want)                                               \
  do {                                                                         \
    clmoe_status got_ = (call);                                                \
    if (got_ != (want)) {                                                      \
      fprintf(stderr, "%s:%d: %s returned %s, expected %s (detail: %s)\n",     \
              __FILE__, __LINE__, #call, clmoe_status_string(got_),            \
              clmoe_status_string(want), clmoe_last_error_detail());           \
      ++g_failures;                                                            \
    } else if ((want) != CLMOE_SUCCESS && !*clmoe_last_error_detail()) {       \
      fprintf(stderr, "%s:%d: %s set no error detail\n", __FILE__, __LINE__,   \
              #call);                                                          \
      ++g_failures;                                                            \
    }                                                                          \
  } while (0)

#define CHECK_OK(call) CHECK_STATUS(call, CLMOE_SUCCESS)

/* Aborts the test program when a precondition for the rest fails. */
#define REQUIRE_OK(call)                                                       \
  do {                                                                         \
    clmoe_status got_ = (call);                                                \
    if (got_ != CLMOE_SUCCESS) {                                               \
      fprintf(stderr, "%s:%d: %s failed: %s: %s\n", __FILE__, __LINE__, #call, \
              clmoe_status_string(got_), clmoe_last_error_detail());           \
      exit(1);                                                                 \
    }                                                                          \
  } while (0)

static clmoe_context *g_ctx = NULL;

static inline clmoe_context *test_context(void) {
  if (!g_ctx)
    REQUIRE_OK(clmoe_context_create(NULL, &g_ctx));
  return g_ctx;
}

/* A context on the default device whose tuning table is the one `line`
 * (tab-separated, see tuning/devices.tsv), written to a temporary file. */
static inline clmoe_context *test_context_with_table(const char *line) {
  char path[] = "/tmp/clmoe-test-table-XXXXXX";
  int fd = mkstemp(path);
  FILE *f = fd >= 0 ? fdopen(fd, "w") : NULL;
  if (!f) {
    fprintf(stderr, "cannot write a tuning table in /tmp\n");
    exit(1);
  }
  fprintf(f, "%s\n", line);
  fclose(f);
  clmoe_context_desc d;
  clmoe_context_desc_init(&d);
  d.tuning_file = path;
  clmoe_context *ctx = NULL;
  clmoe_status st = clmoe_context_create(&d, &ctx);
  remove(path);
  REQUIRE_OK(st);
  return ctx;
}

static inline int test_finish(const char *name) {
  clmoe_context_destroy(g_ctx);
  g_ctx = NULL;
  if (g_failures)
    fprintf(stderr, "%s: %d check(s) failed\n", name, g_failures);
  else
    printf("%s: all checks passed\n", name);
  return g_failures ? 1 : 0;
}

/* A plain cl_context on the first device, for tests that hand clmoe the
 * caller's OpenCL objects (interop); exits when there is none. */
#ifdef CL_TARGET_OPENCL_VERSION
static inline cl_context test_cl_context(cl_device_id *device) {
  cl_platform_id plat;
  cl_context cl = NULL;
  cl_int err = clGetPlatformIDs(1, &plat, NULL);
  if (err == CL_SUCCESS)
    err = clGetDeviceIDs(plat, CL_DEVICE_TYPE_ALL, 1, device, NULL);
  if (err == CL_SUCCESS)
    cl = clCreateContext(NULL, 1, device, NULL, NULL, &err);
  if (err != CL_SUCCESS) {
    fprintf(stderr, "no OpenCL device (%d)\n", (int)err);
    exit(1);
  }
  return cl;
}
#endif

/* xorshift64*: deterministic across platforms. */
typedef struct test_rng {
  uint64_t s;
} test_rng;

static inline uint64_t rng_next(test_rng *r) {
  r->s ^= r->s >> 12;
  r->s ^= r->s << 25;
  r->s ^= r->s >> 27;
  return r->s * 2685821657736338717ull;
}

/* Uniform in [0, 1). */
static inline float rng_uniform(test_rng *r) {
  return (float)(rng_next(r) >> 40) / 16777216.0f;
}

/* Approximately standard normal (sum of uniforms). */
static inline float rng_normal(test_rng *r) {
  float s = 0;
  for (int i = 0; i < 4; ++i)
    s += rng_uniform(r);
  return (s - 2.0f) * 1.7320508f;
}

/* n values on a binary grid of `step`, normal with `scale` (malloc'd): the
 * layer tests keep x * W_r exact in float32 whatever the summation order,
 * so device and reference route identically. */
static inline float *rng_grid(test_rng *rng, size_t n, float scale,
                              float step) {
  float *v = malloc(sizeof *v * (n ? n : 1));
  for (size_t i = 0; i < n; ++i)
    v[i] = roundf(rng_normal(rng) * scale / step) * step;
  return v;
}

/* max |got - want| / max |want| (relative to the largest reference). */
static inline double max_rel(const float *got, const double *want, int n) {
  double e = 0, m = 1e-30;
  for (int i = 0; i < n; ++i) {
    e = fmax(e, fabs(got[i] - want[i]));
    m = fmax(m, fabs(want[i]));
  }
  return e / m;
}

#endif /* CLMOE_TEST_HARNESS_H */
