/* clmoe-bench-ep (run under mpirun): expert parallelism per stage (route,
 * exchange out, experts, exchange back, combine; the slowest rank's), the
 * bytes each token sends against the minimum (rows that leave the rank x d
 * x element size x 2), for top-2 and for top-p at a mean K of about 1.5:
 * the bytes follow K. Then a model on paper of the layer at 8..256 ranks
 * from this run's per-rank compute and a stated network bandwidth, and
 * the two schedules (BULK, OVERLAP) side by side: whole-forward time of
 * the slowest rank, top-2.
 *
 *   mpirun -np 4 --oversubscribe clmoe-bench-ep [--tokens T] [--bf16]   */
#include <math.h>
#include <mpi.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "bench_common.h"
#include "provenance.h"
#include "clmoe/clmoe_mpi.h"

enum { E = 16, D = 512, F = 1024, RUNS = 5 };

static int g_rank, g_P;
static clmoe_context *g_ctx;

static float *filled(size_t n, float scale, uint32_t seed) {
  float *v = malloc(sizeof *v * (n ? n : 1));
  uint32_t s = seed * 2654435761u + 1;
  for (size_t i = 0; i < n; ++i) {
    s = s * 1664525u + 1013904223u;
    v[i] = ((float)(s >> 8) / 16777216.0f * 2 - 1) * scale;
  }
  return v;
}

typedef struct measured {
  double mean_k, stage_ms[5], bytes_per_token, min_bytes_per_token;
} measured;

/* One policy: RUNS forwards after a warm-up; stage times are the slowest
 * rank's medians. */
static measured run_policy(clmoe_ep *ep, clmoe_tensor *x, clmoe_tensor *y,
                           clmoe_routing *rt, int T, size_t es) {
  double s[5][RUNS];
  clmoe_ep_stats st;
  clmoe_ep_stats_init(&st);
  die(clmoe_ep_forward(ep, x, NULL, y, rt, 0), "ep forward");
  for (int r = 0; r < RUNS; ++r) {
    die(clmoe_ep_forward(ep, x, NULL, y, rt, 0), "ep forward");
    die(clmoe_ep_get_stats(ep, &st), "stats");
    double v[5] = {st.route_ms, st.exchange_out_ms, st.experts_ms,
                   st.exchange_back_ms, st.combine_ms};
    for (int i = 0; i < 5; ++i)
      s[i][r] = v[i];
  }
  measured m;
  for (int i = 0; i < 5; ++i) {
    double med = median(s[i], RUNS);
    MPI_Allreduce(&med, &m.stage_ms[i], 1, MPI_DOUBLE, MPI_MAX, MPI_COMM_WORLD);
  }
  clmoe_routing_stats rs;
  clmoe_routing_stats_init(&rs);
  die(clmoe_routing_read_stats(rt, &rs), "routing stats");
  double local[4] = {(double)rs.num_slots, (double)T, (double)st.bytes_sent,
                     (double)st.rows_sent * D * es * 2},
         all[4];
  MPI_Allreduce(local, all, 4, MPI_DOUBLE, MPI_SUM, MPI_COMM_WORLD);
  m.mean_k = all[0] / all[1];
  m.bytes_per_token = all[2] / all[1];
  m.min_bytes_per_token = all[3] / all[1];
  return m;
}

/* The slowest rank's median forward time (ms) under one schedule, the runs
 * of both schedules interleaved by the caller. */
static double forward_ms(clmoe_ep *ep, clmoe_tensor *x, clmoe_tensor *y,
                         clmoe_routing *rt) {
  MPI_Barrier(MPI_COMM_WORLD);
  double t0 = MPI_Wtime();
  die(clmoe_ep_forward(ep, x, NULL, y, rt, 0), "ep forward");
  double ms = 1e3 * (MPI_Wtime() - t0), slowest = 0;
  MPI_Allreduce(&ms, &slowest, 1, MPI_DOUBLE, MPI_MAX, MPI_COMM_WORLD);
  return slowest;
}

