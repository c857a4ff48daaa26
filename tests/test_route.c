/* Routing on the device against the host reference (tests/ref_route.c):
 * every policy x gate mode x capacity mode over T and E, TOPP edge cases,
 * batch invariance, determinism, stats, and bad inputs. */
#define CL_TARGET_OPENCL_VERSION 120
#include <CL/cl.h>

#include "harness.h"
#include "ref_route.h"

typedef struct config {
  const char *name;
  clmoe_policy policy;
  int k, k_min, k_max;
  float p, k_mean, capacity;
  clmoe_overflow overflow;
  clmoe_gate_mode gates;
  clmoe_fallback fallback;
} config;

/* Logits on a 1/8 grid: exact ties happen (and are tested), near-ties that
 * would depend on exp() rounding do not. */
static float *grid_logits(test_rng *rng, int T, int E, float scale) {
  float *z = malloc(sizeof *z * ((size_t)T * E + 1));
  for (int i = 0; i < T * E; ++i)
    z[i] = roundf(rng_normal(rng) * scale * 8.0f) / 8.0f;
  return z;
}

static float *random_importance(test_rng *rng, int T) {
  float *s = malloc(sizeof *s * (size_t)(T ? T : 1));
  for (int t = 0; t < T; ++t)
    s[t] = roundf(rng_uniform(rng) * 64.0f) / 64.0f;
  return s;
}

static clmoe_router_desc config_desc(int E, const config *c) {
  clmoe_router_desc d;
  clmoe_router_desc_init(&d);
  d.num_experts = E;
  d.policy = c->policy;
  d.k = c->k;
  d.k_min = c->k_min;
  d.k_max = c->k_max;
  d.p = c->p;
  d.k_mean = c->k_mean;
  d.capacity_factor = c->capacity;
  d.overflow = c->overflow;
  d.gates = c->gates;
  d.fallback = c->fallback;
  return d;
}

static clmoe_router *make_router(int E, const config *c) {
  clmoe_router_desc d = config_desc(E, c);
  clmoe_router *r = NULL;
  REQUIRE_OK(clmoe_router_create(test_context(), &d, &r));
  return r;
}

static ref_params to_ref(int E, const config *c) {
  clmoe_router_desc d = config_desc(E, c);
  return ref_params_from_desc(&d);
}

static clmoe_tensor *tensor_f32(int rank, const int64_t *shape,
                                const float *data) {
  clmoe_tensor *t = NULL;
  REQUIRE_OK(clmoe_tensor_create(test_context(), CLMOE_DTYPE_F32, rank, shape,
                                 data, &t));
  return t;
}

/* Reads one routing array into a malloc'ed host copy. */
static void *read_array(clmoe_routing *rt, clmoe_routing_array which,
                        int64_t *len) {
  const clmoe_tensor *v = NULL;
  REQUIRE_OK(clmoe_routing_get_array(rt, which, &v));
  int64_t n = 0;
  REQUIRE_OK(clmoe_tensor_get_numel(v, &n));
  void *host = malloc((size_t)(n ? n : 1) * 4);
  REQUIRE_OK(clmoe_tensor_read(v, host, (size_t)n * 4));
  *len = n;
  return host;
}

typedef struct device_result {
  int64_t n_counts, n_off, n_ids, n_gates, n_eoff, n_rows, n_rtok;
  int *counts, *offsets, *ids, *eoff, *rows, *rtok;
  float *gates;
} device_result;

static void read_all(clmoe_routing *rt, device_result *d) {
  d->counts = read_array(rt, CLMOE_ROUTING_COUNTS, &d->n_counts);
  d->offsets = read_array(rt, CLMOE_ROUTING_TOKEN_OFFSETS, &d->n_off);
  d->ids = read_array(rt, CLMOE_ROUTING_EXPERT_IDS, &d->n_ids);
  d->gates = read_array(rt, CLMOE_ROUTING_GATES, &d->n_gates);
  d->eoff = read_array(rt, CLMOE_ROUTING_EXPERT_OFFSETS, &d->n_eoff);
  d->rows = read_array(rt, CLMOE_ROUTING_SLOT_ROWS, &d->n_rows);
  d->rtok = read_array(rt, CLMOE_ROUTING_ROW_TOKENS, &d->n_rtok);
}

static void free_device(device_result *d) {
  free(d->counts);
  free(d->offsets);
  free(d->ids);
  free(d->gates);
  free(d->eoff);
  free(d->rows);
  free(d->rtok);
}

static int ints_equal(const int *a, const int *b, int64_t n) {
  return n == 0 || memcmp(a, b, (size_t)n * sizeof *a) == 0;
}

/* Prints a difference unless the comparison is quiet (what == NULL). */
#define REPORT(...)                                                            \
  do {                                                                         \
    if (what)                                                                  \
      fprintf(stderr, __VA_ARGS__);                                            \
  } while (0)

/* Compares a device routing with the reference; prints the first
 * difference (unless what is NULL) and returns 1 on mismatch. */
