/* 16-bit weights and activations (float16, bfloat16): the forward equals a
 * double-precision reference computed from the same rounded weights, for
 * every policy and activation, weights given as float32 host arrays, 16-bit
 * host arrays or 16-bit tensors, tokens and outputs in float32, float16 or
 * bfloat16 (a 16-bit output must be the correctly rounded value of one
 * within 1e-5 of the reference); the stage calls with mixed row dtypes;
 * memory, path and error rules. The rounding here is the test's own (the
 * compiler's _Float16 conversion and a frexp/rint bfloat16), independent of
 * the library's. */
#define CL_TARGET_OPENCL_VERSION 120
#include <CL/cl.h>

#include "harness.h"
#include "ref_16bit.h"
#include "ref_ffn.h"

/* A device tensor [rows, cols] of `dt` holding v (already representable). */
static clmoe_tensor *rows_tensor(clmoe_dtype dt, const float *v, int64_t rows,
                                 int64_t cols) {
  size_t n = (size_t)(rows * cols);
  uint16_t *bits = malloc(2 * (n ? n : 1));
  for (size_t i = 0; i < n; ++i)
    bits[i] = dt == CLMOE_DTYPE_F32 ? 0 : bits16(dt, v[i]);
  clmoe_tensor *t = NULL;
  REQUIRE_OK(clmoe_tensor_create(test_context(), dt, 2, (int64_t[]){rows, cols},
                                 dt == CLMOE_DTYPE_F32 ? (const void *)v : bits,
                                 &t));
  free(bits);
  return t;
}

/* A tensor's values widened to float. */
static void read_rows(const clmoe_tensor *t, clmoe_dtype dt, float *out,
                      size_t n) {
  if (dt == CLMOE_DTYPE_F32) {
    CHECK_OK(clmoe_tensor_read(t, out, n * sizeof *out));
    return;
  }
  uint16_t *bits = malloc(2 * (n ? n : 1));
  CHECK_OK(clmoe_tensor_read(t, bits, 2 * n));
  for (size_t i = 0; i < n; ++i)
    out[i] = widen16(dt, bits[i]);
  free(bits);
}

/* The error of y against the reference yr: relative for float32; for a
 * 16-bit y, 0 when every element lies between the roundings of
 * yr -+ 1e-5 * max|yr| (the correctly rounded value of something that
 * close), else 1. */
static double output_error(clmoe_dtype dt, const float *y, const double *yr,
                           size_t n) {
  double maxref = 1e-30, maxerr = 0;
  for (size_t i = 0; i < n; ++i)
    maxref = fmax(maxref, fabs(yr[i]));
  if (dt == CLMOE_DTYPE_F32) {
    for (size_t i = 0; i < n; ++i)
      maxerr = fmax(maxerr, fabs(y[i] - yr[i]));
    return maxerr / maxref;
  }
  double tol = 1e-5 * maxref;
  for (size_t i = 0; i < n; ++i) {
    float lo = round_to(dt, (float)(yr[i] - tol));
    float hi = round_to(dt, (float)(yr[i] + tol));
    if (!(y[i] >= lo && y[i] <= hi))
      return 1.0;
  }
  return 0.0;
}

static float *randoms(test_rng *rng, size_t n, float scale) {
  float *v = malloc(sizeof *v * (n ? n : 1));
  for (size_t i = 0; i < n; ++i)
    v[i] = rng_normal(rng) * scale;
  return v;
}

static float *rounded(clmoe_dtype dt, const float *v, size_t n) {
  float *r = malloc(sizeof *r * (n ? n : 1));
  for (size_t i = 0; i < n; ++i)
    r[i] = round_to(dt, v[i]);
  return r;
}

/* The weights handed to the library in one of three forms. */
enum { FROM_F32_HOST, FROM_16_HOST, FROM_16_TENSOR };

typedef struct given {
  uint16_t *bits;
  clmoe_tensor *tensor;
} given;

static void give(clmoe_dtype dt, int form, const float *w, const float *wr,
                 size_t n, const int64_t *dims, const float **host,
                 const clmoe_tensor **tensor, given *g) {
  memset(g, 0, sizeof *g);
  *host = NULL;
  *tensor = NULL;
  if (!w)
    return;
  if (form == FROM_F32_HOST || dt == CLMOE_DTYPE_F32) {
    *host = w;
    return;
  }
  g->bits = malloc(2 * n);
  for (size_t i = 0; i < n; ++i)
    g->bits[i] = bits16(dt, wr[i]);
  if (form == FROM_16_HOST) {
    *host = (const float *)g->bits;
    return;
  }
  REQUIRE_OK(
      clmoe_tensor_create(test_context(), dt, 3, dims, g->bits, &g->tensor));
  *tensor = g->tensor;
}

