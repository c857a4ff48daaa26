/* Quantized expert weights (F8_E4M3, MXFP4, I8, I4), against references
 * written here from the format definitions (docs/quantization.md):
 *  - clmoe_convert's decode tables, bit for bit: all 256 e4m3 and e5m2
 *    codes, the 16 E2M1 and int4 codes, e8m0 scale bytes 0-254, int8;
 *    overflow to +-Inf and the strict flag;
 *  - the kernels and packing: experts from random codes and scales, run on
 *    ragged groups (E = 1, 8, 64; 0, 1, 33, 257 rows; in/out sizes with
 *    partial 128-blocks) under several tile shapes of both kernel shapes,
 *    against a double-precision FFN of the dequantized weights;
 *  - clmoe's quantizer: experts quantized from float weights equal, bit for
 *    bit, experts built from this file's own quantizer's codes, on weights
 *    with an all-zero block, -0, values far below the block's scale, a value
 *    at the saturation point and a single huge value;
 *  - sizes, weight bytes and bad input. */
#define CL_TARGET_OPENCL_VERSION 120
#include <CL/cl.h>

#include "harness.h"

/* ---- reference decoders (not the library's formulas) ---- */

static float ref_e4m3(uint8_t c) {
  int e = (c >> 3) & 15, m = c & 7;
  if ((c & 0x7f) == 0x7f)
    return NAN;
  float v = (float)ldexp(e ? 8 + m : m, (e ? e : 1) - 10);
  return c & 0x80 ? -v : v;
}

static float ref_e5m2(uint8_t c) {
  int e = (c >> 2) & 31, m = c & 3;
  float v = e == 31 ? (m ? NAN : INFINITY)
                    : (float)ldexp(e ? 4 + m : m, (e ? e : 1) - 17);
  return c & 0x80 ? -v : v;
}

static const float k_e2m1[16] = {0,  0.5f,  1,  1.5f,  2,  3,  4,  6,
                                  -0.0f, -0.5f, -1, -1.5f, -2, -3, -4, -6};

static float ref_code(clmoe_dtype dt, uint8_t c) {
  switch (dt) {
  case CLMOE_DTYPE_F8_E4M3:
    return ref_e4m3(c);
  case CLMOE_DTYPE_MXFP4:
    return k_e2m1[c & 15];
  case CLMOE_DTYPE_I8:
    return (float)(int8_t)c;
  default: /* I4 */
    return (float)((c & 15) ^ 8) - 8.0f;
  }
}

static const char *fmt_name(clmoe_dtype dt) {
  return dt == CLMOE_DTYPE_F8_E4M3 ? "F8_E4M3"
         : dt == CLMOE_DTYPE_MXFP4 ? "MXFP4"
         : dt == CLMOE_DTYPE_I8    ? "I8"
                                   : "I4";
}

static int same_bits(float a, float b) {
  return (isnan(a) && isnan(b)) || !memcmp(&a, &b, sizeof a);
}

