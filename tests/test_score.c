/* Attention-importance scoring against a double-precision host reference:
 * probabilities and fused Q/K, masks, varlen, key padding, errors. */
#define CL_TARGET_OPENCL_VERSION 120
#include <CL/cl.h>

#include "harness.h"

typedef struct seqs {
  int B;
  const int *offsets; /* B+1 */
  const int *lengths; /* B, valid keys */
} seqs;

static int seq_of(const seqs *s, int t) {
  int b = 0;
  while (t >= s->offsets[b + 1])
    ++b;
  return b;
}

/* Queries [*q0, *q1) that see key j: from j (causal) or the sequence's
 * start to its end; none for a padded key. */
static void visible_queries(const seqs *s, int causal, int j, int *q0,
                            int *q1) {
  int b = seq_of(s, j), s0 = s->offsets[b], end = s0 + s->lengths[b];
  *q0 = causal ? j : s0;
  *q1 = j < end ? end : *q0;
}

/* Reference from A[H, T, T] (global indices). */
static void ref_from_probs(const double *A, int H, int T, const seqs *s,
                           int causal, int norm_max, double *out) {
  for (int j = 0; j < T; ++j) {
    int q0, q1;
    visible_queries(s, causal, j, &q0, &q1);
    double sum = 0;
    for (int h = 0; h < H; ++h)
      for (int i = q0; i < q1; ++i)
        sum += A[((size_t)h * T + i) * T + j];
    out[j] = q1 > q0 ? sum / H / (q1 - q0) : 0;
  }
  if (norm_max)
    for (int b = 0; b < s->B; ++b) {
      double m = 0;
      for (int t = s->offsets[b]; t < s->offsets[b + 1]; ++t)
        m = out[t] > m ? out[t] : m;
      if (m > 0)
        for (int t = s->offsets[b]; t < s->offsets[b + 1]; ++t)
          out[t] /= m;
    }
}

/* Softmax rows from Q, K over the visible keys (zeros elsewhere). */
static double *probs_from_qk(const float *Q, const float *K, int H, int T,
                             int dh, const seqs *s, int causal) {
  double *A = calloc((size_t)H * T * T, sizeof *A);
  double scale = 1.0 / sqrt((double)dh);
  for (int h = 0; h < H; ++h)
    for (int i = 0; i < T; ++i) {
      int b = seq_of(s, i), s0 = s->offsets[b], end = s0 + s->lengths[b];
      int k1 = i >= end ? s0 : (causal ? i + 1 : end);
      double m = -INFINITY, sum = 0;
      double *row = A + ((size_t)h * T + i) * T;
      for (int j = s0; j < k1; ++j) {
        double v = 0;
        for (int c = 0; c < dh; ++c)
          v += (double)Q[((size_t)h * T + i) * dh + c] *
               K[((size_t)h * T + j) * dh + c];
        row[j] = v * scale;
        m = row[j] > m ? row[j] : m;
      }
      for (int j = s0; j < k1; ++j)
        sum += (row[j] = exp(row[j] - m));
      for (int j = s0; j < k1; ++j)
        row[j] /= sum;
    }
  return A;
}

static clmoe_tensor *f32(int rank, const int64_t *shape, const float *data) {
  clmoe_tensor *t = NULL;
  REQUIRE_OK(clmoe_tensor_create(test_context(), CLMOE_DTYPE_F32, rank, shape,
                                 data, &t));
  return t;
}

static clmoe_tensor *i32(int n, const int *data) {
  clmoe_tensor *t = NULL;
  REQUIRE_OK(clmoe_tensor_create(test_context(), CLMOE_DTYPE_I32, 1,
                                 (int64_t[]){n}, data, &t));
  return t;
}

/* Scores one configuration both ways and checks them against the
 * reference and each other. */
