/* clmoe-demo: a real MoE layer (E = 16 experts, d = 512, d_ff = 1024,
 * SwiGLU, seeded random weights) run on T = 1024 tokens with four dynamic
 * routing policies on the default device. Prints, per policy, the experts
 * per token, expert load, drops, time per stage, tokens/s, and the error
 * against a double-precision host evaluation. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "clmoe/clmoe.h"

enum { T = 1024, D = 512, F = 1024, E = 16, REPS = 5 };

static void die(clmoe_status st, const char *what) {
  if (st) {
    fprintf(stderr, "clmoe-demo: %s failed: %s: %s\n", what,
            clmoe_status_string(st), clmoe_last_error_detail());
    exit(1);
  }
}

static double now_ms(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return ts.tv_sec * 1e3 + ts.tv_nsec / 1e6;
}

static uint64_t g_rng = 0x9e3779b97f4a7c15ull;
static float uniform(void) {
  g_rng ^= g_rng >> 12;
  g_rng ^= g_rng << 25;
  g_rng ^= g_rng >> 27;
  return (float)((g_rng * 2685821657736338717ull) >> 40) / 16777216.0f;
}
static float normal(void) {
  float s = 0;
  for (int i = 0; i < 4; ++i)
    s += uniform();
  return (s - 2.0f) * 1.7320508f;
}

/* A synthetic causal attention matrix A[1, T, T] in which a few "anchor"
 * tokens draw attention; clmoe turns it into DA-MoE importance. */
static float *synthetic_attention(void) {
  float *a = calloc((size_t)T * T, sizeof *a);
  for (int i = 0; i < T; ++i) {
    double sum = 0;
    for (int j = 0; j <= i; ++j) {
      double bias = (j % 97 == 0) ? 1.0 : (j % 13 == 0 ? 0.6 : 0.0);
      a[(size_t)i * T + j] = (float)exp(bias + 0.5 * normal());
      sum += a[(size_t)i * T + j];
    }
    for (int j = 0; j <= i; ++j)
      a[(size_t)i * T + j] = (float)(a[(size_t)i * T + j] / sum);
  }
  return a;
}

static double median(double *v, int n) {
  for (int a = 0; a < n; ++a) /* insertion sort: n is tiny */
    for (int b = a; b > 0 && v[b] < v[b - 1]; --b) {
      double t = v[b];
      v[b] = v[b - 1];
      v[b - 1] = t;
    }
  return v[n / 2];
}

static void *read_view(clmoe_routing *rt, clmoe_routing_array which) {
  const clmoe_tensor *v = NULL;
  int64_t n = 0;
  die(clmoe_routing_get_array(rt, which, &v), "routing array");
  clmoe_tensor_get_numel(v, &n);
  void *host = malloc((size_t)(n ? n : 1) * 4);
  die(clmoe_tensor_read(v, host, (size_t)n * 4), "routing read");
  return host;
}

/* The layer's output for every 8th token evaluated on the host in double
 * from the device's routing; returns max |y - ref| / max |ref|. */
static double max_error(clmoe_routing *rt, const float *x, const float *w1,
                        const float *w3, const float *w2, clmoe_tensor *yt) {
  int *off = read_view(rt, CLMOE_ROUTING_TOKEN_OFFSETS);
  int *ids = read_view(rt, CLMOE_ROUTING_EXPERT_IDS);
  float *gates = read_view(rt, CLMOE_ROUTING_GATES);
  float *y = malloc(sizeof *y * T * D);
  die(clmoe_tensor_read(yt, y, sizeof *y * T * D), "y");
  double *h = malloc(sizeof *h * F), *ref = malloc(sizeof *ref * D);
  double maxerr = 0, maxref = 1e-30;
  for (int t = 0; t < T; t += 8) {
    for (int c = 0; c < D; ++c)
      ref[c] = 0;
    for (int s = off[t]; s < off[t + 1]; ++s) {
      int e = ids[s];
      for (int j = 0; j < F; ++j) {
        double g = 0, u = 0;
        for (int i = 0; i < D; ++i) {
          g += (double)x[t * D + i] * w1[((size_t)e * D + i) * F + j];
          u += (double)x[t * D + i] * w3[((size_t)e * D + i) * F + j];
        }
        h[j] = g / (1 + exp(-g)) * u;
      }
      for (int c = 0; c < D; ++c) {
        double o = 0;
        for (int j = 0; j < F; ++j)
          o += h[j] * w2[((size_t)e * F + j) * D + c];
        ref[c] += gates[s] * o;
      }
    }
    for (int c = 0; c < D; ++c) {
      double e = fabs(y[t * D + c] - ref[c]);
      maxerr = e > maxerr ? e : maxerr;
      maxref = fabs(ref[c]) > maxref ? fabs(ref[c]) : maxref;
    }
  }
  free(off);
  free(ids);
  free(gates);
  free(y);
  free(h);
  free(ref);
  return maxerr / maxref;
}