static void test_decode_tables(void) {
  uint8_t all[256];
  float got[512];
  for (int i = 0; i < 256; ++i)
    all[i] = (uint8_t)i;
  int bad = 0;
  CHECK_OK(clmoe_convert(CLMOE_DTYPE_F8_E4M3, all, CLMOE_DTYPE_F32, got, 256));
  for (int i = 0; i < 256; ++i)
    bad += !same_bits(got[i], ref_e4m3((uint8_t)i));
  CHECK_OK(clmoe_convert(CLMOE_DTYPE_F8_E5M2, all, CLMOE_DTYPE_F32, got, 256));
  for (int i = 0; i < 256; ++i)
    bad += !same_bits(got[i], ref_e5m2((uint8_t)i));
  CHECK_OK(clmoe_convert(CLMOE_DTYPE_I8, all, CLMOE_DTYPE_F32, got, 256));
  for (int i = 0; i < 256; ++i)
    bad += got[i] != (float)(int8_t)i;
  CHECK_OK(clmoe_convert(CLMOE_DTYPE_U8, all, CLMOE_DTYPE_F32, got, 256));
  for (int i = 0; i < 256; ++i)
    bad += got[i] != (float)i;
  CHECK_OK(clmoe_convert(CLMOE_DTYPE_E8M0, all, CLMOE_DTYPE_F32, got, 255));
  for (int i = 0; i < 255; ++i)
    bad += !same_bits(got[i], (float)ldexp(1.0, i - 127));
  /* 4-bit codes: element i in byte i / 2, the low nibble for even i. */
  uint8_t nib[8];
  for (int i = 0; i < 8; ++i)
    nib[i] = (uint8_t)((2 * i) | ((2 * i + 1) << 4));
  CHECK_OK(clmoe_convert(CLMOE_DTYPE_MXFP4, nib, CLMOE_DTYPE_F32, got, 16));
  for (int i = 0; i < 16; ++i)
    bad += !same_bits(got[i], k_e2m1[i]);
  CHECK_OK(clmoe_convert(CLMOE_DTYPE_I4, nib, CLMOE_DTYPE_F32, got, 16));
  for (int i = 0; i < 16; ++i)
    bad += got[i] != (float)(i < 8 ? i : i - 16);
  if (bad)
    fprintf(stderr, "decode tables: %d values differ\n", bad);
  CHECK(bad == 0);
  CHECK_STATUS(clmoe_convert(CLMOE_DTYPE_MXFP4, nib, CLMOE_DTYPE_BF16, got, 2),
               CLMOE_ERROR_INVALID_ARGUMENT);
  /* Overflow rounds to Inf; CLMOE_CONVERT_STRICT keeps the error. */
  float big[2] = {1.0f, -3.4028235e38f};
  uint16_t h[2];
  CHECK_OK(clmoe_convert(CLMOE_DTYPE_F32, big, CLMOE_DTYPE_BF16, h, 2));
  CHECK(h[0] == 0x3f80 && h[1] == 0xff80);
  CHECK_OK(clmoe_convert(CLMOE_DTYPE_F32, big, CLMOE_DTYPE_F16, h, 2));
  CHECK(h[1] == 0xfc00);
  CHECK_STATUS(clmoe_convert_ex(CLMOE_DTYPE_F32, big, CLMOE_DTYPE_BF16, h, 2,
                                CLMOE_CONVERT_STRICT),
               CLMOE_ERROR_INVALID_ARGUMENT);
  CHECK(strstr(clmoe_last_error_detail(), "element 1") != NULL);
}

/* ---- experts from codes ---- */

typedef struct qweights {
  clmoe_dtype dt;
  int E, d, f;
  uint8_t *codes[3]; /* W1, W3 [E, f, d]; W2 [E, d, f]; packed as given */
  void *scales[3];
} qweights;

static size_t scale_count(clmoe_dtype dt, int out, int in) {
  if (dt == CLMOE_DTYPE_F8_E4M3)
    return (size_t)((out + 127) / 128) * ((in + 127) / 128);
  if (dt == CLMOE_DTYPE_I8)
    return (size_t)out;
  return (size_t)out * (in / 32);
}

/* Dequantized weight (row j, column k) of expert e's matrix m. */
static double ref_weight(const qweights *w, int m, int e, int j, int k) {
  int out = m == 2 ? w->d : w->f, in = m == 2 ? w->f : w->d;
  size_t i = (size_t)e * out * in + (size_t)j * in + k;
  int four = w->dt == CLMOE_DTYPE_MXFP4 || w->dt == CLMOE_DTYPE_I4;
  uint8_t c = four ? (uint8_t)(w->codes[m][i / 2] >> (4 * (i % 2))) & 15
                   : w->codes[m][i];
  size_t ns = scale_count(w->dt, out, in), s;
  if (w->dt == CLMOE_DTYPE_F8_E4M3)
    s = (size_t)(j / 128) * ((in + 127) / 128) + k / 128;
  else if (w->dt == CLMOE_DTYPE_I8)
    s = (size_t)j;
  else
    s = (size_t)j * (in / 32) + k / 32;
  double scale = w->dt == CLMOE_DTYPE_MXFP4
                     ? ldexp(1.0, ((uint8_t *)w->scales[m])[e * ns + s] - 127)
                     : ((float *)w->scales[m])[e * ns + s];
  return (double)ref_code(w->dt, c) * scale;
}

