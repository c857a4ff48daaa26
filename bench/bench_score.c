/* DA-MoE importance scoring: the fused Q/K path (two passes, or one with the
 * caller's log-sum-exp) against the materialised-probabilities path, over a
 * sweep of sequence lengths, head counts (grouped-query keys too) and head
 * sizes, with the grouped expert kernel's GFLOP/s on one dense expert (W1's
 * FLOPs) measured in the same
 * run as the yardstick for the fused kernels' QK throughput.
 *
 *   bench_score [--json FILE] [--quick] [--reps N] [--point T:H:Hkv:dh]
 *
 * --quick: only the T = 2048, H = 16, dh = 64 point (and a smaller expert);
 * --point: only that point (for tuning). */
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include "bench_common.h"
#include "provenance.h"
#include "clmoe/clmoe.h"

/* Probabilities are materialised (on the host, then on the device) only up
 * to this many bytes. */
#define MAX_PROBS_BYTES (1ull << 30)

typedef struct point {
  int T, H, Hkv, dh;
  double two_pass_ms, lse_ms, probs_ms; /* probs_ms 0: not materialised */
  double pairs;                         /* visible (query, key) pairs */
} point;

static clmoe_context *g_ctx;
static int g_reps = 3;

static void fill(float *v, size_t n, uint32_t seed) {
  uint32_t s = seed * 2654435761u + 1;
  for (size_t i = 0; i < n; ++i) {
    s = s * 1664525u + 1013904223u;
    v[i] = (float)(s >> 8) / 16777216.0f - 0.5f;
  }
}

static clmoe_tensor *device_tensor(int rank, const int64_t *shape,
                                   const float *host) {
  clmoe_tensor *t = NULL;
  die(clmoe_tensor_create(g_ctx, CLMOE_DTYPE_F32, rank, shape, host, &t),
      "tensor");
  return t;
}

/* Median wall time of g_reps finished calls after a warm-up (one call when
 * it takes longer than `long_ms`). */
static double time_score(const clmoe_score_desc *d, const clmoe_tensor *probs,
                         const clmoe_tensor *q, const clmoe_tensor *k,
                         clmoe_tensor *imp, double long_ms) {
  double samples[32];
  int n = 0;
  /* The warm-up builds the kernels (first use) and is never a sample. */
  die(clmoe_score_attention(g_ctx, d, probs, q, k, imp, 0, NULL, NULL),
      "score");
  die(clmoe_context_finish(g_ctx), "finish");
  while (n < g_reps) {
    double t0 = now_ms();
    die(clmoe_score_attention(g_ctx, d, probs, q, k, imp, 0, NULL, NULL),
        "score");
    die(clmoe_context_finish(g_ctx), "finish");
    samples[n++] = now_ms() - t0;
    if (samples[0] > long_ms)
      break;
  }
  return median(samples, n);
}

/* Valid causal probabilities (uniform over each row's visible keys): the
 * column-sum path's time does not depend on the values. */
static clmoe_tensor *causal_probs(int H, int T) {
  size_t n = (size_t)H * T * T;
  float *a = malloc(sizeof *a * n);
  if (!a)
    die(CLMOE_ERROR_OUT_OF_HOST_MEMORY, "probs");
  for (size_t row = 0; row < (size_t)H * T; ++row) {
    int i = (int)(row % (size_t)T);
    for (int j = 0; j < T; ++j)
      a[row * T + j] = j <= i ? 1.0f / (float)(i + 1) : 0.0f;
  }
  clmoe_tensor *t = device_tensor(3, (int64_t[]){H, T, T}, a);
  free(a);
  return t;
}

