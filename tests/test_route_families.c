/* The 0.4 router fields (sigmoid scoring, selection bias, group-limited
 * selection, gate_scale, input-side gates) and the SWIGLU_OAI activation,
 * against a plain-C reference written from docs/policies.md: ids exactly,
 * gates to 1e-6; ties (groups and experts) to the lower index; the bias
 * steers selection only; experts outside the kept groups never chosen
 * (also by EXPERT_CHOICE); TOPP over pi; input-side gates and SWIGLU_OAI on
 * both expert paths against a double reference; and every bad field. */
#define CL_TARGET_OPENCL_VERSION 120
#include <CL/cl.h>

#include "harness.h"

enum { MAXE = 64 };

typedef struct fam {
  clmoe_scoring scoring;
  int G, TG;
  clmoe_group_score gs;
  float scale;
  clmoe_policy policy;
  int k;
  float p;
  int renorm;
  const float *bias; /* [E] or NULL */
} fam;

/* Reference of one token: ids[K] and gates[K]; returns K. */
static int ref_token(const fam *f, int E, const float *z, int *ids,
                     float *gates) {
  float s[MAXE], c[MAXE];
  int allowed[MAXE];
  float mx = z[0];
  for (int e = 1; e < E; ++e)
    mx = z[e] > mx ? z[e] : mx;
  double den = 0;
  for (int e = 0; e < E; ++e)
    den += exp((double)z[e] - mx);
  for (int e = 0; e < E; ++e) {
    s[e] = f->scoring == CLMOE_SCORING_SIGMOID
               ? (float)(1 / (1 + exp(-(double)z[e])))
               : (float)(exp((double)z[e] - mx) / den);
    c[e] = s[e] + (f->bias ? f->bias[e] : 0.0f);
    allowed[e] = 1;
  }
  if (f->G > 1) {
    int size = E / f->G, kept[MAXE] = {0};
    float score[MAXE];
    for (int g = 0; g < f->G; ++g) {
      float m1 = -INFINITY, m2 = -INFINITY;
      for (int e = g * size; e < (g + 1) * size; ++e) {
        if (c[e] > m1) {
          m2 = m1;
          m1 = c[e];
        } else if (c[e] > m2) {
          m2 = c[e];
        }
      }
      score[g] = f->gs == CLMOE_GROUP_SCORE_MAX ? m1 : m1 + m2;
    }
    for (int j = 0; j < f->TG; ++j) { /* best remaining, lower index first */
      int best = -1;
      for (int g = 0; g < f->G; ++g)
        if (!kept[g] && (best < 0 || score[g] > score[best]))
          best = g;
      kept[best] = 1;
    }
    for (int e = 0; e < E; ++e)
      allowed[e] = kept[e / size];
  }
  /* Selection order: C descending, ties to the lower id, allowed only. */
  int order[MAXE], n = 0;
  double asum = 0;
  for (int e = 0; e < E; ++e)
    if (allowed[e]) {
      order[n++] = e;
      asum += s[e];
    }
  for (int i = 1; i < n; ++i)
    for (int j = i; j > 0 && c[order[j]] > c[order[j - 1]]; --j) {
      int t = order[j];
      order[j] = order[j - 1];
      order[j - 1] = t;
    }
  int whole = f->scoring == CLMOE_SCORING_SOFTMAX && f->G <= 1;
  double pi[MAXE];
  for (int e = 0; e < E; ++e)
    pi[e] = allowed[e] ? (whole ? s[e] : s[e] / asum) : 0;
  int K = f->k;
  if (f->policy == CLMOE_POLICY_TOPP) {
    double cum = 0;
    K = n;
    for (int j = 0; j < n; ++j)
      if ((cum += pi[order[j]]) > f->p) {
        K = j + 1;
        break;
      }
  }
  double sum = 0, g[MAXE];
  for (int j = 0; j < K; ++j) {
    ids[j] = order[j];
    g[j] = f->policy == CLMOE_POLICY_TOPK ? s[order[j]] : pi[order[j]];
    sum += g[j];
  }
  for (int j = 0; j < K; ++j) {
    double v = f->renorm ? g[j] / sum : g[j];
    gates[j] = (float)(v * f->scale);
  }
  return K;
}

