/* Routing cost per token, and the policy kernels' time relative to the
 * router GEMM, measured side by side in one run (T = 4096, d = 1024).
 * Goal: policy kernels cost less than the GEMM itself. Usage:
 *   bench_route [--json FILE]   (FILE: the figures with their provenance,
 *                                for bench/readme_tables.py) */
#define CL_TARGET_OPENCL_VERSION 120
#include <CL/cl.h>
#include <clblast_c.h>
#include <stdio.h>
#include <string.h>

#include "bench_common.h"
#include "provenance.h"
#include "clmoe/clmoe.h"

#define REPS 9

/* The figures, kept for --json. */
typedef struct policy_row {
  const char *policy;
  int E;
  double gemm_ms, policy_ms, route_ns_per_token;
} policy_row;
typedef struct family_row {
  int E;
  double softmax_ms, deepseek_ms, softmax_policy_ms, deepseek_policy_ms;
} family_row;
static policy_row g_rows[6];
static family_row g_family[2];
static int g_nrows;

/* A top-8 router over E experts: softmax, or DeepSeek-V3's (sigmoid
 * scores, selection bias, 8 groups of which 4 are kept, scaled gates). */
static clmoe_router *top8(clmoe_context *ctx, int E, int d, const float *w,
                          const float *bias, int deepseek) {
  clmoe_router_desc desc;
  clmoe_router_desc_init(&desc);
  desc.num_experts = E;
  desc.d_model = d;
  desc.weight_host = w;
  desc.k = 8;
  if (deepseek) {
    desc.scoring = CLMOE_SCORING_SIGMOID;
    desc.selection_bias_host = bias;
    desc.num_groups = 8;
    desc.topk_groups = 4;
    desc.gate_scale = 2.5f;
  }
  clmoe_router *r = NULL;
  die(clmoe_router_create(ctx, &desc, &r), "router");
  return r;
}

/* What the sigmoid + group-limited router costs over a softmax top-k, the
 * two timed alternately in one loop (whole route from x, and from logits:
 * the routing kernels alone). Target: <= 1.10 at E = 256, T = 4096. */
static void family_router_cost(clmoe_context *ctx, clmoe_tensor *xt, int T,
                               int d) {
  printf("\nDeepSeek-V3 router (sigmoid, selection bias, 8 groups keep 4, "
         "scaled) vs softmax, both top-8, alternating, median of %d:\n",
         3 * REPS);
  printf("%5s %14s %14s %10s %14s %14s %10s\n", "E", "softmax ms",
         "deepseek ms", "ratio", "softmax pol ms", "deepseek pol", "ratio");
  static const int Es[] = {64, 256};
  for (int ei = 0; ei < 2; ++ei) {
    int E = Es[ei];
    float *w = malloc(sizeof *w * (size_t)d * E), bias[256];
    for (size_t i = 0; i < (size_t)d * E; ++i)
      w[i] = (float)((i * 40503u) % 1001) / 20000.0f - 0.025f;
    for (int e = 0; e < E; ++e)
      bias[e] = (float)((e * 37) % 11) / 100.0f - 0.05f;
    clmoe_router *r[2] = {top8(ctx, E, d, w, bias, 0),
                          top8(ctx, E, d, w, bias, 1)};
    clmoe_routing *rt = NULL;
    clmoe_tensor *logits = NULL;
    die(clmoe_routing_create(ctx, &rt), "routing");
    float *z = malloc(sizeof *z * (size_t)T * E);
    for (size_t i = 0; i < (size_t)T * E; ++i)
      z[i] = (float)((i * 2654435761u) % 4001) / 1000.0f - 2.0f;
    die(clmoe_tensor_create(ctx, CLMOE_DTYPE_F32, 2, (int64_t[]){T, E}, z,
                            &logits),
        "logits");
    enum { N = 3 * REPS };
    double full[2][N], pol[2][N];
    for (int rep = -2; rep < N; ++rep)
      for (int k = 0; k < 2; ++k) {
        double t0 = now_ms();
        die(clmoe_route(r[k], xt, NULL, rt, 0, NULL, NULL), "route");
        double t1 = now_ms();
        die(clmoe_route_logits(r[k], logits, NULL, rt, 0, NULL, NULL),
            "route");
        double t2 = now_ms();
        if (rep >= 0) {
          full[k][rep] = t1 - t0;
          pol[k][rep] = t2 - t1;
        }
      }
    double f0 = median(full[0], N), f1 = median(full[1], N);
    double p0 = median(pol[0], N), p1 = median(pol[1], N);
    printf("%5d %14.3f %14.3f %10.3f %14.3f %14.3f %10.3f\n", E, f0, f1,
           f1 / f0, p0, p1, p1 / p0);
    g_family[ei] = (family_row){E, f0, f1, p0, p1};
    clmoe_tensor_destroy(logits);
    clmoe_routing_destroy(rt);
    clmoe_router_destroy(r[0]);
    clmoe_router_destroy(r[1]);
    free(z);
    free(w);
  }
  printf("ratio: the DeepSeek-V3 router's time over softmax top-8's (target "
         "<= 1.10 at E = 256 for the whole route).\n");
}