static void release(given *g) {
  free(g->bits);
  clmoe_tensor_destroy(g->tensor);
}

/* A router over weight wr [d, E] with a policy's test parameters. */
static clmoe_router_desc router_desc(clmoe_policy p, int E, int d,
                                     const float *wr) {
  clmoe_router_desc rd;
  clmoe_router_desc_init(&rd);
  rd.policy = p;
  rd.num_experts = E;
  rd.d_model = d;
  rd.weight_host = wr;
  rd.k = E > 1 ? 2 : 1;
  rd.p = 0.5f;
  rd.k_max = p == CLMOE_POLICY_IMPORTANCE && E > 1 ? 3 : 0;
  rd.capacity_factor = p == CLMOE_POLICY_RESONANCE ? 0.75f : 0.0f;
  return rd;
}

/* Experts [E, d, f] with `act`, weights stored as `wdtype`; the caller sets
 * the weights. */
static clmoe_experts_desc
experts_desc(int E, int d, int f, clmoe_activation act, clmoe_dtype wdtype) {
  clmoe_experts_desc ed;
  clmoe_experts_desc_init(&ed);
  ed.num_experts = E;
  ed.d_model = d;
  ed.d_ff = f;
  ed.activation = act;
  ed.weight_dtype = wdtype;
  return ed;
}

/* One forward with `dt` weights and `io` tokens/outputs against the
 * reference; returns output_error. */
static double forward_case(test_rng *rng, clmoe_dtype dt, clmoe_dtype io,
                           int form, int E, int T, clmoe_policy pol,
                           clmoe_activation act, int biases) {
  const int d = 40, f = 52;
  clmoe_context *ctx = test_context();
  int gated = act == CLMOE_ACTIVATION_SWIGLU || act == CLMOE_ACTIVATION_GEGLU;
  size_t n = (size_t)E * d * f;
  /* Router weight and x on a coarse grid: exact logits in any order. */
  float *wr = randoms(rng, (size_t)d * E, 0.25f);
  for (int i = 0; i < d * E; ++i)
    wr[i] = roundf(wr[i] * 8) / 8;
  float *w1 = randoms(rng, n, 0.2f), *w2 = randoms(rng, n, 0.2f);
  float *w3 = gated ? randoms(rng, n, 0.2f) : NULL;
  float *b1 = biases ? randoms(rng, (size_t)E * f, 0.1f) : NULL;
  float *b2 = biases ? randoms(rng, (size_t)E * d, 0.1f) : NULL;
  float *r1 = rounded(dt, w1, n), *r2 = rounded(dt, w2, n);
  float *r3 = gated ? rounded(dt, w3, n) : NULL;
  clmoe_router_desc rd = router_desc(pol, E, d, wr);
  clmoe_router *router = NULL;
  REQUIRE_OK(clmoe_router_create(ctx, &rd, &router));
  clmoe_experts_desc ed = experts_desc(E, d, f, act, dt);
  ed.host_dtype = form == FROM_16_HOST ? dt : CLMOE_DTYPE_F32;
  int64_t up[3] = {E, d, f}, down[3] = {E, f, d};
  given g1, g3, g2;
  give(dt, form, w1, r1, n, up, &ed.w1_host, &ed.w1, &g1);
  give(dt, form, w3, r3, n, up, &ed.w3_host, &ed.w3, &g3);
  give(dt, form, w2, r2, n, down, &ed.w2_host, &ed.w2, &g2);
  ed.b1_host = b1;
  ed.b2_host = b2;
  clmoe_experts *experts = NULL;
  REQUIRE_OK(clmoe_experts_create(ctx, &ed, &experts));
  float *x = randoms(rng, (size_t)T * d, 1.0f);
  for (int i = 0; i < T * d; ++i)
    x[i] = roundf(x[i] * 8) / 8;
  float *imp = randoms(rng, (size_t)T, 0.5f);
  for (int t = 0; t < T; ++t)
    imp[t] = fminf(1.0f, fabsf(roundf(imp[t] * 64) / 64));
  clmoe_tensor *it = NULL;
  clmoe_tensor *xt = rows_tensor(io, x, T, d);
  clmoe_tensor *yt = rows_tensor(io, x, T, d); /* overwritten */
  REQUIRE_OK(
      clmoe_tensor_create(ctx, CLMOE_DTYPE_F32, 1, (int64_t[]){T}, imp, &it));
  clmoe_routing *rt = NULL;
  REQUIRE_OK(clmoe_routing_create(ctx, &rt));
  CHECK_OK(clmoe_forward(router, experts, xt, it, yt, rt, 0, 0, NULL, NULL));
  float *y = malloc(sizeof *y * ((size_t)T * d + 1));
  read_rows(yt, io, y, (size_t)T * d);
  float *z = malloc(sizeof *z * ((size_t)T * E + 1));
  for (int t = 0; t < T; ++t)
    for (int e = 0; e < E; ++e) {
      double s = 0;
      for (int i = 0; i < d; ++i)
        s += (double)x[(size_t)t * d + i] * wr[(size_t)i * E + e];
      z[(size_t)t * E + e] = (float)s;
    }
  ref_params rp = ref_params_from_desc(&rd);
  ref_result ref;
  ref_route(&rp, T, E, z, imp, NULL, &ref);
  double *yr = calloc((size_t)T * d + 1, sizeof *yr);
  ref_experts rx = {E, d, f, act, r1, r3, r2, b1, NULL, b2};
  ref_moe(&rx, &ref, x, 0, yr);
  double err = output_error(io, y, yr, (size_t)T * d);
  ref_free(&ref);
  free(yr);
  free(z);
  free(y);
  free(x);
  free(imp);
  clmoe_routing_destroy(rt);
  clmoe_tensor_destroy(xt);
  clmoe_tensor_destroy(it);
  clmoe_tensor_destroy(yt);
  release(&g1);
  release(&g3);
  release(&g2);
  clmoe_experts_destroy(experts);
  clmoe_router_destroy(router);
  free(wr);
  free(w1);
  free(w2);
  free(w3);
  free(b1);
  free(b2);
  free(r1);
  free(r2);
  free(r3);
  return err;
}