static void check_case(test_rng *rng, int H, int T, int dh, int causal,
                       const seqs *s, int with_probs) {
  size_t n = (size_t)H * T * dh;
  float *Q = malloc(sizeof *Q * n), *K = malloc(sizeof *K * n);
  for (size_t i = 0; i < n; ++i) {
    Q[i] = rng_normal(rng);
    K[i] = rng_normal(rng);
  }
  double *A = probs_from_qk(Q, K, H, T, dh, s, causal);
  double *ref = malloc(sizeof *ref * T);
  ref_from_probs(A, H, T, s, causal, 1, ref);
  clmoe_score_desc d;
  clmoe_score_desc_init(&d);
  d.mask = causal ? CLMOE_SCORE_MASK_CAUSAL : CLMOE_SCORE_MASK_NONE;
  clmoe_tensor *off = NULL, *len = NULL;
  if (s->B > 1 || s->lengths[0] != T) {
    d.seq_offsets = off = i32(s->B + 1, s->offsets);
    d.key_lengths = len = i32(s->B, s->lengths);
  }
  clmoe_tensor *qt = f32(3, (int64_t[]){H, T, dh}, Q);
  clmoe_tensor *kt = f32(3, (int64_t[]){H, T, dh}, K);
  clmoe_tensor *out = f32(1, (int64_t[]){T}, NULL);
  float *fused = malloc(sizeof *fused * T), *mat = malloc(sizeof *mat * T);
  CHECK_OK(clmoe_score_attention(test_context(), &d, NULL, qt, kt, out, 0, NULL,
                                 NULL));
  CHECK_OK(clmoe_tensor_read(out, fused, sizeof *fused * T));
  double ef = max_rel(fused, ref, T), em = 0, efm = 0;
  if (with_probs) {
    /* Entries no query may see hold 1000, which the masks must skip. */
    float *Af = malloc(sizeof *Af * (size_t)H * T * T);
    for (int j = 0; j < T; ++j) {
      int q0, q1;
      visible_queries(s, causal, j, &q0, &q1);
      for (int h = 0; h < H; ++h)
        for (int i = 0; i < T; ++i) {
          size_t at = ((size_t)h * T + i) * T + j;
          Af[at] = i >= q0 && i < q1 ? (float)A[at] : 1000.0f;
        }
    }
    clmoe_tensor *at = f32(3, (int64_t[]){H, T, T}, Af);
    CHECK_OK(clmoe_score_attention(test_context(), &d, at, NULL, NULL, out, 0,
                                   NULL, NULL));
    CHECK_OK(clmoe_tensor_read(out, mat, sizeof *mat * T));
    em = max_rel(mat, ref, T);
    double *fd = malloc(sizeof *fd * T);
    for (int t = 0; t < T; ++t)
      fd[t] = fused[t];
    efm = max_rel(mat, fd, T);
    free(fd);
    free(Af);
    clmoe_tensor_destroy(at);
  }
  if (ef > 1e-5 || em > 1e-5 || efm > 1e-5)
    fprintf(stderr,
            "score H=%d T=%d dh=%d causal=%d B=%d: fused %g probs %g "
            "between %g\n",
            H, T, dh, causal, s->B, ef, em, efm);
  CHECK(ef <= 1e-5 && em <= 1e-5 && efm <= 1e-5);
  free(Q);
  free(K);
  free(A);
  free(ref);
  free(fused);
  free(mat);
  clmoe_tensor_destroy(qt);
  clmoe_tensor_destroy(kt);
  clmoe_tensor_destroy(out);
  clmoe_tensor_destroy(off);
  clmoe_tensor_destroy(len);
}

static void test_against_reference(void) {
  test_rng rng = {31};
  static const int Ts[] = {1, 2, 17, 512};
  static const int dhs[] = {32, 64, 128};
  int cases = 0;
  for (int ti = 0; ti < 4; ++ti)
    for (int hi = 0; hi < 2; ++hi)
      for (int causal = 0; causal < 2; ++causal) {
        int T = Ts[ti], H = hi ? 12 : 1, dh = dhs[(ti + hi + causal) % 3];
        int offs[2] = {0, T}, lens[1] = {T};
        seqs one = {1, offs, lens};
        check_case(&rng, H, T, dh, causal, &one, 1);
        ++cases;
      }
  /* T = 2048 (one head: the materialised matrix is 16 MB). */
  for (int causal = 0; causal < 2; ++causal) {
    int offs[2] = {0, 2048}, lens[1] = {2048};
    seqs one = {1, offs, lens};
    check_case(&rng, 1, 2048, 64, causal, &one, 1);
    ++cases;
  }
  /* Varlen {1, 5, 300}, with and without key padding. */
  int offs[4] = {0, 1, 6, 306};
  int full[3] = {1, 5, 300}, padded[3] = {1, 3, 250};
  for (int causal = 0; causal < 2; ++causal) {
    seqs v = {3, offs, full}, p = {3, offs, padded};
    check_case(&rng, 12, 306, 32, causal, &v, 1);
    check_case(&rng, 2, 306, 64, causal, &p, 1);
    cases += 2;
  }
  printf("scoring: %d configurations checked both ways\n", cases);
}