static void random_codes(qweights *w, test_rng *rng) {
  for (int m = 0; m < 3; ++m) {
    int out = m == 2 ? w->d : w->f, in = m == 2 ? w->f : w->d;
    int four = w->dt == CLMOE_DTYPE_MXFP4 || w->dt == CLMOE_DTYPE_I4;
    size_t n = (size_t)w->E * out * in, bytes = four ? n / 2 : n;
    size_t ns = (size_t)w->E * scale_count(w->dt, out, in);
    w->codes[m] = malloc(bytes + 1);
    for (size_t i = 0; i < bytes; ++i) {
      uint8_t c = (uint8_t)(rng_next(rng) >> 56);
      if (w->dt == CLMOE_DTYPE_F8_E4M3 && (c & 0x7f) == 0x7f)
        c ^= 1; /* not NaN */
      w->codes[m][i] = c;
    }
    if (w->dt == CLMOE_DTYPE_MXFP4) {
      uint8_t *s = malloc(ns + 1);
      for (size_t i = 0; i < ns; ++i)
        s[i] = (uint8_t)(120 + rng_next(rng) % 6); /* 2^-7 .. 2^-2 */
      w->scales[m] = s;
    } else {
      float *s = malloc(sizeof *s * (ns + 1));
      float unit = w->dt == CLMOE_DTYPE_F8_E4M3 ? 1.0f / 448
                   : w->dt == CLMOE_DTYPE_I8    ? 1.0f / 127
                                                : 1.0f / 7;
      for (size_t i = 0; i < ns; ++i)
        s[i] = unit * (0.5f + rng_uniform(rng));
      w->scales[m] = s;
    }
  }
}

static void free_q(qweights *w) {
  for (int m = 0; m < 3; ++m) {
    free(w->codes[m]);
    free(w->scales[m]);
  }
}

static clmoe_experts *experts_from_codes(clmoe_context *ctx,
                                         const qweights *w) {
  clmoe_experts_desc ed;
  clmoe_experts_desc_init(&ed);
  ed.num_experts = w->E;
  ed.d_model = w->d;
  ed.d_ff = w->f;
  ed.activation = CLMOE_ACTIVATION_SWIGLU;
  ed.weight_dtype = w->dt;
  ed.w1_codes = w->codes[0];
  ed.w3_codes = w->codes[1];
  ed.w2_codes = w->codes[2];
  ed.w1_scales = w->scales[0];
  ed.w3_scales = w->scales[1];
  ed.w2_scales = w->scales[2];
  clmoe_experts *x = NULL;
  REQUIRE_OK(clmoe_experts_create(ctx, &ed, &x));
  return x;
}

/* y_sorted of rows grouped as `groups` (one row per token, gate 1). */
static float *run_groups(clmoe_context *ctx, clmoe_experts *x, int E, int d,
                         const int32_t *groups, const float *xs, int N) {
  clmoe_routing *rt = NULL;
  clmoe_tensor *in = NULL, *out = NULL;
  REQUIRE_OK(clmoe_routing_create(ctx, &rt));
  REQUIRE_OK(clmoe_routing_set_groups(rt, E, groups));
  int64_t dims[2] = {N, d};
  REQUIRE_OK(clmoe_tensor_create(ctx, CLMOE_DTYPE_F32, 2, dims, xs, &in));
  REQUIRE_OK(clmoe_tensor_create(ctx, CLMOE_DTYPE_F32, 2, dims, NULL, &out));
  CHECK_OK(clmoe_experts_run(x, rt, in, out, 0, NULL, NULL));
  float *y = calloc((size_t)N * d + 1, sizeof *y);
  CHECK_OK(clmoe_tensor_read(out, y, (size_t)N * d * sizeof *y));
  clmoe_tensor_destroy(in);
  clmoe_tensor_destroy(out);
  clmoe_routing_destroy(rt);
  return y;
}