static void test_forward_grid(void) {
  static const clmoe_dtype dts[] = {CLMOE_DTYPE_F16, CLMOE_DTYPE_BF16,
                                    CLMOE_DTYPE_F32};
  static const clmoe_policy pols[] = {
      CLMOE_POLICY_TOPK, CLMOE_POLICY_TOPP, CLMOE_POLICY_IMPORTANCE,
      CLMOE_POLICY_RESONANCE, CLMOE_POLICY_EXPERT_CHOICE};
  static const clmoe_activation acts[] = {
      CLMOE_ACTIVATION_SWIGLU, CLMOE_ACTIVATION_GEGLU, CLMOE_ACTIVATION_RELU,
      CLMOE_ACTIVATION_GELU, CLMOE_ACTIVATION_SILU};
  static const int Ts[] = {0, 1, 33, 257}, Es[] = {1, 8, 64};
  test_rng rng = {2024};
  double worst = 0;
  int runs = 0;
  for (int di = 0; di < 3; ++di)
    for (int io = 0; io < 3; ++io)
      for (int ei = 0; ei < 3; ++ei)
        for (int ti = 0; ti < 4; ++ti)
          for (int pi = 0; pi < 5; ++pi) {
            /* every policy and size for each weight dtype with float32
             * tokens; a rotating third of them with 16-bit tokens */
            if ((io && (pi + ti + ei) % 3 != io) ||
                (Es[ei] == 64 && (pi + ti) % 2))
              continue;
            clmoe_dtype tokens = io == 0   ? CLMOE_DTYPE_F32
                                 : io == 1 ? CLMOE_DTYPE_F16
                                           : CLMOE_DTYPE_BF16;
            int form = (pi + ti + di) % 3;
            clmoe_activation act = acts[(pi + ti + ei) % 5];
            double err = forward_case(&rng, dts[di], tokens, form, Es[ei],
                                      Ts[ti], pols[pi], act, (pi + ei) % 2);
            if (err > 1e-5)
              fprintf(stderr,
                      "weights %d tokens %d form %d E=%d T=%d policy %d act "
                      "%d: error %g\n",
                      (int)dts[di], (int)tokens, form, Es[ei], Ts[ti],
                      (int)pols[pi], (int)act, err);
            worst = fmax(worst, err);
            ++runs;
          }
  printf("16-bit weights and tokens: %d forwards, worst error %.3g\n", runs,
         worst);
  CHECK(worst <= 1e-5);
}