static clmoe_router *make_router(const fam *f, int E, clmoe_status *st) {
  clmoe_router_desc rd;
  clmoe_router_desc_init(&rd);
  rd.num_experts = E;
  rd.policy = f->policy;
  rd.k = f->k;
  rd.p = f->p;
  rd.gates = f->renorm ? CLMOE_GATES_RENORM : CLMOE_GATES_RAW;
  rd.scoring = f->scoring;
  rd.num_groups = f->G;
  rd.topk_groups = f->TG;
  rd.group_score = f->gs;
  rd.gate_scale = f->scale;
  rd.selection_bias_host = f->bias;
  clmoe_router *r = NULL;
  *st = clmoe_router_create(test_context(), &rd, &r);
  return r;
}

/* Routes logits[T, E] and compares with the reference token by token. */
static void check_route(const char *what, const fam *f, int T, int E,
                        const float *z) {
  clmoe_status st;
  clmoe_router *r = make_router(f, E, &st);
  CHECK_OK(st);
  if (!r)
    return;
  clmoe_tensor *lt = NULL;
  clmoe_routing *rt = NULL;
  REQUIRE_OK(clmoe_tensor_create(test_context(), CLMOE_DTYPE_F32, 2,
                                 (int64_t[]){T, E}, z, &lt));
  REQUIRE_OK(clmoe_routing_create(test_context(), &rt));
  CHECK_OK(clmoe_route_logits(r, lt, NULL, rt, 0, NULL, NULL));
  int64_t N = 0;
  clmoe_routing_get_sizes(rt, NULL, NULL, &N);
  int *off = malloc(sizeof *off * (T + 1)),
      *ids = malloc(sizeof *ids * (N + 1));
  float *gates = malloc(sizeof *gates * (N + 1));
  const clmoe_tensor *v;
  clmoe_routing_get_array(rt, CLMOE_ROUTING_TOKEN_OFFSETS, &v);
  clmoe_tensor_read(v, off, sizeof *off * (T + 1));
  clmoe_routing_get_array(rt, CLMOE_ROUTING_EXPERT_IDS, &v);
  clmoe_tensor_read(v, ids, sizeof *ids * N);
  clmoe_routing_get_array(rt, CLMOE_ROUTING_GATES, &v);
  clmoe_tensor_read(v, gates, sizeof *gates * N);
  int bad = 0;
  for (int t = 0; t < T && !bad; ++t) {
    int rid[MAXE];
    float rg[MAXE];
    int K = ref_token(f, E, z + (size_t)t * E, rid, rg);
    if (off[t + 1] - off[t] != K) {
      fprintf(stderr, "%s: token %d has K %d, reference %d\n", what, t,
              off[t + 1] - off[t], K);
      bad = 1;
    }
    for (int j = 0; j < K && !bad; ++j)
      if (ids[off[t] + j] != rid[j] ||
          fabsf(gates[off[t] + j] - rg[j]) > 1e-6f * fmaxf(1, fabsf(rg[j]))) {
        fprintf(stderr,
                "%s: token %d slot %d: expert %d gate %g, reference "
                "expert %d gate %g\n",
                what, t, j, ids[off[t] + j], gates[off[t] + j], rid[j], rg[j]);
        bad = 1;
      }
  }
  CHECK(!bad);
  free(off);
  free(ids);
  free(gates);
  clmoe_routing_destroy(rt);
  clmoe_tensor_destroy(lt);
  clmoe_router_destroy(r);
}