static void write_json(const char *file, const bench_provenance *prov, int T,
                       int d) {
  FILE *f = fopen(file, "w");
  if (!f)
    die(CLMOE_ERROR_INVALID_ARGUMENT, "cannot write the --json file");
  fprintf(f, "{\n");
  bench_provenance_json(f, prov);
  fprintf(f, ",\n  \"T\": %d, \"d\": %d, \"runs\": %d,\n  \"policies\": [\n",
          T, d, REPS);
  for (int i = 0; i < g_nrows; ++i)
    fprintf(f,
            "    {\"policy\": \"%s\", \"E\": %d, \"gemm_ms\": %.4f, "
            "\"policy_ms\": %.4f, \"route_ns_per_token\": %.2f}%s\n",
            g_rows[i].policy, g_rows[i].E, g_rows[i].gemm_ms,
            g_rows[i].policy_ms, g_rows[i].route_ns_per_token,
            i + 1 < g_nrows ? "," : "");
  fprintf(f, "  ],\n  \"deepseek_vs_softmax\": [\n");
  for (int i = 0; i < 2; ++i)
    fprintf(f,
            "    {\"E\": %d, \"softmax_ms\": %.4f, \"deepseek_ms\": %.4f, "
            "\"softmax_policy_ms\": %.4f, \"deepseek_policy_ms\": %.4f}%s\n",
            g_family[i].E, g_family[i].softmax_ms, g_family[i].deepseek_ms,
            g_family[i].softmax_policy_ms, g_family[i].deepseek_policy_ms,
            i ? "" : ",");
  fprintf(f, "  ]\n}\n");
  fclose(f);
}

