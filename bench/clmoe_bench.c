/* clmoe-bench: per-stage and whole-layer times of a SwiGLU MoE layer for the
 * workloads of issue "Performance", with the peers measured side by side in
 * the same run (OpenBLAS cblas_sgemm over the same per-expert groups, one
 * dense CLBlast SGEMM of equal FLOPs, the same grouped kernel on one dense
 * expert of equal FLOPs). Ratios are the results; absolute figures are
 * context. Usage:
 *   clmoe-bench [--json FILE] [--runs N] [--only W1|W2|W3|W4] [--quick]
 *               [--experts-only] [--weights f32,bf16,f16,fp8_e4m3,mxfp4,
 *                int8,int4] [--load] [--train]
 * --quick runs tiny shapes (a smoke test of the benchmark itself);
 * --train only measures training steps (train_bench.c);
 * --load only measures loading a generated checkpoint (load_checkpoint.c);
 * --experts-only times just the expert GEMMs of both paths (bench/tune);
 * --weights times the grouped experts with each weight storage dtype
 * (default the three float ones; "" none) against the device's streaming read
 * bandwidth measured in the same run. W4 (prefill) runs on GPUs, or with
 * --only W4; on GPUs the GPU targets (expert GEMMs against one dense CLBlast
 * SGEMM, W3 against the CLBlast path) are added. */
#define CL_TARGET_OPENCL_VERSION 120
#include <CL/cl.h>
#include <cblas.h>
#include <clblast_c.h>
#include <math.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>

#include "bandwidth.h"
#include "provenance.h"
#include "bench_common.h"
#include "load_checkpoint.h"
#include "train_bench.h"

typedef struct workload {
  const char *name;
  int T, d, f, E, k;
} workload;

static const workload k_full[] = {
    {"W1", 512, 1024, 2048, 16, 2},
    {"W2", 256, 2048, 1024, 64, 8},
    {"W3", 16, 2048, 1024, 64, 8},
    {"W4", 4096, 2048, 1024, 64, 8},
};
static const workload k_quick[] = {
    {"W1", 64, 64, 128, 8, 2},
    {"W2", 32, 128, 64, 16, 4},
    {"W3", 4, 128, 64, 16, 4},
    {"W4", 128, 128, 64, 16, 8},
};
enum { NUM_WORKLOADS = 4 };

/* The device is a GPU: W4 runs by default and the GPU targets apply. */
static int g_gpu = 0;

enum { MAX_POLICIES = 5, MAX_WDTYPES = 7 };

/* Weight storage dtypes --weights may name. */
static const struct {
  const char *name;
  clmoe_dtype dtype;
} k_wdtypes[MAX_WDTYPES] = {
    {"f32", CLMOE_DTYPE_F32},        {"bf16", CLMOE_DTYPE_BF16},
    {"f16", CLMOE_DTYPE_F16},        {"fp8_e4m3", CLMOE_DTYPE_F8_E4M3},
    {"mxfp4", CLMOE_DTYPE_MXFP4},    {"int8", CLMOE_DTYPE_I8},
    {"int4", CLMOE_DTYPE_I4}};
/* The quantized formats' W3 (decode) goals over bf16 (k_wdtypes order from
 * index 3): a byte per weight, half a byte, a byte, half a byte. */
static const double k_quant_w3_goal[4] = {0.60, 0.40, 0.60, 0.45};

typedef struct result {
  workload w;
  int N;
  double score, route, dispatch, experts, combine, forward; /* ms */
  double alt_experts;    /* the other expert path, ms */
  double dense_same;     /* grouped path on one expert, equal FLOPs */
  double grouped_paired; /* the grouped experts, runs alternating with it */
  double dense_clblast;  /* one dense CLBlast SGEMM pair, equal FLOPs */
  double openblas_loop;  /* cblas_sgemm per expert group */
  double openblas_dense; /* cblas_sgemm, one dense pair, equal FLOPs */
  /* PyTorch's matmul over the same groups, float32 and bfloat16 (ms; 0:
   * torch not installed), bench/torch_gemm_peer.py in a child process */
  double torch_fp32, torch_bf16;
  double flops;          /* expert GEMM FLOPs of one forward */
  int num_policies;
  const char *policy[MAX_POLICIES];
  double policy_k[MAX_POLICIES], policy_ms[MAX_POLICIES];
  /* --weights: grouped experts per storage dtype (k_wdtypes order; 0 ms =
   * not measured) and the weight bytes one forward streams (experts with
   * rows only). */
  double weights_ms[MAX_WDTYPES], weights_streamed[MAX_WDTYPES];
} result;

static int g_runs = 9;
static int g_experts_only = 0;
/* --weights selection (default the float dtypes) */
static int g_weights[MAX_WDTYPES] = {1, 1, 1, 0, 0, 0, 0};
static double g_bandwidth;                     /* GB/s, measured once */
static bench_provenance g_prov;
/* The OpenBLAS kernel the peer runs, and whether it is a generic fallback
 * on a CPU its build does not know (then the peer's ratios are invalid). */
static char g_blas_core[64], g_blas_advice[128];
static int g_blas_fallback;
static clmoe_context *g_ctx;

/* Deterministic fill, uniform in [-scale, scale). */
static float *random_floats(size_t n, float scale, uint32_t seed) {
  float *v = malloc(sizeof *v * (n ? n : 1));
  if (!v)
    die(CLMOE_ERROR_OUT_OF_HOST_MEMORY, "host weights");
  uint32_t s = seed * 2654435761u + 1;
  for (size_t i = 0; i < n; ++i) {
    s = s * 1664525u + 1013904223u;
    v[i] = ((float)(s >> 8) / 16777216.0f * 2.0f - 1.0f) * scale;
  }
  return v;
}

static clmoe_tensor *tensor(int rows, int cols, const float *host) {
  clmoe_tensor *t = NULL;
  die(clmoe_tensor_create(g_ctx, CLMOE_DTYPE_F32, 2, (int64_t[]){rows, cols},
                          host, &t),
      "tensor");
  return t;
}

