/* Threads: 4 threads, each with its own context (own queue) on one shared
 * cl_context, share one router and one experts object and run 200 forwards
 * each on different inputs; every output must be bitwise equal to the
 * single-threaded result. Also built with ThreadSanitizer in CI. */
#define CL_TARGET_OPENCL_VERSION 120
#include <CL/cl.h>
#include <pthread.h>

#include "harness.h"

enum { THREADS = 4, RUNS = 200, T = 16, D = 32, F = 24, E = 8 };

static cl_context g_cl;
static cl_device_id g_dev;
static clmoe_router *g_router;
static clmoe_experts *g_experts;
static float *g_ref; /* [THREADS * RUNS][T * D] */

static void input(int i, float *x) {
  test_rng r = {1000u + (uint64_t)i};
  for (int j = 0; j < T * D; ++j)
    x[j] = rng_normal(&r);
}

static clmoe_context *own_context(void) {
  clmoe_context_desc cd;
  clmoe_context_desc_init(&cd);
  cd.cl_context = g_cl; /* clmoe makes this context's own queue */
  cd.cl_device = g_dev;
  clmoe_context *ctx = NULL;
  REQUIRE_OK(clmoe_context_create(&cd, &ctx));
  return ctx;
}

typedef struct job {
  clmoe_context *ctx;
  int thread, mismatches, errors;
} job;

/* Runs forwards [first, first + count) on ctx; compares with g_ref, or
 * fills it when `fill`. */
static void run_forwards(job *jb, int first, int count, int fill) {
  clmoe_tensor *x = NULL, *y = NULL;
  clmoe_routing *rt = NULL;
  REQUIRE_OK(clmoe_tensor_create(jb->ctx, CLMOE_DTYPE_F32, 2,
                                 (int64_t[]){T, D}, NULL, &x));
  REQUIRE_OK(clmoe_tensor_create(jb->ctx, CLMOE_DTYPE_F32, 2,
                                 (int64_t[]){T, D}, NULL, &y));
  REQUIRE_OK(clmoe_routing_create(jb->ctx, &rt));
  float xh[T * D], yh[T * D];
  for (int i = first; i < first + count; ++i) {
    input(i, xh);
    if (clmoe_tensor_write(x, xh, sizeof xh) ||
        clmoe_forward(g_router, g_experts, x, NULL, y, rt, 0, 0, NULL,
                      NULL) ||
        clmoe_tensor_read(y, yh, sizeof yh)) {
      ++jb->errors;
      continue;
    }
    float *ref = g_ref + (size_t)i * T * D;
    if (fill)
      memcpy(ref, yh, sizeof yh);
    else if (memcmp(ref, yh, sizeof yh))
      ++jb->mismatches;
  }
  clmoe_routing_destroy(rt);
  clmoe_tensor_destroy(x);
  clmoe_tensor_destroy(y);
}

static void *thread_main(void *arg) {
  job *jb = arg;
  run_forwards(jb, jb->thread * RUNS, RUNS, 0);
  return NULL;
}

int main(void) {
  g_cl = test_cl_context(&g_dev);
  clmoe_context *main_ctx = own_context();
  float wr[D * E], w1[E * D * F], w3[E * D * F], w2[E * F * D];
  test_rng r = {7};
  for (int i = 0; i < D * E; ++i)
    wr[i] = rng_normal(&r) * 0.5f;
  for (int i = 0; i < E * D * F; ++i) {
    w1[i] = rng_normal(&r) * 0.2f;
    w3[i] = rng_normal(&r) * 0.2f;
    w2[i] = rng_normal(&r) * 0.2f;
  }
  clmoe_router_desc rd;
  clmoe_router_desc_init(&rd);
  rd.num_experts = E;
  rd.d_model = D;
  rd.weight_host = wr;
  rd.policy = CLMOE_POLICY_TOPP;
  rd.p = 0.6f;
  REQUIRE_OK(clmoe_router_create(main_ctx, &rd, &g_router));
  clmoe_experts_desc ed;
  clmoe_experts_desc_init(&ed);
  ed.num_experts = E;
  ed.d_model = D;
  ed.d_ff = F;
  ed.w1_host = w1;
  ed.w3_host = w3;
  ed.w2_host = w2;
  REQUIRE_OK(clmoe_experts_create(main_ctx, &ed, &g_experts));
  g_ref = malloc(sizeof *g_ref * THREADS * RUNS * T * D);

  job single = {main_ctx, 0, 0, 0};
  run_forwards(&single, 0, THREADS * RUNS, 1);
  CHECK(single.errors == 0);

  /* Contexts are created before the threads start: creation applies the
   * device's CLBlast parameters, process-wide state in CLBlast. */
  job jobs[THREADS];
  pthread_t tid[THREADS];
  for (int t = 0; t < THREADS; ++t)
    jobs[t] = (job){own_context(), t, 0, 0};
  for (int t = 0; t < THREADS; ++t)
    pthread_create(&tid[t], NULL, thread_main, &jobs[t]);
  int mismatches = 0, errors = 0;
  for (int t = 0; t < THREADS; ++t) {
    pthread_join(tid[t], NULL);
    mismatches += jobs[t].mismatches;
    errors += jobs[t].errors;
    clmoe_context_destroy(jobs[t].ctx);
  }
  printf("%d threads x %d forwards: %d errors, %d outputs differ from the "
         "single-threaded run\n",
         THREADS, RUNS, errors, mismatches);
  CHECK(errors == 0 && mismatches == 0);

  /* Objects of unrelated cl_contexts still refuse to mix. */
  clmoe_context *other = NULL;
  REQUIRE_OK(clmoe_context_create(NULL, &other));
  clmoe_routing *rt = NULL;
  REQUIRE_OK(clmoe_routing_create(other, &rt));
  clmoe_tensor *x = NULL, *y = NULL;
  REQUIRE_OK(clmoe_tensor_create(other, CLMOE_DTYPE_F32, 2, (int64_t[]){T, D},
                                 NULL, &x));
  REQUIRE_OK(clmoe_tensor_create(other, CLMOE_DTYPE_F32, 2, (int64_t[]){T, D},
                                 NULL, &y));
  CHECK_STATUS(clmoe_forward(g_router, g_experts, x, NULL, y, rt, 0, 0, NULL,
                             NULL),
               CLMOE_ERROR_CONTEXT_MISMATCH);
  clmoe_tensor_destroy(x);
  clmoe_tensor_destroy(y);
  clmoe_routing_destroy(rt);
  clmoe_context_destroy(other);

  clmoe_router_destroy(g_router);
  clmoe_experts_destroy(g_experts);
  clmoe_context_destroy(main_ctx);
  free(g_ref);
  clReleaseContext(g_cl);
  return test_finish("test_threads");
}