static void test_properties(void) {
  const int T = 64, H = 2;
  float *A = calloc((size_t)H * T * T, sizeof *A);
  /* Every query puts all its attention on token 9: importance 1 there. */
  for (int h = 0; h < H; ++h)
    for (int i = 0; i < T; ++i)
      A[((size_t)h * T + i) * T + 9] = 1.0f;
  clmoe_tensor *at = f32(3, (int64_t[]){H, T, T}, A);
  clmoe_tensor *out = f32(1, (int64_t[]){T}, NULL);
  float imp[64];
  CHECK_OK(clmoe_score_attention(test_context(), NULL, at, NULL, NULL, out, 0,
                                 NULL, NULL));
  CHECK_OK(clmoe_tensor_read(out, imp, sizeof imp));
  CHECK(imp[9] == 1.0f);
  for (int t = 0; t < T; ++t)
    CHECK(t == 9 || imp[t] == 0.0f);
  /* Constant attention over the visible (causal) entries: all equal, no
   * early-token bias. */
  for (int h = 0; h < H; ++h)
    for (int i = 0; i < T; ++i)
      for (int j = 0; j < T; ++j)
        A[((size_t)h * T + i) * T + j] = j <= i ? 0.25f : 0.0f;
  CHECK_OK(clmoe_tensor_write(at, A, sizeof *A * H * T * T));
  clmoe_score_desc d;
  clmoe_score_desc_init(&d);
  d.mask = CLMOE_SCORE_MASK_CAUSAL;
  CHECK_OK(clmoe_score_attention(test_context(), &d, at, NULL, NULL, out, 0,
                                 NULL, NULL));
  CHECK_OK(clmoe_tensor_read(out, imp, sizeof imp));
  for (int t = 0; t < T; ++t)
    CHECK(imp[t] == 1.0f);
  d.norm = CLMOE_SCORE_NORM_RAW;
  CHECK_OK(clmoe_score_attention(test_context(), &d, at, NULL, NULL, out, 0,
                                 NULL, NULL));
  CHECK_OK(clmoe_tensor_read(out, imp, sizeof imp));
  for (int t = 0; t < T; ++t)
    CHECK(imp[t] == 0.25f);
  /* Padded batch [B, H, S, S] equals the varlen form. */
  float *Ab = calloc((size_t)2 * H * 8 * 8, sizeof *Ab);
  test_rng rng = {8};
  for (int i = 0; i < 2 * H * 64; ++i)
    Ab[i] = rng_uniform(&rng);
  float *Av = calloc((size_t)H * 16 * 16, sizeof *Av);
  for (int b = 0; b < 2; ++b)
    for (int h = 0; h < H; ++h)
      for (int i = 0; i < 8; ++i)
        for (int j = 0; j < 8; ++j)
          Av[((size_t)h * 16 + b * 8 + i) * 16 + b * 8 + j] =
              Ab[(((size_t)b * H + h) * 8 + i) * 8 + j];
  clmoe_tensor *abt = f32(4, (int64_t[]){2, H, 8, 8}, Ab);
  clmoe_tensor *avt = f32(3, (int64_t[]){H, 16, 16}, Av);
  clmoe_tensor *o16 = f32(1, (int64_t[]){16}, NULL);
  float r1[16], r2[16];
  clmoe_score_desc_init(&d);
  CHECK_OK(clmoe_score_attention(test_context(), &d, abt, NULL, NULL, o16, 0,
                                 NULL, NULL));
  CHECK_OK(clmoe_tensor_read(o16, r1, sizeof r1));
  int offs[3] = {0, 8, 16};
  clmoe_tensor *ot = i32(3, offs);
  d.seq_offsets = ot;
  CHECK_OK(clmoe_score_attention(test_context(), &d, avt, NULL, NULL, o16, 0,
                                 NULL, NULL));
  CHECK_OK(clmoe_tensor_read(o16, r2, sizeof r2));
  CHECK(memcmp(r1, r2, sizeof r1) == 0);
  /* Deterministic: the same call twice is bitwise identical. */
  CHECK_OK(clmoe_score_attention(test_context(), &d, avt, NULL, NULL, o16, 0,
                                 NULL, NULL));
  CHECK_OK(clmoe_tensor_read(o16, r1, sizeof r1));
  CHECK(memcmp(r1, r2, sizeof r1) == 0);
  clmoe_tensor_destroy(ot);
  clmoe_tensor_destroy(abt);
  clmoe_tensor_destroy(avt);
  clmoe_tensor_destroy(o16);
  free(Ab);
  free(Av);
  clmoe_tensor_destroy(at);
  clmoe_tensor_destroy(out);
  free(A);
}