/* SwiGLU FFN of expert e on x (double), from the dequantized weights. */
static void ref_ffn(const qweights *w, int e, const float *x, double *y) {
  double *h = malloc(sizeof *h * w->f);
  for (int j = 0; j < w->f; ++j) {
    double g = 0, u = 0;
    for (int k = 0; k < w->d; ++k) {
      g += x[k] * ref_weight(w, 0, e, j, k);
      u += x[k] * ref_weight(w, 1, e, j, k);
    }
    h[j] = g / (1 + exp(-g)) * u;
  }
  for (int c = 0; c < w->d; ++c) {
    double s = 0;
    for (int j = 0; j < w->f; ++j)
      s += h[j] * ref_weight(w, 2, e, c, j);
    y[c] = s;
  }
  free(h);
}

static const clmoe_dtype k_formats[4] = {CLMOE_DTYPE_F8_E4M3, CLMOE_DTYPE_MXFP4,
                                         CLMOE_DTYPE_I8, CLMOE_DTYPE_I4};

static void test_kernels(void) {
  /* Both kernel shapes: the work-item kernel at two widths and orders, the
   * work-group kernel at two block shapes. */
  static const char *const shapes[] = {
      "RM=8 VW=16 LX=1 TC=0 PN=1", "RM=3 VW=4 LX=0 TC=2",
      "RM=8 VW=8 LX=0 KERNEL=local BM=24 NP=2 BK=5 TM=8 TN=2",
      "RM=4 VW=4 LX=0 KERNEL=local BM=7 NP=3 BK=16 TM=7 TN=1"};
  static const int32_t g1[1] = {33}, g8[8] = {0, 1, 40, 0, 3, 9, 0, 2};
  test_rng rng = {0x9a17};
  for (int si = 0; si < 4; ++si) {
    char line[256];
    snprintf(line, sizeof line,
             "*\t*\t*\tgrouped\t%s\t-\t-\tROUTER=grouped", shapes[si]);
    clmoe_context *ctx = test_context_with_table(line);
    for (int fi = 0; fi < 4; ++fi) {
      clmoe_dtype dt = k_formats[fi];
      int four = dt == CLMOE_DTYPE_MXFP4 || dt == CLMOE_DTYPE_I4;
      /* E 1 / 8 / 64 (cycling over shapes), sizes with partial blocks. */
      int E = si % 3 == 0 ? 8 : si % 3 == 1 ? 1 : 64;
      qweights w = {dt, E, four ? 96 : 160, four ? 64 : 72, {0}, {0}};
      random_codes(&w, &rng);
      int32_t groups[64] = {0};
      int N = 0;
      for (int e = 0; e < E; ++e) {
        groups[e] = E == 1 ? g1[0] : E == 8 ? g8[e] : (e * 7) % 9;
        N += groups[e];
      }
      if (E == 64)
        groups[63] += 257 - N, N = 257;
      float *xs = rng_grid(&rng, (size_t)N * w.d, 1.0f, 1.0f / 64);
      clmoe_experts *x = experts_from_codes(ctx, &w);
      float *y = run_groups(ctx, x, E, w.d, groups, xs, N);
      double *want = malloc(sizeof *want * ((size_t)N * w.d + 1));
      for (int e = 0, r = 0; e < E; ++e)
        for (int i = 0; i < groups[e]; ++i, ++r)
          ref_ffn(&w, e, xs + (size_t)r * w.d, want + (size_t)r * w.d);
      double err = N ? max_rel(y, want, N * w.d) : 0;
      if (err > 1e-5)
        fprintf(stderr, "%s, %s, E %d: rel err %g\n", shapes[si],
                fmt_name(dt), E, err);
      CHECK(err <= 1e-5);
      /* No rows at all: nothing runs, nothing fails. */
      int32_t none[64] = {0};
      free(run_groups(ctx, x, E, w.d, none, NULL, 0));
      int64_t wb = 0;
      CHECK_OK(clmoe_experts_get_bytes(x, &wb, NULL));
      CHECK(wb > 0);
      clmoe_dtype got;
      CHECK_OK(clmoe_experts_get_weight_dtype(x, &got));
      CHECK(got == dt);
      clmoe_experts_destroy(x);
      free(y);
      free(want);
      free(xs);
      free_q(&w);
    }
    clmoe_context_destroy(ctx);
  }
}