static void log_progress(void *user, clmoe_log_level level, const char *msg) {
  if (strstr(msg, ": built from source"))
    fprintf(stderr, "  %s\n", msg);
}

/* The layer's host data: tokens, router and expert weights, attention. */
typedef struct layer {
  float *x, *w, *w1, *w3, *w2, *attn;
} layer;

typedef struct policy_run {
  const char *name;
  clmoe_policy policy;
  int k, k_max;
  float p, capacity, k_mean;
} policy_run;

static clmoe_context *open_context(void) {
  clmoe_context_desc cdesc;
  clmoe_context_desc_init(&cdesc);
  cdesc.log_fn = log_progress;
  clmoe_context *ctx = NULL;
  die(clmoe_context_create(&cdesc, &ctx), "clmoe_context_create");
  clmoe_device_info info;
  clmoe_device_info_init(&info);
  clmoe_context_get_device_info(ctx, &info);
  printf("clmoe %s on %s (%s)\n", clmoe_version_string(), info.name,
         info.platform_name);
  fflush(stdout);
  fprintf(stderr,
          "preparing kernels (compiled on first run, then cached)...\n");
  double t0 = now_ms();
  die(clmoe_context_build_programs(ctx), "building kernels");
  fprintf(stderr, "kernels ready in %.1f s\n", (now_ms() - t0) / 1e3);
  fflush(stderr);
  return ctx;
}

static layer make_layer(void) {
  layer L;
  L.x = malloc(sizeof *L.x * T * D);
  L.w = malloc(sizeof *L.w * D * E);
  L.w1 = malloc(sizeof *L.w1 * E * D * F);
  L.w3 = malloc(sizeof *L.w3 * E * D * F);
  L.w2 = malloc(sizeof *L.w2 * E * F * D);
  if (!L.x || !L.w || !L.w1 || !L.w3 || !L.w2) {
    fprintf(stderr, "clmoe-demo: out of host memory\n");
    exit(1);
  }
  for (int i = 0; i < T * D; ++i)
    L.x[i] = normal();
  for (int i = 0; i < D * E; ++i)
    L.w[i] = normal() / sqrtf((float)D) * 2.0f;
  for (size_t i = 0; i < (size_t)E * D * F; ++i) {
    L.w1[i] = normal() / sqrtf((float)D);
    L.w3[i] = normal() / sqrtf((float)D);
    L.w2[i] = normal() / sqrtf((float)F);
  }
  L.attn = synthetic_attention();
  return L;
}

static void free_layer(layer *L) {
  free(L->attn);
  free(L->x);
  free(L->w);
  free(L->w1);
  free(L->w3);
  free(L->w2);
}

/* DA-MoE importance [T] from the synthetic attention, timed. */
static clmoe_tensor *score_importance(clmoe_context *ctx, const layer *L) {
  clmoe_tensor *it = NULL, *at = NULL;
  die(clmoe_tensor_create(ctx, CLMOE_DTYPE_F32, 1, (int64_t[]){T}, NULL, &it),
      "importance");
  die(clmoe_tensor_create(ctx, CLMOE_DTYPE_F32, 3, (int64_t[]){1, T, T},
                          L->attn, &at),
      "attention");
  clmoe_score_desc sd;
  clmoe_score_desc_init(&sd);
  sd.mask = CLMOE_SCORE_MASK_CAUSAL;
  die(clmoe_score_attention(ctx, &sd, at, NULL, NULL, it, 0, NULL, NULL),
      "clmoe_score_attention"); /* warm-up: first launch compiles */
  double ts = now_ms();
  die(clmoe_score_attention(ctx, &sd, at, NULL, NULL, it, 0, NULL, NULL),
      "clmoe_score_attention");
  printf("DA-MoE importance scored from a %dx%d causal attention matrix in "
         "%.2f ms\n",
         T, T, now_ms() - ts);
  clmoe_tensor_destroy(at);
  return it;
}