static void test_errors(void) {
  clmoe_context *ctx = test_context();
  const int T = 10, H = 2, dh = 4;
  float *A = calloc((size_t)H * T * T, sizeof *A);
  A[(1 * T + 4) * T + 3] = NAN;
  clmoe_tensor *at = f32(3, (int64_t[]){H, T, T}, A);
  clmoe_tensor *out = f32(1, (int64_t[]){T}, NULL);
  CHECK_STATUS(
      clmoe_score_attention(ctx, NULL, at, NULL, NULL, out, 0, NULL, NULL),
      CLMOE_ERROR_NONFINITE_INPUT);
  CHECK(strstr(clmoe_last_error_detail(), "token 3") != NULL);
  A[(1 * T + 4) * T + 3] = INFINITY;
  CHECK_OK(clmoe_tensor_write(at, A, sizeof *A * H * T * T));
  CHECK_STATUS(
      clmoe_score_attention(ctx, NULL, at, NULL, NULL, out, 0, NULL, NULL),
      CLMOE_ERROR_NONFINITE_INPUT);
  float *Q = calloc((size_t)H * T * dh, sizeof *Q);
  Q[5] = NAN;
  clmoe_tensor *qt = f32(3, (int64_t[]){H, T, dh}, Q);
  clmoe_tensor *kt = f32(3, (int64_t[]){H, T, dh}, NULL);
  CHECK_STATUS(
      clmoe_score_attention(ctx, NULL, NULL, qt, kt, out, 0, NULL, NULL),
      CLMOE_ERROR_NONFINITE_INPUT);
  /* Deferred: no error here, NaN left for route(IMPORTANCE) to reject. */
  clmoe_score_desc d;
  clmoe_score_desc_init(&d);
  d.flags = CLMOE_SCORE_DEFER_CHECK;
  CHECK_OK(clmoe_score_attention(ctx, &d, NULL, qt, kt, out, 0, NULL, NULL));
  clmoe_router_desc rd;
  clmoe_router_desc_init(&rd);
  rd.num_experts = 4;
  rd.policy = CLMOE_POLICY_IMPORTANCE;
  clmoe_router *r = NULL;
  REQUIRE_OK(clmoe_router_create(ctx, &rd, &r));
  clmoe_tensor *z = f32(2, (int64_t[]){T, 4}, NULL);
  clmoe_routing *rt = NULL;
  REQUIRE_OK(clmoe_routing_create(ctx, &rt));
  CHECK_STATUS(clmoe_route_logits(r, z, out, rt, 0, NULL, NULL),
               CLMOE_ERROR_NONFINITE_INPUT);
  /* Shapes. */
  clmoe_tensor *bad = f32(3, (int64_t[]){H, T, T - 1}, NULL);
  CHECK_STATUS(
      clmoe_score_attention(ctx, NULL, bad, NULL, NULL, out, 0, NULL, NULL),
      CLMOE_ERROR_SHAPE_MISMATCH);
  clmoe_tensor *out9 = f32(1, (int64_t[]){T - 1}, NULL);
  CHECK_STATUS(
      clmoe_score_attention(ctx, NULL, at, NULL, NULL, out9, 0, NULL, NULL),
      CLMOE_ERROR_SHAPE_MISMATCH);
  CHECK_STATUS(clmoe_score_attention(ctx, NULL, at, qt, kt, out, 0, NULL, NULL),
               CLMOE_ERROR_INVALID_ARGUMENT);
  CHECK_STATUS(
      clmoe_score_attention(ctx, NULL, NULL, NULL, NULL, out, 0, NULL, NULL),
      CLMOE_ERROR_INVALID_ARGUMENT);
  clmoe_tensor *k5 = f32(3, (int64_t[]){H, T, dh + 1}, NULL);
  CHECK_STATUS(
      clmoe_score_attention(ctx, NULL, NULL, qt, k5, out, 0, NULL, NULL),
      CLMOE_ERROR_SHAPE_MISMATCH);
  /* seq_offsets decreasing, not ending at T, not starting at 0. */
  const int bad_offsets[3][3] = {{0, 11, 10}, {0, 4, 9}, {1, 4, 10}};
  for (int i = 0; i < 3; ++i) {
    clmoe_tensor *ot = i32(3, bad_offsets[i]);
    clmoe_score_desc_init(&d);
    d.seq_offsets = ot;
    CHECK_STATUS(
        clmoe_score_attention(ctx, &d, NULL, qt, kt, out, 0, NULL, NULL),
        CLMOE_ERROR_INVALID_ARGUMENT);
    clmoe_tensor_destroy(ot);
  }
  /* Deferred: a sequence error is not reported by the score, but every
   * importance is NaN, so route(IMPORTANCE) fails on it. */
  {
    const int decreasing[3] = {0, T + 1, T};
    clmoe_tensor *ot = i32(3, decreasing);
    clmoe_score_desc_init(&d);
    d.seq_offsets = ot;
    d.flags = CLMOE_SCORE_DEFER_CHECK;
    CHECK_OK(clmoe_score_attention(ctx, &d, NULL, qt, kt, out, 0, NULL, NULL));
    float got[T];
    CHECK_OK(clmoe_tensor_read(out, got, sizeof got));
    for (int t = 0; t < T; ++t)
      CHECK(isnan(got[t]));
    CHECK_STATUS(clmoe_route_logits(r, z, out, rt, 0, NULL, NULL),
                 CLMOE_ERROR_NONFINITE_INPUT);
    /* The detail names the entry and the values, read from the device. */
    d.flags = 0;
    CHECK_STATUS(
        clmoe_score_attention(ctx, &d, NULL, qt, kt, out, 0, NULL, NULL),
        CLMOE_ERROR_INVALID_ARGUMENT);
    CHECK(strstr(clmoe_last_error_detail(), "entry 1 (11 then 10)") != NULL);
    clmoe_tensor_destroy(ot);
  }
  int good[3] = {0, 4, 10}, lens[2] = {5, 6};
  clmoe_tensor *ot = i32(3, good), *lt = i32(2, lens);
  clmoe_score_desc_init(&d);
  d.seq_offsets = ot;
  d.key_lengths = lt; /* 5 > 4 tokens in sequence 0 */
  CHECK_STATUS(clmoe_score_attention(ctx, &d, NULL, qt, kt, out, 0, NULL, NULL),
               CLMOE_ERROR_INVALID_ARGUMENT);
  clmoe_score_desc_init(&d);
  d.mask = 7;
  CHECK_STATUS(
      clmoe_score_attention(ctx, &d, at, NULL, NULL, out, 0, NULL, NULL),
      CLMOE_ERROR_INVALID_ARGUMENT);
  d.mask = 0;
  d.struct_size = 1;
  CHECK_STATUS(
      clmoe_score_attention(ctx, &d, at, NULL, NULL, out, 0, NULL, NULL),
      CLMOE_ERROR_INVALID_STRUCT_SIZE);
  CHECK_STATUS(
      clmoe_score_attention(NULL, NULL, at, NULL, NULL, out, 0, NULL, NULL),
      CLMOE_ERROR_NULL_POINTER);
  clmoe_tensor_destroy(ot);
  clmoe_tensor_destroy(lt);
  clmoe_tensor_destroy(k5);
  clmoe_tensor_destroy(out9);
  clmoe_tensor_destroy(bad);
  clmoe_tensor_destroy(z);
  clmoe_routing_destroy(rt);
  clmoe_router_destroy(r);
  clmoe_tensor_destroy(qt);
  clmoe_tensor_destroy(kt);
  clmoe_tensor_destroy(at);
  clmoe_tensor_destroy(out);
  free(A);
  free(Q);
}