/* Median wall time (ms) of g_runs calls after one warm-up, each finished. */
#define TIME_MS(out, call)                                                     \
  do {                                                                         \
    double samples_[64];                                                       \
    for (int r_ = -1; r_ < g_runs; ++r_) {                                     \
      die(clmoe_context_finish(g_ctx), "finish");                              \
      double t0_ = now_ms();                                                   \
      die((call), #call);                                                      \
      die(clmoe_context_finish(g_ctx), "finish");                              \
      if (r_ >= 0)                                                             \
        samples_[r_] = now_ms() - t0_;                                         \
    }                                                                          \
    (out) = median(samples_, g_runs);                                          \
  } while (0)

static clmoe_router *make_router(const workload *w, const float *wr,
                                 clmoe_policy policy, float p) {
  clmoe_router_desc rd;
  clmoe_router_desc_init(&rd);
  rd.num_experts = w->E;
  rd.d_model = w->d;
  rd.weight_host = wr;
  rd.policy = policy;
  rd.k = w->k;
  rd.p = p;
  if (policy == CLMOE_POLICY_IMPORTANCE) {
    rd.k_min = 1;
    rd.k_max = 2 * w->k;
  }
  if (policy == CLMOE_POLICY_RESONANCE)
    rd.capacity_factor = 1.0f;
  clmoe_router *r = NULL;
  die(clmoe_router_create(g_ctx, &rd, &r), "router");
  return r;
}

static double mean_k(clmoe_routing *rt) {
  clmoe_routing_stats s;
  clmoe_routing_stats_init(&s);
  die(clmoe_routing_read_stats(rt, &s), "stats");
  return s.mean_k;
}

/* Top-p threshold whose mean K over x is closest to `target` (bisection:
 * mean K grows with p). */
static float calibrate_p(const workload *w, const float *wr, clmoe_tensor *x,
                         clmoe_routing *rt, double target) {
  float lo = 0.0f, hi = 1.0f;
  for (int i = 0; i < 14; ++i) {
    float p = 0.5f * (lo + hi);
    clmoe_router *r = make_router(w, wr, CLMOE_POLICY_TOPP, p);
    die(clmoe_route(r, x, NULL, rt, 0, NULL, NULL), "route (top-p)");
    clmoe_router_destroy(r);
    if (mean_k(rt) < target)
      lo = p;
    else
      hi = p;
  }
  return 0.5f * (lo + hi);
}

static clmoe_experts *make_experts_dtype(const workload *w, int E,
                                         const float *w1, const float *w3,
                                         const float *w2,
                                         clmoe_experts_path path,
                                         clmoe_dtype wdtype) {
  clmoe_experts_desc ed;
  clmoe_experts_desc_init(&ed);
  ed.num_experts = E;
  ed.d_model = w->d;
  ed.d_ff = w->f;
  ed.activation = CLMOE_ACTIVATION_SWIGLU;
  ed.w1_host = w1;
  ed.w3_host = w3;
  ed.w2_host = w2;
  ed.path = path;
  ed.weight_dtype = wdtype;
  clmoe_experts *x = NULL;
  die(clmoe_experts_create(g_ctx, &ed, &x), "experts");
  return x;
}

static clmoe_experts *make_experts(const workload *w, int E, const float *w1,
                                   const float *w3, const float *w2,
                                   clmoe_experts_path path) {
  return make_experts_dtype(w, E, w1, w3, w2, path, CLMOE_DTYPE_F32);
}

/* Causal attention probabilities A[H, T, T] with random positive rows. */
static float *attention(int H, int T) {
  size_t n = (size_t)H * T * T;
  float *a = random_floats(n, 1.0f, 77);
  for (size_t row = 0; row < (size_t)H * T; ++row) {
    int i = (int)(row % (size_t)T);
    float *r = a + row * T, sum = 0;
    for (int j = 0; j < T; ++j) {
      r[j] = j <= i ? fabsf(r[j]) + 0.01f : 0.0f;
      sum += r[j];
    }
    for (int j = 0; j <= i; ++j)
      r[j] /= sum;
  }
  return a;
}

/* Expert GEMMs of the same groups with OpenBLAS on the host (gate, up and
 * down projections; the activation is left out, to the peer's advantage). */
static double openblas_loop(const workload *w, const int *off, const float *xs,
                            const float *w1, const float *w3, const float *w2,
                            float *h1, float *h3, float *ys) {
  double samples[64];
  int d = w->d, f = w->f;
  for (int r = -1; r < g_runs; ++r) {
    double t0 = now_ms();
    for (int e = 0; e < w->E; ++e) {
      int n = off[e + 1] - off[e];
      if (!n)
        continue;
      const float *a = xs + (size_t)off[e] * d;
      size_t we = (size_t)e * d * f;
      cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, n, f, d, 1.0f, a,
                  d, w1 + we, f, 0.0f, h1 + (size_t)off[e] * f, f);
      cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, n, f, d, 1.0f, a,
                  d, w3 + we, f, 0.0f, h3 + (size_t)off[e] * f, f);
      cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, n, d, f, 1.0f,
                  h1 + (size_t)off[e] * f, f, w2 + we, d, 0.0f,
                  ys + (size_t)off[e] * d, d);
    }
    if (r >= 0)
      samples[r] = now_ms() - t0;
  }
  return median(samples, g_runs);
}

/* The PyTorch peer (bench/torch_gemm_peer.py, a child process) on the same
 * groups: *fp32 and *bf16 in ms, both 0 when torch is absent. */
static void torch_peer(const workload *w, const int *off, double *fp32,
                       double *bf16) {
  size_t len = 256 + (size_t)w->E * 12;
  char *cmd = malloc(len);
  int at = snprintf(cmd, len, "/usr/bin/python3 %s/torch_gemm_peer.py %d %d %d",
                    CLMOE_BENCH_DIR, w->d, w->f, g_runs);
  for (int e = 0; e < w->E && at > 0 && (size_t)at < len; ++e)
    at += snprintf(cmd + at, len - (size_t)at, " %d", off[e + 1] - off[e]);
  snprintf(cmd + at, len - (size_t)at, " 2>&1");
  *fp32 = *bf16 = 0;
  FILE *p = popen(cmd, "r");
  char line[512];
  while (p && fgets(line, sizeof line, p))
    if (sscanf(line, "torch_gemm fp32_ms %lf bf16_ms %lf", fp32, bf16) != 2)
      *fp32 = *bf16 = 0;
  if (p)
    pclose(p);
  free(cmd);
}

