/* The whole layer (route, dispatch, experts, combine) against the host
 * reference, dispatch/combine identities, determinism and shape errors. */
#define CL_TARGET_OPENCL_VERSION 120
#include <CL/cl.h>

#include "harness.h"
#include "ref_ffn.h"

typedef struct layer {
  int E, d, f;
  clmoe_activation act;
  float *wr, *w1, *w3, *w2, *b1, *b3, *b2;
  clmoe_router *router;
  clmoe_experts *experts;
  ref_params rp;
} layer;

static void make_layer(layer *L, test_rng *rng, int E, int d, int f,
                       clmoe_activation act, const clmoe_router_desc *policy,
                       int biases, clmoe_experts_path path) {
  memset(L, 0, sizeof *L);
  L->E = E;
  L->d = d;
  L->f = f;
  L->act = act;
  int gated = act == CLMOE_ACTIVATION_SWIGLU || act == CLMOE_ACTIVATION_GEGLU;
  L->wr = rng_grid(rng, (size_t)d * E, 0.25f, 0.125f);
  L->w1 = rng_grid(rng, (size_t)E * d * f, 0.2f, 1.0f / 1024);
  L->w3 = gated ? rng_grid(rng, (size_t)E * d * f, 0.2f, 1.0f / 1024) : NULL;
  L->w2 = rng_grid(rng, (size_t)E * f * d, 0.2f, 1.0f / 1024);
  if (biases) {
    L->b1 = rng_grid(rng, (size_t)E * f, 0.1f, 1.0f / 1024);
    L->b3 = gated ? rng_grid(rng, (size_t)E * f, 0.1f, 1.0f / 1024) : NULL;
    L->b2 = rng_grid(rng, (size_t)E * d, 0.1f, 1.0f / 1024);
  }
  clmoe_router_desc rd = *policy;
  rd.num_experts = E;
  rd.d_model = d;
  rd.weight_host = L->wr;
  REQUIRE_OK(clmoe_router_create(test_context(), &rd, &L->router));
  clmoe_experts_desc ed;
  clmoe_experts_desc_init(&ed);
  ed.num_experts = E;
  ed.d_model = d;
  ed.d_ff = f;
  ed.activation = act;
  ed.w1_host = L->w1;
  ed.w3_host = L->w3;
  ed.w2_host = L->w2;
  ed.b1_host = L->b1;
  ed.b3_host = L->b3;
  ed.b2_host = L->b2;
  ed.path = path;
  REQUIRE_OK(clmoe_experts_create(test_context(), &ed, &L->experts));
  if (path != CLMOE_EXPERTS_PATH_AUTO) {
    clmoe_experts_path got = CLMOE_EXPERTS_PATH_AUTO;
    CHECK_OK(clmoe_experts_get_path(L->experts, &got));
    CHECK(got == path);
  }
  L->rp = ref_params_from_desc(&rd);
}

static void free_layer(layer *L) {
  clmoe_router_destroy(L->router);
  clmoe_experts_destroy(L->experts);
  free(L->wr);
  free(L->w1);
  free(L->w3);
  free(L->w2);
  free(L->b1);
  free(L->b3);
  free(L->b2);
}

/* Runs the layer on T tokens and compares y with the reference; returns
 * the relative error (max |y - ref| / max |ref|). */