/* score -> route(IMPORTANCE) in one queue, deferred check: no host sync
 * between them. */
static void test_score_then_route(void) {
  clmoe_context *ctx = test_context();
  const int T = 40, H = 3, dh = 16, E = 8;
  test_rng rng = {12};
  float *Q = malloc(sizeof *Q * H * T * dh),
        *K = malloc(sizeof *K * H * T * dh);
  for (int i = 0; i < H * T * dh; ++i) {
    Q[i] = rng_normal(&rng);
    K[i] = rng_normal(&rng);
  }
  clmoe_tensor *qt = f32(3, (int64_t[]){H, T, dh}, Q);
  clmoe_tensor *kt = f32(3, (int64_t[]){H, T, dh}, K);
  clmoe_tensor *imp = f32(1, (int64_t[]){T}, NULL);
  clmoe_score_desc d;
  clmoe_score_desc_init(&d);
  d.mask = CLMOE_SCORE_MASK_CAUSAL;
  d.flags = CLMOE_SCORE_DEFER_CHECK;
  cl_event ev = NULL;
  CHECK_OK(clmoe_score_attention(ctx, &d, NULL, qt, kt, imp, 0, NULL, &ev));
  clmoe_router_desc rd;
  clmoe_router_desc_init(&rd);
  rd.num_experts = E;
  rd.policy = CLMOE_POLICY_IMPORTANCE;
  rd.k_min = 1;
  rd.k_max = 4;
  clmoe_router *r = NULL;
  REQUIRE_OK(clmoe_router_create(ctx, &rd, &r));
  float *z = malloc(sizeof *z * T * E);
  for (int i = 0; i < T * E; ++i)
    z[i] = rng_normal(&rng);
  clmoe_tensor *zt = f32(2, (int64_t[]){T, E}, z);
  clmoe_routing *rt = NULL;
  REQUIRE_OK(clmoe_routing_create(ctx, &rt));
  CHECK_OK(clmoe_route_logits(r, zt, imp, rt, ev ? 1 : 0, &ev, NULL));
  float s[40];
  CHECK_OK(clmoe_tensor_read(imp, s, sizeof s));
  const clmoe_tensor *cv = NULL;
  REQUIRE_OK(clmoe_routing_get_array(rt, CLMOE_ROUTING_COUNTS, &cv));
  int counts[40];
  CHECK_OK(clmoe_tensor_read(cv, counts, sizeof counts));
  float mx = 0;
  for (int t = 0; t < T; ++t) {
    int want = (int)ceilf(s[t] * 4.0f);
    want = want < 1 ? 1 : want > 4 ? 4 : want;
    CHECK(counts[t] == want);
    mx = s[t] > mx ? s[t] : mx;
  }
  CHECK(mx == 1.0f);
  if (ev)
    clReleaseEvent(ev);
  clmoe_routing_destroy(rt);
  clmoe_router_destroy(r);
  clmoe_tensor_destroy(zt);
  clmoe_tensor_destroy(qt);
  clmoe_tensor_destroy(kt);
  clmoe_tensor_destroy(imp);
  free(Q);
  free(K);
  free(z);
}