static clmoe_experts *make_experts(clmoe_context *ctx, const layer *L) {
  clmoe_experts_desc ed;
  clmoe_experts_desc_init(&ed);
  ed.num_experts = E;
  ed.d_model = D;
  ed.d_ff = F;
  ed.activation = CLMOE_ACTIVATION_SWIGLU;
  ed.w1_host = L->w1;
  ed.w3_host = L->w3;
  ed.w2_host = L->w2;
  clmoe_experts *experts = NULL;
  die(clmoe_experts_create(ctx, &ed, &experts), "clmoe_experts_create");
  return experts;
}

static clmoe_router *make_router(clmoe_context *ctx, const layer *L,
                                 const policy_run *run) {
  clmoe_router_desc rd;
  clmoe_router_desc_init(&rd);
  rd.num_experts = E;
  rd.d_model = D;
  rd.weight_host = L->w;
  rd.policy = run->policy;
  rd.k = run->k;
  rd.k_max = run->k_max;
  rd.p = run->p > 0 ? run->p : rd.p;
  rd.capacity_factor = run->capacity;
  rd.k_mean = run->k_mean;
  clmoe_router *r = NULL;
  die(clmoe_router_create(ctx, &rd, &r), "clmoe_router_create");
  return r;
}

/* Median times (ms) of route, dispatch, experts, combine (each stage on its
 * own, finished before the next) and of the whole clmoe_forward. */
static void time_stages(clmoe_context *ctx, clmoe_router *r,
                        clmoe_experts *experts, clmoe_tensor *xt,
                        clmoe_tensor *it, clmoe_tensor *yt, clmoe_routing *rt,
                        double med[5]) {
  double stage[5][REPS];
  clmoe_tensor *xs = NULL, *ys = NULL;
  for (int rep = -1; rep < REPS; ++rep) {
    double a = now_ms();
    die(clmoe_route(r, xt, it, rt, 0, NULL, NULL), "clmoe_route");
    double b = now_ms();
    int64_t N = 0;
    die(clmoe_routing_get_sizes(rt, NULL, NULL, &N), "sizes");
    if (!xs) {
      die(clmoe_tensor_create(ctx, CLMOE_DTYPE_F32, 2, (int64_t[]){N, D}, NULL,
                              &xs),
          "x_sorted");
      die(clmoe_tensor_create(ctx, CLMOE_DTYPE_F32, 2, (int64_t[]){N, D}, NULL,
                              &ys),
          "y_sorted");
    }
    die(clmoe_dispatch(rt, xt, xs, 0, NULL, NULL), "clmoe_dispatch");
    clmoe_context_finish(ctx);
    double c = now_ms();
    die(clmoe_experts_run(experts, rt, xs, ys, 0, NULL, NULL),
        "clmoe_experts_run");
    clmoe_context_finish(ctx);
    double dd = now_ms();
    die(clmoe_combine(rt, ys, yt, 0, 0, NULL, NULL), "clmoe_combine");
    clmoe_context_finish(ctx);
    double e = now_ms();
    die(clmoe_forward(r, experts, xt, it, yt, rt, 0, 0, NULL, NULL),
        "clmoe_forward");
    clmoe_context_finish(ctx);
    double f = now_ms();
    if (rep >= 0) {
      stage[0][rep] = b - a;
      stage[1][rep] = c - b;
      stage[2][rep] = dd - c;
      stage[3][rep] = e - dd;
      stage[4][rep] = f - e;
    }
  }
  for (int k = 0; k < 5; ++k)
    med[k] = median(stage[k], REPS);
  clmoe_tensor_destroy(xs);
  clmoe_tensor_destroy(ys);
}