static void run_point(point *p) {
  int T = p->T, H = p->H, Hkv = p->Hkv, dh = p->dh;
  size_t nq = (size_t)T * H * dh, nk = (size_t)T * Hkv * dh;
  float *q = malloc(sizeof *q * nq), *k = malloc(sizeof *k * nk);
  if (!q || !k)
    die(CLMOE_ERROR_OUT_OF_HOST_MEMORY, "q, k");
  fill(q, nq, 1);
  fill(k, nk, 2);
  clmoe_tensor *qt = device_tensor(3, (int64_t[]){T, H, dh}, q),
               *kt = device_tensor(3, (int64_t[]){T, Hkv, dh}, k),
               *imp = device_tensor(1, (int64_t[]){T}, NULL),
               *lse = device_tensor(2, (int64_t[]){H, T}, NULL);
  free(q);
  free(k);
  clmoe_score_desc d;
  clmoe_score_desc_init(&d);
  d.mask = CLMOE_SCORE_MASK_CAUSAL;
  d.layout = CLMOE_SCORE_LAYOUT_SHD;
  p->two_pass_ms = time_score(&d, NULL, qt, kt, imp, 3000.0);
  /* The caller's lse: the one-pass time does not depend on its values, so
   * any finite ones do (a constant). */
  float *l = malloc(sizeof *l * (size_t)H * T);
  if (!l)
    die(CLMOE_ERROR_OUT_OF_HOST_MEMORY, "lse");
  for (size_t i = 0; i < (size_t)H * T; ++i)
    l[i] = 8.0f;
  die(clmoe_tensor_write(lse, l, sizeof *l * (size_t)H * T), "lse");
  free(l);
  d.lse = lse;
  p->lse_ms = time_score(&d, NULL, qt, kt, imp, 3000.0);
  p->pairs = (double)T * (T + 1) / 2.0 * H;
  p->probs_ms = 0;
  if (Hkv == H && dh == 64 && (double)H * T * T * 4 <= MAX_PROBS_BYTES) {
    clmoe_tensor *probs = causal_probs(H, T);
    clmoe_score_desc pd;
    clmoe_score_desc_init(&pd);
    pd.mask = CLMOE_SCORE_MASK_CAUSAL;
    p->probs_ms = time_score(&pd, probs, NULL, NULL, imp, 3000.0);
    clmoe_tensor_destroy(probs);
  }
  clmoe_tensor_destroy(qt);
  clmoe_tensor_destroy(kt);
  clmoe_tensor_destroy(imp);
  clmoe_tensor_destroy(lse);
}

/* QK GFLOP/s of the visible pairs: two passes for the computed lse. */
static double qk_gflops(const point *p, int passes, double ms) {
  return passes * 2.0 * p->pairs * p->dh / (ms * 1e6);
}

/* The grouped expert kernel on one dense expert of W1's FLOPs (1024 rows,
 * d 1024, f 2048, SwiGLU; scaled down with --quick): what the same device
 * reaches on a dense GEMM, the yardstick of the scoring kernels' QK
 * products. */