static int compare(clmoe_routing *rt, const ref_result *ref, const char *what,
                   int check_stats) {
  device_result d;
  read_all(rt, &d);
  int T = ref->T, E = ref->E, N = ref->N, bad = 0;
  if (d.n_counts != T || d.n_off != T + 1 || d.n_ids != N || d.n_gates != N ||
      d.n_eoff != E + 1 || d.n_rows != N || d.n_rtok != N) {
    REPORT("%s: sizes differ (N device %lld, reference %d)\n", what,
           (long long)d.n_ids, N);
    bad = 1;
  } else if (!ints_equal(d.counts, ref->counts, T) ||
             !ints_equal(d.offsets, ref->offsets, T + 1)) {
    for (int t = 0; t < T; ++t)
      if (d.counts[t] != ref->counts[t]) {
        REPORT("%s: token %d has K %d, reference %d\n", what, t, d.counts[t],
               ref->counts[t]);
        break;
      }
    bad = 1;
  } else if (!ints_equal(d.ids, ref->ids, N)) {
    for (int s = 0; s < N; ++s)
      if (d.ids[s] != ref->ids[s]) {
        REPORT("%s: slot %d has expert %d, reference %d\n", what, s, d.ids[s],
               ref->ids[s]);
        break;
      }
    bad = 1;
  } else if (!ints_equal(d.eoff, ref->expert_offsets, E + 1) ||
             !ints_equal(d.rows, ref->slot_rows, N) ||
             !ints_equal(d.rtok, ref->row_tokens, N)) {
    REPORT("%s: expert-major arrays differ\n", what);
    bad = 1;
  } else {
    for (int s = 0; s < N; ++s)
      if (fabsf(d.gates[s] - ref->gates[s]) > 1e-6f) {
        REPORT("%s: slot %d gate %.9g, reference %.9g\n", what, s, d.gates[s],
               ref->gates[s]);
        bad = 1;
        break;
      }
  }
  if (!bad && check_stats) {
    int64_t *hist = calloc((size_t)E + 2, sizeof *hist);
    float *load = calloc((size_t)E + 1, sizeof *load);
    float *prob = calloc((size_t)E + 1, sizeof *prob);
    clmoe_routing_stats st;
    clmoe_routing_stats_init(&st);
    st.k_histogram = hist;
    st.expert_load = load;
    st.mean_prob = prob;
    st.array_capacity = E + 1;
    REQUIRE_OK(clmoe_routing_read_stats(rt, &st));
    int ok = st.num_tokens == T && st.num_experts == E && st.num_slots == N &&
             st.dropped == ref->n_proposed - N && st.min_k == ref->min_k &&
             st.max_k == ref->max_k &&
             fabs(st.mean_k - (T ? (double)N / T : 0)) < 1e-12 &&
             fabs(st.balance_loss - ref->balance_loss) <=
                 1e-4 * (1 + ref->balance_loss) &&
             fabs(st.mean_entropy - ref->mean_entropy) <=
                 1e-4 * (1 + ref->mean_entropy);
    for (int i = 0; ok && i <= E; ++i)
      ok = hist[i] == ref->k_hist[i];
    for (int e = 0; ok && e < E; ++e)
      ok = fabs(load[e] - ref->load[e]) < 1e-6 &&
           fabs(prob[e] - ref->mean_prob[e]) < 1e-5;
    if (!ok) {
      REPORT("%s: stats differ: N %lld/%d dropped %lld/%d min %d/%d max "
             "%d/%d loss %g/%g entropy %g/%g\n",
             what, (long long)st.num_slots, N, (long long)st.dropped,
             ref->n_proposed - N, st.min_k, ref->min_k, st.max_k, ref->max_k,
             st.balance_loss, ref->balance_loss, st.mean_entropy,
             ref->mean_entropy);
      bad = 1;
    }
    free(hist);
    free(load);
    free(prob);
  }
  free_device(&d);
  return bad;
}

/* OpenCL lets exp differ from the exact value by 3 ulp, so where a token's
 * cumulative probability lies within CM_REF_NEAR_P of p (ref->near_p) a
 * device may rightly propose one expert more or fewer. Tries every such
 * variant of the reference (at most 3 near tokens: 27 variants) and accepts
 * the device's routing only if one matches exactly, stats included. */
static int matches_near_p_variant(clmoe_routing *rt, const ref_params *rp,
                                  int T, int E, const float *z,
                                  const ref_result *ref, const char *what,
                                  int check_stats) {
  int near[3], n = 0;
  for (int t = 0; t < T; ++t)
    if (ref->near_p && ref->near_p[t]) {
      if (n == 3)
        return 0;
      near[n++] = t;
    }
  if (n == 0)
    return 0;
  signed char *adjust = calloc((size_t)T, 1);
  ref_params vp = *rp;
  vp.topp_adjust = adjust;
  int found = 0, variants = 1;
  for (int i = 0; i < n; ++i)
    variants *= 3;
  for (int v = 1; v < variants && !found; ++v) {
    for (int i = 0, code = v; i < n; ++i, code /= 3)
      adjust[near[i]] = (signed char)(code % 3 == 2 ? -1 : code % 3);
    ref_result alt;
    ref_route(&vp, T, E, z, NULL, NULL, &alt);
    found = !compare(rt, &alt, NULL, check_stats);
    ref_free(&alt);
  }
  free(adjust);
  if (found)
    fprintf(stderr,
            "%s: matches the reference with a near-p token's cut "
            "moved by one (device exp differs in the last bits)\n",
            what);
  return found;
}