/* The same FLOPs as one dense expert over all N rows, OpenBLAS. */
static double openblas_dense(const workload *w, int N, const float *xs,
                             const float *w1, const float *w3, const float *w2,
                             float *h1, float *h3, float *ys) {
  int off[2] = {0, N};
  workload one = *w;
  one.E = 1;
  return openblas_loop(&one, off, xs, w1, w3, w2, h1, h3, ys);
}

/* One dense CLBlast SGEMM pair of equal FLOPs: [N, d] x [d, 2f], then
 * [N, f] x [f, d], on the context's queue. */
static double dense_clblast(const workload *w, int N) {
  cl_context c;
  cl_command_queue q;
  clmoe_context_get_cl(g_ctx, &c, NULL, &q);
  int d = w->d, F = 2 * w->f;
  cl_int err;
  size_t sizes[5] = {(size_t)N * d, (size_t)d * F, (size_t)N * F,
                     (size_t)w->f * d, (size_t)N * d};
  cl_mem m[5];
  for (int i = 0; i < 5; ++i) {
    m[i] = clCreateBuffer(c, CL_MEM_READ_WRITE, sizes[i] * 4, NULL, &err);
    if (!m[i])
      die(CLMOE_ERROR_OPENCL, "clCreateBuffer (dense CLBlast)");
  }
  double samples[64];
  for (int r = -1; r < g_runs; ++r) {
    clFinish(q);
    double t0 = now_ms();
    CLBlastStatusCode s1 = CLBlastSgemm(
        CLBlastLayoutRowMajor, CLBlastTransposeNo, CLBlastTransposeNo, N, F, d,
        1.0f, m[0], 0, d, m[1], 0, F, 0.0f, m[2], 0, F, &q, NULL);
    CLBlastStatusCode s2 = CLBlastSgemm(
        CLBlastLayoutRowMajor, CLBlastTransposeNo, CLBlastTransposeNo, N, d,
        w->f, 1.0f, m[2], 0, F, m[3], 0, d, 0.0f, m[4], 0, d, &q, NULL);
    clFinish(q);
    if (s1 != CLBlastSuccess || s2 != CLBlastSuccess)
      die(CLMOE_ERROR_CLBLAST, "CLBlastSgemm (dense)");
    if (r >= 0)
      samples[r] = now_ms() - t0;
  }
  for (int i = 0; i < 5; ++i)
    clReleaseMemObject(m[i]);
  return median(samples, g_runs);
}

/* Median wall times (ms) of clmoe_experts_run for n <= MAX_WDTYPES experts
 * objects (NULL entries skipped) on their routings, run alternately (one of
 * each in turn, three times the usual runs, after one warm-up round), so a
 * slow spell of the shared machine falls on all of them and their ratios
 * hold. */
static void time_alternating(int n, clmoe_experts *const *ex,
                             clmoe_routing *const *rt, clmoe_tensor *xs,
                             clmoe_tensor *ys, double *ms) {
  double samples[MAX_WDTYPES][64];
  int runs = 3 * g_runs < 64 ? 3 * g_runs : 64;
  for (int r = -1; r < runs; ++r)
    for (int i = 0; i < n; ++i) {
      if (!ex[i])
        continue;
      die(clmoe_context_finish(g_ctx), "finish");
      double t0 = now_ms();
      die(clmoe_experts_run(ex[i], rt[i], xs, ys, 0, NULL, NULL),
          "experts run");
      die(clmoe_context_finish(g_ctx), "finish");
      if (r >= 0)
        samples[i][r] = now_ms() - t0;
    }
  for (int i = 0; i < n; ++i)
    if (ex[i])
      ms[i] = median(samples[i], runs);
}

/* The grouped path on a single expert holding all N rows: the same kernel,
 * equal FLOPs, no raggedness. Its runs alternate with runs of the grouped
 * experts `grouped` on `grt` (time_alternating); *grouped_ms is the
 * grouped median of the same loop. */
static double dense_same_kernel(const workload *w, int N, const float *w1,
                                const float *w3, const float *w2,
                                clmoe_experts_path path, clmoe_experts *grouped,
                                clmoe_routing *grt, clmoe_tensor *xs,
                                clmoe_tensor *ys, double *grouped_ms) {
  workload one = *w;
  one.E = 1;
  one.k = 1;
  clmoe_experts *ex = make_experts(&one, 1, w1, w3, w2, path);
  clmoe_router_desc rd;
  clmoe_router_desc_init(&rd);
  rd.num_experts = 1;
  rd.k = 1;
  clmoe_router *r = NULL;
  die(clmoe_router_create(g_ctx, &rd, &r), "dense router");
  float *z = calloc((size_t)N, sizeof *z);
  clmoe_tensor *zt = tensor(N, 1, z);
  clmoe_routing *rt = NULL;
  die(clmoe_routing_create(g_ctx, &rt), "routing");
  die(clmoe_route_logits(r, zt, NULL, rt, 0, NULL, NULL), "dense route");
  clmoe_experts *runs_ex[2] = {ex, grouped};
  clmoe_routing *runs_rt[2] = {rt, grt};
  double ms[2];
  time_alternating(2, runs_ex, runs_rt, xs, ys, ms);
  *grouped_ms = ms[1];
  clmoe_routing_destroy(rt);
  clmoe_tensor_destroy(zt);
  clmoe_router_destroy(r);
  clmoe_experts_destroy(ex);
  free(z);
  return ms[0];
}

static void read_array(clmoe_routing *rt, clmoe_routing_array which, void *out,
                       size_t bytes) {
  const clmoe_tensor *v = NULL;
  die(clmoe_routing_get_array(rt, which, &v), "routing array");
  die(clmoe_tensor_read(v, out, bytes), "routing array read");
}

