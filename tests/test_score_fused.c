/* The tiled fused scoring kernels against a double-precision reference
 * written from the definition: padded batches q [B, S, H, dh] with the
 * caller's lse [B, H, S], float16 / bfloat16 q and k (the reference uses the
 * same rounded values), varlen batches with empty and one-token sequences,
 * grouped-query ratio 8, T and dh that are multiples of no tile, bitwise
 * determinism, and the same checks under other tile shapes chosen by a
 * tuning table (small CPU-like and work-group GPU-like ones), including
 * the work-group kernels that stage keys / queries in local memory
 * (SCORE_DC), which must also give the private kernels' bits. */
#define CL_TARGET_OPENCL_VERSION 120
#include <CL/cl.h>

#include "harness.h"
#include "ref_16bit.h"

/* One scoring problem: q [H][T][dh], k [Hkv][T][dh] (values already
 * representable in the dtype under test), sequences and key lengths. */
typedef struct problem {
  int H, Hkv, T, dh, causal, B;
  const int *offsets, *lengths; /* B+1, B */
  float *q, *k;
} problem;

/* importance from the definition, in double: softmax rows over each
 * query's visible keys, column sums over the queries that see a key,
 * mean over heads, divided by that count, scaled per sequence by its max;
 * lse[h * T + i] receives each row's log-sum-exp. */
static void reference(const problem *p, double *imp, float *lse) {
  int H = p->H, T = p->T, dh = p->dh;
  double scale = 1.0 / sqrt((double)dh);
  double *col = calloc((size_t)T, sizeof *col), *v = malloc(sizeof *v * T);
  for (int t = 0; t < T; ++t)
    imp[t] = 0;
  for (int h = 0; h < H; ++h) {
    const float *K = p->k + (size_t)(h / (H / p->Hkv)) * T * dh;
    for (int b = 0; b < p->B; ++b) {
      int s0 = p->offsets[b], end = s0 + p->lengths[b];
      for (int i = s0; i < p->offsets[b + 1]; ++i) {
        int k1 = i >= end ? s0 : (p->causal ? i + 1 : end);
        double m = -INFINITY, sum = 0;
        for (int j = s0; j < k1; ++j) {
          double dot = 0;
          for (int c = 0; c < dh; ++c)
            dot += (double)p->q[((size_t)h * T + i) * dh + c] *
                   K[(size_t)j * dh + c];
          v[j] = dot * scale;
          m = fmax(m, v[j]);
        }
        for (int j = s0; j < k1; ++j)
          sum += exp(v[j] - m);
        for (int j = s0; j < k1; ++j)
          col[j] += exp(v[j] - m) / sum;
        lse[(size_t)h * T + i] = k1 > s0 ? (float)(m + log(sum)) : 0.0f;
      }
    }
  }
  for (int b = 0; b < p->B; ++b) {
    int s0 = p->offsets[b], end = s0 + p->lengths[b];
    double mx = 0;
    for (int j = s0; j < p->offsets[b + 1]; ++j) {
      int seen = j < end ? end - (p->causal ? j : s0) : 0;
      imp[j] = seen ? col[j] / H / seen : 0;
      mx = fmax(mx, imp[j]);
    }
    for (int j = s0; j < p->offsets[b + 1] && mx > 0; ++j)
      imp[j] /= mx;
  }
  free(col);
  free(v);
}

static void fill(test_rng *rng, float *x, size_t n, clmoe_dtype dt) {
  for (size_t i = 0; i < n; ++i)
    x[i] = round_to(dt, rng_normal(rng));
}

/* x [heads][T][dh] as a device tensor of dt in [T, heads, dh] order, with
 * the given shape (rank 3 [T, heads, dh] or rank 4 [B, S, heads, dh]). */
static clmoe_tensor *shd_tensor(clmoe_context *ctx, const float *x, int heads,
                                int T, int dh, clmoe_dtype dt, int rank,
                                const int64_t *shape) {
  size_t n = (size_t)heads * T * dh;
  uint16_t *h16 = malloc(sizeof *h16 * n);
  float *f = malloc(sizeof *f * n);
  for (int h = 0; h < heads; ++h)
    for (int t = 0; t < T; ++t)
      for (int c = 0; c < dh; ++c) {
        size_t to = ((size_t)t * heads + h) * dh + c;
        f[to] = x[((size_t)h * T + t) * dh + c];
        h16[to] = bits16(dt, f[to]);
      }
  clmoe_tensor *out = NULL;
  REQUIRE_OK(clmoe_tensor_create(
      ctx, dt, rank, shape, dt == CLMOE_DTYPE_F32 ? (void *)f : (void *)h16,
      &out));
  free(h16);
  free(f);
  return out;
}