static int check_config(const config *c, int T, int E, const float *z,
                        const float *imp, int check_stats) {
  clmoe_router *r = make_router(E, c);
  int64_t shape[2] = {T, E};
  clmoe_tensor *lt = tensor_f32(2, shape, z);
  clmoe_tensor *it = NULL;
  if (c->policy == CLMOE_POLICY_IMPORTANCE)
    it = tensor_f32(1, (int64_t[]){T}, imp);
  clmoe_routing *rt = NULL;
  REQUIRE_OK(clmoe_routing_create(test_context(), &rt));
  CHECK_OK(clmoe_route_logits(r, lt, it, rt, 0, NULL, NULL));
  ref_params rp = to_ref(E, c);
  ref_result ref;
  ref_route(&rp, T, E, z, imp, NULL, &ref);
  char what[160];
  snprintf(what, sizeof what, "%s T=%d E=%d", c->name, T, E);
  int bad = compare(rt, &ref, what, check_stats);
  if (bad)
    bad = !matches_near_p_variant(rt, &rp, T, E, z, &ref, what, check_stats);
  ref_free(&ref);
  clmoe_routing_destroy(rt);
  clmoe_tensor_destroy(lt);
  clmoe_tensor_destroy(it);
  clmoe_router_destroy(r);
  return bad;
}

static int min_int(int a, int b) { return a < b ? a : b; }

static void test_policy_grid(void) {
  static const int Ts[] = {0, 1, 7, 513, 4096};
  static const int Es[] = {1, 2, 8, 60, 256, 1024};
  test_rng rng = {0x1234567ull};
  int runs = 0, failures = 0;
  for (size_t ei = 0; ei < sizeof Es / sizeof *Es; ++ei) {
    int E = Es[ei];
    int k2 = min_int(2, E), k3 = min_int(3, E);
    const config cfgs[] = {
        {"topk renorm", CLMOE_POLICY_TOPK, k2, 1, 0, 0.4f, 0, 0, 0, 0, 0},
        {"topk raw", CLMOE_POLICY_TOPK, k3, 1, 0, 0.4f, 0, 0, 0,
         CLMOE_GATES_RAW, 0},
        {"topk cap lowest-gate", CLMOE_POLICY_TOPK, k2, 1, 0, 0.4f, 0, 1.0f,
         CLMOE_OVERFLOW_DROP_LOWEST_GATE, 0, 0},
        {"topk cap latest-token", CLMOE_POLICY_TOPK, k2, 1, 0, 0.4f, 0, 1.25f,
         CLMOE_OVERFLOW_DROP_LATEST_TOKEN, CLMOE_GATES_RAW, 0},
        {"topp raw", CLMOE_POLICY_TOPP, 0, 1, 0, 0.4f, 0, 0, 0, 0, 0},
        {"topp renorm kmax", CLMOE_POLICY_TOPP, 0, 1, min_int(4, E), 0.7f, 0, 0,
         0, CLMOE_GATES_RENORM, 0},
        {"topp cap", CLMOE_POLICY_TOPP, 0, 1, 0, 0.5f, 0, 1.0f,
         CLMOE_OVERFLOW_DROP_LOWEST_GATE, 0, 0},
        {"importance", CLMOE_POLICY_IMPORTANCE, 0, 1, min_int(4, E), 0, 0, 0, 0,
         0, 0},
        {"importance raw kmin0", CLMOE_POLICY_IMPORTANCE, 0, 0, min_int(3, E),
         0, 0, 0, 0, CLMOE_GATES_RAW, 0},
        {"importance k_mean", CLMOE_POLICY_IMPORTANCE, 0, 1, min_int(4, E), 0,
         E >= 2 ? 1.5f : 1.0f, 0, 0, 0, 0},
        {"importance cap", CLMOE_POLICY_IMPORTANCE, 0, 1, min_int(4, E), 0, 0,
         1.0f, CLMOE_OVERFLOW_DROP_LATEST_TOKEN, 0, 0},
        {"resonance", CLMOE_POLICY_RESONANCE, k2, 1, 0, 0, 0, 0, 0, 0, 0},
        {"resonance cf0.5 top1", CLMOE_POLICY_RESONANCE, k2, 1, 0, 0, 0, 0.5f,
         0, 0, CLMOE_FALLBACK_TOP1},
        {"resonance raw", CLMOE_POLICY_RESONANCE, k3, 1, 0, 0, 0, 1.5f, 0,
         CLMOE_GATES_RAW, 0},
        {"expert choice", CLMOE_POLICY_EXPERT_CHOICE, 0, 1, 0, 0, 0, 0, 0, 0,
         0},
        {"expert choice cf2 renorm", CLMOE_POLICY_EXPERT_CHOICE, 0, 1, 0, 0, 0,
         2.0f, 0, CLMOE_GATES_RENORM, 0},
    };
    for (size_t ti = 0; ti < sizeof Ts / sizeof *Ts; ++ti) {
      int T = Ts[ti];
      /* The largest products run the policies with the most distinct code
       * paths only, to keep the suite within CI time. */
      int heavy = (int64_t)T * E > 600000;
      float *z = grid_logits(&rng, T, E, 1.5f);
      float *imp = random_importance(&rng, T);
      for (size_t ci = 0; ci < sizeof cfgs / sizeof *cfgs; ++ci) {
        if (heavy && ci % 3 != 0)
          continue;
        ++runs;
        failures += check_config(&cfgs[ci], T, E, z, imp, 1);
      }
      free(z);
      free(imp);
    }
  }
  printf("policy grid: %d routes, %d mismatches\n", runs, failures);
  CHECK(failures == 0);
}