static void test_routers(void) {
  test_rng rng = {0x5eed1234};
  enum { T = 37, E = 16 };
  float *z = rng_grid(&rng, (size_t)T * E, 1.5f, 1.0f / 8);
  float *bias = rng_grid(&rng, E, 0.4f, 1.0f / 16);
  fam v3 = {.scoring = CLMOE_SCORING_SIGMOID, .G = 4, .TG = 2,
            .gs = CLMOE_GROUP_SCORE_TOP2_SUM, .scale = 2.5f,
            .policy = CLMOE_POLICY_TOPK, .k = 4, .renorm = 1, .bias = bias};
  check_route("deepseek_v3", &v3, T, E, z);
  fam v3raw = v3;
  v3raw.renorm = 0;
  check_route("sigmoid raw", &v3raw, T, E, z);
  fam v2 = {.scoring = CLMOE_SCORING_SOFTMAX, .G = 4, .TG = 2,
            .gs = CLMOE_GROUP_SCORE_MAX, .scale = 16.0f,
            .policy = CLMOE_POLICY_TOPK, .k = 3};
  check_route("deepseek_v2", &v2, T, E, z);
  fam k2 = {.scoring = CLMOE_SCORING_SIGMOID, .G = 1, .TG = 1,
            .scale = 2.827f, .policy = CLMOE_POLICY_TOPK, .k = 8,
            .renorm = 1, .bias = bias};
  check_route("kimi_k2 (one group)", &k2, T, E, z);
  fam topp = v3;
  topp.policy = CLMOE_POLICY_TOPP;
  topp.p = 0.55f;
  check_route("top-p over sigmoid groups", &topp, T, E, z);
  topp.renorm = 0;
  topp.scoring = CLMOE_SCORING_SOFTMAX;
  topp.bias = NULL;
  check_route("top-p over softmax groups (raw pi)", &topp, T, E, z);
  fam max8 = v2;
  max8.G = 8;
  max8.TG = 8; /* every group kept: pi = P / sum of P */
  max8.policy = CLMOE_POLICY_TOPP;
  max8.p = 0.5f;
  check_route("top-p, every group kept", &max8, T, E, z);

  /* Ties: every logit equal, groups and experts tie; then the lower group
   * and the lower id win. */
  float *flat = calloc((size_t)4 * E, sizeof *flat);
  check_route("all tied", &v3raw, 4, E, flat);
  /* The bias steers selection only: expert 13 (group 3) gets a large
   * bias and is chosen with gate s itself. A large score in an excluded
   * group (expert 1, alone in a weak group) is never chosen. */
  float zb[E], b2[E];
  for (int e = 0; e < E; ++e) {
    zb[e] = -2.0f + 0.125f * (e % 4);
    b2[e] = 0;
  }
  zb[1] = 3.0f;
  b2[13] = 2.0f;
  b2[12] = 2.0f;
  fam steer = {.scoring = CLMOE_SCORING_SIGMOID, .G = 4, .TG = 1,
               .gs = CLMOE_GROUP_SCORE_TOP2_SUM, .scale = 1.0f,
               .policy = CLMOE_POLICY_TOPK, .k = 4, .bias = b2};
  check_route("bias steers only", &steer, 1, E, zb);
  {
    int ids[MAXE];
    float g[MAXE];
    ref_token(&steer, E, zb, ids, g);
    CHECK(ids[0] == 13 && ids[1] == 12); /* the bias chose group 3 */
    CHECK(fabsf(g[0] - 1 / (1 + expf(1.875f))) < 1e-6f); /* gate s, no b */
  }
  /* EXPERT_CHOICE never pairs a token with an expert outside its groups. */
  fam ec = v3;
  ec.policy = CLMOE_POLICY_EXPERT_CHOICE;
  clmoe_status st;
  clmoe_router *r = make_router(&ec, E, &st);
  CHECK_OK(st);
  clmoe_tensor *lt = NULL;
  clmoe_routing *rt = NULL;
  REQUIRE_OK(clmoe_tensor_create(test_context(), CLMOE_DTYPE_F32, 2,
                                 (int64_t[]){T, E}, z, &lt));
  REQUIRE_OK(clmoe_routing_create(test_context(), &rt));
  CHECK_OK(clmoe_route_logits(r, lt, NULL, rt, 0, NULL, NULL));
  int64_t N = 0;
  clmoe_routing_get_sizes(rt, NULL, NULL, &N);
  int off[T + 1], *ids = malloc(sizeof *ids * (N + 1));
  const clmoe_tensor *v;
  clmoe_routing_get_array(rt, CLMOE_ROUTING_TOKEN_OFFSETS, &v);
  clmoe_tensor_read(v, off, sizeof off);
  clmoe_routing_get_array(rt, CLMOE_ROUTING_EXPERT_IDS, &v);
  clmoe_tensor_read(v, ids, sizeof *ids * N);
  int outside = 0;
  for (int t = 0; t < T; ++t) {
    int rid[MAXE];
    float rg[MAXE];
    fam all = v3;
    all.k = 8; /* the allowed experts, in order */
    ref_token(&all, E, z + (size_t)t * E, rid, rg);
    for (int s = off[t]; s < off[t + 1]; ++s) {
      int in = 0;
      for (int j = 0; j < 8; ++j)
        in |= rid[j] == ids[s];
      outside += !in;
    }
  }
  CHECK(N > 0 && outside == 0);
  clmoe_routing_stats stats;
  clmoe_routing_stats_init(&stats);
  float mean_prob[E + 1];
  stats.mean_prob = mean_prob;
  stats.array_capacity = E + 1;
  CHECK_OK(clmoe_routing_read_stats(rt, &stats));
  double total = 0; /* pi sums to 1 per token */
  for (int e = 0; e < E; ++e)
    total += mean_prob[e];
  CHECK(fabs(total - 1) < 1e-5);
  free(ids);
  clmoe_routing_destroy(rt);
  clmoe_tensor_destroy(lt);
  clmoe_router_destroy(r);
  free(flat);
  free(z);
  free(bias);
}

