/* The grouped kernel's shapes: the work-group (local-memory, GPU) kernel
 * under several tile shapes, and the work-item (CPU) kernel in its other
 * work orders (TC, PN), against the work-item kernel's default order, for
 * F32/F16/BF16 weights, every activation, with and without biases, on
 * ragged groups (empty experts, one-row experts, groups larger than a tile,
 * sizes that are multiples of no tile), and both against a double-precision
 * reference of the rounded weights. Both sum in the same order, so with
 * ReLU (no transcendental) they give the same bits; exp-based activations
 * may differ in the last bit (scalar and vector exp are separate builtins),
 * so there the two agree to 1e-6. Each shape's
 * context comes from its own tuning file, so this runs on any device. */
#define CL_TARGET_OPENCL_VERSION 120
#include <CL/cl.h>

#include "harness.h"
#include "ref_16bit.h"
#include "ref_ffn.h"

enum { E = 7, D = 37, F = 29 };
static const int32_t k_groups[E] = {0, 1, 25, 0, 3, 48, 2};

/* A context whose table gives every device the grouped kernel `grouped`. */
static clmoe_context *context_for(const char *grouped) {
  char line[256];
  snprintf(line, sizeof line, "*\t*\t*\tgrouped\t%s\t-\t-\tROUTER=grouped",
           grouped);
  return test_context_with_table(line);
}

typedef struct weights {
  float *w1, *w3, *w2, *b1, *b3, *b2; /* rounded to the storage dtype */
} weights;

static float *draw(test_rng *rng, size_t n, float scale, clmoe_dtype dt) {
  float *v = malloc(sizeof *v * n);
  for (size_t i = 0; i < n; ++i)
    v[i] = round_to(dt, rng_normal(rng) * scale);
  return v;
}

/* y_sorted of one experts_run on ctx; returns a malloc'ed [N, D] copy. */
static float *run(clmoe_context *ctx, const weights *w, clmoe_activation act,
                  clmoe_dtype wdt, int biases, const float *xs, int N) {
  clmoe_experts_desc ed;
  clmoe_experts_desc_init(&ed);
  ed.num_experts = E;
  ed.d_model = D;
  ed.d_ff = F;
  ed.activation = act;
  ed.path = CLMOE_EXPERTS_PATH_GROUPED;
  ed.weight_dtype = wdt;
  ed.w1_host = w->w1;
  ed.w2_host = w->w2;
  int gated = act == CLMOE_ACTIVATION_SWIGLU || act == CLMOE_ACTIVATION_GEGLU;
  ed.w3_host = gated ? w->w3 : NULL;
  if (biases) {
    ed.b1_host = w->b1;
    ed.b2_host = w->b2;
    ed.b3_host = gated ? w->b3 : NULL;
  }
  clmoe_experts *x = NULL;
  clmoe_routing *rt = NULL;
  clmoe_tensor *in = NULL, *out = NULL;
  REQUIRE_OK(clmoe_experts_create(ctx, &ed, &x));
  REQUIRE_OK(clmoe_routing_create(ctx, &rt));
  REQUIRE_OK(clmoe_routing_set_groups(rt, E, k_groups));
  int64_t dims[2] = {N, D};
  REQUIRE_OK(clmoe_tensor_create(ctx, CLMOE_DTYPE_F32, 2, dims, xs, &in));
  REQUIRE_OK(clmoe_tensor_create(ctx, CLMOE_DTYPE_F32, 2, dims, NULL, &out));
  CHECK_OK(clmoe_experts_run(x, rt, in, out, 0, NULL, NULL));
  float *y = calloc((size_t)N * D + 1, sizeof *y);
  CHECK_OK(clmoe_tensor_read(out, y, (size_t)N * D * sizeof *y));
  clmoe_tensor_destroy(in);
  clmoe_tensor_destroy(out);
  clmoe_routing_destroy(rt);
  clmoe_experts_destroy(x);
  return y;
}

/* Each row is its own token, routed to its group's expert with gate 1. */
static double reference_error(const weights *w, clmoe_activation act,
                              int biases, const float *xs, int N,
                              const float *y) {
  int ids[128], offsets[129];
  float gates[128];
  for (int e = 0, r = 0; e < E; ++e)
    for (int i = 0; i < k_groups[e]; ++i, ++r)
      ids[r] = e;
  for (int r = 0; r <= N; ++r)
    offsets[r] = r;
  for (int r = 0; r < N; ++r)
    gates[r] = 1.0f;
  ref_result rr = {.T = N, .E = E, .N = N};
  rr.ids = ids;
  rr.offsets = offsets;
  rr.gates = gates;
  ref_experts rx = {E,
                    D,
                    F,
                    act,
                    w->w1,
                    w->w3,
                    w->w2,
                    biases ? w->b1 : NULL,
                    biases ? w->b3 : NULL,
                    biases ? w->b2 : NULL};
  double *yr = malloc(sizeof *yr * (size_t)N * D);
  ref_moe(&rx, &rr, xs, 0, yr);
  double err = max_rel(y, yr, (size_t)N * D);
  free(yr);
  return err;
}

