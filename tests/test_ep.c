/* Expert parallelism (libclmoe_mpi), run under mpirun with P ranks: every
 * rank's output must equal, bit for bit, clmoe_forward of its own tokens
 * with all E experts in one process, for every policy, float32 and
 * bfloat16 activations, contiguous blocks (even and uneven) and an explicit
 * expert map, ranks without tokens and experts without rows. Then the
 * collective errors: a configuration that differs between ranks, NaN on
 * one rank, a bad argument on one rank: every rank gets an error, and the
 * next forward works. All of it under both schedules (BULK and OVERLAP),
 * and a schedule that differs between ranks is refused. */
#include <mpi.h>

#include "clmoe/clmoe_mpi.h"
#include "harness.h"
#include "ref_16bit.h"

enum { D = 24, F = 20 };

static int g_rank, g_P;
static clmoe_ep_schedule g_schedule;

typedef struct model {
  int E;
  float *wr, *w1, *w3, *w2; /* [D, E], [E, D, F] x2, [E, F, D] */
} model;

static float *seeded(size_t n, float scale, uint64_t seed) {
  test_rng r = {seed};
  float *v = malloc(sizeof *v * (n ? n : 1));
  for (size_t i = 0; i < n; ++i) /* coarse grid: exact router logits */
    v[i] = roundf(rng_normal(&r) * scale * 64) / 64;
  return v;
}

static void make_model(model *m, int E) {
  m->E = E;
  m->wr = seeded((size_t)D * E, 0.5f, 1);
  m->w1 = seeded((size_t)E * D * F, 0.3f, 2);
  m->w3 = seeded((size_t)E * D * F, 0.3f, 3);
  m->w2 = seeded((size_t)E * F * D, 0.3f, 4);
}

static void free_model(model *m) {
  free(m->wr);
  free(m->w1);
  free(m->w3);
  free(m->w2);
}

/* The weight storage of the experts objects test_bitwise makes (F32, or a
 * quantized format: each expert quantizes alone, so a rank's subset holds
 * the same codes as the whole). */
static clmoe_dtype g_wdtype = CLMOE_DTYPE_F32;

/* Experts `ids` (ascending) of the model, on the grouped path. */
static clmoe_experts *experts_of(const model *m, const int *ids, int n) {
  if (!n)
    return NULL;
  size_t up = (size_t)D * F;
  float *w1 = malloc(sizeof *w1 * up * n), *w3 = malloc(sizeof *w3 * up * n),
        *w2 = malloc(sizeof *w2 * up * n);
  for (int i = 0; i < n; ++i) {
    memcpy(w1 + i * up, m->w1 + ids[i] * up, sizeof *w1 * up);
    memcpy(w3 + i * up, m->w3 + ids[i] * up, sizeof *w3 * up);
    memcpy(w2 + i * up, m->w2 + ids[i] * up, sizeof *w2 * up);
  }
  clmoe_experts_desc ed;
  clmoe_experts_desc_init(&ed);
  ed.num_experts = n;
  ed.d_model = D;
  ed.d_ff = F;
  ed.w1_host = w1;
  ed.w3_host = w3;
  ed.w2_host = w2;
  ed.path = CLMOE_EXPERTS_PATH_GROUPED;
  ed.weight_dtype = g_wdtype;
  clmoe_experts *x = NULL;
  REQUIRE_OK(clmoe_experts_create(test_context(), &ed, &x));
  free(w1);
  free(w3);
  free(w2);
  return x;
}

/* The router family test_bitwise runs: 0 softmax; 1 DeepSeek-V3's
 * (sigmoid, selection bias, groups of two kept out of E / 2 ... , scaled
 * gates); 2 Llama 4's (sigmoid gates on the expert input). */
static int g_family = 0;