/* The grouped experts with each selected weight dtype on the same rows, and
 * the weight bytes a forward streams: experts without rows are skipped. The
 * dtypes' runs alternate (time_alternating): decode-sized runs are short
 * and noisy, and their ratios are the results. */
static void time_weight_dtypes(const workload *w, result *res, const float *w1,
                               const float *w3, const float *w2,
                               clmoe_routing *rt, clmoe_tensor *xs,
                               clmoe_tensor *ys) {
  int *off = malloc(sizeof *off * ((size_t)w->E + 1));
  read_array(rt, CLMOE_ROUTING_EXPERT_OFFSETS, off,
             sizeof *off * ((size_t)w->E + 1));
  int used = 0;
  for (int e = 0; e < w->E; ++e)
    used += off[e + 1] > off[e];
  free(off);
  clmoe_experts *ex[MAX_WDTYPES] = {NULL};
  for (int i = 0; i < MAX_WDTYPES; ++i) {
    if (!g_weights[i])
      continue;
    ex[i] = make_experts_dtype(w, w->E, w1, w3, w2, CLMOE_EXPERTS_PATH_GROUPED,
                               k_wdtypes[i].dtype);
    int64_t bytes = 0;
    die(clmoe_experts_get_bytes(ex[i], &bytes, NULL), "experts bytes");
    res->weights_streamed[i] = (double)bytes * used / w->E;
  }
  clmoe_routing *rts[MAX_WDTYPES];
  for (int i = 0; i < MAX_WDTYPES; ++i)
    rts[i] = rt;
  time_alternating(MAX_WDTYPES, ex, rts, xs, ys, res->weights_ms);
  for (int i = 0; i < MAX_WDTYPES; ++i)
    clmoe_experts_destroy(ex[i]);
}

static void run_workload(const workload *w, result *res, const float *w1,
                         const float *w3, const float *w2, clmoe_experts *ex,
                         clmoe_experts *alt) {
  int T = w->T, d = w->d, E = w->E, H = 4;
  memset(res, 0, sizeof *res);
  res->w = *w;
  float *wr = random_floats((size_t)d * E, 1.0f / sqrtf((float)d), 11);
  float *xh = random_floats((size_t)T * d, 1.0f, 12);
  float *ah = attention(H, T);
  clmoe_tensor *x = tensor(T, d, xh), *y = tensor(T, d, NULL);
  clmoe_tensor *probs = NULL, *imp = NULL;
  die(clmoe_tensor_create(g_ctx, CLMOE_DTYPE_F32, 3, (int64_t[]){H, T, T}, ah,
                          &probs),
      "attention");
  die(clmoe_tensor_create(g_ctx, CLMOE_DTYPE_F32, 1, (int64_t[]){T}, NULL,
                          &imp),
      "importance");
  clmoe_score_desc sd;
  clmoe_score_desc_init(&sd);
  sd.mask = CLMOE_SCORE_MASK_CAUSAL;
  clmoe_routing *rt = NULL;
  die(clmoe_routing_create(g_ctx, &rt), "routing");
  clmoe_router *topk = make_router(w, wr, CLMOE_POLICY_TOPK, 0);

  TIME_MS(res->score, clmoe_score_attention(g_ctx, &sd, probs, NULL, NULL, imp,
                                            0, NULL, NULL));
  TIME_MS(res->route, clmoe_route(topk, x, NULL, rt, 0, NULL, NULL));
  int64_t N64 = 0;
  die(clmoe_routing_get_sizes(rt, NULL, NULL, &N64), "sizes");
  int N = res->N = (int)N64;
  clmoe_tensor *xs = tensor(N, d, NULL), *ys = tensor(N, d, NULL);
  TIME_MS(res->dispatch, clmoe_dispatch(rt, x, xs, 0, NULL, NULL));
  TIME_MS(res->experts, clmoe_experts_run(ex, rt, xs, ys, 0, NULL, NULL));
  TIME_MS(res->alt_experts, clmoe_experts_run(alt, rt, xs, ys, 0, NULL, NULL));
  if (!g_experts_only)
    time_weight_dtypes(w, res, w1, w3, w2, rt, xs, ys);
  if (g_experts_only) {
    res->flops = 2.0 * N * d * (2.0 * w->f) + 2.0 * N * w->f * d;
    goto cleanup;
  }
  TIME_MS(res->combine, clmoe_combine(rt, ys, y, 0, 0, NULL, NULL));
  TIME_MS(res->forward,
          clmoe_forward(topk, ex, x, NULL, y, rt, 0, 0, NULL, NULL));
  res->flops = 2.0 * N * d * (2.0 * w->f) + 2.0 * N * w->f * d;

  /* Peers on the same groups. */
  int *off = malloc(sizeof *off * ((size_t)E + 1));
  float *xsh = malloc(sizeof *xsh * (size_t)N * d);
  float *h1 = malloc(sizeof *h1 * (size_t)N * w->f);
  float *h3 = malloc(sizeof *h3 * (size_t)N * w->f);
  float *ysh = malloc(sizeof *ysh * (size_t)N * d);
  die(clmoe_route(topk, x, NULL, rt, 0, NULL, NULL), "route");
  die(clmoe_dispatch(rt, x, xs, 0, NULL, NULL), "dispatch");
  read_array(rt, CLMOE_ROUTING_EXPERT_OFFSETS, off, sizeof *off * (E + 1));
  die(clmoe_tensor_read(xs, xsh, sizeof *xsh * (size_t)N * d), "x_sorted");
  res->openblas_loop = openblas_loop(w, off, xsh, w1, w3, w2, h1, h3, ysh);
  res->openblas_dense = openblas_dense(w, N, xsh, w1, w3, w2, h1, h3, ysh);
  torch_peer(w, off, &res->torch_fp32, &res->torch_bf16);
  res->dense_clblast = dense_clblast(w, N);
  clmoe_experts_path path;
  die(clmoe_experts_get_path(ex, &path), "path");
  res->dense_same = dense_same_kernel(w, N, w1, w3, w2, path, ex, rt, xs, ys,
                                      &res->grouped_paired);

  /* Policies: forward time and the mean K they activate. */
  struct {
    const char *name;
    clmoe_policy policy;
    double target_k;
  } pols[MAX_POLICIES] = {
      {"top-2", CLMOE_POLICY_TOPK, 0},
      {"top-p K~1.5", CLMOE_POLICY_TOPP, 1.5},
      {"top-p K~3", CLMOE_POLICY_TOPP, 3.0},
      {"importance", CLMOE_POLICY_IMPORTANCE, 0},
      {"resonance", CLMOE_POLICY_RESONANCE, 0},
  };
  die(clmoe_score_attention(g_ctx, &sd, probs, NULL, NULL, imp, 0, NULL, NULL),
      "score");
  for (int i = 0; i < MAX_POLICIES; ++i) {
    float p = pols[i].target_k > 0 ? calibrate_p(w, wr, x, rt, pols[i].target_k)
                                   : 0.0f;
    workload pw = *w;
    if (pols[i].policy == CLMOE_POLICY_TOPK)
      pw.k = 2;
    clmoe_router *r = make_router(&pw, wr, pols[i].policy, p);
    TIME_MS(res->policy_ms[i],
            clmoe_forward(r, ex, x, imp, y, rt, 0, 0, NULL, NULL));
    res->policy_k[i] = mean_k(rt);
    res->policy[i] = pols[i].name;
    clmoe_router_destroy(r);
  }
  res->num_policies = MAX_POLICIES;
  free(off);
  free(xsh);
  free(h1);
  free(h3);
  free(ysh);
cleanup:
  free(wr);
  free(xh);
  free(ah);
  clmoe_router_destroy(topk);
  clmoe_routing_destroy(rt);
  clmoe_tensor_destroy(x);
  clmoe_tensor_destroy(y);
  clmoe_tensor_destroy(xs);
  clmoe_tensor_destroy(ys);
  clmoe_tensor_destroy(probs);
  clmoe_tensor_destroy(imp);
}