static double grouped_dense_gflops(int quick) {
  int T = quick ? 256 : 1024, d = quick ? 256 : 1024, f = quick ? 512 : 2048,
      E = 1, K = 1;
  size_t nw = (size_t)E * d * f;
  float *w1 = malloc(sizeof *w1 * nw), *w3 = malloc(sizeof *w3 * nw),
        *w2 = malloc(sizeof *w2 * nw), *x = malloc(sizeof *x * (size_t)T * E);
  if (!w1 || !w3 || !w2 || !x)
    die(CLMOE_ERROR_OUT_OF_HOST_MEMORY, "W1 weights");
  fill(w1, nw, 3);
  fill(w3, nw, 4);
  fill(w2, nw, 5);
  fill(x, (size_t)T * E, 6);
  clmoe_experts_desc ed;
  clmoe_experts_desc_init(&ed);
  ed.num_experts = E;
  ed.d_model = d;
  ed.d_ff = f;
  ed.activation = CLMOE_ACTIVATION_SWIGLU;
  ed.w1_host = w1;
  ed.w3_host = w3;
  ed.w2_host = w2;
  ed.path = CLMOE_EXPERTS_PATH_GROUPED;
  clmoe_experts *ex = NULL;
  die(clmoe_experts_create(g_ctx, &ed, &ex), "experts");
  clmoe_router_desc rd;
  clmoe_router_desc_init(&rd);
  rd.num_experts = E;
  rd.k = K;
  clmoe_router *r = NULL;
  die(clmoe_router_create(g_ctx, &rd, &r), "router");
  clmoe_tensor *logits = device_tensor(2, (int64_t[]){T, E}, x),
               *xs = device_tensor(2, (int64_t[]){(int64_t)T * K, d}, NULL),
               *ys = device_tensor(2, (int64_t[]){(int64_t)T * K, d}, NULL);
  clmoe_routing *rt = NULL;
  die(clmoe_routing_create(g_ctx, &rt), "routing");
  die(clmoe_route_logits(r, logits, NULL, rt, 0, NULL, NULL), "route");
  double samples[32];
  int reps = g_reps < 3 ? 3 : g_reps;
  for (int i = -1; i < reps; ++i) {
    die(clmoe_context_finish(g_ctx), "finish");
    double t0 = now_ms();
    die(clmoe_experts_run(ex, rt, xs, ys, 0, NULL, NULL), "experts");
    die(clmoe_context_finish(g_ctx), "finish");
    if (i >= 0)
      samples[i] = now_ms() - t0;
  }
  double ms = median(samples, reps), N = (double)T * K;
  clmoe_routing_destroy(rt);
  clmoe_tensor_destroy(logits);
  clmoe_tensor_destroy(xs);
  clmoe_tensor_destroy(ys);
  clmoe_router_destroy(r);
  clmoe_experts_destroy(ex);
  free(w1);
  free(w3);
  free(w2);
  free(x);
  return (2.0 * N * d * 2.0 * f + 2.0 * N * f * d) / (ms * 1e6);
}

/* Extra device memory of the fused path (MiB): lse and column sums [H, T],
 * the queries repacked as float32 [H, T, dh] and the keys packed by blocks
 * [H_kv, dh, Tp]. */
static double fused_extra_mib(const point *p) {
  double Tp = (p->T + 31) / 32 * 32;
  return (2.0 * p->H * p->T + (double)p->H * p->T * p->dh +
          (double)p->Hkv * p->dh * Tp) *
         4 / 1048576.0;
}

static void print_point(const point *p, double w1) {
  double g2 = qk_gflops(p, 2, p->two_pass_ms), g1 = qk_gflops(p, 1, p->lse_ms);
  printf("%6d %3d %4d %4d %10.1f %10.1f ", p->T, p->H, p->Hkv, p->dh,
         p->two_pass_ms, p->lse_ms);
  if (p->probs_ms > 0)
    printf("%10.1f %7.2f %7.2f ", p->probs_ms, p->two_pass_ms / p->probs_ms,
           p->lse_ms / p->probs_ms);
  else
    printf("%10s %7s %7s ", "-", "-", "-");
  printf("%7.0f %7.0f %6.2f %9.1f\n", g2, g1, g2 / w1, fused_extra_mib(p));
}