static void test_topp_edges(void) {
  config c = {"topp", CLMOE_POLICY_TOPP, 0, 1, 0, 0.4f, 0, 0, 0, 0, 0};
  /* One dominant expert: tiny p keeps only the top-1. */
  float z1[8] = {5, 0, 0, 0, 0, 0, 0, 0};
  c.p = 0.01f;
  CHECK(check_config(&c, 1, 8, z1, NULL, 0) == 0);
  /* p = 1: the cumulative sum never exceeds 1, so all E are kept. */
  float z2[8] = {0.5f, -1, 2, 0, 0, 1, -3, 0.25f};
  c.p = 1.0f;
  CHECK(check_config(&c, 1, 8, z2, NULL, 0) == 0);
  /* Equal logits: exact ties go to the lower expert id; with 4 equal
   * probabilities of 0.25, C_2 = 0.5 is not > 0.5, so K = 3. */
  float z3[4] = {1, 1, 1, 1};
  c.p = 0.5f;
  clmoe_router *r = make_router(4, &c);
  clmoe_tensor *lt = tensor_f32(2, (int64_t[]){1, 4}, z3);
  clmoe_routing *rt = NULL;
  REQUIRE_OK(clmoe_routing_create(test_context(), &rt));
  CHECK_OK(clmoe_route_logits(r, lt, NULL, rt, 0, NULL, NULL));
  device_result d;
  read_all(rt, &d);
  CHECK(d.n_ids == 3 && d.counts[0] == 3);
  CHECK(d.n_ids == 3 && d.ids[0] == 0 && d.ids[1] == 1 && d.ids[2] == 2);
  CHECK(d.n_gates == 3 && d.gates[0] == 0.25f && d.gates[2] == 0.25f);
  free_device(&d);
  CHECK(check_config(&c, 1, 4, z3, NULL, 0) == 0);
  /* Ties in the middle of the order: [a, b, b, c]. */
  float z4[6] = {0, 2, 1, 2, 1, -1};
  c.p = 0.9f;
  CHECK(check_config(&c, 1, 6, z4, NULL, 0) == 0);
  clmoe_routing_destroy(rt);
  clmoe_tensor_destroy(lt);
  clmoe_router_destroy(r);
}

/* A token routes bitwise the same alone as inside a batch of 4096. */
static void test_batch_invariance(void) {
  const int T = 4096, E = 60;
  test_rng rng = {0xabcdefull};
  float *z = malloc(sizeof *z * T * E);
  for (int i = 0; i < T * E; ++i)
    z[i] = rng_normal(&rng) * 2.0f; /* continuous values this time */
  float *imp = random_importance(&rng, T);
  const config cfgs[] = {
      {"topk", CLMOE_POLICY_TOPK, 4, 1, 0, 0, 0, 0, 0, 0, 0},
      {"topp", CLMOE_POLICY_TOPP, 0, 1, 0, 0.6f, 0, 0, 0, 0, 0},
      {"importance", CLMOE_POLICY_IMPORTANCE, 0, 1, 8, 0, 0, 0, 0, 0, 0},
  };
  clmoe_routing *batch = NULL, *single = NULL;
  REQUIRE_OK(clmoe_routing_create(test_context(), &batch));
  REQUIRE_OK(clmoe_routing_create(test_context(), &single));
  for (size_t ci = 0; ci < 3; ++ci) {
    clmoe_router *r = make_router(E, &cfgs[ci]);
    clmoe_tensor *lt = tensor_f32(2, (int64_t[]){T, E}, z);
    clmoe_tensor *it = tensor_f32(1, (int64_t[]){T}, imp);
    REQUIRE_OK(clmoe_route_logits(r, lt, it, batch, 0, NULL, NULL));
    device_result b;
    read_all(batch, &b);
    int mismatches = 0;
    for (int t = 0; t < T; t += 37) {
      clmoe_tensor *one = tensor_f32(2, (int64_t[]){1, E}, z + (size_t)t * E);
      clmoe_tensor *ione = tensor_f32(1, (int64_t[]){1}, imp + t);
      REQUIRE_OK(clmoe_route_logits(r, one, ione, single, 0, NULL, NULL));
      device_result s;
      read_all(single, &s);
      int o = b.offsets[t], k = b.counts[t];
      mismatches += s.counts[0] != k ||
                    memcmp(s.ids, b.ids + o, (size_t)k * 4) != 0 ||
                    memcmp(s.gates, b.gates + o, (size_t)k * 4) != 0;
      free_device(&s);
      clmoe_tensor_destroy(one);
      clmoe_tensor_destroy(ione);
    }
    if (mismatches)
      fprintf(stderr, "batch invariance (%s): %d tokens differ\n",
              cfgs[ci].name, mismatches);
    CHECK(mismatches == 0);
    free_device(&b);
    clmoe_tensor_destroy(lt);
    clmoe_tensor_destroy(it);
    clmoe_router_destroy(r);
  }
  clmoe_routing_destroy(batch);
  clmoe_routing_destroy(single);
  free(z);
  free(imp);
}