/* ---- this file's quantizer, from the definitions ---- */

/* The code nearest to v among `n` magnitudes value(c), ties to the even
 * code, saturating; sign bit `sign_bit`. */
static uint8_t nearest_code(float v, int n, float (*value)(uint8_t),
                            uint8_t sign_bit) {
  float a = fabsf(v);
  int best = 0;
  for (int c = 1; c < n; ++c) {
    float dc = fabsf(value((uint8_t)c) - a), db = fabsf(value((uint8_t)best) - a);
    if (dc < db || (dc == db && (c & 1) == 0))
      best = c;
  }
  return (uint8_t)(best | (signbit(v) ? sign_bit : 0));
}

static float e2m1_mag(uint8_t c) { return k_e2m1[c & 7]; }

static uint8_t quantize_one(clmoe_dtype dt, float v) {
  switch (dt) {
  case CLMOE_DTYPE_F8_E4M3:
    return nearest_code(v, 0x7f, ref_e4m3, 0x80); /* 0x7F is NaN */
  case CLMOE_DTYPE_MXFP4:
    return nearest_code(v, 8, e2m1_mag, 8);
  case CLMOE_DTYPE_I8:
    return (uint8_t)(int8_t)fmaxf(-127.0f, fminf(127.0f, rintf(v)));
  default:
    return (uint8_t)((int)fmaxf(-7.0f, fminf(7.0f, rintf(v))) & 15);
  }
}

/* Codes and scales of float weights w [E, out, in] by the format's rule. */
static void quantize_ref(qweights *q, int m, const float *w, int out, int in) {
  clmoe_dtype dt = q->dt;
  int four = dt == CLMOE_DTYPE_MXFP4 || dt == CLMOE_DTYPE_I4;
  int br = dt == CLMOE_DTYPE_F8_E4M3 ? 128 : 1;
  int bc = dt == CLMOE_DTYPE_F8_E4M3 ? 128 : dt == CLMOE_DTYPE_I8 ? in : 32;
  size_t ns = scale_count(dt, out, in), n = (size_t)out * in;
  q->codes[m] = calloc((size_t)q->E * n + 1, 1);
  q->scales[m] = calloc((size_t)q->E * ns + 1, sizeof(float));
  for (int e = 0; e < q->E; ++e)
    for (int j0 = 0, s = 0; j0 < out; j0 += br)
      for (int k0 = 0; k0 < in; k0 += bc, ++s) {
        float amax = 0;
        for (int j = j0; j < j0 + br && j < out; ++j)
          for (int k = k0; k < k0 + bc && k < in; ++k)
            amax = fmaxf(amax, fabsf(w[(size_t)e * n + (size_t)j * in + k]));
        float scale;
        if (dt == CLMOE_DTYPE_MXFP4) {
          int x = amax > 0 ? (int)floor(log2((double)amax)) - 2 : -127;
          x = x < -127 ? -127 : x > 127 ? 127 : x;
          ((uint8_t *)q->scales[m])[e * ns + s] = (uint8_t)(x + 127);
          scale = (float)ldexp(1.0, x);
        } else {
          float top = dt == CLMOE_DTYPE_F8_E4M3 ? 448.0f
                      : dt == CLMOE_DTYPE_I8    ? 127.0f
                                                : 7.0f;
          scale = amax > 0 ? amax / top : 1.0f;
          ((float *)q->scales[m])[e * ns + s] = scale;
        }
        for (int j = j0; j < j0 + br && j < out; ++j)
          for (int k = k0; k < k0 + bc && k < in; ++k) {
            size_t i = (size_t)e * n + (size_t)j * in + k;
            uint8_t c = quantize_one(dt, w[i] / scale);
            if (four)
              q->codes[m][i / 2] |= (uint8_t)(c << (4 * (i % 2)));
            else
              q->codes[m][i] = c;
          }
      }
}