static void write_json(const char *path, const char *device, const point *ps,
                       int n, double w1, const char *const *target_text,
                       const double *target_value, const int *target_ok,
                       int nt) {
  FILE *f = fopen(path, "w");
  if (!f) {
    fprintf(stderr, "cannot write %s\n", path);
    exit(1);
  }
  bench_provenance prov;
  bench_provenance_read(g_ctx, &prov);
  fprintf(f, "{\n");
  bench_provenance_json(f, &prov);
  fprintf(f, ",\n  \"device\": \"%s\",\n  \"mask\": \"causal\",\n", device);
  fprintf(f, "  \"grouped_dense_gflops\": %.1f,\n  \"points\": [\n", w1);
  for (int i = 0; i < n; ++i) {
    const point *p = &ps[i];
    fprintf(f,
            "    {\"T\": %d, \"H\": %d, \"H_kv\": %d, \"dh\": %d, "
            "\"two_pass_ms\": %.3f, \"lse_ms\": %.3f, ",
            p->T, p->H, p->Hkv, p->dh, p->two_pass_ms, p->lse_ms);
    if (p->probs_ms > 0)
      fprintf(f, "\"materialised_ms\": %.3f, \"materialised_mib\": %.1f, ",
              p->probs_ms, (double)p->H * p->T * p->T * 4 / 1048576.0);
    else
      fprintf(f, "\"materialised_ms\": null, \"materialised_mib\": %.1f, ",
              (double)p->H * p->T * p->T * 4 / 1048576.0);
    fprintf(f,
            "\"fused_extra_mib\": %.3f, \"two_pass_qk_gflops\": %.1f, "
            "\"lse_qk_gflops\": %.1f}%s\n",
            fused_extra_mib(p), qk_gflops(p, 2, p->two_pass_ms),
            qk_gflops(p, 1, p->lse_ms), i + 1 < n ? "," : "");
  }
  fprintf(f, "  ],\n  \"targets\": [\n");
  for (int i = 0; i < nt; ++i)
    fprintf(f, "    {\"target\": \"%s\", \"value\": %.3f, \"met\": %s}%s\n",
            target_text[i], target_value[i],
            target_ok[i] < 0 ? "null" : target_ok[i] ? "true" : "false",
            i + 1 < nt ? "," : "");
  fprintf(f, "  ]\n}\n");
  fclose(f);
}

static const point *find_point(const point *ps, int n, int T, int H, int Hkv,
                               int dh) {
  for (int i = 0; i < n; ++i)
    if (ps[i].T == T && ps[i].H == H && ps[i].Hkv == Hkv && ps[i].dh == dh)
      return &ps[i];
  return NULL;
}