int main(void) {
  /* VW 8: every shape shares the packed panels with the private kernel.
   * The first NUM_ORDERS shapes are the private kernel in its other work
   * orders (panel-major, several tiles per work-item, with and without the
   * prefetch): the same code per tile, so the same bits for every
   * activation. */
  const char *private_shape = "RM=8 VW=8 LX=0";
  enum { NUM_ORDERS = 3, NUM_SHAPES = 7 };
  const char *shapes[NUM_SHAPES] = {
      "RM=8 VW=8 LX=0 TC=0 PN=1",
      "RM=8 VW=8 LX=1 TC=0",
      "RM=8 VW=8 LX=0 TC=2 PN=1",
      "RM=8 VW=8 KERNEL=local BM=24 NP=2 BK=5 TM=8 TN=2",
      "RM=8 VW=8 KERNEL=local BM=64 NP=1 BK=16 TM=4 TN=4",
      "RM=8 VW=8 KERNEL=local BM=1 NP=3 BK=64 TM=1 TN=8",
      "RM=8 VW=8 KERNEL=local BM=7 NP=4 BK=1 TM=7 TN=1",
  };
  int N = 0;
  for (int e = 0; e < E; ++e)
    N += k_groups[e];
  clmoe_context *cp = context_for(private_shape);
  clmoe_context *cl[NUM_SHAPES];
  for (int s = 0; s < NUM_SHAPES; ++s)
    cl[s] = context_for(shapes[s]);
  const clmoe_dtype dts[3] = {CLMOE_DTYPE_F32, CLMOE_DTYPE_F16,
                              CLMOE_DTYPE_BF16};
  const clmoe_activation acts[5] = {
      CLMOE_ACTIVATION_RELU, CLMOE_ACTIVATION_GELU, CLMOE_ACTIVATION_SILU,
      CLMOE_ACTIVATION_SWIGLU, CLMOE_ACTIVATION_GEGLU};
  test_rng rng = {12345};
  float *xs = draw(&rng, (size_t)N * D, 1.0f, CLMOE_DTYPE_F32);
  double worst = 0;
  int runs = 0;
  for (int di = 0; di < 3; ++di) {
    clmoe_dtype dt = dts[di];
    weights w = {draw(&rng, (size_t)E * D * F, 0.2f, dt),
                 draw(&rng, (size_t)E * D * F, 0.2f, dt),
                 draw(&rng, (size_t)E * F * D, 0.2f, dt),
                 draw(&rng, (size_t)E * F, 0.5f, CLMOE_DTYPE_F32),
                 draw(&rng, (size_t)E * F, 0.5f, CLMOE_DTYPE_F32),
                 draw(&rng, (size_t)E * D, 0.5f, CLMOE_DTYPE_F32)};
    for (int ai = 0; ai < 5; ++ai) {
      int biases = (ai + di) % 2;
      float *yp = run(cp, &w, acts[ai], dt, biases, xs, N);
      double err = reference_error(&w, acts[ai], biases, xs, N, yp);
      worst = fmax(worst, err);
      CHECK(err <= 1e-5);
      for (int s = 0; s < NUM_SHAPES; ++s) {
        float *yl = run(cl[s], &w, acts[ai], dt, biases, xs, N);
        double diff = 0, scale = 1e-30;
        for (int i = 0; i < N * D; ++i) {
          diff = fmax(diff, fabs((double)yl[i] - yp[i]));
          scale = fmax(scale, fabs((double)yp[i]));
        }
        int same = s < NUM_ORDERS || acts[ai] == CLMOE_ACTIVATION_RELU
                       ? !memcmp(yp, yl, sizeof *yp * (size_t)N * D)
                       : diff <= 1e-6 * scale;
        double errl = reference_error(&w, acts[ai], biases, xs, N, yl);
        worst = fmax(worst, errl);
        CHECK(errl <= 1e-5);
        if (!same)
          fprintf(stderr,
                  "%s, dtype %d, activation %d: differs from the "
                  "private kernel\n",
                  shapes[s], dt, acts[ai]);
        CHECK(same);
        free(yl);
        ++runs;
      }
      free(yp);
    }
    float *all[6] = {w.w1, w.w3, w.w2, w.b1, w.b3, w.b2};
    for (int i = 0; i < 6; ++i)
      free(all[i]);
  }
  free(xs);
  printf("%d runs of other work orders and local-kernel shapes agree with "
         "the private kernel (orders and ReLU: bitwise); worst error against "
         "the reference %.3g\n",
         runs, worst);
  clmoe_context_destroy(cp);
  for (int s = 0; s < NUM_SHAPES; ++s)
    clmoe_context_destroy(cl[s]);
  return test_finish("test_gemm_shapes");
}