static clmoe_status create_relu(clmoe_dtype wdtype, clmoe_experts_path path,
                                const float *w, clmoe_experts **out) {
  clmoe_experts_desc ed =
      experts_desc(3, 32, 48, CLMOE_ACTIVATION_RELU, wdtype);
  ed.w1_host = w;
  ed.w2_host = w;
  ed.path = path;
  return clmoe_experts_create(test_context(), &ed, out);
}

static void test_memory_path_errors(void) {
  float *w = calloc(3 * 32 * 48, sizeof *w);
  clmoe_experts *a = NULL, *b = NULL, *c = NULL;
  REQUIRE_OK(create_relu(CLMOE_DTYPE_F32, CLMOE_EXPERTS_PATH_GROUPED, w, &a));
  REQUIRE_OK(create_relu(CLMOE_DTYPE_F16, CLMOE_EXPERTS_PATH_AUTO, w, &b));
  REQUIRE_OK(create_relu(CLMOE_DTYPE_BF16, CLMOE_EXPERTS_PATH_GROUPED, w, &c));
  int64_t wa = 0, wb = 0, wc = 0, bias = -1;
  CHECK_OK(clmoe_experts_get_bytes(a, &wa, &bias));
  CHECK_OK(clmoe_experts_get_bytes(b, &wb, NULL));
  CHECK_OK(clmoe_experts_get_bytes(c, &wc, NULL));
  CHECK(wa > 0 && wb * 2 == wa && wc * 2 == wa && bias == 0);
  clmoe_experts_path p = CLMOE_EXPERTS_PATH_AUTO;
  clmoe_dtype dt = 0;
  CHECK_OK(clmoe_experts_get_path(b, &p));
  CHECK(p == CLMOE_EXPERTS_PATH_GROUPED); /* AUTO sends 16-bit there */
  CHECK_OK(clmoe_experts_get_weight_dtype(c, &dt));
  CHECK(dt == CLMOE_DTYPE_BF16);
  clmoe_experts *x = NULL;
  CHECK_STATUS(create_relu(CLMOE_DTYPE_F16, CLMOE_EXPERTS_PATH_CLBLAST, w, &x),
               CLMOE_ERROR_UNSUPPORTED);
  CHECK(strstr(clmoe_last_error_detail(), "grouped path") != NULL);
  CHECK_STATUS(create_relu(CLMOE_DTYPE_I32, CLMOE_EXPERTS_PATH_AUTO, w, &x),
               CLMOE_ERROR_DTYPE_MISMATCH);
  /* A value that would round to Inf in float16 names matrix and element. */
  w[7] = 70000.0f;
  CHECK_STATUS(create_relu(CLMOE_DTYPE_F16, CLMOE_EXPERTS_PATH_AUTO, w, &x),
               CLMOE_ERROR_INVALID_ARGUMENT);
  CHECK(strstr(clmoe_last_error_detail(), "w1[7]") != NULL);
  CHECK(x == NULL);
  /* ... but bfloat16 holds it, and Inf itself is kept, not an error. */
  w[8] = INFINITY;
  CHECK_OK(create_relu(CLMOE_DTYPE_BF16, CLMOE_EXPERTS_PATH_AUTO, w, &x));
  clmoe_experts_destroy(x);
  /* An int32 weight tensor is a dtype error naming it. */
  clmoe_tensor *it = NULL;
  REQUIRE_OK(clmoe_tensor_create(test_context(), CLMOE_DTYPE_I32, 3,
                                 (int64_t[]){3, 32, 48}, NULL, &it));
  clmoe_experts_desc ed =
      experts_desc(3, 32, 48, CLMOE_ACTIVATION_RELU, CLMOE_DTYPE_F32);
  ed.w1 = it;
  ed.w2_host = w;
  CHECK_STATUS(clmoe_experts_create(test_context(), &ed, &x),
               CLMOE_ERROR_DTYPE_MISMATCH);
  CHECK(strstr(clmoe_last_error_detail(), "w1 is int32") != NULL);
  clmoe_tensor_destroy(it);
  clmoe_experts_destroy(a);
  clmoe_experts_destroy(b);
  clmoe_experts_destroy(c);
  free(w);
}