static double run_and_compare(layer *L, test_rng *rng, int T, int accumulate) {
  int d = L->d, E = L->E;
  float *x = rng_grid(rng, (size_t)T * d, 1.0f, 0.125f);
  float *imp = rng_grid(rng, (size_t)T, 0.5f, 1.0f / 64);
  for (int t = 0; t < T; ++t)
    imp[t] = fabsf(imp[t]) > 1 ? 1 : fabsf(imp[t]);
  float *y0 = rng_grid(rng, (size_t)T * d, 1.0f, 0.125f);
  clmoe_context *ctx = test_context();
  clmoe_tensor *xt = NULL, *it = NULL, *yt = NULL;
  REQUIRE_OK(
      clmoe_tensor_create(ctx, CLMOE_DTYPE_F32, 2, (int64_t[]){T, d}, x, &xt));
  REQUIRE_OK(
      clmoe_tensor_create(ctx, CLMOE_DTYPE_F32, 1, (int64_t[]){T}, imp, &it));
  REQUIRE_OK(
      clmoe_tensor_create(ctx, CLMOE_DTYPE_F32, 2, (int64_t[]){T, d}, y0, &yt));
  clmoe_routing *rt = NULL;
  REQUIRE_OK(clmoe_routing_create(ctx, &rt));
  CHECK_OK(clmoe_forward(L->router, L->experts, xt, it, yt, rt,
                         accumulate ? CLMOE_COMBINE_ACCUMULATE : 0, 0, NULL,
                         NULL));
  float *y = malloc(sizeof *y * ((size_t)T * d + 1));
  CHECK_OK(clmoe_tensor_read(yt, y, sizeof *y * (size_t)T * d));
  /* Reference: exact logits in double, then the reference routing. */
  float *z = malloc(sizeof *z * ((size_t)T * E + 1));
  for (int t = 0; t < T; ++t)
    for (int e = 0; e < E; ++e) {
      double s = 0;
      for (int i = 0; i < d; ++i)
        s += (double)x[(size_t)t * d + i] * L->wr[(size_t)i * E + e];
      z[(size_t)t * E + e] = (float)s;
    }
  ref_result ref;
  ref_route(&L->rp, T, E, z, imp, NULL, &ref);
  double *yr = malloc(sizeof *yr * ((size_t)T * d + 1));
  for (size_t i = 0; i < (size_t)T * d; ++i)
    yr[i] = y0[i];
  ref_experts rx = {E,     d,     L->f,  L->act, L->w1,
                    L->w3, L->w2, L->b1, L->b3,  L->b2};
  ref_moe(&rx, &ref, x, accumulate, yr);
  double maxerr = 0, maxref = 1e-30;
  for (size_t i = 0; i < (size_t)T * d; ++i) {
    double e = fabs(y[i] - yr[i]);
    maxerr = e > maxerr ? e : maxerr;
    maxref = fabs(yr[i]) > maxref ? fabs(yr[i]) : maxref;
  }
  /* Tokens with K = 0 must be exactly 0, or untouched in accumulate mode. */
  for (int t = 0; t < T; ++t)
    if (ref.counts[t] == 0)
      for (int c = 0; c < d; ++c)
        CHECK(y[(size_t)t * d + c] == (accumulate ? y0[(size_t)t * d + c] : 0));
  ref_free(&ref);
  free(yr);
  free(z);
  free(y);
  free(x);
  free(imp);
  free(y0);
  clmoe_routing_destroy(rt);
  clmoe_tensor_destroy(xt);
  clmoe_tensor_destroy(it);
  clmoe_tensor_destroy(yt);
  return T ? maxerr / maxref : 0;
}

static clmoe_router_desc policy_desc(clmoe_policy p) {
  clmoe_router_desc d;
  clmoe_router_desc_init(&d);
  d.policy = p;
  d.k = 2;
  d.p = 0.5f;
  d.k_max = p == CLMOE_POLICY_IMPORTANCE ? 3 : 0;
  d.capacity_factor = p == CLMOE_POLICY_RESONANCE ? 0.75f : 0.0f;
  return d;
}

static void test_layer_grid(void) {
  static const int Ts[] = {0, 1, 33, 1024};
  static const int Es[] = {1, 8, 64};
  static const clmoe_policy pols[] = {
      CLMOE_POLICY_TOPK, CLMOE_POLICY_TOPP, CLMOE_POLICY_IMPORTANCE,
      CLMOE_POLICY_RESONANCE, CLMOE_POLICY_EXPERT_CHOICE};
  static const clmoe_activation acts[] = {
      CLMOE_ACTIVATION_SWIGLU, CLMOE_ACTIVATION_GEGLU, CLMOE_ACTIVATION_RELU,
      CLMOE_ACTIVATION_GELU, CLMOE_ACTIVATION_SILU};
  test_rng rng = {99};
  double worst = 0;
  int runs = 0;
  for (int ei = 0; ei < 3; ++ei)
    for (int ti = 0; ti < 4; ++ti) {
      int E = Es[ei], T = Ts[ti];
      /* every policy (activation rotating), and every activation with TOPK */
      for (int c = 0; c < 9; ++c) {
        clmoe_policy p = c < 5 ? pols[c] : CLMOE_POLICY_TOPK;
        clmoe_activation a = c < 5 ? acts[(c + ti + ei) % 5] : acts[c - 4];
        clmoe_router_desc pd = policy_desc(p);
        if (E == 1) {
          pd.k = 1;
          pd.k_max = 0;
        }
        layer L;
        make_layer(&L, &rng, E, 40, 52, a, &pd, c % 2, CLMOE_EXPERTS_PATH_AUTO);
        double err = run_and_compare(&L, &rng, T, c == 3);
        if (err > 1e-4)
          fprintf(stderr, "forward E=%d T=%d policy %d act %d: rel err %g\n", E,
                  T, (int)p, (int)a, err);
        worst = err > worst ? err : worst;
        ++runs;
        free_layer(&L);
      }
    }
  printf("layer grid: %d forwards, worst relative error %.3g\n", runs, worst);
  CHECK(worst <= 1e-4);
}

