/* clmoe-bench --train (train_bench.h): the W1 shape (T 512, d 1024, f 2048,
 * E 16, SwiGLU, float32) trained with top-2 and with top-p at mean K 1.5. */
#include "train_bench.h"

#include <math.h>
#include <stdio.h>
#include <string.h>

#include "bench_common.h"
#include "clmoe/clmoe_train.h"

typedef struct layer {
  clmoe_context *ctx;
  int T, d, f, E;
  clmoe_router *router;
  clmoe_experts *experts;
  clmoe_tensor *x, *y, *dx, *gwr, *gw1, *gw3, *gw2;
  clmoe_routing *rt;
} layer;

static float *randn(size_t n, float scale, unsigned seed) {
  float *v = malloc(n * sizeof *v);
  unsigned s = seed * 2654435761u + 1;
  for (size_t i = 0; i < n; ++i) { /* sum of 4 uniforms: roughly normal */
    float acc = 0;
    for (int j = 0; j < 4; ++j) {
      s = s * 1664525u + 1013904223u;
      acc += (float)(s >> 8) / 16777216.0f - 0.5f;
    }
    v[i] = acc * scale * 1.73f;
  }
  return v;
}

static clmoe_tensor *tensor(clmoe_context *ctx, int rank, const int64_t *dims,
                            const float *host) {
  clmoe_tensor *t = NULL;
  die(clmoe_tensor_create(ctx, CLMOE_DTYPE_F32, rank, dims, host, &t),
      "tensor");
  return t;
}

static void make_router(layer *L, clmoe_policy policy, float p,
                        const float *wr) {
  clmoe_router_desc rd;
  clmoe_router_desc_init(&rd);
  rd.num_experts = L->E;
  rd.d_model = L->d;
  rd.policy = policy;
  rd.k = 2;
  rd.p = p;
  rd.k_max = 4;
  rd.weight_host = wr;
  clmoe_router_destroy(L->router);
  L->router = NULL;
  die(clmoe_router_create(L->ctx, &rd, &L->router), "router");
}

static void make_layer(layer *L, clmoe_context *ctx, int T, int d, int f,
                       int E) {
  memset(L, 0, sizeof *L);
  L->ctx = ctx;
  L->T = T, L->d = d, L->f = f, L->E = E;
  size_t nw = (size_t)E * d * f;
  float *w1 = randn(nw, 1.0f / sqrtf((float)d), 1);
  float *w3 = randn(nw, 1.0f / sqrtf((float)d), 2);
  float *w2 = randn(nw, 1.0f / sqrtf((float)f), 3);
  float *x = randn((size_t)T * d, 1.0f, 4);
  clmoe_experts_desc ed;
  clmoe_experts_desc_init(&ed);
  ed.num_experts = E;
  ed.d_model = d;
  ed.d_ff = f;
  ed.w1_host = w1;
  ed.w3_host = w3;
  ed.w2_host = w2;
  die(clmoe_experts_create(ctx, &ed, &L->experts), "experts");
  int64_t td[2] = {T, d};
  L->x = tensor(ctx, 2, td, x);
  L->y = tensor(ctx, 2, td, NULL);
  L->dx = tensor(ctx, 2, td, NULL);
  L->gwr = tensor(ctx, 2, (int64_t[]){d, E}, NULL);
  L->gw1 = tensor(ctx, 3, (int64_t[]){E, d, f}, NULL);
  L->gw3 = tensor(ctx, 3, (int64_t[]){E, d, f}, NULL);
  L->gw2 = tensor(ctx, 3, (int64_t[]){E, f, d}, NULL);
  die(clmoe_routing_create(ctx, &L->rt), "routing");
  free(w1);
  free(w3);
  free(w2);
  free(x);
}