int main(int argc, char **argv) {
  const char *json = NULL;
  int quick = 0;
  point only = {0};
  for (int i = 1; i < argc; ++i) {
    if (!strcmp(argv[i], "--json") && i + 1 < argc)
      json = argv[++i];
    else if (!strcmp(argv[i], "--quick"))
      quick = 1;
    else if (!strcmp(argv[i], "--point") && i + 1 < argc &&
             sscanf(argv[++i], "%d:%d:%d:%d", &only.T, &only.H, &only.Hkv,
                    &only.dh) == 4 &&
             only.T > 0 && only.H > 0 && only.Hkv > 0 && only.dh > 0 &&
             only.H % only.Hkv == 0)
      quick = 1;
    else if (!strcmp(argv[i], "--reps") && i + 1 < argc)
      g_reps = atoi(argv[++i]) > 0 ? atoi(argv[i]) : 1;
    else {
      fprintf(stderr,
              "usage: %s [--json FILE] [--quick] [--reps N] "
              "[--point T:H:Hkv:dh]\n",
              argv[0]);
      return 2;
    }
  }
  if (g_reps > 31)
    g_reps = 31;
  die(clmoe_context_create(NULL, &g_ctx), "context");
  clmoe_device_info info;
  clmoe_device_info_init(&info);
  clmoe_context_get_device_info(g_ctx, &info);
  enum { MAX_POINTS = 24 };
  point ps[MAX_POINTS];
  int n = 0;
  static const int k_T[] = {1024, 2048, 4096, 8192, 32768};
  for (int ti = 0; ti < 5; ++ti)
    for (int dh = 64; dh <= 128; dh *= 2)
      for (int g = 0; g < 2; ++g) {
        if (quick && (k_T[ti] != 2048 || dh != 64 || g))
          continue;
        ps[n++] = (point){.T = k_T[ti], .H = 16, .Hkv = g ? 4 : 16, .dh = dh};
      }
  if (only.T)
    ps[(n = 1) - 1] = only;
  if (!quick) { /* the long context: O(T * H) memory, T^2 time */
    ps[n++] = (point){.T = 4096, .H = 8, .Hkv = 8, .dh = 64};
    ps[n++] = (point){.T = 32768, .H = 8, .Hkv = 8, .dh = 64};
  }
  printf("device: %s\ncausal, q/k [T, H, dh], median of %d (one run when a "
         "call takes over 3 s)\n",
         info.name, g_reps);
  double w1 = grouped_dense_gflops(quick);
  printf("grouped expert kernel, one dense expert of W1's size%s: %.0f "
         "GFLOP/s\n\n",
         quick ? " (quick)" : "", w1);
  printf("%6s %3s %4s %4s %10s %10s %10s %7s %7s %7s %7s %6s %9s\n", "T", "H",
         "Hkv", "dh", "2-pass ms", "lse ms", "probs ms", "2p/pr", "lse/pr",
         "GF 2p", "GF lse", "/dense", "extra MiB");
  for (int i = 0; i < n; ++i) {
    run_point(&ps[i]);
    print_point(&ps[i], w1);
    fflush(stdout);
  }
  /* Targets, each from this run, judged against attention (the fused
   * paths' QK products against a dense GEMM of the same device, and the
   * caller's lse against two passes); the materialised path is one
   * bandwidth-bound read of probabilities the caller already has, so its
   * ratio is information only (ok -1). */
  const char *text[8];
  double value[8];
  int ok[8], nt = 0;
  const point *p = find_point(ps, n, 2048, 16, 16, 64);
  if (p) {
    text[nt] = "T 2048 H 16 dh 64: two-pass QK GFLOP/s / dense expert >= 0.6";
    value[nt] = qk_gflops(p, 2, p->two_pass_ms) / w1;
    ok[nt] = value[nt] >= 0.6;
    ++nt;
    text[nt] = "T 2048 H 16 dh 64: caller's lse / two-pass time <= 0.55";
    value[nt] = p->lse_ms / p->two_pass_ms;
    ok[nt] = value[nt] <= 0.55;
    ++nt;
  }
  if (p && p->probs_ms > 0) {
    text[nt] = "T 2048 H 16 dh 64: two-pass / materialised (information)";
    value[nt] = p->two_pass_ms / p->probs_ms;
    ok[nt] = -1;
    ++nt;
  }
  const point *small = find_point(ps, n, 4096, 16, 16, 64),
              *big = find_point(ps, n, 32768, 16, 16, 64);
  if (small && big) {
    text[nt] = "H 16 dh 64: extra memory(32768) / (8 x extra(4096)) <= 1.1";
    value[nt] = fused_extra_mib(big) / (8.0 * fused_extra_mib(small));
    ok[nt] = value[nt] <= 1.1;
    ++nt;
  }
  static const int k_heads[2] = {8, 16};
  for (int hi = 0; hi < 2; ++hi) {
    int H = k_heads[hi];
    const point *a = find_point(ps, n, 4096, H, H, 64),
                *b = find_point(ps, n, 32768, H, H, 64);
    if (!a || !b)
      continue;
    text[nt] = H == 8 ? "H 8 dh 64: time(32768) / (64 x time(4096)) within "
                        "1 +- 0.2"
                      : "H 16 dh 64: time(32768) / (64 x time(4096)) within "
                        "1 +- 0.2";
    value[nt] = b->two_pass_ms / (64.0 * a->two_pass_ms);
    ok[nt] = fabs(value[nt] - 1.0) <= 0.2;
    ++nt;
  }
  printf("\n");
  for (int i = 0; i < nt; ++i)
    printf("%-64s %7.3f  %s\n", text[i], value[i],
           ok[i] < 0 ? "" : ok[i] ? "met" : "NOT met");
  if (json)
    write_json(json, info.name, ps, n, w1, text, value, ok, nt);
  clmoe_context_destroy(g_ctx);
  return 0;
}