/* dispatch then combine with gates = 1 and identity experts gives K_t * x_t:
 * with RAW gates on expert choice with E = 1 every gate is P = 1. */
static void test_dispatch_combine_identity(void) {
  clmoe_context *ctx = test_context();
  const int T = 50, d = 19, E = 5;
  test_rng rng = {5};
  float *x = rng_grid(&rng, (size_t)T * d, 1.0f, 0.25f);
  float *z = rng_grid(&rng, (size_t)T * E, 1.0f, 0.125f);
  clmoe_router_desc rd;
  clmoe_router_desc_init(&rd);
  rd.num_experts = E;
  rd.policy = CLMOE_POLICY_TOPK;
  rd.k = 3;
  rd.gates = CLMOE_GATES_RAW;
  clmoe_router *r = NULL;
  REQUIRE_OK(clmoe_router_create(ctx, &rd, &r));
  clmoe_tensor *zt = NULL, *xt = NULL, *yt = NULL, *xs = NULL;
  REQUIRE_OK(
      clmoe_tensor_create(ctx, CLMOE_DTYPE_F32, 2, (int64_t[]){T, E}, z, &zt));
  REQUIRE_OK(
      clmoe_tensor_create(ctx, CLMOE_DTYPE_F32, 2, (int64_t[]){T, d}, x, &xt));
  REQUIRE_OK(clmoe_tensor_create(ctx, CLMOE_DTYPE_F32, 2, (int64_t[]){T, d},
                                 NULL, &yt));
  clmoe_routing *rt = NULL;
  REQUIRE_OK(clmoe_routing_create(ctx, &rt));
  REQUIRE_OK(clmoe_route_logits(r, zt, NULL, rt, 0, NULL, NULL));
  int64_t N = 0;
  REQUIRE_OK(clmoe_routing_get_sizes(rt, NULL, NULL, &N));
  CHECK(N == 3 * T);
  REQUIRE_OK(clmoe_tensor_create(ctx, CLMOE_DTYPE_F32, 2, (int64_t[]){N, d},
                                 NULL, &xs));
  CHECK_OK(clmoe_dispatch(rt, xt, xs, 0, NULL, NULL));
  /* Set every gate to 1 through the routing's own gates view. */
  const clmoe_tensor *gv = NULL;
  REQUIRE_OK(clmoe_routing_get_array(rt, CLMOE_ROUTING_GATES, &gv));
  float *ones = malloc(sizeof *ones * (size_t)N);
  for (int64_t i = 0; i < N; ++i)
    ones[i] = 1.0f;
  REQUIRE_OK(clmoe_tensor_write((clmoe_tensor *)gv, ones, sizeof *ones * N));
  CHECK_OK(clmoe_combine(rt, xs, yt, 0, 0, NULL, NULL));
  float *y = malloc(sizeof *y * T * d);
  CHECK_OK(clmoe_tensor_read(yt, y, sizeof *y * T * d));
  int bad = 0;
  for (int i = 0; i < T * d; ++i)
    bad += y[i] != 3.0f * x[i];
  CHECK(bad == 0);
  /* Rows of x_sorted are grouped by expert, tokens ascending. */
  float *xsh = malloc(sizeof *xsh * (size_t)N * d);
  CHECK_OK(clmoe_tensor_read(xs, xsh, sizeof *xsh * (size_t)N * d));
  const clmoe_tensor *rv = NULL;
  REQUIRE_OK(clmoe_routing_get_array(rt, CLMOE_ROUTING_ROW_TOKENS, &rv));
  int *rtok = malloc(sizeof *rtok * (size_t)N);
  REQUIRE_OK(clmoe_tensor_read(rv, rtok, sizeof *rtok * (size_t)N));
  for (int64_t row = 0; row < N; ++row)
    bad += memcmp(xsh + row * d, x + (size_t)rtok[row] * d, sizeof *x * d) != 0;
  CHECK(bad == 0);
  /* Shape errors before any device work. */
  CHECK_STATUS(clmoe_dispatch(rt, yt, zt, 0, NULL, NULL),
               CLMOE_ERROR_SHAPE_MISMATCH);
  CHECK_STATUS(clmoe_combine(rt, zt, yt, 0, 0, NULL, NULL),
               CLMOE_ERROR_SHAPE_MISMATCH);
  CHECK_STATUS(clmoe_dispatch(NULL, xt, xs, 0, NULL, NULL),
               CLMOE_ERROR_NULL_POINTER);
  clmoe_routing *empty = NULL;
  REQUIRE_OK(clmoe_routing_create(ctx, &empty));
  CHECK_STATUS(clmoe_dispatch(empty, xt, xs, 0, NULL, NULL),
               CLMOE_ERROR_INVALID_ARGUMENT);
  clmoe_routing_destroy(empty);
  free(x);
  free(z);
  free(ones);
  free(y);
  free(xsh);
  free(rtok);
  clmoe_tensor_destroy(zt);
  clmoe_tensor_destroy(xt);
  clmoe_tensor_destroy(yt);
  clmoe_tensor_destroy(xs);
  clmoe_routing_destroy(rt);
  clmoe_router_destroy(r);
}