static void free_layer(layer *L) {
  clmoe_router_destroy(L->router);
  clmoe_experts_destroy(L->experts);
  clmoe_tensor *ts[] = {L->x, L->y, L->dx, L->gwr, L->gw1, L->gw3, L->gw2};
  for (size_t i = 0; i < sizeof ts / sizeof *ts; ++i)
    clmoe_tensor_destroy(ts[i]);
  clmoe_routing_destroy(L->rt);
}

static double time_forward(layer *L) {
  double t0 = now_ms();
  die(clmoe_forward(L->router, L->experts, L->x, NULL, L->y, L->rt, 0, 0,
                    NULL, NULL),
      "forward");
  die(clmoe_context_finish(L->ctx), "finish");
  return now_ms() - t0;
}

/* One training step's forward and backward (dy = y, every gradient);
 * *fwd_ms (may be NULL) receives the forward's share. */
static double time_train(layer *L, double *fwd_ms) {
  clmoe_train_desc td;
  clmoe_train_desc_init(&td);
  td.balance_coeff = 0.01f;
  clmoe_router_grads rg;
  clmoe_router_grads_init(&rg);
  rg.weight = L->gwr;
  clmoe_expert_grads eg;
  clmoe_expert_grads_init(&eg);
  eg.w1 = L->gw1;
  eg.w3 = L->gw3;
  eg.w2 = L->gw2;
  double t0 = now_ms();
  die(clmoe_forward_train(L->router, L->experts, NULL, NULL, L->x, NULL, L->y,
                          L->rt, 0, &td, NULL),
      "forward_train");
  if (fwd_ms) {
    die(clmoe_context_finish(L->ctx), "finish");
    *fwd_ms = now_ms() - t0;
  }
  die(clmoe_backward(L->router, L->experts, NULL, NULL, L->rt, L->x, L->y,
                     L->dx, &rg, &eg, NULL, NULL, NULL, 0),
      "backward");
  die(clmoe_context_finish(L->ctx), "finish");
  return now_ms() - t0;
}

static double mean_k(layer *L) {
  clmoe_routing_stats s;
  clmoe_routing_stats_init(&s);
  die(clmoe_route(L->router, L->x, NULL, L->rt, 0, NULL, NULL), "route");
  die(clmoe_routing_read_stats(L->rt, &s), "stats");
  return s.mean_k;
}

/* The p at which top-p routes this batch with mean K closest to 1.5
 * (bisection: mean K grows with p). */
static float p_for_mean_k(layer *L, const float *wr, double want) {
  float lo = 0.01f, hi = 0.99f;
  for (int i = 0; i < 14; ++i) {
    float mid = 0.5f * (lo + hi);
    make_router(L, CLMOE_POLICY_TOPP, mid, wr);
    if (mean_k(L) < want)
      lo = mid;
    else
      hi = mid;
  }
  return 0.5f * (lo + hi);
}

/* The torch peer in a child process: its median ms, or -1. */
static double torch_peer(int T, int d, int f, int E, int runs, char *why,
                         size_t len) {
  char cmd[512];
  snprintf(cmd, sizeof cmd,
           "/usr/bin/python3 %s/train_peer.py %d %d %d %d 2 %d 2>&1",
           CLMOE_BENCH_DIR, T, d, f, E, runs);
  FILE *p = popen(cmd, "r");
  double ms = -1;
  snprintf(why, len, "no output");
  char line[512];
  while (p && fgets(line, sizeof line, p)) {
    if (sscanf(line, "torch_ms %lf", &ms) == 1)
      snprintf(why, len, "%.200s", line + 9);
    else if (!strncmp(line, "torch_ms skipped", 16))
      snprintf(why, len, "%.200s", line + 17);
  }
  if (p)
    pclose(p);
  why[strcspn(why, "\n")] = 0;
  return ms;
}