/* ---- forward: input-side gates and SWIGLU_OAI ---- */

enum { FE = 6, FD = 24, FF = 20 };

/* One expert of kind `act` on x (double). */
static void ref_expert(clmoe_activation act, const float *w1, const float *w3,
                       const float *w2, const float *b1, const float *b3,
                       const float *b2, int e, const double *x, double *out) {
  double h[FF];
  for (int j = 0; j < FF; ++j) {
    double g = b1 ? b1[e * FF + j] : 0, u = b3 ? b3[e * FF + j] : 0;
    for (int i = 0; i < FD; ++i) {
      g += x[i] * w1[((size_t)e * FD + i) * FF + j];
      u += x[i] * w3[((size_t)e * FD + i) * FF + j];
    }
    if (act == CLMOE_ACTIVATION_SWIGLU_OAI) {
      double L = 7.0, a = 1.702;
      g = g < L ? g : L;
      u = u < -L ? -L : u > L ? L : u;
      h[j] = g / (1 + exp(-a * g)) * (u + 1);
    } else {
      h[j] = g / (1 + exp(-g)) * u;
    }
  }
  for (int c = 0; c < FD; ++c) {
    double o = b2 ? b2[e * FD + c] : 0;
    for (int j = 0; j < FF; ++j)
      o += h[j] * w2[((size_t)e * FF + j) * FD + c];
    out[c] = o;
  }
}