/* Same call twice: bitwise-identical arrays; a smaller second route reuses
 * the buffers. */
static void test_determinism_and_reuse(void) {
  const int T = 1000, E = 64;
  test_rng rng = {77};
  float *z = malloc(sizeof *z * T * E);
  for (int i = 0; i < T * E; ++i)
    z[i] = rng_normal(&rng);
  config c = {"resonance", CLMOE_POLICY_RESONANCE, 4, 1, 0, 0, 0, 1.0f, 0,
              0,           CLMOE_FALLBACK_TOP1};
  clmoe_router *r = make_router(E, &c);
  clmoe_tensor *lt = tensor_f32(2, (int64_t[]){T, E}, z);
  clmoe_routing *rt = NULL;
  REQUIRE_OK(clmoe_routing_create(test_context(), &rt));
  REQUIRE_OK(clmoe_route_logits(r, lt, NULL, rt, 0, NULL, NULL));
  device_result a, b;
  read_all(rt, &a);
  const clmoe_tensor *v = NULL;
  cl_mem before = NULL, after = NULL;
  REQUIRE_OK(clmoe_routing_get_array(rt, CLMOE_ROUTING_EXPERT_IDS, &v));
  REQUIRE_OK(clmoe_tensor_get_cl_mem(v, &before));
  cl_event ev = NULL;
  REQUIRE_OK(clmoe_route_logits(r, lt, NULL, rt, 0, NULL, &ev));
  CHECK(ev != NULL);
  if (ev) {
    CHECK(clWaitForEvents(1, &ev) == CL_SUCCESS);
    clReleaseEvent(ev);
  }
  read_all(rt, &b);
  CHECK(a.n_ids == b.n_ids && ints_equal(a.ids, b.ids, a.n_ids) &&
        memcmp(a.gates, b.gates, (size_t)a.n_gates * 4) == 0 &&
        ints_equal(a.rtok, b.rtok, a.n_rtok) &&
        ints_equal(a.eoff, b.eoff, a.n_eoff));
  /* Smaller input: same buffers. */
  clmoe_tensor *small = tensor_f32(2, (int64_t[]){T / 2, E}, z);
  REQUIRE_OK(clmoe_route_logits(r, small, NULL, rt, 0, NULL, NULL));
  REQUIRE_OK(clmoe_routing_get_array(rt, CLMOE_ROUTING_EXPERT_IDS, &v));
  REQUIRE_OK(clmoe_tensor_get_cl_mem(v, &after));
  CHECK(before == after);
  int64_t tt = 0, ee = 0, nn = 0;
  CHECK_OK(clmoe_routing_get_sizes(rt, &tt, &ee, &nn));
  CHECK(tt == T / 2 && ee == E && nn > 0);
  free_device(&a);
  free_device(&b);
  clmoe_tensor_destroy(small);
  clmoe_tensor_destroy(lt);
  clmoe_routing_destroy(rt);
  clmoe_router_destroy(r);
  free(z);
}

/* Routing from x through the router GEMM (with bias), and COSINE affinity,
 * against the reference fed with logits computed in double. */
