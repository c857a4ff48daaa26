/* clmoe_forward_shared: the routed layer plus shared experts applied to every
 * token, weighted by sigmoid(x . w_gate) or 1, against the host reference
 * (reference routing and expert FFNs in double precision), for both expert
 * paths of the shared expert, float32 and bfloat16 tokens, accumulate, T = 0,
 * 1 and 37; bitwise determinism; and the shape and argument errors. */
#define CL_TARGET_OPENCL_VERSION 120
#include <CL/cl.h>

#include "harness.h"
#include "ref_16bit.h"
#include "ref_ffn.h"

enum { E = 8, D = 40, F = 52, FS = 36 };

typedef struct fixture {
  float *wr, *w1, *w3, *w2, *s1, *s3, *s2, *gate;
  clmoe_router *router;
  clmoe_experts *experts;
  ref_params rp;
} fixture;

static clmoe_experts *swiglu(int n, int f, const float *w1, const float *w3,
                             const float *w2, clmoe_experts_path path) {
  clmoe_experts_desc ed;
  clmoe_experts_desc_init(&ed);
  ed.num_experts = n;
  ed.d_model = D;
  ed.d_ff = f;
  ed.activation = CLMOE_ACTIVATION_SWIGLU;
  ed.w1_host = w1;
  ed.w3_host = w3;
  ed.w2_host = w2;
  ed.path = path;
  clmoe_experts *x = NULL;
  REQUIRE_OK(clmoe_experts_create(test_context(), &ed, &x));
  return x;
}

static void make_fixture(fixture *fx, test_rng *rng) {
  fx->wr = rng_grid(rng, (size_t)D * E, 0.25f, 0.125f);
  fx->w1 = rng_grid(rng, (size_t)E * D * F, 0.2f, 1.0f / 1024);
  fx->w3 = rng_grid(rng, (size_t)E * D * F, 0.2f, 1.0f / 1024);
  fx->w2 = rng_grid(rng, (size_t)E * F * D, 0.2f, 1.0f / 1024);
  fx->s1 = rng_grid(rng, (size_t)D * FS, 0.2f, 1.0f / 1024);
  fx->s3 = rng_grid(rng, (size_t)D * FS, 0.2f, 1.0f / 1024);
  fx->s2 = rng_grid(rng, (size_t)FS * D, 0.2f, 1.0f / 1024);
  fx->gate = rng_grid(rng, D, 0.1f, 1.0f / 256);
  clmoe_router_desc rd;
  clmoe_router_desc_init(&rd);
  rd.num_experts = E;
  rd.d_model = D;
  rd.policy = CLMOE_POLICY_TOPK;
  rd.k = 2;
  rd.weight_host = fx->wr;
  REQUIRE_OK(clmoe_router_create(test_context(), &rd, &fx->router));
  fx->experts = swiglu(E, F, fx->w1, fx->w3, fx->w2, CLMOE_EXPERTS_PATH_AUTO);
  fx->rp = ref_params_from_desc(&rd);
}

/* Reference y[T, D] (double): the routed sum in slot order, plus
 * g_t * shared(x_t). */
static void reference(const fixture *fx, const float *x, int T, int use_gate,
                      const float *y0, double *y) {
  float *z = malloc(sizeof *z * ((size_t)T * E + 1));
  for (int t = 0; t < T; ++t)
    for (int e = 0; e < E; ++e) {
      double s = 0;
      for (int i = 0; i < D; ++i)
        s += (double)x[(size_t)t * D + i] * fx->wr[(size_t)i * E + e];
      z[(size_t)t * E + e] = (float)s;
    }
  ref_result routed;
  ref_route(&fx->rp, T, E, z, NULL, NULL, &routed);
  for (size_t i = 0; i < (size_t)T * D; ++i)
    y[i] = y0 ? y0[i] : 0;
  ref_experts rx = {E,      D,      F,      CLMOE_ACTIVATION_SWIGLU,
                    fx->w1, fx->w3, fx->w2, NULL,
                    NULL,   NULL};
  ref_moe(&rx, &routed, x, 1, y);
  ref_free(&routed);
  /* The shared expert: one expert, every token, weight g_t. */
  for (int t = 0; t < T; ++t) {
    double g = 1, h[FS];
    if (use_gate) {
      double s = 0;
      for (int i = 0; i < D; ++i)
        s += (double)x[(size_t)t * D + i] * fx->gate[i];
      g = 1 / (1 + exp(-s));
    }
    for (int j = 0; j < FS; ++j) {
      double a = 0, b = 0;
      for (int i = 0; i < D; ++i) {
        a += (double)x[(size_t)t * D + i] * fx->s1[(size_t)i * FS + j];
        b += (double)x[(size_t)t * D + i] * fx->s3[(size_t)i * FS + j];
      }
      h[j] = a / (1 + exp(-a)) * b;
    }
    for (int c = 0; c < D; ++c) {
      double s = 0;
      for (int j = 0; j < FS; ++j)
        s += h[j] * fx->s2[(size_t)j * D + c];
      y[(size_t)t * D + c] += g * s;
    }
  }
  free(z);
}