static void test_forward_paths(void) {
  test_rng rng = {0xfeed77};
  enum { T = 29 };
  float *wr = rng_grid(&rng, (size_t)FD * FE, 0.3f, 1.0f / 64);
  float *w1 = rng_grid(&rng, (size_t)FE * FD * FF, 0.8f, 1.0f / 1024);
  float *w3 = rng_grid(&rng, (size_t)FE * FD * FF, 0.8f, 1.0f / 1024);
  float *w2 = rng_grid(&rng, (size_t)FE * FF * FD, 0.2f, 1.0f / 1024);
  float *b1 = rng_grid(&rng, (size_t)FE * FF, 0.5f, 1.0f / 256);
  float *b3 = rng_grid(&rng, (size_t)FE * FF, 0.5f, 1.0f / 256);
  float *b2 = rng_grid(&rng, (size_t)FE * FD, 0.1f, 1.0f / 256);
  float *x = rng_grid(&rng, (size_t)T * FD, 1.0f, 1.0f / 64);
  clmoe_context *ctx = test_context();
  clmoe_tensor *xt = NULL, *yt = NULL;
  REQUIRE_OK(
      clmoe_tensor_create(ctx, CLMOE_DTYPE_F32, 2, (int64_t[]){T, FD}, x, &xt));
  REQUIRE_OK(clmoe_tensor_create(ctx, CLMOE_DTYPE_F32, 2, (int64_t[]){T, FD},
                                 NULL, &yt));
  clmoe_routing *rt = NULL;
  REQUIRE_OK(clmoe_routing_create(ctx, &rt));
  const clmoe_experts_path paths[2] = {CLMOE_EXPERTS_PATH_CLBLAST,
                                       CLMOE_EXPERTS_PATH_GROUPED};
  for (int oai = 0; oai < 2; ++oai)
    for (int input = 0; input < 2; ++input)
      for (int pi = 0; pi < 2; ++pi) {
        clmoe_activation act =
            oai ? CLMOE_ACTIVATION_SWIGLU_OAI : CLMOE_ACTIVATION_SWIGLU;
        clmoe_router_desc rd;
        clmoe_router_desc_init(&rd);
        rd.num_experts = FE;
        rd.d_model = FD;
        rd.k = input ? 1 : 2;
        rd.gates = CLMOE_GATES_RAW;
        rd.scoring = CLMOE_SCORING_SIGMOID;
        rd.gate_position = input ? CLMOE_GATE_INPUT : CLMOE_GATE_OUTPUT;
        rd.weight_host = wr;
        clmoe_router *r = NULL;
        REQUIRE_OK(clmoe_router_create(ctx, &rd, &r));
        clmoe_experts_desc ed;
        clmoe_experts_desc_init(&ed);
        ed.num_experts = FE;
        ed.d_model = FD;
        ed.d_ff = FF;
        ed.activation = act;
        ed.w1_host = w1;
        ed.w3_host = w3;
        ed.w2_host = w2;
        if (oai) {
          ed.b1_host = b1;
          ed.b3_host = b3;
          ed.b2_host = b2;
        }
        ed.path = paths[pi];
        clmoe_experts *xp = NULL;
        REQUIRE_OK(clmoe_experts_create(ctx, &ed, &xp));
        CHECK_OK(clmoe_forward(r, xp, xt, NULL, yt, rt, 0, 0, NULL, NULL));
        float y[T * FD];
        CHECK_OK(clmoe_tensor_read(yt, y, sizeof y));
        /* Reference: top-k by sigmoid (= by logit), gates s. */
        double want[T * FD];
        for (int t = 0; t < T; ++t) {
          double zt[FE], s[FE];
          for (int e = 0; e < FE; ++e) {
            zt[e] = 0;
            for (int i = 0; i < FD; ++i)
              zt[e] += (double)x[t * FD + i] * wr[i * FE + e];
            s[e] = 1 / (1 + exp(-zt[e]));
          }
          double *yt_ = want + (size_t)t * FD;
          for (int c = 0; c < FD; ++c)
            yt_[c] = 0;
          int used[FE] = {0};
          for (int j = 0; j < rd.k; ++j) {
            int best = -1;
            for (int e = 0; e < FE; ++e)
              if (!used[e] && (best < 0 || zt[e] > zt[best]))
                best = e;
            used[best] = 1;
            double in[FD], out[FD];
            for (int i = 0; i < FD; ++i)
              in[i] = x[t * FD + i] * (input ? (float)s[best] : 1.0f);
            ref_expert(act, w1, w3, w2, oai ? b1 : NULL, oai ? b3 : NULL,
                       oai ? b2 : NULL, best, in, out);
            for (int c = 0; c < FD; ++c)
              yt_[c] += (input ? 1.0 : s[best]) * out[c];
          }
        }
        double err = max_rel(y, want, T * FD);
        if (err > 2e-5)
          fprintf(stderr, "forward oai=%d input=%d path=%d: rel err %g\n", oai,
                  input, pi, err);
        CHECK(err <= 2e-5);
        /* The stages one by one give the forward's bits (dispatch scales
         * rows by their gates, combine adds with weight 1). */
        int64_t N = 0;
        clmoe_routing_get_sizes(rt, NULL, NULL, &N);
        clmoe_tensor *xs = NULL, *ys = NULL, *y2 = NULL;
        REQUIRE_OK(clmoe_tensor_create(ctx, CLMOE_DTYPE_F32, 2,
                                       (int64_t[]){N, FD}, NULL, &xs));
        REQUIRE_OK(clmoe_tensor_create(ctx, CLMOE_DTYPE_F32, 2,
                                       (int64_t[]){N, FD}, NULL, &ys));
        REQUIRE_OK(clmoe_tensor_create(ctx, CLMOE_DTYPE_F32, 2,
                                       (int64_t[]){T, FD}, NULL, &y2));
        CHECK_OK(clmoe_route(r, xt, NULL, rt, 0, NULL, NULL));
        CHECK_OK(clmoe_dispatch(rt, xt, xs, 0, NULL, NULL));
        CHECK_OK(clmoe_experts_run(xp, rt, xs, ys, 0, NULL, NULL));
        CHECK_OK(clmoe_combine(rt, ys, y2, 0, 0, NULL, NULL));
        float ys2[T * FD];
        CHECK_OK(clmoe_tensor_read(y2, ys2, sizeof ys2));
        CHECK(!memcmp(y, ys2, sizeof y));
        clmoe_tensor_destroy(xs);
        clmoe_tensor_destroy(ys);
        clmoe_tensor_destroy(y2);
        clmoe_experts_destroy(xp);
        clmoe_router_destroy(r);
      }
  clmoe_routing_destroy(rt);
  clmoe_tensor_destroy(xt);
  clmoe_tensor_destroy(yt);
  free(wr);
  free(w1);
  free(w3);
  free(w2);
  free(b1);
  free(b3);
  free(b2);
  free(x);
}