static void test_route_from_x(void) {
  const int T = 96, d = 40, E = 12;
  test_rng rng = {4242};
  float *x = malloc(sizeof *x * T * d), *w = malloc(sizeof *w * d * E);
  float bias[12], *z = malloc(sizeof *z * T * E),
                  *cosv = malloc(sizeof *z * T * E);
  for (int i = 0; i < T * d; ++i)
    x[i] = rng_normal(&rng);
  for (int i = 0; i < d * E; ++i)
    w[i] = rng_normal(&rng) * 0.3f;
  for (int e = 0; e < E; ++e)
    bias[e] = rng_normal(&rng) * 0.1f;
  for (int t = 0; t < T; ++t)
    for (int e = 0; e < E; ++e) {
      double s = 0, xn = 0, wn = 0;
      for (int i = 0; i < d; ++i) {
        s += (double)x[t * d + i] * w[i * E + e];
        xn += (double)x[t * d + i] * x[t * d + i];
        wn += (double)w[i * E + e] * w[i * E + e];
      }
      z[t * E + e] = (float)(s + bias[e]);
      cosv[t * E + e] = (float)(s / sqrt(xn * wn));
    }
  clmoe_tensor *xt = tensor_f32(2, (int64_t[]){T, d}, x);
  clmoe_tensor *wt = tensor_f32(2, (int64_t[]){d, E}, w);
  clmoe_tensor *bt = tensor_f32(1, (int64_t[]){E}, bias);
  /* 0: top-k; 1: resonance with cosine affinity (column norms); 2: the same
   * with weight and bias given as device tensors (read back for the norms
   * and, on CPUs, the grouped kernel's packing). */
  for (int variant = 0; variant < 3; ++variant) {
    clmoe_router_desc desc;
    clmoe_router_desc_init(&desc);
    desc.num_experts = E;
    desc.d_model = d;
    desc.weight_host = w;
    desc.bias_host = bias;
    config c = {"x topk", CLMOE_POLICY_TOPK, 3, 1, 0, 0, 0, 0, 0, 0, 0};
    if (variant >= 1) {
      c = (config){"x resonance cosine",
                   CLMOE_POLICY_RESONANCE,
                   3,
                   1,
                   0,
                   0,
                   0,
                   1.0f,
                   0,
                   0,
                   0};
      desc.policy = CLMOE_POLICY_RESONANCE;
      desc.affinity = CLMOE_AFFINITY_COSINE;
      desc.capacity_factor = 1.0f;
    }
    if (variant == 2) {
      c.name = "x resonance cosine, device weight";
      desc.weight_host = desc.bias_host = NULL;
      desc.weight = wt;
      desc.bias = bt;
    }
    desc.k = c.k;
    clmoe_router *r = NULL;
    REQUIRE_OK(clmoe_router_create(test_context(), &desc, &r));
    clmoe_routing *rt = NULL;
    REQUIRE_OK(clmoe_routing_create(test_context(), &rt));
    CHECK_OK(clmoe_route(r, xt, NULL, rt, 0, NULL, NULL));
    ref_params rp = to_ref(E, &c);
    ref_result ref;
    ref_route(&rp, T, E, z, NULL, variant ? cosv : NULL, &ref);
    CHECK(compare(rt, &ref, c.name, 0) == 0);
    ref_free(&ref);
    /* Logits input is refused for COSINE; x is refused without weight. */
    if (variant >= 1) {
      clmoe_tensor *lt = tensor_f32(2, (int64_t[]){T, E}, z);
      CHECK_STATUS(clmoe_route_logits(r, lt, NULL, rt, 0, NULL, NULL),
                   CLMOE_ERROR_UNSUPPORTED);
      clmoe_tensor_destroy(lt);
    }
    clmoe_routing_destroy(rt);
    clmoe_router_destroy(r);
  }
  clmoe_tensor_destroy(xt);
  clmoe_tensor_destroy(wt);
  clmoe_tensor_destroy(bt);
  free(x);
  free(w);
  free(z);
  free(cosv);
}

