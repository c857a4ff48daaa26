/* clmoe-demo: routes a batch of tokens through a seeded random MoE router
 * (E = 16, d = 512, T = 1024) with four dynamic policies on the default
 * device and prints, per policy, the number of experts per token, expert
 * load, drops and time. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "clmoe/clmoe.h"

enum { T = 1024, D = 512, E = 16, REPS = 9 };

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

/* DA-MoE importance from a synthetic causal attention pattern in which a
 * few "anchor" tokens draw attention: attention received per token, divided
 * by how many queries can see it, scaled to [0, 1]. (Computed on the host
 * here; the device scoring kernels are a separate clmoe stage.) */
static void synthetic_importance(float *s) {
  double *recv = calloc(T, sizeof *recv);
  double *w = malloc(sizeof *w * T);
  for (int i = 0; i < T; ++i) {
    double sum = 0;
    for (int j = 0; j <= i; ++j) {
      double bias = (j % 97 == 0) ? 1.0 : (j % 13 == 0 ? 0.6 : 0.0);
      w[j] = exp(bias + 0.5 * normal());
      sum += w[j];
    }
    for (int j = 0; j <= i; ++j)
      recv[j] += w[j] / sum;
  }
  double mx = 0;
  for (int j = 0; j < T; ++j) {
    recv[j] /= (double)(T - j);
    mx = recv[j] > mx ? recv[j] : mx;
  }
  for (int j = 0; j < T; ++j)
    s[j] = (float)(recv[j] / mx);
  free(recv);
  free(w);
}

static void log_progress(void *user, clmoe_log_level level, const char *msg) {
  if (strstr(msg, ": built from source"))
    fprintf(stderr, "  %s\n", msg);
}

int main(void) {
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
  fprintf(stderr, "preparing kernels (compiled on first run, then cached)...\n");
  double t0 = now_ms();
  die(clmoe_context_build_programs(ctx), "building kernels");
  fprintf(stderr, "kernels ready in %.1f s\n", (now_ms() - t0) / 1e3);

  float *x = malloc(sizeof *x * T * D), *w = malloc(sizeof *w * D * E);
  float imp[T];
  for (int i = 0; i < T * D; ++i)
    x[i] = normal();
  for (int i = 0; i < D * E; ++i)
    w[i] = normal() / sqrtf((float)D) * 2.0f;
  synthetic_importance(imp);
  clmoe_tensor *xt = NULL, *it = NULL;
  die(clmoe_tensor_create(ctx, CLMOE_DTYPE_F32, 2, (int64_t[]){T, D}, x, &xt),
      "x");
  die(clmoe_tensor_create(ctx, CLMOE_DTYPE_F32, 1, (int64_t[]){T}, imp, &it),
      "importance");

  printf("MoE router: T = %d tokens, d = %d, E = %d experts\n\n", T, D, E);
  const struct {
    const char *name;
    clmoe_policy policy;
    int k, k_max;
    float p, capacity, k_mean;
  } runs[] = {
      {"TOPK(k=2)", CLMOE_POLICY_TOPK, 2, 0, 0, 0, 0},
      {"TOPP(p=0.4)", CLMOE_POLICY_TOPP, 2, 0, 0.4f, 0, 0},
      {"IMPORTANCE(k~2)", CLMOE_POLICY_IMPORTANCE, 2, 4, 0, 0, 2.0f},
      {"RESONANCE(k=2)", CLMOE_POLICY_RESONANCE, 2, 0, 0, 1.0f, 0},
  };
  printf("%-17s %6s %5s %5s %8s %9s %9s %9s %8s %10s\n", "policy", "mean K",
         "min", "max", "dropped", "load min", "load max", "bal.loss",
         "route ms", "tokens/s");
  char hists[4][256];
  for (int i = 0; i < 4; ++i) {
    clmoe_router_desc rd;
    clmoe_router_desc_init(&rd);
    rd.num_experts = E;
    rd.d_model = D;
    rd.weight_host = w;
    rd.policy = runs[i].policy;
    rd.k = runs[i].k;
    rd.k_max = runs[i].k_max;
    rd.p = runs[i].p > 0 ? runs[i].p : rd.p;
    rd.capacity_factor = runs[i].capacity;
    rd.k_mean = runs[i].k_mean;
    clmoe_router *r = NULL;
    die(clmoe_router_create(ctx, &rd, &r), "clmoe_router_create");
    clmoe_routing *rt = NULL;
    die(clmoe_routing_create(ctx, &rt), "clmoe_routing_create");
    double times[REPS];
    for (int rep = -1; rep < REPS; ++rep) {
      double a = now_ms();
      die(clmoe_route(r, xt, it, rt, 0, NULL, NULL), "clmoe_route");
      if (rep >= 0)
        times[rep] = now_ms() - a;
    }
    for (int a = 0; a < REPS; ++a) /* median by insertion sort */
      for (int b = a; b > 0 && times[b] < times[b - 1]; --b) {
        double tmp = times[b];
        times[b] = times[b - 1];
        times[b - 1] = tmp;
      }
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
    double med = times[REPS / 2];
    printf("%-17s %6.2f %5d %5d %8lld %8.1f%% %8.1f%% %9.3f %8.2f %10.0f\n",
           runs[i].name, st.mean_k, st.min_k, st.max_k, (long long)st.dropped,
           100 * lmin, 100 * lmax, st.balance_loss, med, T / (med / 1e3));
    size_t used = 0;
    for (int k = 0; k <= st.max_k; ++k)
      used += (size_t)snprintf(hists[i] + used, sizeof hists[i] - used,
                               "%sK=%d:%lld", k ? "  " : "", k,
                               (long long)hist[k]);
    clmoe_routing_destroy(rt);
    clmoe_router_destroy(r);
  }
  printf("\nK histogram (tokens per number of experts):\n");
  for (int i = 0; i < 4; ++i)
    printf("  %-17s %s\n", runs[i].name, hists[i]);
  clmoe_tensor_destroy(xt);
  clmoe_tensor_destroy(it);
  free(x);
  free(w);
  clmoe_context_destroy(ctx);
  return 0;
}