/* Row log-sum-exp of Q K^T * scale over each query's visible keys (the
 * caller-supplied lse), in double. */
static void lse_from_qk(const float *Q, const float *K, int H, int T, int dh,
                        const seqs *s, int causal, float *lse) {
  double scale = 1.0 / sqrt((double)dh);
  for (int h = 0; h < H; ++h)
    for (int i = 0; i < T; ++i) {
      int b = seq_of(s, i), s0 = s->offsets[b], end = s0 + s->lengths[b];
      int k1 = i >= end ? s0 : (causal ? i + 1 : end);
      double m = -INFINITY, sum = 0, v[64];
      for (int j = s0; j < k1; ++j) {
        v[j - s0] = 0;
        for (int c = 0; c < dh; ++c)
          v[j - s0] += (double)Q[((size_t)h * T + i) * dh + c] *
                       K[((size_t)h * T + j) * dh + c];
        v[j - s0] *= scale;
        m = fmax(m, v[j - s0]);
      }
      for (int j = s0; j < k1; ++j)
        sum += exp(v[j - s0] - m);
      lse[(size_t)h * T + i] = k1 > s0 ? (float)(m + log(sum)) : 0.0f;
    }
}

/* [H, T, dh] -> [T, H, dh]. */
static float *to_shd(const float *x, int H, int T, int dh) {
  float *y = malloc(sizeof *y * (size_t)H * T * dh);
  for (int h = 0; h < H; ++h)
    for (int t = 0; t < T; ++t)
      memcpy(y + ((size_t)t * H + h) * dh, x + ((size_t)h * T + t) * dh,
             sizeof *x * dh);
  return y;
}