static clmoe_tensor *tensor_f32(clmoe_context *ctx, int rank,
                                const int64_t *shape, const void *data) {
  clmoe_tensor *t = NULL;
  REQUIRE_OK(clmoe_tensor_create(ctx, CLMOE_DTYPE_F32, rank, shape, data, &t));
  return t;
}

static clmoe_tensor *tensor_i32(clmoe_context *ctx, int n, const int *data) {
  clmoe_tensor *t = NULL;
  REQUIRE_OK(
      clmoe_tensor_create(ctx, CLMOE_DTYPE_I32, 1, (int64_t[]){n}, data, &t));
  return t;
}

static const char *dtype_name(clmoe_dtype dt) {
  return dt == CLMOE_DTYPE_F16    ? "f16"
         : dt == CLMOE_DTYPE_BF16 ? "bf16"
                                  : "f32";
}

/* Scores p (layout [T, H, dh], or [B, S, H, dh] when `padded`, with the
 * sequences implied) with lse computed, given, and given-and-checked;
 * checks each against the reference and that repeated calls agree bit for
 * bit. */
static void check_problem(clmoe_context *ctx, const char *tiles,
                          const problem *p, clmoe_dtype dt, int padded) {
  int T = p->T, H = p->H, S = padded ? T / p->B : 0;
  double *ref = malloc(sizeof *ref * T);
  float *lse = malloc(sizeof *lse * (size_t)H * T);
  float *lse3 = malloc(sizeof *lse3 * (size_t)H * T);
  float *got = malloc(sizeof *got * T), *again = malloc(sizeof *again * T);
  reference(p, ref, lse);
  int64_t q4[4] = {p->B, S, H, p->dh}, k4[4] = {p->B, S, p->Hkv, p->dh};
  int64_t q3[3] = {T, H, p->dh}, k3[3] = {T, p->Hkv, p->dh};
  clmoe_tensor *qt =
      shd_tensor(ctx, p->q, H, T, p->dh, dt, padded ? 4 : 3, padded ? q4 : q3);
  clmoe_tensor *kt = shd_tensor(ctx, p->k, p->Hkv, T, p->dh, dt, padded ? 4 : 3,
                                padded ? k4 : k3);
  /* The caller's lse as [H, T], or [B, H, S] for the padded batch. */
  clmoe_tensor *lt;
  if (padded) {
    for (int h = 0; h < H; ++h)
      for (int t = 0; t < T; ++t)
        lse3[((size_t)(t / S) * H + h) * S + t % S] = lse[(size_t)h * T + t];
    lt = tensor_f32(ctx, 3, (int64_t[]){p->B, H, S}, lse3);
  } else {
    lt = tensor_f32(ctx, 2, (int64_t[]){H, T}, lse);
  }
  clmoe_tensor *off = padded ? NULL : tensor_i32(ctx, p->B + 1, p->offsets);
  clmoe_tensor *len = tensor_i32(ctx, p->B, p->lengths);
  clmoe_tensor *out = tensor_f32(ctx, 1, (int64_t[]){T}, NULL);
  for (int mode = 0; mode < 3; ++mode) { /* computed, given, checked */
    clmoe_score_desc d;
    clmoe_score_desc_init(&d);
    d.mask = p->causal ? CLMOE_SCORE_MASK_CAUSAL : CLMOE_SCORE_MASK_NONE;
    d.layout = CLMOE_SCORE_LAYOUT_SHD;
    d.seq_offsets = off;
    d.key_lengths = len;
    d.lse = mode ? lt : NULL;
    d.flags = mode == 2 ? CLMOE_SCORE_CHECK_LSE : 0;
    CHECK_OK(clmoe_score_attention(ctx, &d, NULL, qt, kt, out, 0, NULL, NULL));
    CHECK_OK(clmoe_tensor_read(out, got, sizeof *got * T));
    CHECK_OK(clmoe_score_attention(ctx, &d, NULL, qt, kt, out, 0, NULL, NULL));
    CHECK_OK(clmoe_tensor_read(out, again, sizeof *again * T));
    double err = max_rel(got, ref, T);
    int same = !memcmp(got, again, sizeof *got * T);
    if (err > 1e-5 || !same)
      fprintf(stderr,
              "score [%s] H=%d Hkv=%d T=%d dh=%d causal=%d B=%d %s padded=%d "
              "lse mode %d: rel err %g, repeat %s\n",
              tiles, H, p->Hkv, T, p->dh, p->causal, p->B, dtype_name(dt),
              padded, mode, err, same ? "same" : "DIFFERS");
    CHECK(err <= 1e-5);
    CHECK(same);
  }
  clmoe_tensor_destroy(qt);
  clmoe_tensor_destroy(kt);
  clmoe_tensor_destroy(lt);
  clmoe_tensor_destroy(off);
  clmoe_tensor_destroy(len);
  clmoe_tensor_destroy(out);
  free(ref);
  free(lse);
  free(lse3);
  free(got);
  free(again);
}