static void test_determinism_and_errors(void) {
  clmoe_context *ctx = test_context();
  test_rng rng = {17};
  clmoe_router_desc pd = policy_desc(CLMOE_POLICY_TOPP);
  layer L;
  make_layer(&L, &rng, 8, 24, 36, CLMOE_ACTIVATION_SWIGLU, &pd, 1,
             CLMOE_EXPERTS_PATH_AUTO);
  const int T = 200, d = 24;
  float *x = rng_grid(&rng, (size_t)T * d, 1.0f, 0.01f);
  clmoe_tensor *xt = NULL, *y1 = NULL, *y2 = NULL;
  REQUIRE_OK(
      clmoe_tensor_create(ctx, CLMOE_DTYPE_F32, 2, (int64_t[]){T, d}, x, &xt));
  REQUIRE_OK(clmoe_tensor_create(ctx, CLMOE_DTYPE_F32, 2, (int64_t[]){T, d},
                                 NULL, &y1));
  REQUIRE_OK(clmoe_tensor_create(ctx, CLMOE_DTYPE_F32, 2, (int64_t[]){T, d},
                                 NULL, &y2));
  clmoe_routing *rt = NULL;
  REQUIRE_OK(clmoe_routing_create(ctx, &rt));
  CHECK_OK(
      clmoe_forward(L.router, L.experts, xt, NULL, y1, rt, 0, 0, NULL, NULL));
  cl_event ev = NULL;
  CHECK_OK(
      clmoe_forward(L.router, L.experts, xt, NULL, y2, rt, 0, 0, NULL, &ev));
  CHECK(ev != NULL);
  float *a = malloc(sizeof *a * T * d), *b = malloc(sizeof *b * T * d);
  CHECK_OK(clmoe_tensor_read(y1, a, sizeof *a * T * d));
  CHECK_OK(clmoe_tensor_read(y2, b, sizeof *b * T * d));
  CHECK(memcmp(a, b, sizeof *a * T * d) == 0);
  /* Mismatched router/experts and tensors: errors, no device work. */
  clmoe_router_desc rd;
  clmoe_router_desc_init(&rd);
  rd.num_experts = 8;
  rd.d_model = 20;
  float wr[160] = {0};
  rd.weight_host = wr;
  clmoe_router *r20 = NULL;
  REQUIRE_OK(clmoe_router_create(ctx, &rd, &r20));
  CHECK_STATUS(
      clmoe_forward(r20, L.experts, xt, NULL, y1, rt, 0, 0, NULL, NULL),
      CLMOE_ERROR_SHAPE_MISMATCH);
  clmoe_tensor *ybad = NULL;
  REQUIRE_OK(clmoe_tensor_create(ctx, CLMOE_DTYPE_F32, 2, (int64_t[]){T + 1, d},
                                 NULL, &ybad));
  CHECK_STATUS(
      clmoe_forward(L.router, L.experts, xt, NULL, ybad, rt, 0, 0, NULL, NULL),
      CLMOE_ERROR_SHAPE_MISMATCH);
  clmoe_tensor *xi = NULL;
  REQUIRE_OK(clmoe_tensor_create(ctx, CLMOE_DTYPE_I32, 2, (int64_t[]){T, d},
                                 NULL, &xi));
  CHECK_STATUS(
      clmoe_forward(L.router, L.experts, xi, NULL, y1, rt, 0, 0, NULL, NULL),
      CLMOE_ERROR_DTYPE_MISMATCH);
  CHECK_STATUS(
      clmoe_forward(L.router, NULL, xt, NULL, y1, rt, 0, 0, NULL, NULL),
      CLMOE_ERROR_NULL_POINTER);
  /* Experts create errors. */
  clmoe_experts_desc ed;
  clmoe_experts_desc_init(&ed);
  ed.num_experts = 2;
  ed.d_model = 3;
  ed.d_ff = 4;
  clmoe_experts *ex = NULL;
  float w[24] = {0};
  ed.w1_host = w;
  ed.w2_host = w;
  CHECK_STATUS(clmoe_experts_create(ctx, &ed, &ex),
               CLMOE_ERROR_INVALID_ARGUMENT); /* SwiGLU without w3 */
  ed.activation = CLMOE_ACTIVATION_RELU;
  ed.w3_host = w;
  CHECK_STATUS(clmoe_experts_create(ctx, &ed, &ex),
               CLMOE_ERROR_INVALID_ARGUMENT); /* w3 without gating */
  ed.w3_host = NULL;
  ed.d_ff = 0;
  CHECK_STATUS(clmoe_experts_create(ctx, &ed, &ex),
               CLMOE_ERROR_INVALID_ARGUMENT);
  ed.d_ff = 4;
  ed.activation = 42;
  CHECK_STATUS(clmoe_experts_create(ctx, &ed, &ex),
               CLMOE_ERROR_INVALID_ARGUMENT);
  ed.activation = CLMOE_ACTIVATION_RELU;
  clmoe_tensor *wt = NULL;
  REQUIRE_OK(clmoe_tensor_create(ctx, CLMOE_DTYPE_F32, 3, (int64_t[]){2, 4, 3},
                                 NULL, &wt));
  ed.w1_host = NULL;
  ed.w1 = wt; /* [E, f, d] given for LAYOUT_IN_OUT's [E, d, f] */
  CHECK_STATUS(clmoe_experts_create(ctx, &ed, &ex), CLMOE_ERROR_SHAPE_MISMATCH);
  ed.layout = CLMOE_LAYOUT_OUT_IN; /* ... which is right for OUT_IN */
  ed.w2_host = w;
  CHECK_OK(clmoe_experts_create(ctx, &ed, &ex));
  clmoe_experts_destroy(ex);
  clmoe_experts_destroy(NULL);
  CHECK_STATUS(clmoe_experts_create(ctx, NULL, &ex), CLMOE_ERROR_NULL_POINTER);
  clmoe_tensor_destroy(wt);
  clmoe_tensor_destroy(xi);
  clmoe_tensor_destroy(ybad);
  clmoe_router_destroy(r20);
  if (ev)
    clReleaseEvent(ev);
  free(a);
  free(b);
  free(x);
  clmoe_tensor_destroy(xt);
  clmoe_tensor_destroy(y1);
  clmoe_tensor_destroy(y2);
  clmoe_routing_destroy(rt);
  free_layer(&L);
}