static double gflops(double flops, double ms) { return flops / (ms * 1e6); }

static void print_result(const result *r, const char *path,
                         const char *alt_path) {
  const workload *w = &r->w;
  printf("\n%s: T=%d d=%d f=%d E=%d top-%d SwiGLU -> N=%d rows (%.1f per "
         "expert)\n",
         w->name, w->T, w->d, w->f, w->E, w->k, r->N, (double)r->N / w->E);
  printf("  stages (ms): score %.3f  route %.3f  dispatch %.3f  experts %.3f  "
         "combine %.3f | forward %.3f\n",
         r->score, r->route, r->dispatch, r->experts, r->combine, r->forward);
  printf("  expert GEMMs, GFLOP/s: clmoe %s %.1f | clmoe %s %.1f | OpenBLAS "
         "loop %.1f | OpenBLAS dense %.1f | CLBlast dense %.1f | %s on one "
         "dense expert %.1f\n",
         path, gflops(r->flops, r->experts), alt_path,
         gflops(r->flops, r->alt_experts), gflops(r->flops, r->openblas_loop),
         gflops(r->flops, r->openblas_dense),
         gflops(r->flops, r->dense_clblast), path,
         gflops(r->flops, r->dense_same));
  if (r->torch_fp32 > 0)
    printf("  PyTorch matmul over the same groups, GFLOP/s: float32 %.1f | "
           "bfloat16 %.1f\n",
           gflops(r->flops, r->torch_fp32), gflops(r->flops, r->torch_bf16));
  else
    printf("  PyTorch peer skipped (python3-torch not installed)\n");
  printf("  %s experts alternating with the one-expert run: %.1f GFLOP/s "
         "(%.3f ms against %.3f ms)\n",
         path, gflops(r->flops, r->grouped_paired), r->grouped_paired,
         r->dense_same);
  printf("  forward by policy:");
  for (int i = 0; i < r->num_policies; ++i)
    printf("  %s (mean K %.2f) %.2f ms;", r->policy[i], r->policy_k[i],
           r->policy_ms[i]);
  printf("\n");
  for (int i = 0; i < MAX_WDTYPES; ++i) {
    if (!r->weights_ms[i])
      continue;
    double gbs = r->weights_streamed[i] / (r->weights_ms[i] * 1e6);
    printf("  grouped experts, %-8s weights: %8.3f ms  %7.1f GFLOP/s  %6.1f "
           "MiB streamed at %6.1f GB/s = %5.1f %% of bandwidth\n",
           k_wdtypes[i].name, r->weights_ms[i],
           gflops(r->flops, r->weights_ms[i]),
           r->weights_streamed[i] / 1048576.0, gbs, 100 * gbs / g_bandwidth);
  }
}

typedef struct target {
  char name[96];
  double measured, goal;
  int higher_is_better;
} target;

/* Room for every target collect_targets adds (23 with all four workloads on a
 * GPU, weight dtypes, and 12 for the quantized formats); add_target ignores
 * any past it. */
enum { MAX_TARGETS = 48 };

static int add_target(target *t, int n, const char *name, double measured,
                      double goal, int higher) {
  if (n >= MAX_TARGETS)
    return n;
  snprintf(t[n].name, sizeof t[n].name, "%s", name);
  t[n].measured = measured;
  t[n].goal = goal;
  t[n].higher_is_better = higher;
  return n + 1;
}

/* OpenBLAS's core against the CPU's vector extensions: Debian's 0.3.21
 * silently runs generic kernels on CPUs newer than its build (5-6x slower),
 * which would inflate every ratio over the peer. */
static void check_openblas(void) {
  snprintf(g_blas_core, sizeof g_blas_core, "%s", openblas_get_corename());
  static const char *const tuned[] = {"haswell", "zen", "skylakex",
                                      "cooperlake", "sapphirerapids"};
  int known = 0;
  for (size_t i = 0; i < sizeof tuned / sizeof *tuned; ++i)
    known |= !strcasecmp(g_blas_core, tuned[i]);
  int avx512 = 0, avx2 = 0;
  char line[4096];
  FILE *f = fopen("/proc/cpuinfo", "r");
  while (f && fgets(line, sizeof line, f))
    if (!strncmp(line, "flags", 5)) {
      avx512 = strstr(line, " avx512f") != NULL;
      avx2 = strstr(line, " avx2") != NULL;
      break;
    }
  if (f)
    fclose(f);
  g_blas_fallback = !known && (avx512 || avx2);
  if (g_blas_fallback)
    snprintf(g_blas_advice, sizeof g_blas_advice,
             "OPENBLAS_CORETYPE=%s", avx512 ? "SkylakeX" : "Haswell");
}