static void test_quantizer(void) {
  enum { E = 2, D = 64, F = 32, N = 5 };
  test_rng rng = {0x7e57};
  clmoe_context *ctx = test_context();
  float *w[3];
  for (int m = 0; m < 3; ++m) {
    size_t n = (size_t)E * D * F;
    w[m] = malloc(sizeof *w[m] * n);
    for (size_t i = 0; i < n; ++i)
      w[m][i] = rng_normal(&rng) * 0.2f;
  }
  /* Expert 0's W1 is all zero (amax 0); W3 row 0 holds -0 and a value at
   * the block's saturation point; W3 row 1 a single huge value among small
   * ones; W2's expert 1 values far below 1 (a scale of 1e-30). */
  memset(w[0], 0, sizeof(float) * D * F);
  w[1][0] = -0.0f;
  w[1][1] = 0.9f;
  w[1][2] = -0.9f;
  w[1][D + 5] = 1e4f;
  for (size_t i = (size_t)D * F; i < (size_t)2 * D * F; ++i)
    w[2][i] *= 1e-30f;
  int N_rows = N;
  int32_t groups[E] = {2, 3};
  float *xs = rng_grid(&rng, (size_t)N_rows * D, 1.0f, 1.0f / 64);
  for (int fi = 0; fi < 4; ++fi) {
    qweights q = {k_formats[fi], E, D, F, {0}, {0}};
    quantize_ref(&q, 0, w[0], F, D);
    quantize_ref(&q, 1, w[1], F, D);
    quantize_ref(&q, 2, w[2], D, F);
    clmoe_experts_desc ed;
    clmoe_experts_desc_init(&ed);
    ed.num_experts = E;
    ed.d_model = D;
    ed.d_ff = F;
    ed.layout = CLMOE_LAYOUT_OUT_IN;
    ed.weight_dtype = q.dt;
    ed.w1_host = w[0];
    ed.w3_host = w[1];
    ed.w2_host = w[2];
    clmoe_experts *mine = NULL, *ref = experts_from_codes(ctx, &q);
    REQUIRE_OK(clmoe_experts_create(ctx, &ed, &mine));
    float *a = run_groups(ctx, mine, E, D, groups, xs, N_rows);
    float *b = run_groups(ctx, ref, E, D, groups, xs, N_rows);
    if (memcmp(a, b, sizeof *a * N_rows * D))
      fprintf(stderr, "%s: clmoe's quantizer differs from the reference\n",
              fmt_name(q.dt));
    CHECK(!memcmp(a, b, sizeof *a * N_rows * D));
    /* Bytes: codes (1 or 1/2 byte a weight, panels padded) plus scales. */
    int64_t wb = 0;
    CHECK_OK(clmoe_experts_get_bytes(mine, &wb, NULL));
    int64_t weights = (int64_t)E * 3 * D * F;
    CHECK(wb >= weights * (q.dt == CLMOE_DTYPE_MXFP4 ||
                                   q.dt == CLMOE_DTYPE_I4
                               ? 1
                               : 2) / 2);
    CHECK(wb < weights * 2); /* less than bfloat16 */
    free(a);
    free(b);
    clmoe_experts_destroy(mine);
    clmoe_experts_destroy(ref);
    free_q(&q);
  }
  for (int m = 0; m < 3; ++m)
    free(w[m]);
  free(xs);
}

/* ---- bad input ---- */