static clmoe_router *router(const float *wr, clmoe_policy policy, float p) {
  clmoe_router_desc rd;
  clmoe_router_desc_init(&rd);
  rd.num_experts = E;
  rd.d_model = D;
  rd.weight_host = wr;
  rd.policy = policy;
  rd.k = 2;
  rd.p = p;
  clmoe_router *r = NULL;
  die(clmoe_router_create(g_ctx, &rd, &r), "router");
  return r;
}

/* top-p's p for a mean K of about 1.5 over all ranks' tokens (bisection). */
static float calibrate_p(const float *wr, clmoe_tensor *x) {
  float lo = 0.05f, hi = 0.95f;
  clmoe_routing *rt = NULL;
  die(clmoe_routing_create(g_ctx, &rt), "routing");
  for (int it = 0; it < 12; ++it) {
    float p = 0.5f * (lo + hi);
    clmoe_router *r = router(wr, CLMOE_POLICY_TOPP, p);
    die(clmoe_route(r, x, NULL, rt, 0, NULL, NULL), "route");
    clmoe_routing_stats rs;
    clmoe_routing_stats_init(&rs);
    die(clmoe_routing_read_stats(rt, &rs), "stats");
    double local[2] = {(double)rs.num_slots, (double)rs.num_tokens}, all[2];
    MPI_Allreduce(local, all, 2, MPI_DOUBLE, MPI_SUM, MPI_COMM_WORLD);
    if (all[0] / all[1] < 1.5)
      lo = p;
    else
      hi = p;
    clmoe_router_destroy(r);
  }
  clmoe_routing_destroy(rt);
  return 0.5f * (lo + hi);
}

/* Rank 0's figures with their provenance (bench/readme_tables.py). */
static void write_json(const char *file, const bench_provenance *prov, int T,
                       int bf16, float p, const char *const *names,
                       const measured *m, double bulk, double overlap) {
  FILE *f = fopen(file, "w");
  if (!f)
    die(CLMOE_ERROR_INVALID_ARGUMENT, "cannot write the --json file");
  fprintf(f, "{\n");
  bench_provenance_json(f, prov);
  fprintf(f,
          ",\n  \"ranks\": %d, \"tokens_per_rank\": %d, \"E\": %d, \"d\": "
          "%d, \"f\": %d, \"rows\": \"%s\", \"runs\": %d, \"topp_p\": %.4f,"
          "\n  \"policies\": [\n",
          g_P, T, E, D, F, bf16 ? "bf16" : "f32", RUNS, p);
  for (int k = 0; k < 2; ++k)
    fprintf(f,
            "    {\"policy\": \"%s\", \"mean_k\": %.4f, \"route_ms\": %.4f, "
            "\"exchange_out_ms\": %.4f, \"experts_ms\": %.4f, "
            "\"exchange_back_ms\": %.4f, \"combine_ms\": %.4f, "
            "\"bytes_per_token\": %.1f, \"minimum_bytes_per_token\": %.1f}%s\n",
            names[k], m[k].mean_k, m[k].stage_ms[0], m[k].stage_ms[1],
            m[k].stage_ms[2], m[k].stage_ms[3], m[k].stage_ms[4],
            m[k].bytes_per_token, m[k].min_bytes_per_token, k ? "" : ",");
  fprintf(f, "  ],\n  \"schedules\": {\"bulk_ms\": %.4f, \"overlap_ms\": "
             "%.4f}\n}\n",
          bulk, overlap);
  fclose(f);
}