/* LAYOUT_OUT_IN ([E, out, in]) weights give the same layer as IN_OUT. */
static void test_out_in_layout(void) {
  clmoe_context *ctx = test_context();
  const int E = 3, d = 5, f = 7, T = 11;
  test_rng rng = {3};
  float *w1 = rng_grid(&rng, (size_t)E * d * f, 0.3f, 1.0f / 256);
  float *w2 = rng_grid(&rng, (size_t)E * f * d, 0.3f, 1.0f / 256);
  float *w1t = malloc(sizeof *w1t * E * d * f),
        *w2t = malloc(sizeof *w2t * E * f * d);
  for (int e = 0; e < E; ++e)
    for (int i = 0; i < d; ++i)
      for (int j = 0; j < f; ++j) {
        w1t[(e * f + j) * d + i] = w1[(e * d + i) * f + j];
        w2t[(e * d + i) * f + j] = w2[(e * f + j) * d + i];
      }
  float *wr = rng_grid(&rng, (size_t)d * E, 0.5f, 0.125f);
  float *x = rng_grid(&rng, (size_t)T * d, 1.0f, 0.125f);
  clmoe_router_desc rd;
  clmoe_router_desc_init(&rd);
  rd.num_experts = E;
  rd.d_model = d;
  rd.weight_host = wr;
  clmoe_router *r = NULL;
  REQUIRE_OK(clmoe_router_create(ctx, &rd, &r));
  float out[2][11 * 5];
  for (int v = 0; v < 2; ++v) {
    clmoe_experts_desc ed;
    clmoe_experts_desc_init(&ed);
    ed.num_experts = E;
    ed.d_model = d;
    ed.d_ff = f;
    ed.activation = CLMOE_ACTIVATION_GELU;
    ed.layout = v ? CLMOE_LAYOUT_OUT_IN : CLMOE_LAYOUT_IN_OUT;
    ed.w1_host = v ? w1t : w1;
    ed.w2_host = v ? w2t : w2;
    clmoe_experts *ex = NULL;
    REQUIRE_OK(clmoe_experts_create(ctx, &ed, &ex));
    clmoe_tensor *xt = NULL, *yt = NULL;
    REQUIRE_OK(clmoe_tensor_create(ctx, CLMOE_DTYPE_F32, 2, (int64_t[]){T, d},
                                   x, &xt));
    REQUIRE_OK(clmoe_tensor_create(ctx, CLMOE_DTYPE_F32, 2, (int64_t[]){T, d},
                                   NULL, &yt));
    clmoe_routing *rt = NULL;
    REQUIRE_OK(clmoe_routing_create(ctx, &rt));
    CHECK_OK(clmoe_forward(r, ex, xt, NULL, yt, rt, 0, 0, NULL, NULL));
    CHECK_OK(clmoe_tensor_read(yt, out[v], sizeof out[v]));
    clmoe_routing_destroy(rt);
    clmoe_tensor_destroy(xt);
    clmoe_tensor_destroy(yt);
    clmoe_experts_destroy(ex);
  }
  CHECK(memcmp(out[0], out[1], sizeof out[0]) == 0);
  clmoe_router_destroy(r);
  free(w1);
  free(w2);
  free(w1t);
  free(w2t);
  free(wr);
  free(x);
}