/* Every case under one tile shape (ctx's table entry). */
static void run_cases(clmoe_context *ctx, const char *tiles) {
  test_rng rng = {73};
  static const clmoe_dtype dts[3] = {CLMOE_DTYPE_F32, CLMOE_DTYPE_F16,
                                     CLMOE_DTYPE_BF16};
  /* Varlen with empty sequences (entries 0 and 3) and one-token ones, key
   * padding; T = 45, dh = 20: multiples of no tile or vector width. */
  static const int var_off[7] = {0, 0, 1, 17, 17, 18, 45};
  static const int var_len[6] = {0, 1, 13, 0, 1, 25};
  /* A padded batch of 3 sequences of 13 tokens, with key padding. */
  static const int pad_off[4] = {0, 13, 26, 39};
  static const int pad_len[3] = {13, 7, 1};
  static const struct {
    int H, Hkv, T, dh, B, padded;
    const int *off, *len;
  } shapes[] = {
      {8, 1, 45, 20, 6, 0, var_off, var_len}, /* GQA ratio 8 */
      {4, 2, 45, 20, 6, 0, var_off, var_len},
      {2, 2, 39, 33, 3, 1, pad_off, pad_len},
      {4, 1, 39, 16, 3, 1, pad_off, pad_len},
  };
  for (size_t s = 0; s < sizeof shapes / sizeof *shapes; ++s)
    for (int causal = 0; causal < 2; ++causal)
      for (int di = 0; di < 3; ++di) {
        problem p = {shapes[s].H, shapes[s].Hkv, shapes[s].T,   shapes[s].dh,
                     causal,      shapes[s].B,   shapes[s].off, shapes[s].len,
                     NULL,        NULL};
        p.q = malloc(sizeof *p.q * (size_t)p.H * p.T * p.dh);
        p.k = malloc(sizeof *p.k * (size_t)p.Hkv * p.T * p.dh);
        fill(&rng, p.q, (size_t)p.H * p.T * p.dh, dts[di]);
        fill(&rng, p.k, (size_t)p.Hkv * p.T * p.dh, dts[di]);
        check_problem(ctx, tiles, &p, dts[di], shapes[s].padded);
        free(p.q);
        free(p.k);
      }
}

/* A context whose table entry (for any device) sets the scoring tile. */
static clmoe_context *context_with_tiles(const char *params) {
  char line[256];
  snprintf(line, sizeof line, "*\t*\t*\tclblast\tRM=8 VW=16 LX=1\t-\t-\t%s",
           params);
  return test_context_with_table(line);
}

/* The tile parameters the table accepts, and their bounds. */
static void test_tile_table_errors(void) {
  static const char *const bad[] = {"SCORE_RM=0",
                                    "SCORE_RM=17",
                                    "SCORE_VW=2",
                                    "SCORE_VW=32",
                                    "SCORE_LX=-1",
                                    "SCORE_LX=2048",
                                    "SCORE_DC=8" /* needs SCORE_LX */,
                                    "SCORE_DC=300 SCORE_LX=8"};
  for (size_t i = 0; i < sizeof bad / sizeof *bad; ++i) {
    char path[] = "/tmp/clmoe-score-bad-XXXXXX";
    int fd = mkstemp(path);
    FILE *f = fdopen(fd, "w");
    fprintf(f, "*\t*\t*\tclblast\tRM=8 VW=16 LX=1\t-\t-\t%s\n", bad[i]);
    fclose(f);
    clmoe_context_desc d;
    clmoe_context_desc_init(&d);
    d.tuning_file = path;
    clmoe_context *ctx = NULL;
    CHECK_STATUS(clmoe_context_create(&d, &ctx), CLMOE_ERROR_INVALID_ARGUMENT);
    CHECK(strstr(clmoe_last_error_detail(), "SCORE_") != NULL);
    remove(path);
  }
}