static clmoe_router *router_of(const model *m, clmoe_policy policy) {
  clmoe_router_desc rd;
  clmoe_router_desc_init(&rd);
  rd.num_experts = m->E;
  rd.d_model = D;
  rd.weight_host = m->wr;
  rd.policy = policy;
  rd.k = 2;
  rd.p = 0.5f;
  rd.k_min = 1;
  rd.k_max = 3;
  rd.capacity_factor = policy >= CLMOE_POLICY_RESONANCE ? 1.0f : 0.0f;
  float bias[64];
  for (int e = 0; e < m->E; ++e)
    bias[e] = 0.0625f * (float)((e * 7) % 5) - 0.125f;
  if (g_family == 1) {
    rd.scoring = CLMOE_SCORING_SIGMOID;
    rd.selection_bias_host = bias;
    rd.num_groups = m->E / 2; /* groups of two experts */
    rd.topk_groups = 2;
    rd.gate_scale = 2.5f;
  } else if (g_family == 2) {
    rd.scoring = CLMOE_SCORING_SIGMOID;
    rd.gates = CLMOE_GATES_RAW;
    rd.gate_position = CLMOE_GATE_INPUT;
  }
  clmoe_router *r = NULL;
  REQUIRE_OK(clmoe_router_create(test_context(), &rd, &r));
  return r;
}

/* This rank's owners: contiguous (map NULL) or the given map. */
static int local_ids(int E, const int32_t *map, int *ids) {
  int n = 0;
  for (int e = 0, q = 0, end = E / g_P + (E % g_P > 0); e < E; ++e) {
    while (!map && e >= end) {
      ++q;
      end += E / g_P + (q < E % g_P);
    }
    if ((map ? map[e] : q) == g_rank)
      ids[n++] = e;
  }
  return n;
}

static clmoe_tensor *rows(clmoe_dtype dt, int T, const float *v) {
  size_t n = (size_t)T * D;
  uint16_t *h = malloc(sizeof *h * (n ? n : 1));
  for (size_t i = 0; i < n; ++i)
    h[i] = bits16(dt, v[i]);
  clmoe_tensor *t = NULL;
  REQUIRE_OK(clmoe_tensor_create(
      test_context(), dt, 2, (int64_t[]){T, D},
      n ? (dt == CLMOE_DTYPE_F32 ? (const void *)v : (const void *)h) : NULL,
      &t));
  free(h);
  return t;
}

/* Rank r's tokens: a rank-dependent count (rank 1 has none when P > 1). */
static int tokens_of_rank(int r) { return r == 1 ? 0 : 5 + 9 * r; }

static void check_layer(const model *m, clmoe_policy policy, const int32_t *map,
                        clmoe_dtype dt) {
  int ids[64];
  int n = local_ids(m->E, map, ids);
  clmoe_router *router = router_of(m, policy);
  clmoe_experts *local = experts_of(m, ids, n);
  int all_ids[64];
  for (int e = 0; e < m->E; ++e)
    all_ids[e] = e;
  clmoe_experts *full = experts_of(m, all_ids, m->E);
  clmoe_ep_desc desc;
  clmoe_ep_desc_init(&desc);
  desc.comm = MPI_COMM_WORLD;
  desc.ctx = test_context();
  desc.router = router;
  desc.schedule = g_schedule;
  desc.experts = local;
  desc.expert_ranks = map;
  clmoe_ep *ep = NULL;
  CHECK_OK(clmoe_ep_create(&desc, &ep));
  int T = tokens_of_rank(g_rank);
  float *x = seeded((size_t)T * D, 1.0f, 100 + g_rank);
  for (size_t i = 0; dt != CLMOE_DTYPE_F32 && i < (size_t)T * D; ++i)
    x[i] = round_to(dt, x[i]);
  float *imp = seeded((size_t)T, 0.5f, 200 + g_rank);
  for (int t = 0; t < T; ++t)
    imp[t] = fabsf(imp[t]) > 1 ? 1 : fabsf(imp[t]);
  clmoe_tensor *xt = rows(dt, T, x), *y_ep = rows(dt, T, x),
               *y_ref = rows(dt, T, x), *it = NULL;
  REQUIRE_OK(clmoe_tensor_create(test_context(), CLMOE_DTYPE_F32, 1,
                                 (int64_t[]){T}, T ? imp : NULL, &it));
  const clmoe_tensor *importance =
      policy == CLMOE_POLICY_IMPORTANCE ? it : NULL;
  clmoe_routing *r1 = NULL, *r2 = NULL;
  REQUIRE_OK(clmoe_routing_create(test_context(), &r1));
  REQUIRE_OK(clmoe_routing_create(test_context(), &r2));
  CHECK_OK(clmoe_ep_forward(ep, xt, importance, y_ep, r1, 0));
  CHECK_OK(
      clmoe_forward(router, full, xt, importance, y_ref, r2, 0, 0, NULL, NULL));
  size_t bytes = (size_t)T * D * (dt == CLMOE_DTYPE_F32 ? 4 : 2);
  unsigned char *a = malloc(bytes + 1), *b = malloc(bytes + 1);
  if (T) {
    CHECK_OK(clmoe_tensor_read(y_ep, a, bytes));
    CHECK_OK(clmoe_tensor_read(y_ref, b, bytes));
  }
  int same = !T || !memcmp(a, b, bytes);
  if (!same)
    fprintf(stderr, "rank %d/%d: E=%d policy=%d map=%s dtype=%d differs\n",
            g_rank, g_P, m->E, (int)policy, map ? "explicit" : "blocks",
            (int)dt);
  CHECK(same);
  clmoe_ep_stats stats;
  clmoe_ep_stats_init(&stats);
  CHECK_OK(clmoe_ep_get_stats(ep, &stats));
  CHECK(stats.rows_sent >= 0 && stats.rows_sent <= (int64_t)T * m->E);
  free(a);
  free(b);
  free(x);
  free(imp);
  clmoe_routing_destroy(r1);
  clmoe_routing_destroy(r2);
  clmoe_tensor_destroy(xt);
  clmoe_tensor_destroy(y_ep);
  clmoe_tensor_destroy(y_ref);
  clmoe_tensor_destroy(it);
  clmoe_ep_destroy(ep);
  clmoe_experts_destroy(local);
  clmoe_experts_destroy(full);
  clmoe_router_destroy(router);
}