/* ---- bad input ---- */

static void expect_router_error(const char *field,
                                void (*edit)(clmoe_router_desc *)) {
  static float w[8 * 4], bias[8];
  clmoe_router_desc rd;
  clmoe_router_desc_init(&rd);
  rd.num_experts = 8;
  rd.d_model = 4;
  rd.weight_host = w;
  rd.selection_bias_host = bias;
  rd.num_groups = 4;
  rd.topk_groups = 2;
  rd.k = 2;
  edit(&rd);
  clmoe_router *r = NULL;
  CHECK_STATUS(clmoe_router_create(test_context(), &rd, &r),
               CLMOE_ERROR_INVALID_ARGUMENT);
  CHECK(r == NULL);
  if (!strstr(clmoe_last_error_detail(), field)) {
    fprintf(stderr, "detail \"%s\" does not name %s\n",
            clmoe_last_error_detail(), field);
    CHECK(0);
  }
}

static void groups_3(clmoe_router_desc *d) { d->num_groups = 3; }
static void topk_groups_5(clmoe_router_desc *d) { d->topk_groups = 5; }
static void k_5(clmoe_router_desc *d) { d->k = 5; }
static void kmax_5(clmoe_router_desc *d) {
  d->policy = CLMOE_POLICY_TOPP;
  d->k_max = 5;
}
static void one_per_group(clmoe_router_desc *d) {
  d->num_groups = 8;
  d->topk_groups = 4;
}
static void scale_0(clmoe_router_desc *d) { d->gate_scale = 0; }
static void scale_nan(clmoe_router_desc *d) { d->gate_scale = NAN; }
static void scoring_7(clmoe_router_desc *d) { d->scoring = 7; }
static void group_score_9(clmoe_router_desc *d) { d->group_score = 9; }
static void position_3(clmoe_router_desc *d) { d->gate_position = 3; }
static void bias_inf(clmoe_router_desc *d) {
  static float b[8] = {0, 0, 0, INFINITY};
  d->selection_bias_host = b;
}