/* Errors of the new inputs: a [B, H, S] lse only for padded q, q and k of
 * different ranks, an lse entry that is NaN named in [b, h, s] form. */
static void test_padded_errors(void) {
  clmoe_context *ctx = test_context();
  enum { B = 2, S = 5, H = 2, dh = 4, T = B * S };
  float q[T * H * dh], lse[B * H * S];
  for (int i = 0; i < T * H * dh; ++i)
    q[i] = (float)(i % 7) * 0.1f;
  for (int i = 0; i < B * H * S; ++i)
    lse[i] = 1.0f;
  clmoe_tensor *q4 = tensor_f32(ctx, 4, (int64_t[]){B, S, H, dh}, q);
  clmoe_tensor *q3 = tensor_f32(ctx, 3, (int64_t[]){T, H, dh}, q);
  clmoe_tensor *l3 = tensor_f32(ctx, 3, (int64_t[]){B, H, S}, lse);
  clmoe_tensor *out = tensor_f32(ctx, 1, (int64_t[]){T}, NULL);
  int offs[3] = {0, 5, 10};
  clmoe_tensor *off = tensor_i32(ctx, 3, offs);
  clmoe_score_desc d;
  clmoe_score_desc_init(&d);
  d.layout = CLMOE_SCORE_LAYOUT_SHD;
  d.lse = l3; /* [B, H, S] with rank-3 q: shape mismatch */
  CHECK_STATUS(clmoe_score_attention(ctx, &d, NULL, q3, q3, out, 0, NULL, NULL),
               CLMOE_ERROR_SHAPE_MISMATCH);
  d.lse = NULL; /* rank-4 q with rank-3 k */
  CHECK_STATUS(clmoe_score_attention(ctx, &d, NULL, q4, q3, out, 0, NULL, NULL),
               CLMOE_ERROR_SHAPE_MISMATCH);
  d.seq_offsets = off; /* a padded batch has its own sequences */
  CHECK_STATUS(clmoe_score_attention(ctx, &d, NULL, q4, q4, out, 0, NULL, NULL),
               CLMOE_ERROR_INVALID_ARGUMENT);
  d.seq_offsets = NULL;
  d.layout = CLMOE_SCORE_LAYOUT_HSD; /* rank 4 is [B, S, H, dh] only */
  CHECK_STATUS(clmoe_score_attention(ctx, &d, NULL, q4, q4, out, 0, NULL, NULL),
               CLMOE_ERROR_SHAPE_MISMATCH);
  d.layout = CLMOE_SCORE_LAYOUT_SHD;
  lse[(1 * H + 1) * S + 3] = NAN; /* lse[1, 1, 3] */
  CHECK_OK(clmoe_tensor_write(l3, lse, sizeof lse));
  d.lse = l3;
  CHECK_STATUS(clmoe_score_attention(ctx, &d, NULL, q4, q4, out, 0, NULL, NULL),
               CLMOE_ERROR_NONFINITE_INPUT);
  CHECK(strstr(clmoe_last_error_detail(), "lse[1, 1, 3]") != NULL);
  /* int32 q: a dtype error naming q. */
  int iq[T * H * dh] = {0};
  clmoe_tensor *qi = NULL;
  REQUIRE_OK(clmoe_tensor_create(ctx, CLMOE_DTYPE_I32, 3, (int64_t[]){T, H, dh},
                                 iq, &qi));
  d.lse = NULL;
  CHECK_STATUS(clmoe_score_attention(ctx, &d, NULL, qi, q3, out, 0, NULL, NULL),
               CLMOE_ERROR_DTYPE_MISMATCH);
  CHECK(strstr(clmoe_last_error_detail(), "q") != NULL);
  clmoe_tensor_destroy(qi);
  clmoe_tensor_destroy(q4);
  clmoe_tensor_destroy(q3);
  clmoe_tensor_destroy(l3);
  clmoe_tensor_destroy(out);
  clmoe_tensor_destroy(off);
}