static int met(const target *t) {
  return t->higher_is_better ? t->measured >= t->goal : t->measured <= t->goal;
}

static const result *find(const result *rs, int n, const char *name) {
  for (int i = 0; i < n; ++i)
    if (!strcmp(rs[i].w.name, name))
      return &rs[i];
  return NULL;
}

/* The quantized formats: at W1 (compute-bound) each within 1.15 of f32, the
 * dequantization hidden under the FMAs; at W3 (decode) their time over
 * bf16's by their bytes, and their weights plus scales streamed at >= 60 %
 * of the measured bandwidth. */
static int quant_targets(const result *r, int wi, target *t, int m) {
  char name[96];
  double f32 = r->weights_ms[0], bf16 = r->weights_ms[1];
  for (int q = 3; q < MAX_WDTYPES; ++q) {
    double ms = r->weights_ms[q];
    if (ms <= 0)
      continue;
    if (wi == 0 && f32 > 0) {
      snprintf(name, sizeof name, "W1 experts, %s / f32 weights <= 1.15",
               k_wdtypes[q].name);
      m = add_target(t, m, name, ms / f32, 1.15, 0);
    }
    if (wi != 2)
      continue;
    if (bf16 > 0) {
      snprintf(name, sizeof name, "W3 experts, %s / bf16 weights <= %.2f",
               k_wdtypes[q].name, k_quant_w3_goal[q - 3]);
      m = add_target(t, m, name, ms / bf16, k_quant_w3_goal[q - 3], 0);
    }
    snprintf(name, sizeof name, "W3 %s weight stream / bandwidth >= 0.60",
             k_wdtypes[q].name);
    m = add_target(t, m, name,
                   r->weights_streamed[q] / (ms * 1e6) / g_bandwidth, 0.60, 1);
  }
  return m;
}

/* --weights: bf16 over f32 experts per workload, f16 against bf16, and
 * W3's bf16 weight stream against the measured bandwidth. */
static int weight_targets(const result *rs, int n, target *t, int m) {
  static const double bf16_goal[3] = {1.05, 0.75, 0.60}; /* W1, W2, W3 */
  char name[96];
  for (int i = 0; i < n; ++i) {
    const result *r = &rs[i];
    int wi = r->w.name[1] - '1';
    double f32 = r->weights_ms[0], bf16 = r->weights_ms[1],
           f16 = r->weights_ms[2];
    if (f32 > 0 && bf16 > 0 && wi >= 0 && wi < 3) {
      snprintf(name, sizeof name, "%s experts, bf16 / f32 weights <= %.2f",
               r->w.name, bf16_goal[wi]);
      m = add_target(t, m, name, bf16 / f32, bf16_goal[wi], 0);
    }
    if (bf16 > 0 && f16 > 0) {
      snprintf(name, sizeof name, "%s experts, f16 / bf16 weights <= 1.10",
               r->w.name);
      m = add_target(t, m, name, f16 / bf16, 1.10, 0);
    }
    if (bf16 > 0 && wi == 2)
      m = add_target(t, m, "W3 bf16 weight stream / memory bandwidth >= 0.70",
                     r->weights_streamed[1] / (bf16 * 1e6) / g_bandwidth, 0.70,
                     1);
    m = quant_targets(r, wi, t, m);
  }
  return m;
}

/* On GPUs: the expert GEMMs against one dense CLBlast SGEMM pair of equal
 * FLOPs, decode against the CLBlast path, W3's bf16 weight stream. */
static int gpu_targets(const result *rs, int n, target *t, int m) {
  char name[96];
  for (int i = 0; i < n; ++i) {
    const result *r = &rs[i];
    if (strcmp(r->w.name, "W3")) {
      snprintf(name, sizeof name,
               "GPU: %s expert GFLOP/s / dense CLBlast >= 0.8", r->w.name);
      m = add_target(t, m, name, r->dense_clblast / r->experts, 0.8, 1);
      continue;
    }
    m = add_target(t, m, "GPU: W3 experts, CLBlast path / grouped >= 2",
                   r->alt_experts / r->experts, 2.0, 1);
    if (r->weights_ms[1] > 0)
      m = add_target(t, m, "GPU: W3 bf16 weight stream / bandwidth >= 0.60",
                     r->weights_streamed[1] / (r->weights_ms[1] * 1e6) /
                         g_bandwidth,
                     0.60, 1);
  }
  return m;
}

static int collect_targets(const result *rs, int n, target *t) {
  int m = 0;
  const result *w1 = find(rs, n, "W1"), *w2 = find(rs, n, "W2"),
               *w3 = find(rs, n, "W3");
  char name[96];
  if (w1)
    m = add_target(t, m, "W1 expert GFLOP/s >= 200 (stretch 280)",
                   gflops(w1->flops, w1->experts), 200, 1);
  if (w2)
    m = add_target(t, m, "W2 expert GFLOP/s >= 150 (stretch 220)",
                   gflops(w2->flops, w2->experts), 150, 1);
  for (int i = 0; i < 2; ++i) {
    const result *r = i ? w2 : w1;
    if (!r)
      continue;
    snprintf(name, sizeof name,
             "%s forward throughput / OpenBLAS expert loop >= 1.5%s",
             r->w.name, g_blas_fallback ? " (INVALID)" : "");
    m = add_target(t, m, name, r->openblas_loop / r->forward, 1.5, 1);
    snprintf(name, sizeof name,
             "%s grouped experts / same kernel dense <= %.2f", r->w.name,
             i ? 1.30 : 1.15);
    m = add_target(t, m, name, r->grouped_paired / r->dense_same,
                   i ? 1.30 : 1.15, 0);
  }
  m = weight_targets(rs, n, t, m);
  if (w1) {
    for (int i = 1; i <= 2; ++i) {
      double kbar = w1->policy_k[i];
      snprintf(name, sizeof name,
               "W1 forward(top-p, K=%.2f) / forward(top-2) <= %.3f", kbar,
               1.05 * kbar / 2);
      m = add_target(t, m, name, w1->policy_ms[i] / w1->policy_ms[0],
                     1.05 * kbar / 2, 0);
    }
    m = add_target(t, m, "W1 (score+route+dispatch+combine) / forward <= 0.05",
                   (w1->score + w1->route + w1->dispatch + w1->combine) /
                       w1->forward,
                   0.05, 0);
  }
  if (w3)
    m = add_target(t, m, "W3 forward / expert GEMMs alone <= 2",
                   w3->forward / w3->experts, 2.0, 0);
  return g_gpu ? gpu_targets(rs, n, t, m) : m;
}