static void test_errors(void) {
  expect_router_error("num_groups", groups_3);
  expect_router_error("topk_groups", topk_groups_5);
  expect_router_error("kept groups", k_5);
  expect_router_error("kept groups", kmax_5);
  expect_router_error("TOP2_SUM", one_per_group);
  expect_router_error("gate_scale", scale_0);
  expect_router_error("gate_scale", scale_nan);
  expect_router_error("scoring", scoring_7);
  expect_router_error("group_score", group_score_9);
  expect_router_error("gate_position", position_3);
  expect_router_error("selection_bias[3]", bias_inf);
  /* A non-finite bias given as a tensor, and both forms at once. */
  clmoe_context *ctx = test_context();
  float b[8] = {0, NAN};
  clmoe_tensor *bt = NULL;
  REQUIRE_OK(
      clmoe_tensor_create(ctx, CLMOE_DTYPE_F32, 1, (int64_t[]){8}, b, &bt));
  clmoe_router_desc rd;
  clmoe_router_desc_init(&rd);
  rd.num_experts = 8;
  rd.selection_bias = bt;
  clmoe_router *r = NULL;
  CHECK_STATUS(clmoe_router_create(ctx, &rd, &r), CLMOE_ERROR_INVALID_ARGUMENT);
  CHECK(strstr(clmoe_last_error_detail(), "selection_bias[1]") != NULL);
  rd.selection_bias_host = b;
  CHECK_STATUS(clmoe_router_create(ctx, &rd, &r), CLMOE_ERROR_INVALID_ARGUMENT);
  clmoe_tensor_destroy(bt);
  /* SWIGLU_OAI's parameters. */
  float w[2 * 4 * 3] = {0};
  clmoe_experts_desc ed;
  clmoe_experts_desc_init(&ed);
  ed.num_experts = 2;
  ed.d_model = 4;
  ed.d_ff = 3;
  ed.activation = CLMOE_ACTIVATION_SWIGLU_OAI;
  ed.w1_host = ed.w3_host = ed.w2_host = w;
  clmoe_experts *x = NULL;
  ed.swiglu_limit = 0;
  CHECK_STATUS(clmoe_experts_create(ctx, &ed, &x),
               CLMOE_ERROR_INVALID_ARGUMENT);
  CHECK(strstr(clmoe_last_error_detail(), "swiglu_limit") != NULL);
  ed.swiglu_limit = 7;
  ed.swiglu_alpha = INFINITY;
  CHECK_STATUS(clmoe_experts_create(ctx, &ed, &x),
               CLMOE_ERROR_INVALID_ARGUMENT);
  CHECK(strstr(clmoe_last_error_detail(), "swiglu_alpha") != NULL);
  ed.swiglu_alpha = 1.702f;
  ed.w3_host = NULL; /* gated: W3 holds the up columns */
  CHECK_STATUS(clmoe_experts_create(ctx, &ed, &x),
               CLMOE_ERROR_INVALID_ARGUMENT);
  CHECK(x == NULL);
  /* The defaults are gpt-oss's. */
  clmoe_experts_desc_init(&ed);
  CHECK(ed.swiglu_limit == 7.0f && ed.swiglu_alpha == 1.702f);
  clmoe_router_desc_init(&rd);
  CHECK(rd.gate_scale == 1.0f && rd.scoring == CLMOE_SCORING_SOFTMAX &&
        rd.gate_position == CLMOE_GATE_OUTPUT && rd.num_groups == 0);
}

int main(void) {
  test_routers();
  test_forward_paths();
  test_errors();
  return test_finish("test_route_families");
}