static void test_bad_inputs(void) {
  clmoe_context *ctx = test_context();
  const int T = 9, E = 8;
  config c = {"topk", CLMOE_POLICY_TOPK, 2, 1, 0, 0, 0, 0, 0, 0, 0};
  clmoe_router *r = make_router(E, &c);
  clmoe_routing *rt = NULL;
  REQUIRE_OK(clmoe_routing_create(ctx, &rt));
  float z[9 * 8];
  for (int i = 0; i < T * E; ++i)
    z[i] = (float)(i % 5);
  const float bad_values[] = {NAN, INFINITY, -INFINITY};
  for (int b = 0; b < 3; ++b) {
    float zz[9 * 8];
    memcpy(zz, z, sizeof z);
    zz[5 * E + 3] = bad_values[b];
    zz[7 * E + 1] = bad_values[b];
    clmoe_tensor *lt = tensor_f32(2, (int64_t[]){T, E}, zz);
    CHECK_STATUS(clmoe_route_logits(r, lt, NULL, rt, 0, NULL, NULL),
                 CLMOE_ERROR_NONFINITE_INPUT);
    CHECK(strstr(clmoe_last_error_detail(), "token 5") != NULL);
    int64_t tt = -1, nn = -1;
    CHECK_OK(clmoe_routing_get_sizes(rt, &tt, NULL, &nn));
    CHECK(tt == 0 && nn == 0); /* left empty, never half-filled */
    clmoe_tensor_destroy(lt);
  }
  /* Wrong shapes and dtypes. */
  clmoe_tensor *wrong = tensor_f32(2, (int64_t[]){T, E + 1}, NULL);
  CHECK_STATUS(clmoe_route_logits(r, wrong, NULL, rt, 0, NULL, NULL),
               CLMOE_ERROR_SHAPE_MISMATCH);
  clmoe_tensor_destroy(wrong);
  wrong = tensor_f32(1, (int64_t[]){T * E}, NULL);
  CHECK_STATUS(clmoe_route_logits(r, wrong, NULL, rt, 0, NULL, NULL),
               CLMOE_ERROR_SHAPE_MISMATCH);
  clmoe_tensor_destroy(wrong);
  clmoe_tensor *ints = NULL;
  REQUIRE_OK(clmoe_tensor_create(ctx, CLMOE_DTYPE_I32, 2, (int64_t[]){T, E},
                                 NULL, &ints));
  CHECK_STATUS(clmoe_route_logits(r, ints, NULL, rt, 0, NULL, NULL),
               CLMOE_ERROR_DTYPE_MISMATCH);
  clmoe_tensor_destroy(ints);
  CHECK_STATUS(clmoe_route_logits(r, NULL, NULL, rt, 0, NULL, NULL),
               CLMOE_ERROR_NULL_POINTER);
  CHECK_STATUS(clmoe_route_logits(NULL, NULL, NULL, rt, 0, NULL, NULL),
               CLMOE_ERROR_NULL_POINTER);
  clmoe_tensor *lt = tensor_f32(2, (int64_t[]){T, E}, z);
  CHECK_STATUS(clmoe_route_logits(r, lt, NULL, NULL, 0, NULL, NULL),
               CLMOE_ERROR_NULL_POINTER);
  CHECK_STATUS(clmoe_route_logits(r, lt, NULL, rt, 2, NULL, NULL),
               CLMOE_ERROR_NULL_POINTER);
  /* x through a router without weight. */
  CHECK_STATUS(clmoe_route(r, lt, NULL, rt, 0, NULL, NULL),
               CLMOE_ERROR_UNSUPPORTED);
  /* IMPORTANCE needs a finite importance[T]. */
  config ci = {"imp", CLMOE_POLICY_IMPORTANCE, 0, 1, 4, 0, 0, 0, 0, 0, 0};
  clmoe_router *ri = make_router(E, &ci);
  CHECK_STATUS(clmoe_route_logits(ri, lt, NULL, rt, 0, NULL, NULL),
               CLMOE_ERROR_NULL_POINTER);
  clmoe_tensor *short_imp = tensor_f32(1, (int64_t[]){T - 1}, NULL);
  CHECK_STATUS(clmoe_route_logits(ri, lt, short_imp, rt, 0, NULL, NULL),
               CLMOE_ERROR_SHAPE_MISMATCH);
  float impv[9] = {0, 0.5f, 1, 0.2f, NAN, 0, 0, 0, 0};
  clmoe_tensor *nan_imp = tensor_f32(1, (int64_t[]){T}, impv);
  CHECK_STATUS(clmoe_route_logits(ri, lt, nan_imp, rt, 0, NULL, NULL),
               CLMOE_ERROR_NONFINITE_INPUT);
  CHECK(strstr(clmoe_last_error_detail(), "token 4") != NULL);
  /* The same with a k_mean budget and capacity (found by fuzz_route: the
   * budget used to hand the NaN token slots over candidates never written,
   * and the capacity grouping wrote out of bounds). Repeated so stale
   * candidates from earlier routes are in the buffers. */
  clmoe_router_desc db;
  clmoe_router_desc_init(&db);
  db.num_experts = E;
  db.policy = CLMOE_POLICY_IMPORTANCE;
  db.k_min = 0;
  db.k_max = 3;
  db.k_mean = 2.0f;
  db.capacity_factor = 1e-30f;
  clmoe_router *rb = NULL;
  REQUIRE_OK(clmoe_router_create(ctx, &db, &rb));
  for (int rep = 0; rep < 3; ++rep) {
    CHECK_STATUS(clmoe_route_logits(rb, lt, nan_imp, rt, 0, NULL, NULL),
                 CLMOE_ERROR_NONFINITE_INPUT);
    impv[4] = 0.7f;
    clmoe_tensor *ok_imp = tensor_f32(1, (int64_t[]){T}, impv);
    CHECK_OK(clmoe_route_logits(rb, lt, ok_imp, rt, 0, NULL, NULL));
    clmoe_tensor_destroy(ok_imp);
    impv[4] = NAN;
  }
  clmoe_router_destroy(rb);
  /* T * E overflowing int32: x of 2^22 rows, E = 1024. */
  clmoe_router_desc d;
  clmoe_router_desc_init(&d);
  d.num_experts = 1024;
  d.d_model = 1;
  float wbig[1024] = {0};
  d.weight_host = wbig;
  clmoe_router *rbig = NULL;
  REQUIRE_OK(clmoe_router_create(ctx, &d, &rbig));
  clmoe_tensor *xbig = tensor_f32(2, (int64_t[]){1 << 22, 1}, NULL);
  CHECK_STATUS(clmoe_route(rbig, xbig, NULL, rt, 0, NULL, NULL),
               CLMOE_ERROR_TOO_LARGE);
  clmoe_tensor_destroy(xbig);
  clmoe_router_destroy(rbig);
  clmoe_tensor_destroy(short_imp);
  clmoe_tensor_destroy(nan_imp);
  clmoe_router_destroy(ri);
  clmoe_tensor_destroy(lt);
  clmoe_routing_destroy(rt);
  clmoe_router_destroy(r);
}

static void expect_create_fails(clmoe_router_desc *d, const char *field) {
  clmoe_router *r = (clmoe_router *)1;
  clmoe_status st = clmoe_router_create(test_context(), d, &r);
  if (st != CLMOE_ERROR_INVALID_ARGUMENT ||
      !strstr(clmoe_last_error_detail(), field)) {
    fprintf(stderr, "router_create with bad %s: %s (%s)\n", field,
            clmoe_status_string(st), clmoe_last_error_detail());
    ++g_failures;
  }
  CHECK(r == NULL);
  clmoe_router_destroy(st ? NULL : r);
}