static void test_bitwise(void) {
  static const int Es[3] = {8, 10, 64};
  static const clmoe_policy policies[5] = {
      CLMOE_POLICY_TOPK, CLMOE_POLICY_TOPP, CLMOE_POLICY_IMPORTANCE,
      CLMOE_POLICY_RESONANCE, CLMOE_POLICY_EXPERT_CHOICE};
  for (int ei = 0; ei < 3; ++ei) {
    model m;
    make_model(&m, Es[ei]);
    int32_t map[64];
    for (int e = 0; e < m.E; ++e)
      map[e] = (e * 3 + 1) % g_P;
    for (int pi = 0; pi < 5; ++pi)
      for (int variant = 0; variant < 2; ++variant)
        check_layer(&m, policies[pi], variant && ei != 2 ? map : NULL,
                    (pi + variant) % 2 ? CLMOE_DTYPE_BF16 : CLMOE_DTYPE_F32);
    /* The model families' routers: grouped sigmoid with a selection bias
     * and scaled gates, and input-side gates. */
    for (g_family = 1; g_family <= 2; ++g_family)
      for (int pi = 0; pi < 2; ++pi)
        check_layer(&m, policies[pi], ei == 0 ? map : NULL,
                    (pi + g_family) % 2 ? CLMOE_DTYPE_BF16 : CLMOE_DTYPE_F32);
    g_family = 0;
    /* Quantized experts (sizes allow the 8-bit formats' partial blocks). */
    static const clmoe_dtype quant[2] = {CLMOE_DTYPE_F8_E4M3, CLMOE_DTYPE_I8};
    for (int qi = 0; qi < 2 && ei < 2; ++qi) {
      g_wdtype = quant[qi];
      check_layer(&m, policies[qi], ei == 0 ? map : NULL,
                  qi ? CLMOE_DTYPE_BF16 : CLMOE_DTYPE_F32);
    }
    g_wdtype = CLMOE_DTYPE_F32;
    free_model(&m);
  }
}