/* Both expert paths, forced, on shapes that stress the grouped kernel's
 * edges: d and f not multiples of its tile (or of 16/32), ragged groups with
 * many empty experts, d = f = 1, and a batch with several tiles per expert. */
static void test_both_paths(void) {
  static const struct {
    int E, d, f, T, k;
    clmoe_activation act;
  } shapes[] = {
      {16, 67, 35, 300, 2, CLMOE_ACTIVATION_SWIGLU},
      {64, 33, 17, 40, 1, CLMOE_ACTIVATION_RELU},
      {4, 1, 1, 9, 2, CLMOE_ACTIVATION_GEGLU},
      {8, 64, 96, 512, 2, CLMOE_ACTIVATION_GELU},
      {3, 130, 50, 70, 3, CLMOE_ACTIVATION_SILU},
  };
  static const clmoe_experts_path paths[] = {CLMOE_EXPERTS_PATH_CLBLAST,
                                             CLMOE_EXPERTS_PATH_GROUPED};
  test_rng rng = {2024};
  double worst[2] = {0, 0};
  for (size_t i = 0; i < sizeof shapes / sizeof *shapes; ++i)
    for (int p = 0; p < 2; ++p) {
      clmoe_router_desc pd = policy_desc(CLMOE_POLICY_TOPK);
      pd.k = shapes[i].k;
      layer L;
      make_layer(&L, &rng, shapes[i].E, shapes[i].d, shapes[i].f, shapes[i].act,
                 &pd, (int)i % 2, paths[p]);
      double err = run_and_compare(&L, &rng, shapes[i].T, (int)i == 2);
      if (err > 1e-4)
        fprintf(stderr, "path %d E=%d d=%d f=%d T=%d: rel err %g\n",
                (int)paths[p], shapes[i].E, shapes[i].d, shapes[i].f,
                shapes[i].T, err);
      worst[p] = err > worst[p] ? err : worst[p];
      free_layer(&L);
    }
  printf("both paths: worst relative error clblast %.3g, grouped %.3g\n",
         worst[0], worst[1]);
  CHECK(worst[0] <= 1e-4 && worst[1] <= 1e-4);
  /* An unknown path is refused. */
  clmoe_experts_desc ed;
  clmoe_experts_desc_init(&ed);
  float w[4] = {1, 2, 3, 4};
  ed.num_experts = 1;
  ed.d_model = 2;
  ed.d_ff = 2;
  ed.activation = CLMOE_ACTIVATION_RELU;
  ed.w1_host = w;
  ed.w2_host = w;
  ed.path = 7;
  clmoe_experts *ex = NULL;
  CHECK_STATUS(clmoe_experts_create(test_context(), &ed, &ex),
               CLMOE_ERROR_INVALID_ARGUMENT);
  CHECK(ex == NULL);
}