int main(int argc, char **argv) {
  MPI_Init(&argc, &argv);
  MPI_Comm_rank(MPI_COMM_WORLD, &g_rank);
  MPI_Comm_size(MPI_COMM_WORLD, &g_P);
  int T = 256, bf16 = 0;
  const char *json = NULL;
  for (int i = 1; i < argc; ++i)
    if (!strcmp(argv[i], "--tokens") && i + 1 < argc)
      T = atoi(argv[++i]);
    else if (!strcmp(argv[i], "--bf16"))
      bf16 = 1;
    else if (!strcmp(argv[i], "--json") && i + 1 < argc)
      json = argv[++i];
  die(clmoe_context_create(NULL, &g_ctx), "context");
  bench_provenance prov;
  bench_provenance_read(g_ctx, &prov);
  if (g_rank == 0)
    bench_provenance_print(stdout, &prov);
  clmoe_dtype dt = bf16 ? CLMOE_DTYPE_BF16 : CLMOE_DTYPE_F32;
  size_t es = bf16 ? 2 : 4;
  float *wr = filled((size_t)D * E, 0.1f, 1);
  size_t nw = (size_t)E * D * F;
  float *w1 = filled(nw, 0.05f, 2), *w3 = filled(nw, 0.05f, 3),
        *w2 = filled(nw, 0.05f, 4);
  int first = g_rank * E / g_P, last = (g_rank + 1) * E / g_P;
  int32_t map[E];
  for (int e = 0; e < E; ++e)
    for (int q = 0; q < g_P; ++q)
      if (e >= q * E / g_P && e < (q + 1) * E / g_P)
        map[e] = q;
  clmoe_experts *local = NULL;
  if (last > first) {
    clmoe_experts_desc ed;
    clmoe_experts_desc_init(&ed);
    ed.num_experts = last - first;
    ed.d_model = D;
    ed.d_ff = F;
    ed.w1_host = w1 + (size_t)first * D * F;
    ed.w3_host = w3 + (size_t)first * D * F;
    ed.w2_host = w2 + (size_t)first * F * D;
    ed.path = CLMOE_EXPERTS_PATH_GROUPED;
    die(clmoe_experts_create(g_ctx, &ed, &local), "experts");
  }
  float *xv = filled((size_t)T * D, 1.0f, 10 + g_rank);
  uint16_t *xh = malloc(sizeof *xh * (size_t)T * D);
  if (bf16)
    die(clmoe_convert(CLMOE_DTYPE_F32, xv, dt, xh, (int64_t)T * D), "convert");
  clmoe_tensor *x = NULL, *y = NULL, *x32 = NULL;
  die(clmoe_tensor_create(g_ctx, dt, 2, (int64_t[]){T, D},
                          bf16 ? (void *)xh : (void *)xv, &x),
      "x");
  die(clmoe_tensor_create(g_ctx, dt, 2, (int64_t[]){T, D}, NULL, &y), "y");
  die(clmoe_tensor_create(g_ctx, CLMOE_DTYPE_F32, 2, (int64_t[]){T, D}, xv,
                          &x32),
      "x32");
  float p = calibrate_p(wr, x32);
  clmoe_routing *rt = NULL;
  die(clmoe_routing_create(g_ctx, &rt), "routing");
  const char *names[2] = {"top-2", "top-p"};
  measured m[2];
  clmoe_ep_desc desc;
  clmoe_ep_desc_init(&desc);
  desc.ctx = g_ctx;
  desc.experts = local;
  desc.expert_ranks = map;
  for (int k = 0; k < 2; ++k) {
    clmoe_router *r = router(wr, k ? CLMOE_POLICY_TOPP : CLMOE_POLICY_TOPK, p);
    desc.router = r;
    clmoe_ep *ep = NULL;
    die(clmoe_ep_create(&desc, &ep), "ep");
    m[k] = run_policy(ep, x, y, rt, T, es);
    clmoe_ep_destroy(ep);
    clmoe_router_destroy(r);
  }
  /* BULK against OVERLAP, top-2, runs interleaved. */
  clmoe_router *r2 = router(wr, CLMOE_POLICY_TOPK, p);
  clmoe_ep *eps[2] = {NULL, NULL};
  double sched_ms[2][RUNS];
  desc.router = r2;
  for (int s = 0; s < 2; ++s) {
    desc.schedule = s ? CLMOE_EP_SCHEDULE_OVERLAP : CLMOE_EP_SCHEDULE_BULK;
    die(clmoe_ep_create(&desc, &eps[s]), "ep");
    forward_ms(eps[s], x, y, rt); /* warm-up */
  }
  for (int r = 0; r < RUNS; ++r)
    for (int s = 0; s < 2; ++s)
      sched_ms[s][r] = forward_ms(eps[s], x, y, rt);
  clmoe_ep_stats es_stats;
  clmoe_ep_stats_init(&es_stats);
  die(clmoe_ep_get_stats(eps[1], &es_stats), "stats");
  for (int s = 0; s < 2; ++s)
    clmoe_ep_destroy(eps[s]);
  clmoe_router_destroy(r2);
  if (g_rank == 0) {
    printf("clmoe-bench-ep: %d ranks, %d tokens each, E %d, d %d, f %d, "
           "SwiGLU, %s rows; stage ms = slowest rank's median of %d\n\n",
           g_P, T, E, D, F, bf16 ? "bfloat16" : "float32", RUNS);
    printf("%-8s %6s %8s %9s %9s %9s %9s %12s %12s %6s\n", "policy", "K",
           "route", "exch out", "experts", "exch back", "combine",
           "bytes/token", "minimum", "ratio");
    for (int k = 0; k < 2; ++k)
      printf("%-8s %6.2f %8.2f %9.2f %9.2f %9.2f %9.2f %12.0f %12.0f %6.2f\n",
             names[k], m[k].mean_k, m[k].stage_ms[0], m[k].stage_ms[1],
             m[k].stage_ms[2], m[k].stage_ms[3], m[k].stage_ms[4],
             m[k].bytes_per_token, m[k].min_bytes_per_token,
             m[k].bytes_per_token / m[k].min_bytes_per_token);
    printf("\ntop-p (p = %.3f) / top-2: K %.3f, bytes per token %.3f "
           "(the bytes follow K)\n",
           p, m[1].mean_k / m[0].mean_k,
           m[1].bytes_per_token / m[0].bytes_per_token);
    /* On paper: per rank, this run's compute (route + experts + combine)
     * with the experts' share scaled to E / P experts per rank, plus the
     * exchange of T * K * (P - 1) / P rows out (x's dtype) and back
     * (float32) at a stated bandwidth per rank. */
    printf("\nmodel on paper, %d tokens per rank (ms per layer):\n", T);
    printf("%6s %10s %14s %14s %14s\n", "ranks", "policy", "25 Gb/s",
           "100 Gb/s", "400 Gb/s");
    static const int Ps[4] = {8, 32, 128, 256};
    static const double gbps[3] = {25, 100, 400};
    for (int i = 0; i < 4; ++i)
      for (int k = 0; k < 2; ++k) {
        double compute = m[k].stage_ms[0] + m[k].stage_ms[2] + m[k].stage_ms[4];
        double rows = T * m[k].mean_k * (Ps[i] - 1.0) / Ps[i];
        double bytes = rows * D * (es + 4.0);
        printf("%6d %10s", Ps[i], names[k]);
        for (int b = 0; b < 3; ++b)
          printf(" %14.2f", compute + bytes * 8 / (gbps[b] * 1e9) * 1e3);
        printf("\n");
      }
    printf("(compute measured here with %d experts per rank; the exchange "
           "assumes full-bisection bandwidth, no overlap)\n",
           E / g_P);
    double bulk = median(sched_ms[0], RUNS),
           overlap = median(sched_ms[1], RUNS);
    printf("\nschedules, top-2, whole forward (slowest rank, median of %d "
           "interleaved runs): bulk %.2f ms, overlap %.2f ms, overlap / bulk "
           "%.3f\n",
           RUNS, bulk, overlap, overlap / bulk);
    printf("MPI reports device-buffer support: %s (rows are staged through "
           "host memory either way)\n",
           es_stats.mpi_device_buffers ? "yes" : "no");
    if (json)
      write_json(json, &prov, T, bf16, p, names, m, bulk, overlap);
  }
  clmoe_routing_destroy(rt);
  clmoe_tensor_destroy(x);
  clmoe_tensor_destroy(y);
  clmoe_tensor_destroy(x32);
  clmoe_experts_destroy(local);
  clmoe_context_destroy(g_ctx);
  free(wr);
  free(w1);
  free(w3);
  free(w2);
  free(xv);
  free(xh);
  MPI_Finalize();
  return 0;
}