/* Mismatched configurations and failures on one rank. */
static void test_errors(void) {
  model m;
  make_model(&m, 8);
  int ids[64], all[8] = {0, 1, 2, 3, 4, 5, 6, 7};
  int n = local_ids(8, NULL, ids);
  clmoe_router *router = router_of(&m, CLMOE_POLICY_TOPK);
  clmoe_experts *local = experts_of(&m, ids, n), *full = experts_of(&m, all, 8);
  clmoe_ep_desc desc;
  clmoe_ep_desc_init(&desc);
  desc.ctx = test_context();
  desc.router = router;
  desc.schedule = g_schedule;
  desc.experts = local;
  clmoe_ep *ep = NULL;
  if (g_P > 1) {
    /* An expert map that differs on the last rank. */
    int32_t map[8];
    for (int e = 0; e < 8; ++e)
      map[e] = g_rank == g_P - 1 ? (e + 1) % g_P : e % g_P;
    int mids[8];
    int mn = local_ids(8, map, mids);
    clmoe_experts *mx = experts_of(&m, mids, mn);
    desc.experts = mx;
    desc.expert_ranks = map;
    CHECK(clmoe_ep_create(&desc, &ep) != CLMOE_SUCCESS);
    CHECK(ep == NULL);
    clmoe_experts_destroy(mx);
    desc.expert_ranks = NULL;
    /* All experts on every rank: the counts disagree with the map. */
    desc.experts = full;
    CHECK(clmoe_ep_create(&desc, &ep) != CLMOE_SUCCESS);
    desc.experts = local;
    /* A schedule that differs on rank 0. */
    desc.schedule =
        g_rank == 0 ? CLMOE_EP_SCHEDULE_OVERLAP : CLMOE_EP_SCHEDULE_BULK;
    CHECK_STATUS(clmoe_ep_create(&desc, &ep), CLMOE_ERROR_INVALID_ARGUMENT);
    CHECK(strstr(clmoe_last_error_detail(), "schedule") != NULL);
    desc.schedule = g_schedule;
  }
  REQUIRE_OK(clmoe_ep_create(&desc, &ep));
  int T = 7;
  float *x = seeded((size_t)T * D, 1.0f, 300 + g_rank);
  clmoe_tensor *xt = rows(CLMOE_DTYPE_F32, T, x),
               *yt = rows(CLMOE_DTYPE_F32, T, x);
  clmoe_routing *rt = NULL;
  REQUIRE_OK(clmoe_routing_create(test_context(), &rt));
  /* NaN in the last rank's tokens: every rank fails. */
  x[3] = g_rank == g_P - 1 ? NAN : x[3];
  clmoe_tensor *xn = rows(CLMOE_DTYPE_F32, T, x);
  clmoe_status st = clmoe_ep_forward(ep, xn, NULL, yt, rt, 0);
  CHECK(st == CLMOE_ERROR_NONFINITE_INPUT);
  if (g_rank != g_P - 1 && g_P > 1)
    CHECK(strstr(clmoe_last_error_detail(), "rank") != NULL);
  /* A bad argument on rank 0 only (y missing): every rank fails. */
  st = clmoe_ep_forward(ep, xt, NULL, g_rank == 0 ? NULL : yt, rt, 0);
  CHECK(st == CLMOE_ERROR_NULL_POINTER);
  /* The next forward works. */
  CHECK_OK(clmoe_ep_forward(ep, xt, NULL, yt, rt, 0));
  free(x);
  clmoe_tensor_destroy(xt);
  clmoe_tensor_destroy(xn);
  clmoe_tensor_destroy(yt);
  clmoe_routing_destroy(rt);
  clmoe_ep_destroy(ep);
  clmoe_experts_destroy(local);
  clmoe_experts_destroy(full);
  clmoe_router_destroy(router);
  free_model(&m);
}

int main(int argc, char **argv) {
  MPI_Init(&argc, &argv);
  MPI_Comm_rank(MPI_COMM_WORLD, &g_rank);
  MPI_Comm_size(MPI_COMM_WORLD, &g_P);
  for (int s = 0; s < 2; ++s) {
    g_schedule = s ? CLMOE_EP_SCHEDULE_OVERLAP : CLMOE_EP_SCHEDULE_AUTO;
    test_bitwise();
    test_errors();
  }
  char name[32];
  snprintf(name, sizeof name, "test_ep[%d/%d]", g_rank, g_P);
  int failed = test_finish(name);
  int any = 0;
  MPI_Allreduce(&failed, &any, 1, MPI_INT, MPI_MAX, MPI_COMM_WORLD);
  MPI_Finalize();
  return any;
}