/* A router from a bfloat16 or float16 weight routes exactly like one from
 * the same rounded values in float32. */
static void test_router_weight(void) {
  enum { T = 96, d = 24, E = 10 };
  clmoe_context *ctx = test_context();
  test_rng rng = {31};
  float *w = randoms(&rng, d * E, 0.5f), *x = randoms(&rng, T * d, 1.0f);
  clmoe_tensor *xt = NULL;
  REQUIRE_OK(
      clmoe_tensor_create(ctx, CLMOE_DTYPE_F32, 2, (int64_t[]){T, d}, x, &xt));
  for (int k = 0; k < 2; ++k) {
    clmoe_dtype dt = k ? CLMOE_DTYPE_F16 : CLMOE_DTYPE_BF16;
    float *wr = rounded(dt, w, d * E);
    uint16_t bits[d * E];
    for (int i = 0; i < d * E; ++i)
      bits[i] = bits16(dt, wr[i]);
    clmoe_tensor *wt = NULL;
    REQUIRE_OK(clmoe_tensor_create(ctx, dt, 2, (int64_t[]){d, E}, bits, &wt));
    int counts[2][T], ids[2][T * 2];
    for (int v = 0; v < 2; ++v) {
      clmoe_router_desc rd;
      clmoe_router_desc_init(&rd);
      rd.num_experts = E;
      rd.d_model = d;
      if (v == 0)
        rd.weight_host = wr;
      else
        rd.weight = wt;
      clmoe_router *r = NULL;
      REQUIRE_OK(clmoe_router_create(ctx, &rd, &r));
      clmoe_routing *rt = NULL;
      REQUIRE_OK(clmoe_routing_create(ctx, &rt));
      CHECK_OK(clmoe_route(r, xt, NULL, rt, 0, NULL, NULL));
      const clmoe_tensor *cv = NULL, *iv = NULL;
      REQUIRE_OK(clmoe_routing_get_array(rt, CLMOE_ROUTING_COUNTS, &cv));
      REQUIRE_OK(clmoe_routing_get_array(rt, CLMOE_ROUTING_EXPERT_IDS, &iv));
      CHECK_OK(clmoe_tensor_read(cv, counts[v], sizeof counts[v]));
      CHECK_OK(clmoe_tensor_read(iv, ids[v], sizeof ids[v]));
      clmoe_routing_destroy(rt);
      clmoe_router_destroy(r);
    }
    CHECK(memcmp(counts[0], counts[1], sizeof counts[0]) == 0);
    CHECK(memcmp(ids[0], ids[1], sizeof ids[0]) == 0);
    /* The 16-bit bits as a host array with weight_dtype. */
    clmoe_router_desc rd =
        router_desc(CLMOE_POLICY_TOPK, E, d, (const float *)bits);
    rd.weight_dtype = dt;
    clmoe_router *r = NULL;
    CHECK_OK(clmoe_router_create(ctx, &rd, &r));
    clmoe_router_destroy(r);
    rd.weight_dtype = CLMOE_DTYPE_I32;
    CHECK_STATUS(clmoe_router_create(ctx, &rd, &r), CLMOE_ERROR_DTYPE_MISMATCH);
    clmoe_tensor_destroy(wt);
    free(wr);
  }
  clmoe_tensor_destroy(xt);
  free(w);
  free(x);
}

/* The stage calls convert between row dtypes: dispatch from float16 tokens
 * into bfloat16 rows, experts on bfloat16 rows, combine into float32 output
 * (the float32 forward as the reference); mismatches are DTYPE_MISMATCH
 * naming both. */