int main(int argc, char **argv) {
  const int T = 4096, d = 1024;
  const char *json = NULL;
  for (int i = 1; i < argc; ++i) {
    if (!strcmp(argv[i], "--json") && i + 1 < argc) {
      json = argv[++i];
    } else {
      fprintf(stderr, "usage: %s [--json FILE]\n", argv[0]);
      return 2;
    }
  }
  clmoe_context *ctx = NULL;
  die(clmoe_context_create(NULL, &ctx), "context");
  bench_provenance prov;
  bench_provenance_read(ctx, &prov);
  bench_provenance_print(stdout, &prov);
  clmoe_device_info info;
  clmoe_device_info_init(&info);
  clmoe_context_get_device_info(ctx, &info);
  cl_command_queue q;
  clmoe_context_get_cl(ctx, NULL, NULL, &q);
  printf("device: %s\nT = %d, d = %d, median of %d after warm-up\n\n",
         info.name, T, d, REPS);
  printf("%-6s %5s %12s %12s %14s %14s\n", "policy", "E", "gemm ms",
         "policy ms", "route ns/token", "policy/gemm");
  float *x = malloc(sizeof *x * (size_t)T * d);
  for (size_t i = 0; i < (size_t)T * d; ++i)
    x[i] = (float)((i * 2654435761u) % 2001) / 1000.0f - 1.0f;
  clmoe_tensor *xt = NULL;
  die(clmoe_tensor_create(ctx, CLMOE_DTYPE_F32, 2, (int64_t[]){T, d}, x, &xt),
      "x");
  static const int Es[] = {16, 64, 256};
  for (int ei = 0; ei < 3; ++ei) {
    int E = Es[ei];
    float *w = malloc(sizeof *w * (size_t)d * E);
    for (size_t i = 0; i < (size_t)d * E; ++i)
      w[i] = (float)((i * 40503u) % 1001) / 20000.0f - 0.025f;
    for (int pol = 0; pol < 2; ++pol) {
      clmoe_router_desc desc;
      clmoe_router_desc_init(&desc);
      desc.num_experts = E;
      desc.d_model = d;
      desc.weight_host = w;
      desc.policy = pol ? CLMOE_POLICY_TOPP : CLMOE_POLICY_TOPK;
      clmoe_router *r = NULL;
      die(clmoe_router_create(ctx, &desc, &r), "router");
      clmoe_routing *rt = NULL;
      die(clmoe_routing_create(ctx, &rt), "routing");
      clmoe_tensor *logits = NULL;
      die(clmoe_tensor_create(ctx, CLMOE_DTYPE_F32, 2, (int64_t[]){T, E}, NULL,
                              &logits),
          "logits");
      cl_mem xm, wm, lm;
      clmoe_tensor_get_cl_mem(xt, &xm);
      clmoe_tensor_get_cl_mem(logits, &lm);
      clmoe_tensor *wt = NULL;
      die(clmoe_tensor_create(ctx, CLMOE_DTYPE_F32, 2, (int64_t[]){d, E}, w,
                              &wt),
          "w");
      clmoe_tensor_get_cl_mem(wt, &wm);
      double gemm[REPS], full[REPS], policy[REPS];
      for (int rep = -2; rep < REPS; ++rep) {
        double t0 = now_ms();
        CLBlastSgemm(CLBlastLayoutRowMajor, CLBlastTransposeNo,
                     CLBlastTransposeNo, T, E, d, 1.0f, xm, 0, d, wm, 0, E,
                     0.0f, lm, 0, E, &q, NULL);
        clFinish(q);
        double t1 = now_ms();
        die(clmoe_route(r, xt, NULL, rt, 0, NULL, NULL), "route");
        double t2 = now_ms();
        die(clmoe_route_logits(r, logits, NULL, rt, 0, NULL, NULL), "route");
        double t3 = now_ms();
        if (rep >= 0) {
          gemm[rep] = t1 - t0;
          full[rep] = t2 - t1;
          policy[rep] = t3 - t2;
        }
      }
      double g = median(gemm, REPS), f = median(full, REPS),
             p = median(policy, REPS);
      printf("%-6s %5d %12.3f %12.3f %14.1f %14.2f\n", pol ? "top-p" : "top-2",
             E, g, p, f * 1e6 / T, p / g);
      g_rows[g_nrows++] =
          (policy_row){pol ? "top-p" : "top-2", E, g, p, f * 1e6 / T};
      clmoe_tensor_destroy(wt);
      clmoe_tensor_destroy(logits);
      clmoe_routing_destroy(rt);
      clmoe_router_destroy(r);
    }
    free(w);
  }
  printf("\npolicy/gemm < 1 means the routing kernels cost less than the "
         "router GEMM.\n");
  family_router_cost(ctx, xt, T, d);
  if (json)
    write_json(json, &prov, T, d);
  clmoe_tensor_destroy(xt);
  free(x);
  clmoe_context_destroy(ctx);
  return 0;
}