static clmoe_tensor *rows(clmoe_dtype dt, int T, const float *v) {
  size_t n = (size_t)T * D;
  uint16_t *h = malloc(sizeof *h * (n ? n : 1));
  for (size_t i = 0; i < n; ++i)
    h[i] = bits16(dt, v[i]);
  clmoe_tensor *t = NULL;
  REQUIRE_OK(clmoe_tensor_create(
      test_context(), dt, 2, (int64_t[]){T, D},
      dt == CLMOE_DTYPE_F32 ? (const void *)v : (const void *)h, &t));
  free(h);
  return t;
}

static void check_case(const fixture *fx, clmoe_experts *shared,
                       const clmoe_tensor *gate, test_rng *rng, int T,
                       clmoe_dtype dt, int accumulate) {
  float *x = rng_grid(rng, (size_t)T * D, 1.0f, 0.125f);
  float *y0 = rng_grid(rng, (size_t)T * D, 1.0f, 0.125f);
  for (size_t i = 0; dt != CLMOE_DTYPE_F32 && i < (size_t)T * D; ++i)
    y0[i] = round_to(dt, y0[i]); /* x's values are already bf16 */
  clmoe_tensor *xt = rows(dt, T, x), *yt = rows(dt, T, y0);
  clmoe_routing *rt = NULL;
  REQUIRE_OK(clmoe_routing_create(test_context(), &rt));
  uint32_t flags = accumulate ? CLMOE_COMBINE_ACCUMULATE : 0;
  CHECK_OK(clmoe_forward_shared(fx->router, fx->experts, shared, gate, xt, NULL,
                                yt, rt, flags, 0, NULL, NULL));
  size_t n = (size_t)T * D, es = dt == CLMOE_DTYPE_F32 ? 4 : 2;
  unsigned char *got = malloc(n * es + 1), *again = malloc(n * es + 1);
  CHECK_OK(clmoe_tensor_read(yt, got, n * es));
  double *ref = malloc(sizeof *ref * (n + 1));
  reference(fx, x, T, gate != NULL, accumulate ? y0 : NULL, ref);
  double err = 0, mx = 1e-30;
  for (size_t i = 0; i < n; ++i) {
    float v = dt == CLMOE_DTYPE_F32 ? ((float *)got)[i]
                                    : widen16(dt, ((uint16_t *)got)[i]);
    /* A 16-bit output is one rounding of the float32 result. */
    double tol = dt == CLMOE_DTYPE_F32 ? 0 : fabs(ref[i]) * 0x1p-8;
    err = fmax(err, fmax(fabs(v - ref[i]) - tol, 0));
    mx = fmax(mx, fabs(ref[i]));
  }
  if (err / mx > 1e-5)
    fprintf(stderr, "shared T=%d dtype=%d gate=%d acc=%d: rel err %g\n", T,
            (int)dt, gate != NULL, accumulate, err / mx);
  CHECK(err / mx <= 1e-5);
  /* Bitwise the same on a second run (from the same y0). */
  clmoe_tensor_destroy(yt);
  yt = rows(dt, T, y0);
  CHECK_OK(clmoe_forward_shared(fx->router, fx->experts, shared, gate, xt, NULL,
                                yt, rt, flags, 0, NULL, NULL));
  CHECK_OK(clmoe_tensor_read(yt, again, n * es));
  CHECK(!memcmp(got, again, n * es));
  free(x);
  free(y0);
  free(got);
  free(again);
  free(ref);
  clmoe_tensor_destroy(xt);
  clmoe_tensor_destroy(yt);
  clmoe_routing_destroy(rt);
}