int bench_train(clmoe_context *ctx, int quick, int runs,
                const bench_provenance *prov, const char *json) {
  int T = quick ? 64 : 512, d = quick ? 64 : 1024, f = quick ? 128 : 2048,
      E = quick ? 8 : 16;
  layer L;
  make_layer(&L, ctx, T, d, f, E);
  float *wr = randn((size_t)d * E, 1.0f / sqrtf((float)d), 5);
  printf("\n--train: T %d, d %d, f %d, E %d, SwiGLU, float32 weights, "
         "every gradient; median of %d alternating runs\n",
         T, d, f, E, runs);
  /* top-2, then top-p tuned to mean K 1.5 on this batch. */
  make_router(&L, CLMOE_POLICY_TOPK, 0, wr);
  time_forward(&L); /* warm-up: programs, buffers, transposed weights */
  time_train(&L, NULL);
  double *fw = malloc(sizeof(double) * runs * 4), *tr = fw + runs,
         *tp = fw + 2 * runs, *ft = fw + 3 * runs;
  for (int i = 0; i < runs; ++i) {
    fw[i] = time_forward(&L);
    tr[i] = time_train(&L, NULL);
    time_train(&L, &ft[i]); /* the split, in a run of its own */
  }
  double fwd = median(fw, runs), fb2 = median(tr, runs),
         fwd_train = median(ft, runs);
  float p = p_for_mean_k(&L, wr, 1.5);
  make_router(&L, CLMOE_POLICY_TOPP, p, wr);
  double kp = mean_k(&L);
  time_train(&L, NULL);
  for (int i = 0; i < runs; ++i)
    tp[i] = time_train(&L, NULL);
  double fbp = median(tp, runs);
  char why[256];
  double torch_ms = torch_peer(T, d, f, E, runs, why, sizeof why);
  double r_fb = fb2 / fwd, r_p = fbp / fb2;
  double r_torch = torch_ms > 0 ? torch_ms / fb2 : 0;
  printf("  forward (clmoe_forward, top-2)          %9.2f ms\n", fwd);
  printf("  forward + backward, top-2                %9.2f ms (the training "
         "forward %.2f, with its aux-loss read)\n",
         fb2, fwd_train);
  printf("  forward + backward, top-p (p %.3f, mean K %.2f) %9.2f ms\n", p,
         kp, fbp);
  if (torch_ms > 0)
    printf("  PyTorch fp32 expert loop + autograd      %9.2f ms (%s)\n",
           torch_ms, why);
  else
    printf("  PyTorch peer skipped: %s\n", why);
  printf("  forward+backward / forward               %9.2f  (target <= "
         "3.3: %s)\n",
         r_fb, r_fb <= 3.3 ? "met" : "not met");
  if (torch_ms > 0)
    printf("  PyTorch loop / clmoe forward+backward    %9.2f  (target >= "
           "1.5: %s)\n",
           r_torch, r_torch >= 1.5 ? "met" : "not met");
  printf("  top-p (mean K %.2f) / top-2, fwd+bwd      %9.2f  (target <= 0.8: "
         "%s)\n",
         kp, r_p, r_p <= 0.8 ? "met" : "not met");
  if (json) {
    FILE *j = fopen(json, "w");
    if (j) {
      fprintf(j, "{\n");
      bench_provenance_json(j, prov);
      fprintf(j,
              ",\n  \"train\": {\"T\": %d, \"d\": %d, \"f\": %d, \"E\": %d, "
              "\"forward_ms\": %.4f, \"fwd_bwd_top2_ms\": %.4f, "
              "\"fwd_bwd_topp_ms\": %.4f, \"forward_train_ms\": %.4f, "
              "\"topp_p\": %.4f, "
              "\"topp_mean_k\": %.4f, \"torch_ms\": %.4f,\n"
              "    \"fwd_bwd_over_fwd\": %.4f, \"torch_over_clmoe\": %.4f, "
              "\"topp_over_top2\": %.4f}\n}\n",
              T, d, f, E, fwd, fb2, fbp, fwd_train, p, kp, torch_ms, r_fb,
              r_torch, r_p);
      fclose(j);
    }
  }
  free(fw);
  free(wr);
  free_layer(&L);
  return 0;
}