/* Grouped-query keys in both layouts, with the importance computed or taken
 * from the caller's lse (checked), against the double reference of the same
 * attention with the key heads repeated. */
static void test_layouts_gqa_lse(void) {
  enum { H = 4, T = 23, dh = 12 };
  static const int offsets[4] = {0, 1, 8, 23}, lengths[3] = {1, 5, 15};
  seqs s = {3, offsets, lengths};
  test_rng rng = {41};
  for (int Hkv = 1; Hkv <= H; Hkv *= 2)
    for (int causal = 0; causal < 2; ++causal) {
      size_t n = (size_t)H * T * dh;
      float *Q = malloc(sizeof *Q * n), *Kx = malloc(sizeof *Kx * n);
      float *K = malloc(sizeof *K * (size_t)Hkv * T * dh);
      for (size_t i = 0; i < n; ++i)
        Q[i] = rng_normal(&rng);
      for (size_t i = 0; i < (size_t)Hkv * T * dh; ++i)
        K[i] = rng_normal(&rng);
      for (int h = 0; h < H; ++h) /* query head h reads key head h/(H/Hkv) */
        memcpy(Kx + (size_t)h * T * dh, K + (size_t)(h / (H / Hkv)) * T * dh,
               sizeof *K * T * dh);
      double *A = probs_from_qk(Q, Kx, H, T, dh, &s, causal), ref[T];
      ref_from_probs(A, H, T, &s, causal, 1, ref);
      float lse[H * T], got[T];
      lse_from_qk(Q, Kx, H, T, dh, &s, causal, lse);
      float *Qs = to_shd(Q, H, T, dh), *Ks = to_shd(K, Hkv, T, dh);
      clmoe_tensor *off = i32(4, offsets), *len = i32(3, lengths);
      clmoe_tensor *lt = f32(2, (int64_t[]){H, T}, lse);
      clmoe_tensor *out = f32(1, (int64_t[]){T}, NULL);
      for (int shd = 0; shd < 2; ++shd) {
        clmoe_tensor *qt =
            f32(3, shd ? (int64_t[]){T, H, dh} : (int64_t[]){H, T, dh},
                shd ? Qs : Q);
        clmoe_tensor *kt =
            f32(3, shd ? (int64_t[]){T, Hkv, dh} : (int64_t[]){Hkv, T, dh},
                shd ? Ks : K);
        for (int given = 0; given < 2; ++given) {
          clmoe_score_desc d;
          clmoe_score_desc_init(&d);
          d.mask = causal;
          d.seq_offsets = off;
          d.key_lengths = len;
          d.layout = shd ? CLMOE_SCORE_LAYOUT_SHD : CLMOE_SCORE_LAYOUT_HSD;
          d.lse = given ? lt : NULL;
          d.flags = given ? CLMOE_SCORE_CHECK_LSE : 0;
          CHECK_OK(clmoe_score_attention(test_context(), &d, NULL, qt, kt, out,
                                         0, NULL, NULL));
          CHECK_OK(clmoe_tensor_read(out, got, sizeof got));
          double err = max_rel(got, ref, T);
          if (err > 1e-5)
            fprintf(stderr, "score Hkv=%d causal=%d shd=%d lse=%d: %g\n", Hkv,
                    causal, shd, given, err);
          CHECK(err <= 1e-5);
        }
        clmoe_tensor_destroy(qt);
        clmoe_tensor_destroy(kt);
      }
      clmoe_tensor_destroy(off);
      clmoe_tensor_destroy(len);
      clmoe_tensor_destroy(lt);
      clmoe_tensor_destroy(out);
      free(Q);
      free(K);
      free(Kx);
      free(Qs);
      free(Ks);
      free(A);
    }
}

int main(void) {
  test_layouts_gqa_lse();
  test_properties();
  test_errors();
  test_score_then_route();
  test_against_reference();
  return test_finish("test_score");
}