/* A non-finite x fails the forward with NONFINITE_INPUT naming the token,
 * on both paths (the grouped one enqueues the whole layer before it learns
 * the route's outcome): y is left exactly as it was and the routing empty. */
static void test_forward_nonfinite(void) {
  static const clmoe_experts_path paths[] = {CLMOE_EXPERTS_PATH_CLBLAST,
                                             CLMOE_EXPERTS_PATH_GROUPED};
  clmoe_context *ctx = test_context();
  const int T = 37, d = 24;
  for (int p = 0; p < 2; ++p) {
    test_rng rng = {77};
    clmoe_router_desc pd = policy_desc(CLMOE_POLICY_TOPK);
    layer L;
    make_layer(&L, &rng, 8, d, 20, CLMOE_ACTIVATION_SWIGLU, &pd, 0, paths[p]);
    float *x = rng_grid(&rng, (size_t)T * d, 1.0f, 0.125f);
    float *y0 = rng_grid(&rng, (size_t)T * d, 1.0f, 0.125f);
    x[(size_t)29 * d + 5] = NAN;
    clmoe_tensor *xt = NULL, *yt = NULL;
    REQUIRE_OK(clmoe_tensor_create(ctx, CLMOE_DTYPE_F32, 2, (int64_t[]){T, d},
                                   x, &xt));
    REQUIRE_OK(clmoe_tensor_create(ctx, CLMOE_DTYPE_F32, 2, (int64_t[]){T, d},
                                   y0, &yt));
    clmoe_routing *rt = NULL;
    REQUIRE_OK(clmoe_routing_create(ctx, &rt));
    for (int acc = 0; acc < 2; ++acc) {
      CHECK_STATUS(clmoe_forward(L.router, L.experts, xt, NULL, yt, rt,
                                 acc ? CLMOE_COMBINE_ACCUMULATE : 0, 0, NULL,
                                 NULL),
                   CLMOE_ERROR_NONFINITE_INPUT);
      CHECK(strstr(clmoe_last_error_detail(), "token 29") != NULL);
      float *y = malloc(sizeof *y * (size_t)T * d);
      CHECK_OK(clmoe_tensor_read(yt, y, sizeof *y * (size_t)T * d));
      CHECK(memcmp(y, y0, sizeof *y * (size_t)T * d) == 0);
      free(y);
      int64_t n = -1;
      CHECK_OK(clmoe_routing_get_sizes(rt, NULL, NULL, &n));
      CHECK(n == 0);
      clmoe_tensor *xs = NULL;
      REQUIRE_OK(clmoe_tensor_create(ctx, CLMOE_DTYPE_F32, 2, (int64_t[]){1, d},
                                     NULL, &xs));
      CHECK_STATUS(clmoe_dispatch(rt, xt, xs, 0, NULL, NULL),
                   CLMOE_ERROR_INVALID_ARGUMENT);
      clmoe_tensor_destroy(xs);
    }
    clmoe_routing_destroy(rt);
    clmoe_tensor_destroy(xt);
    clmoe_tensor_destroy(yt);
    free(x);
    free(y0);
    free_layer(&L);
  }
}

int main(void) {
  test_forward_nonfinite();
  test_both_paths();
  test_dispatch_combine_identity();
  test_determinism_and_errors();
  test_out_in_layout();
  test_layer_grid();
  return test_finish("test_forward");
}