/* Runs one policy, prints its table row and writes its K histogram. */
static void run_policy(clmoe_context *ctx, const layer *L,
                       clmoe_experts *experts, clmoe_tensor *xt,
                       clmoe_tensor *it, clmoe_tensor *yt,
                       const policy_run *run, char *hist_text, size_t len) {
  clmoe_router *r = make_router(ctx, L, run);
  clmoe_routing *rt = NULL;
  die(clmoe_routing_create(ctx, &rt), "clmoe_routing_create");
  double med[5];
  time_stages(ctx, r, experts, xt, it, yt, rt, med);
  int64_t hist[E + 1];
  float load[E + 1], prob[E + 1];
  clmoe_routing_stats st;
  clmoe_routing_stats_init(&st);
  st.k_histogram = hist;
  st.expert_load = load;
  st.mean_prob = prob;
  st.array_capacity = E + 1;
  die(clmoe_routing_read_stats(rt, &st), "clmoe_routing_read_stats");
  float lmin = 1, lmax = 0;
  for (int e = 0; e < E; ++e) {
    lmin = load[e] < lmin ? load[e] : lmin;
    lmax = load[e] > lmax ? load[e] : lmax;
  }
  double err = max_error(rt, L->x, L->w1, L->w3, L->w2, yt);
  printf("%-16s %6.2f %8lld %7.1f%% %7.1f%% | %7.2f %8.2f %8.2f %8.2f %8.2f "
         "| %9.0f %9.1e\n",
         run->name, st.mean_k, (long long)st.dropped, 100 * lmin, 100 * lmax,
         med[0], med[1], med[2], med[3], med[4], T / (med[4] / 1e3), err);
  size_t used = 0;
  for (int k = 0; k <= st.max_k && used < len; ++k)
    used += (size_t)snprintf(hist_text + used, len - used, "%sK=%d:%lld",
                             k ? "  " : "", k, (long long)hist[k]);
  clmoe_routing_destroy(rt);
  clmoe_router_destroy(r);
}

int main(void) {
  clmoe_context *ctx = open_context();
  layer L = make_layer();
  clmoe_tensor *xt = NULL, *yt = NULL;
  die(clmoe_tensor_create(ctx, CLMOE_DTYPE_F32, 2, (int64_t[]){T, D}, L.x, &xt),
      "x");
  clmoe_tensor *it = score_importance(ctx, &L);
  die(clmoe_tensor_create(ctx, CLMOE_DTYPE_F32, 2, (int64_t[]){T, D}, NULL,
                          &yt),
      "y");
  clmoe_experts *experts = make_experts(ctx, &L);
  printf("MoE layer: T = %d tokens, d = %d, d_ff = %d, E = %d experts, "
         "SwiGLU; times are medians of %d runs\n\n",
         T, D, F, E, REPS);
  const policy_run runs[] = {
      {"TOPK(k=2)", CLMOE_POLICY_TOPK, 2, 0, 0, 0, 0},
      {"TOPP(p=0.4)", CLMOE_POLICY_TOPP, 2, 0, 0.4f, 0, 0},
      {"IMPORTANCE(k~2)", CLMOE_POLICY_IMPORTANCE, 2, 4, 0, 0, 2.0f},
      {"RESONANCE(k=2)", CLMOE_POLICY_RESONANCE, 2, 0, 0, 1.0f, 0},
  };
  printf("%-16s %6s %8s %8s %8s | %7s %8s %8s %8s %8s | %9s %9s\n", "policy",
         "mean K", "dropped", "load min", "load max", "route", "dispatch",
         "experts", "combine", "forward", "tokens/s", "max err");
  fprintf(stderr, "warming up (the first GEMMs compile CLBlast's kernels, a "
                  "few seconds)...\n");
  char hists[4][256];
  for (int i = 0; i < 4; ++i)
    run_policy(ctx, &L, experts, xt, it, yt, &runs[i], hists[i],
               sizeof hists[i]);
  printf("(stage times in ms; max err = max |y - y_host| / max |y_host| over "
         "every 8th token, y_host in double precision)\n");
  printf("\nK histogram (tokens per number of experts):\n");
  for (int i = 0; i < 4; ++i)
    printf("  %-16s %s\n", runs[i].name, hists[i]);
  clmoe_experts_destroy(experts);
  clmoe_tensor_destroy(xt);
  clmoe_tensor_destroy(it);
  clmoe_tensor_destroy(yt);
  free_layer(&L);
  clmoe_context_destroy(ctx);
  return 0;
}