static void test_router_create_errors(void) {
  clmoe_router_desc d;
#define RESET()                                                                \
  do {                                                                         \
    clmoe_router_desc_init(&d);                                                \
    d.num_experts = 8;                                                         \
  } while (0)
  RESET();
  d.num_experts = 0;
  expect_create_fails(&d, "num_experts");
  RESET();
  d.num_experts = 1025;
  expect_create_fails(&d, "num_experts");
  RESET();
  d.k = 9;
  expect_create_fails(&d, "k =");
  RESET();
  d.k = 0;
  expect_create_fails(&d, "k =");
  RESET();
  d.policy = CLMOE_POLICY_TOPP;
  d.p = 0.0f;
  expect_create_fails(&d, "p =");
  RESET();
  d.policy = CLMOE_POLICY_TOPP;
  d.p = 1.01f;
  expect_create_fails(&d, "p =");
  RESET();
  d.policy = CLMOE_POLICY_TOPP;
  d.p = NAN;
  expect_create_fails(&d, "p =");
  RESET();
  d.policy = CLMOE_POLICY_TOPP;
  d.k_min = 5;
  d.k_max = 3;
  expect_create_fails(&d, "k_min");
  RESET();
  d.policy = CLMOE_POLICY_IMPORTANCE;
  d.k_max = 9;
  expect_create_fails(&d, "k_max");
  RESET();
  d.policy = CLMOE_POLICY_IMPORTANCE;
  d.k_max = 4;
  d.k_mean = 5.0f;
  expect_create_fails(&d, "k_mean");
  RESET();
  d.policy = 99;
  expect_create_fails(&d, "policy");
  RESET();
  d.gates = 7;
  expect_create_fails(&d, "gates");
  RESET();
  d.overflow = 3;
  expect_create_fails(&d, "overflow");
  RESET();
  d.policy = CLMOE_POLICY_RESONANCE;
  d.affinity = CLMOE_AFFINITY_COSINE;
  expect_create_fails(&d, "COSINE");
  RESET();
  d.policy = CLMOE_POLICY_EXPERT_CHOICE;
  d.capacity_factor = -1.0f;
  expect_create_fails(&d, "capacity_factor");
  RESET();
  d.capacity_factor = INFINITY;
  expect_create_fails(&d, "capacity_factor");
  RESET();
  float w[16] = {0};
  d.weight_host = w;
  d.d_model = 0;
  expect_create_fails(&d, "d_model");
  RESET();
  d.bias_host = w;
  expect_create_fails(&d, "bias");
#undef RESET
  clmoe_router *r = NULL;
  CHECK_STATUS(clmoe_router_create(test_context(), NULL, &r),
               CLMOE_ERROR_NULL_POINTER);
  CHECK_STATUS(clmoe_router_create(NULL, &d, &r), CLMOE_ERROR_NULL_POINTER);
  CHECK_STATUS(clmoe_router_create(test_context(), &d, NULL),
               CLMOE_ERROR_NULL_POINTER);
  clmoe_router_desc_init(&d);
  d.num_experts = 8;
  d.struct_size = 8;
  CHECK_STATUS(clmoe_router_create(test_context(), &d, &r),
               CLMOE_ERROR_INVALID_STRUCT_SIZE);
  /* A weight tensor of the wrong shape. */
  clmoe_router_desc_init(&d);
  d.num_experts = 8;
  d.d_model = 4;
  clmoe_tensor *wt = tensor_f32(2, (int64_t[]){4, 7}, NULL);
  d.weight = wt;
  CHECK_STATUS(clmoe_router_create(test_context(), &d, &r),
               CLMOE_ERROR_SHAPE_MISMATCH);
  clmoe_tensor_destroy(wt);
  clmoe_router_destroy(NULL);
  clmoe_routing_destroy(NULL);
  clmoe_routing *rt = NULL;
  CHECK_STATUS(clmoe_routing_create(NULL, &rt), CLMOE_ERROR_NULL_POINTER);
  CHECK_STATUS(clmoe_routing_create(test_context(), NULL),
               CLMOE_ERROR_NULL_POINTER);
  REQUIRE_OK(clmoe_routing_create(test_context(), &rt));
  const clmoe_tensor *v;
  CHECK_STATUS(clmoe_routing_get_array(rt, 7, &v),
               CLMOE_ERROR_INVALID_ARGUMENT);
  clmoe_routing_stats st;
  clmoe_routing_stats_init(&st);
  CHECK_OK(clmoe_routing_read_stats(rt, &st)); /* empty routing: zeros */
  CHECK(st.num_tokens == 0 && st.num_slots == 0);
  st.struct_size = 0;
  CHECK_STATUS(clmoe_routing_read_stats(rt, &st),
               CLMOE_ERROR_INVALID_STRUCT_SIZE);
  clmoe_routing_destroy(rt);
}

int main(void) {
  test_router_create_errors();
  test_topp_edges();
  test_bad_inputs();
  test_route_from_x();
  test_determinism_and_reuse();
  test_batch_invariance();
  test_policy_grid();
  return test_finish("test_route");
}