/* The importance of one varlen problem (f32, lse computed) on ctx. */
static void importance_on(clmoe_context *ctx, int causal, float *out_host) {
  static const int off[5] = {0, 3, 3, 40, 57};
  static const int len[4] = {3, 0, 30, 17};
  enum { H = 4, HKV = 2, T = 57, DH = 37 };
  test_rng rng = {99};
  float *q = malloc(sizeof *q * H * T * DH),
        *k = malloc(sizeof *k * HKV * T * DH);
  fill(&rng, q, (size_t)H * T * DH, CLMOE_DTYPE_F32);
  fill(&rng, k, (size_t)HKV * T * DH, CLMOE_DTYPE_F32);
  clmoe_tensor *qt =
      shd_tensor(ctx, q, H, T, DH, CLMOE_DTYPE_F32, 3, (int64_t[]){T, H, DH});
  clmoe_tensor *kt = shd_tensor(ctx, k, HKV, T, DH, CLMOE_DTYPE_F32, 3,
                                (int64_t[]){T, HKV, DH});
  clmoe_tensor *ot = tensor_i32(ctx, 5, off), *lt = tensor_i32(ctx, 4, len);
  clmoe_tensor *out = tensor_f32(ctx, 1, (int64_t[]){T}, NULL);
  clmoe_score_desc d;
  clmoe_score_desc_init(&d);
  d.mask = causal ? CLMOE_SCORE_MASK_CAUSAL : CLMOE_SCORE_MASK_NONE;
  d.layout = CLMOE_SCORE_LAYOUT_SHD;
  d.seq_offsets = ot;
  d.key_lengths = lt;
  CHECK_OK(clmoe_score_attention(ctx, &d, NULL, qt, kt, out, 0, NULL, NULL));
  CHECK_OK(clmoe_tensor_read(out, out_host, sizeof *out_host * T));
  clmoe_tensor_destroy(qt);
  clmoe_tensor_destroy(kt);
  clmoe_tensor_destroy(ot);
  clmoe_tensor_destroy(lt);
  clmoe_tensor_destroy(out);
  free(q);
  free(k);
}

/* The work-group kernels against the private ones of the same vector width:
 * the same bits (a row's sums depend on the key block, not on the shape). */
static void check_same_bits(clmoe_context *priv, clmoe_context *wg,
                            const char *what) {
  for (int causal = 0; causal < 2; ++causal) {
    float a[57], b[57];
    importance_on(priv, causal, a);
    importance_on(wg, causal, b);
    int same = !memcmp(a, b, sizeof a);
    if (!same)
      fprintf(stderr, "%s (causal %d) differs from the private kernels\n", what,
              causal);
    CHECK(same);
  }
}

int main(void) {
  test_padded_errors();
  test_tile_table_errors();
  run_cases(test_context(), "shipped table");
  clmoe_context *small = context_with_tiles("SCORE_RM=3 SCORE_VW=4 SCORE_LX=0");
  run_cases(small, "RM 3 VW 4");
  clmoe_context *wide =
      context_with_tiles("SCORE_RM=16 SCORE_VW=8 SCORE_LX=32");
  run_cases(wide, "RM 16 VW 8 LX 32");
  /* Work-group kernels: head-dimension chunks (8, 7) that divide none of
   * the tests' dh, and a group of 5 work-items. */
  clmoe_context *staged =
      context_with_tiles("SCORE_RM=4 SCORE_VW=8 SCORE_LX=16 SCORE_DC=8");
  run_cases(staged, "local RM 4 VW 8 LX 16 DC 8");
  check_same_bits(wide, staged, "local RM 4 VW 8 LX 16 DC 8");
  clmoe_context_destroy(staged);
  clmoe_context *odd =
      context_with_tiles("SCORE_RM=3 SCORE_VW=4 SCORE_LX=5 SCORE_DC=7");
  run_cases(odd, "local RM 3 VW 4 LX 5 DC 7");
  check_same_bits(small, odd, "local RM 3 VW 4 LX 5 DC 7");
  clmoe_context_destroy(odd);
  clmoe_context_destroy(small);
  clmoe_context_destroy(wide);
  return test_finish("test_score_fused");
}