static void test_stage_dtypes(void) {
  enum { T = 37, d = 24, f = 20, E = 6 };
  clmoe_context *ctx = test_context();
  test_rng rng = {77};
  float *x = randoms(&rng, T * d, 1.0f), *wr = randoms(&rng, d * E, 0.5f);
  float *w1 = randoms(&rng, E * d * f, 0.2f);
  float *w2 = randoms(&rng, E * f * d, 0.2f);
  for (int i = 0; i < T * d; ++i)
    x[i] = roundf(x[i] * 8) / 8; /* exact in every dtype */
  clmoe_router_desc rd = router_desc(CLMOE_POLICY_TOPK, E, d, wr);
  clmoe_router *r = NULL;
  REQUIRE_OK(clmoe_router_create(ctx, &rd, &r));
  clmoe_experts_desc ed =
      experts_desc(E, d, f, CLMOE_ACTIVATION_GELU, CLMOE_DTYPE_F32);
  ed.w1_host = w1;
  ed.w2_host = w2;
  clmoe_experts *ex = NULL;
  REQUIRE_OK(clmoe_experts_create(ctx, &ed, &ex));
  clmoe_tensor *x32 = rows_tensor(CLMOE_DTYPE_F32, x, T, d);
  clmoe_tensor *x16 = rows_tensor(CLMOE_DTYPE_F16, x, T, d);
  clmoe_tensor *yref = rows_tensor(CLMOE_DTYPE_F32, x, T, d);
  clmoe_tensor *y32 = rows_tensor(CLMOE_DTYPE_F32, x, T, d);
  clmoe_routing *rt = NULL;
  REQUIRE_OK(clmoe_routing_create(ctx, &rt));
  CHECK_OK(clmoe_forward(r, ex, x32, NULL, yref, rt, 0, 0, NULL, NULL));
  REQUIRE_OK(clmoe_route(r, x16, NULL, rt, 0, NULL, NULL));
  int64_t N = 0;
  REQUIRE_OK(clmoe_routing_get_sizes(rt, NULL, NULL, &N));
  clmoe_tensor *xs = NULL, *ys = NULL, *ys16 = NULL;
  REQUIRE_OK(clmoe_tensor_create(ctx, CLMOE_DTYPE_BF16, 2, (int64_t[]){N, d},
                                 NULL, &xs));
  REQUIRE_OK(clmoe_tensor_create(ctx, CLMOE_DTYPE_BF16, 2, (int64_t[]){N, d},
                                 NULL, &ys));
  REQUIRE_OK(clmoe_tensor_create(ctx, CLMOE_DTYPE_F16, 2, (int64_t[]){N, d},
                                 NULL, &ys16));
  CHECK_OK(clmoe_dispatch(rt, x16, xs, 0, NULL, NULL));
  CHECK_OK(clmoe_experts_run(ex, rt, xs, ys, 0, NULL, NULL));
  CHECK_OK(clmoe_combine(rt, ys, y32, 0, 0, NULL, NULL));
  static float a[T * d], b[T * d];
  CHECK_OK(clmoe_tensor_read(yref, a, sizeof a));
  CHECK_OK(clmoe_tensor_read(y32, b, sizeof b));
  /* x is exact in bfloat16: only y_sorted's rounding separates them. */
  double worst = 0, scale = 1e-30;
  for (int i = 0; i < T * d; ++i) {
    worst = fmax(worst, fabs(a[i] - b[i]));
    scale = fmax(scale, fabs(a[i]));
  }
  CHECK(worst > 0 && worst <= scale * 0x1p-7); /* two bfloat16 roundings */
  CHECK_STATUS(clmoe_experts_run(ex, rt, xs, ys16, 0, NULL, NULL),
               CLMOE_ERROR_DTYPE_MISMATCH);
  CHECK(strstr(clmoe_last_error_detail(), "x_sorted is bfloat16 but "
                                          "y_sorted is float16") != NULL);
  clmoe_tensor *ybf = rows_tensor(CLMOE_DTYPE_BF16, x, T, d);
  CHECK_STATUS(clmoe_forward(r, ex, x16, NULL, ybf, rt, 0, 0, NULL, NULL),
               CLMOE_ERROR_DTYPE_MISMATCH);
  CHECK(strstr(clmoe_last_error_detail(), "x is float16 but y is bfloat16") !=
        NULL);
  clmoe_tensor_destroy(ybf);
  clmoe_tensor_destroy(xs);
  clmoe_tensor_destroy(ys);
  clmoe_tensor_destroy(ys16);
  clmoe_tensor_destroy(x32);
  clmoe_tensor_destroy(x16);
  clmoe_tensor_destroy(yref);
  clmoe_tensor_destroy(y32);
  clmoe_routing_destroy(rt);
  clmoe_experts_destroy(ex);
  clmoe_router_destroy(r);
  free(x);
  free(wr);
  free(w1);
  free(w2);
}