static void write_json(const char *file, const clmoe_device_info *info,
                       const result *rs, int n, const target *t, int m,
                       const char *path, const char *alt_path) {
  FILE *f = fopen(file, "w");
  if (!f)
    die(CLMOE_ERROR_INVALID_ARGUMENT, "cannot write the --json file");
  fprintf(f, "{\n");
  bench_provenance_json(f, &g_prov);
  fprintf(f, ",\n  \"openblas\": {\"core\": \"%s\", \"config\": \"%s\", "
             "\"generic_fallback\": %s},\n",
          g_blas_core, openblas_get_config(),
          g_blas_fallback ? "true" : "false");
  fprintf(f, "  \"device\": \"%s\",\n  \"platform\": \"%s\",\n", info->name,
          info->platform_name);
  fprintf(f, "  \"driver\": \"%s\",\n  \"runs\": %d,\n", info->driver_version,
          g_runs);
  fprintf(f, "  \"experts_path\": \"%s\",\n", path);
  fprintf(f, "  \"memory_bandwidth_gbs\": %.3f,\n  \"workloads\": [\n",
          g_bandwidth);
  for (int i = 0; i < n; ++i) {
    const result *r = &rs[i];
    fprintf(f,
            "    {\"name\": \"%s\", \"T\": %d, \"d\": %d, \"f\": %d, \"E\": "
            "%d, \"k\": %d, \"N\": %d,\n",
            r->w.name, r->w.T, r->w.d, r->w.f, r->w.E, r->w.k, r->N);
    fprintf(f,
            "     \"ms\": {\"score\": %.4f, \"route\": %.4f, \"dispatch\": "
            "%.4f, \"experts\": %.4f, \"combine\": %.4f, \"forward\": %.4f, "
            "\"experts_%s\": %.4f, \"dense_same_kernel\": %.4f, "
            "\"experts_alternating_with_dense\": %.4f, "
            "\"dense_clblast\": %.4f, \"openblas_loop\": %.4f, "
            "\"openblas_dense\": %.4f, \"torch_fp32_loop\": %.4f, "
            "\"torch_bf16_loop\": %.4f},\n",
            r->score, r->route, r->dispatch, r->experts, r->combine, r->forward,
            alt_path, r->alt_experts, r->dense_same, r->grouped_paired,
            r->dense_clblast, r->openblas_loop, r->openblas_dense,
            r->torch_fp32, r->torch_bf16);
    fprintf(f, "     \"expert_gflop\": %.4f,\n     \"policies\": [",
            r->flops / 1e9);
    for (int j = 0; j < r->num_policies; ++j)
      fprintf(f, "%s{\"name\": \"%s\", \"mean_k\": %.4f, \"forward_ms\": %.4f}",
              j ? ", " : "", r->policy[j], r->policy_k[j], r->policy_ms[j]);
    fprintf(f, "],\n     \"weights\": [");
    for (int j = 0, first = 1; j < MAX_WDTYPES; ++j) {
      if (!r->weights_ms[j])
        continue;
      double gbs = r->weights_streamed[j] / (r->weights_ms[j] * 1e6);
      fprintf(f,
              "%s{\"dtype\": \"%s\", \"experts_ms\": %.4f, \"gflops\": "
              "%.3f, \"streamed_bytes\": %.0f, \"stream_gbs\": %.3f, "
              "\"fraction_of_bandwidth\": %.4f}",
              first ? "" : ", ", k_wdtypes[j].name, r->weights_ms[j],
              gflops(r->flops, r->weights_ms[j]), r->weights_streamed[j], gbs,
              gbs / g_bandwidth);
      first = 0;
    }
    fprintf(f, "]}%s\n", i + 1 < n ? "," : "");
  }
  fprintf(f, "  ],\n  \"targets\": [\n");
  for (int i = 0; i < m; ++i)
    fprintf(f,
            "    {\"target\": \"%s\", \"measured\": %.4f, \"goal\": %.4f, "
            "\"met\": %s}%s\n",
            t[i].name, t[i].measured, t[i].goal, met(&t[i]) ? "true" : "false",
            i + 1 < m ? "," : "");
  fprintf(f, "  ]\n}\n");
  fclose(f);
}

/* "f32,bf16,f16" (any subset, "" for none) into g_weights. */
static void parse_weights(const char *list) {
  for (int i = 0; i < MAX_WDTYPES; ++i)
    g_weights[i] = 0;
  char buf[128];
  snprintf(buf, sizeof buf, "%s", list);
  for (char *save, *tok = strtok_r(buf, ",", &save); tok;
       tok = strtok_r(NULL, ",", &save)) {
    int found = 0;
    for (int i = 0; i < MAX_WDTYPES; ++i)
      if (!strcmp(tok, k_wdtypes[i].name))
        g_weights[i] = found = 1;
    if (!found) {
      fprintf(stderr,
              "--weights: unknown dtype \"%s\" (f32, bf16, f16, fp8_e4m3, "
              "mxfp4, int8, int4)\n",
              tok);
      exit(2);
    }
  }
}