static void test_against_reference(const fixture *fx) {
  test_rng rng = {19};
  clmoe_tensor *gate = NULL;
  REQUIRE_OK(clmoe_tensor_create(test_context(), CLMOE_DTYPE_F32, 1,
                                 (int64_t[]){D}, fx->gate, &gate));
  static const clmoe_experts_path paths[2] = {CLMOE_EXPERTS_PATH_GROUPED,
                                              CLMOE_EXPERTS_PATH_CLBLAST};
  static const int Ts[3] = {0, 1, 37};
  for (int p = 0; p < 2; ++p) {
    clmoe_experts *shared = swiglu(1, FS, fx->s1, fx->s3, fx->s2, paths[p]);
    for (int ti = 0; ti < 3; ++ti)
      for (int g = 0; g < 2; ++g)
        for (int b = 0; b < 2; ++b)
          check_case(fx, shared, g ? gate : NULL, &rng, Ts[ti],
                     b ? CLMOE_DTYPE_BF16 : CLMOE_DTYPE_F32, (ti + g + b) % 2);
    clmoe_experts_destroy(shared);
  }
  clmoe_tensor_destroy(gate);
}

static void test_errors(const fixture *fx) {
  clmoe_context *ctx = test_context();
  float x[2 * D] = {0};
  clmoe_tensor *xt = NULL, *yt = NULL, *g3 = NULL, *gi = NULL;
  REQUIRE_OK(
      clmoe_tensor_create(ctx, CLMOE_DTYPE_F32, 2, (int64_t[]){2, D}, x, &xt));
  REQUIRE_OK(clmoe_tensor_create(ctx, CLMOE_DTYPE_F32, 2, (int64_t[]){2, D},
                                 NULL, &yt));
  REQUIRE_OK(clmoe_tensor_create(ctx, CLMOE_DTYPE_F32, 1, (int64_t[]){D + 1},
                                 NULL, &g3));
  REQUIRE_OK(
      clmoe_tensor_create(ctx, CLMOE_DTYPE_I32, 1, (int64_t[]){D}, NULL, &gi));
  clmoe_routing *rt = NULL;
  REQUIRE_OK(clmoe_routing_create(ctx, &rt));
  clmoe_experts *shared =
      swiglu(1, FS, fx->s1, fx->s3, fx->s2, CLMOE_EXPERTS_PATH_AUTO);
  /* Shared experts of two experts, a gate of the wrong size or dtype, a gate
   * without shared experts. */
  CHECK_STATUS(clmoe_forward_shared(fx->router, fx->experts, fx->experts, NULL,
                                    xt, NULL, yt, rt, 0, 0, NULL, NULL),
               CLMOE_ERROR_SHAPE_MISMATCH);
  CHECK(strstr(clmoe_last_error_detail(), "clmoe_forward_shared") != NULL);
  CHECK_STATUS(clmoe_forward_shared(fx->router, fx->experts, shared, g3, xt,
                                    NULL, yt, rt, 0, 0, NULL, NULL),
               CLMOE_ERROR_SHAPE_MISMATCH);
  CHECK_STATUS(clmoe_forward_shared(fx->router, fx->experts, shared, gi, xt,
                                    NULL, yt, rt, 0, 0, NULL, NULL),
               CLMOE_ERROR_DTYPE_MISMATCH);
  CHECK_STATUS(clmoe_forward_shared(fx->router, fx->experts, NULL, g3, xt, NULL,
                                    yt, rt, 0, 0, NULL, NULL),
               CLMOE_ERROR_INVALID_ARGUMENT);
  /* NULL shared experts: exactly clmoe_forward. */
  float a[2 * D], b[2 * D];
  CHECK_OK(clmoe_forward_shared(fx->router, fx->experts, NULL, NULL, xt, NULL,
                                yt, rt, 0, 0, NULL, NULL));
  CHECK_OK(clmoe_tensor_read(yt, a, sizeof a));
  CHECK_OK(clmoe_forward(fx->router, fx->experts, xt, NULL, yt, rt, 0, 0, NULL,
                         NULL));
  CHECK_OK(clmoe_tensor_read(yt, b, sizeof b));
  CHECK(!memcmp(a, b, sizeof a));
  clmoe_experts_destroy(shared);
  clmoe_routing_destroy(rt);
  clmoe_tensor_destroy(xt);
  clmoe_tensor_destroy(yt);
  clmoe_tensor_destroy(g3);
  clmoe_tensor_destroy(gi);
}

int main(void) {
  test_rng rng = {7};
  fixture fx;
  make_fixture(&fx, &rng);
  test_against_reference(&fx);
  test_errors(&fx);
  clmoe_router_destroy(fx.router);
  clmoe_experts_destroy(fx.experts);
  free(fx.wr);
  free(fx.w1);
  free(fx.w3);
  free(fx.w2);
  free(fx.s1);
  free(fx.s3);
  free(fx.s2);
  free(fx.gate);
  return test_finish("test_shared");
}