/* float16 weights at the edges of the format (subnormals, -0, the largest
 * value) and an Inf reach the kernel intact: the grouped kernel's own
 * widening is checked against the reference, and Inf propagates. */
static void test_f16_edge_values(void) {
  enum { T = 8, d = 16, f = 32, E = 2 };
  clmoe_context *ctx = test_context();
  static const float edges[] = {0x1p-24f, 0x3p-24f, -0x1p-20f, 0x1.ff8p-15f,
                                -0.0f,    65504.0f, -0x1p-14f, 1.0f};
  float w1[E * d * f], w2[E * f * d], x[T * d], wr[d * E];
  test_rng rng = {5};
  for (int i = 0; i < E * d * f; ++i) {
    w1[i] = i % 3 == 0 ? edges[i % 8] : round_f16(rng_normal(&rng) * 0.1f);
    w2[i] = round_f16(rng_normal(&rng) * 0.1f);
  }
  for (int i = 0; i < T * d; ++i)
    x[i] = roundf(rng_normal(&rng) * 8) / 8 * 0x1p-8f;
  for (int i = 0; i < d * E; ++i)
    wr[i] = roundf(rng_normal(&rng) * 8) / 8;
  clmoe_router_desc rd = router_desc(CLMOE_POLICY_TOPK, E, d, wr);
  rd.k = 1;
  clmoe_router *r = NULL;
  REQUIRE_OK(clmoe_router_create(ctx, &rd, &r));
  for (int inf = 0; inf < 2; ++inf) {
    if (inf)
      w2[3] = INFINITY; /* expert 0, row 0, column 3 */
    clmoe_experts_desc ed =
        experts_desc(E, d, f, CLMOE_ACTIVATION_SILU, CLMOE_DTYPE_F16);
    ed.w1_host = w1;
    ed.w2_host = w2;
    clmoe_experts *ex = NULL;
    REQUIRE_OK(clmoe_experts_create(ctx, &ed, &ex));
    clmoe_tensor *xt = rows_tensor(CLMOE_DTYPE_F32, x, T, d);
    clmoe_tensor *yt = rows_tensor(CLMOE_DTYPE_F32, x, T, d);
    clmoe_routing *rt = NULL;
    REQUIRE_OK(clmoe_routing_create(ctx, &rt));
    CHECK_OK(clmoe_forward(r, ex, xt, NULL, yt, rt, 0, 0, NULL, NULL));
    float y[T * d];
    CHECK_OK(clmoe_tensor_read(yt, y, sizeof y));
    float z[T * E];
    for (int t = 0; t < T; ++t)
      for (int e = 0; e < E; ++e) {
        double acc = 0;
        for (int i = 0; i < d; ++i)
          acc += (double)x[t * d + i] * wr[i * E + e];
        z[t * E + e] = (float)acc;
      }
    ref_params rp = ref_params_from_desc(&rd);
    ref_result ref;
    ref_route(&rp, T, E, z, NULL, NULL, &ref);
    double yr[T * d];
    memset(yr, 0, sizeof yr);
    ref_experts rx = {E,    d,    f,   CLMOE_ACTIVATION_SILU, w1, NULL, w2,
                      NULL, NULL, NULL};
    ref_moe(&rx, &ref, x, 0, yr);
    double scale = 1e-30;
    for (int i = 0; i < T * d; ++i)
      scale = isfinite(yr[i]) ? fmax(scale, fabs(yr[i])) : scale;
    int bad = 0;
    for (int i = 0; i < T * d; ++i)
      bad += isfinite(yr[i]) ? !(fabs(y[i] - yr[i]) <= 1e-5 * scale)
                             : !(isnan(yr[i]) ? isnan(y[i]) : y[i] == yr[i]);
    if (bad)
      fprintf(stderr, "float16 edge values (Inf %d): %d outputs off\n", inf,
              bad);
    CHECK(bad == 0);
    ref_free(&ref);
    clmoe_routing_destroy(rt);
    clmoe_tensor_destroy(xt);
    clmoe_tensor_destroy(yt);
    clmoe_experts_destroy(ex);
  }
  clmoe_router_destroy(r);
}

int main(void) {
  test_f16_edge_values();
  test_memory_path_errors();
  test_router_weight();
  test_forward_grid();
  test_stage_dtypes();
  return test_finish("test_16bit");
}