static void test_errors(void) {
  clmoe_context *ctx = test_context();
  float w[2 * 48 * 40] = {0};
  uint8_t codes[2 * 48 * 40] = {0};
  float scales[2 * 48 * 40] = {0};
  clmoe_experts_desc ed;
  clmoe_experts_desc_init(&ed);
  ed.num_experts = 2;
  ed.d_model = 48; /* not a multiple of 32 */
  ed.d_ff = 40;
  ed.w1_host = ed.w3_host = ed.w2_host = w;
  clmoe_experts *x = NULL;
  ed.weight_dtype = CLMOE_DTYPE_MXFP4;
  CHECK_STATUS(clmoe_experts_create(ctx, &ed, &x),
               CLMOE_ERROR_INVALID_ARGUMENT);
  CHECK(strstr(clmoe_last_error_detail(), "multiples of 32") != NULL);
  ed.weight_dtype = CLMOE_DTYPE_I4;
  CHECK_STATUS(clmoe_experts_create(ctx, &ed, &x),
               CLMOE_ERROR_INVALID_ARGUMENT);
  ed.weight_dtype = CLMOE_DTYPE_I8; /* any size */
  CHECK_OK(clmoe_experts_create(ctx, &ed, &x));
  clmoe_experts_destroy(x);
  x = NULL;
  ed.path = CLMOE_EXPERTS_PATH_CLBLAST;
  CHECK_STATUS(clmoe_experts_create(ctx, &ed, &x), CLMOE_ERROR_UNSUPPORTED);
  ed.path = CLMOE_EXPERTS_PATH_AUTO;
  ed.weight_dtype = 42;
  CHECK_STATUS(clmoe_experts_create(ctx, &ed, &x), CLMOE_ERROR_DTYPE_MISMATCH);
  w[7] = NAN;
  ed.weight_dtype = CLMOE_DTYPE_F8_E4M3;
  CHECK_STATUS(clmoe_experts_create(ctx, &ed, &x),
               CLMOE_ERROR_INVALID_ARGUMENT);
  CHECK(strstr(clmoe_last_error_detail(), "not finite") != NULL);
  w[7] = 0;
  /* Codes: both kinds of weights, a float dtype, a missing matrix, NaN. */
  ed.w1_codes = ed.w3_codes = ed.w2_codes = codes;
  ed.w1_scales = ed.w3_scales = ed.w2_scales = scales;
  CHECK_STATUS(clmoe_experts_create(ctx, &ed, &x),
               CLMOE_ERROR_INVALID_ARGUMENT);
  ed.w1_host = ed.w3_host = ed.w2_host = NULL;
  for (int i = 0; i < 2 * 48 * 40; ++i)
    scales[i] = 1.0f;
  CHECK_OK(clmoe_experts_create(ctx, &ed, &x));
  clmoe_experts_destroy(x);
  x = NULL;
  ed.weight_dtype = CLMOE_DTYPE_BF16;
  CHECK_STATUS(clmoe_experts_create(ctx, &ed, &x),
               CLMOE_ERROR_INVALID_ARGUMENT);
  ed.weight_dtype = CLMOE_DTYPE_F8_E4M3;
  ed.w3_codes = NULL;
  CHECK_STATUS(clmoe_experts_create(ctx, &ed, &x),
               CLMOE_ERROR_INVALID_ARGUMENT);
  ed.w3_codes = codes;
  codes[100] = 0xff;
  CHECK_STATUS(clmoe_experts_create(ctx, &ed, &x),
               CLMOE_ERROR_INVALID_ARGUMENT);
  CHECK(strstr(clmoe_last_error_detail(), "NaN") != NULL);
  codes[100] = 0;
  scales[1] = INFINITY;
  CHECK_STATUS(clmoe_experts_create(ctx, &ed, &x),
               CLMOE_ERROR_INVALID_ARGUMENT);
  CHECK(strstr(clmoe_last_error_detail(), "scale") != NULL);
  CHECK(x == NULL);
}

int main(void) {
  test_decode_tables();
  test_kernels();
  test_quantizer();
  test_errors();
  return test_finish("test_quant");
}