int main(int argc, char **argv) {
  const char *json = NULL, *only = NULL;
  int quick = 0, load = 0, train = 0;
  for (int i = 1; i < argc; ++i) {
    if (!strcmp(argv[i], "--json") && i + 1 < argc)
      json = argv[++i];
    else if (!strcmp(argv[i], "--runs") && i + 1 < argc)
      g_runs = atoi(argv[++i]);
    else if (!strcmp(argv[i], "--only") && i + 1 < argc)
      only = argv[++i];
    else if (!strcmp(argv[i], "--quick"))
      quick = 1;
    else if (!strcmp(argv[i], "--experts-only"))
      g_experts_only = 1;
    else if (!strcmp(argv[i], "--weights") && i + 1 < argc)
      parse_weights(argv[++i]);
    else if (!strcmp(argv[i], "--load"))
      load = 1;
    else if (!strcmp(argv[i], "--train"))
      train = 1;
    else {
      fprintf(stderr,
              "usage: %s [--json FILE] [--runs N] [--only W1|W2|W3|W4] "
              "[--quick] [--experts-only] [--weights f32,bf16,f16] "
              "[--load] [--train]\n",
              argv[0]);
      return 2;
    }
  }
  if (g_runs < 1 || g_runs > 64)
    g_runs = 9;
  die(clmoe_context_create(NULL, &g_ctx), "context");
  if (load) {
    bench_provenance_read(g_ctx, &g_prov);
    bench_provenance_print(stdout, &g_prov);
    int rc = bench_load_checkpoint(g_ctx, quick, &g_prov, json);
    clmoe_context_destroy(g_ctx);
    return rc;
  }
  clmoe_device_info info;
  clmoe_device_info_init(&info);
  die(clmoe_context_get_device_info(g_ctx, &info), "device info");
  g_gpu = info.type == CLMOE_DEVICE_TYPE_GPU;
  die(clmoe_context_build_programs(g_ctx), "programs");
  printf("clmoe-bench %s on %s (%s, driver %s); median of %d runs after "
         "warm-up\n",
         clmoe_version_string(), info.name, info.platform_name,
         info.driver_version, g_runs);
  bench_provenance_read(g_ctx, &g_prov);
  bench_provenance_print(stdout, &g_prov);
  if (train) {
    int rc = bench_train(g_ctx, quick, g_runs, &g_prov, json);
    clmoe_context_destroy(g_ctx);
    return rc;
  }
  check_openblas();
  printf("OpenBLAS peer: core %s (%s)\n", g_blas_core, openblas_get_config());
  if (g_blas_fallback)
    printf("WARNING: OpenBLAS runs its generic %s kernels on this CPU, which "
           "its build does not know: the OpenBLAS ratios below are INVALID. "
           "Rerun with %s set for an honest peer.\n",
           g_blas_core, g_blas_advice);
  if (!g_experts_only) {
    g_bandwidth = bench_read_bandwidth(g_ctx, quick ? 64 : 512, g_runs);
    printf("device memory bandwidth (streaming read of %d MiB): %.1f GB/s\n",
           quick ? 64 : 512, g_bandwidth);
  }
  const workload *ws = quick ? k_quick : k_full;
  result rs[NUM_WORKLOADS];
  int n = 0;
  const char *path = "?", *alt_path = "?";
  for (int i = 0; i < NUM_WORKLOADS; ++i) {
    if (only ? strcmp(only, ws[i].name) != 0
             : !strcmp(ws[i].name, "W4") && !g_gpu)
      continue;
    const workload *w = &ws[i];
    size_t nw = (size_t)w->E * w->d * w->f;
    float *w1 = random_floats(nw, 1.0f / sqrtf((float)w->d), 1);
    float *w3 = random_floats(nw, 1.0f / sqrtf((float)w->d), 2);
    float *w2 = random_floats(nw, 1.0f / sqrtf((float)w->f), 3);
    clmoe_experts *ex =
        make_experts(w, w->E, w1, w3, w2, CLMOE_EXPERTS_PATH_AUTO);
    clmoe_experts_path p;
    die(clmoe_experts_get_path(ex, &p), "path");
    clmoe_experts *alt = make_experts(w, w->E, w1, w3, w2,
                                      p == CLMOE_EXPERTS_PATH_GROUPED
                                          ? CLMOE_EXPERTS_PATH_CLBLAST
                                          : CLMOE_EXPERTS_PATH_GROUPED);
    path = p == CLMOE_EXPERTS_PATH_GROUPED ? "grouped" : "clblast";
    alt_path = p == CLMOE_EXPERTS_PATH_GROUPED ? "clblast" : "grouped";
    run_workload(w, &rs[n++], w1, w3, w2, ex, alt);
    if (g_experts_only)
      printf("%s experts GFLOP/s: %s %.1f %s %.1f\n", w->name, path,
             gflops(rs[n - 1].flops, rs[n - 1].experts), alt_path,
             gflops(rs[n - 1].flops, rs[n - 1].alt_experts));
    else
      print_result(&rs[n - 1], path, alt_path);
    fflush(stdout);
    clmoe_experts_destroy(ex);
    clmoe_experts_destroy(alt);
    free(w1);
    free(w3);
    free(w2);
  }
  if (g_experts_only) {
    clmoe_context_destroy(g_ctx);
    return 0;
  }
  target t[MAX_TARGETS];
  int m = collect_targets(rs, n, t);
  printf("\ntargets (measured vs goal):\n");
  for (int i = 0; i < m; ++i)
    printf("  %-62s %9.3f  %s %7.3f  %s\n", t[i].name, t[i].measured,
           t[i].higher_is_better ? ">=" : "<=", t[i].goal,
           met(&t[i]) ? "met" : "NOT MET");
  printf("(context, not measured in this run: ggml's CPU mul_mat_id reached "
         "112 / 97 GFLOP/s at W1 / W2 on the 2-core AMD EPYC (Zen 5) of "
         "bench/results/pocl-avx512-amd-epyc, measured 2026-11)\n");
  if (json)
    write_json(json, &info, rs, n, t, m, path, alt_path);
  clmoe_context_destroy(g_ctx);
  return 0;
}
