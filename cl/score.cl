/* DA-MoE attention-importance scoring. One work-item per (head, key) sums
 * the attention that key receives over the queries that can see it, in
 * query order (no float atomics, so results are bitwise reproducible). The
 * fused path recomputes softmax rows from Q and K (row max and sum first)
 * and never materialises the T x T matrix. */

/* status words (src/moe/score.c): bad token, sequence error code, its entry
 * and two values, first non-finite lse entry, first lse row that does not
 * match its own log-sum-exp. */
#define SCORE_BAD_TOKEN 0
#define SCORE_SEQ_ERROR 1
#define SCORE_LSE_NONFINITE 5
#define SCORE_LSE_MISMATCH 6

/* Sequence boundaries and key lengths, given or implied, checked here so the
 * host never reads them. One work-item. Implied: B sequences of S tokens
 * (layout 1) or one of T. A failed check records its code (1: ends, 2:
 * decreasing, 3: key length), entry and values, and leaves one safe
 * sequence of T tokens (kernels after this stay in bounds; score_average
 * then writes NaN, so a deferred check still fails the route). */
kernel void score_sequences(int T, int B, int S, int layout, int has_offsets,
                            global const int *given_offsets, int has_lengths,
                            global const int *given_lengths,
                            global int *offsets, global int *lengths,
                            global int *status) {
  if (get_global_id(0) != 0)
    return;
  int code = 0, entry = 0, a = 0, b = 0;
  for (int i = 0; i <= B; ++i)
    offsets[i] =
        has_offsets ? given_offsets[i] : (layout == 1 ? i * S : (i ? T : 0));
  if (offsets[0] != 0 || offsets[B] != T) {
    code = 1;
    a = offsets[0];
    b = offsets[B];
  }
  for (int i = 0; i < B && !code; ++i)
    if (offsets[i + 1] < offsets[i]) {
      code = 2;
      entry = i;
      a = offsets[i];
      b = offsets[i + 1];
    }
  for (int i = 0; i < B; ++i) {
    int len = offsets[i + 1] - offsets[i];
    lengths[i] = has_lengths ? given_lengths[i] : len;
    if (!code && (lengths[i] < 0 || lengths[i] > len)) {
      code = 3;
      entry = i;
      a = lengths[i];
      b = len;
    }
  }
  if (code) {
    for (int i = 0; i <= B; ++i)
      offsets[i] = i ? T : 0;
    for (int i = 0; i < B; ++i)
      lengths[i] = i ? 0 : T;
  }
  status[SCORE_BAD_TOKEN] = INT_MAX;
  status[SCORE_LSE_NONFINITE] = INT_MAX;
  status[SCORE_LSE_MISMATCH] = INT_MAX;
  status[SCORE_SEQ_ERROR] = code;
  status[2] = entry;
  status[3] = a;
  status[4] = b;
}

/* Visible queries [*q0, *q1) for key j, per the mask and key padding. */
inline void visible_queries(global const int *seq_offsets,
                            global const int *key_lengths, int B, int causal,
                            int j, int *q0, int *q1) {
  int b = cm_segment_of(seq_offsets, B, j);
  int s0 = seq_offsets[b];
  int end = s0 + key_lengths[b];
  *q0 = causal ? j : s0;
  *q1 = j < end ? end : *q0; /* padded keys are seen by nobody */
}

/* Keys [*k0, *k1) visible to query i. */
inline void visible_keys(global const int *seq_offsets,
                         global const int *key_lengths, int B, int causal,
                         int i, int *k0, int *k1) {
  int b = cm_segment_of(seq_offsets, B, i);
  int s0 = seq_offsets[b];
  int end = s0 + key_lengths[b];
  *k0 = s0;
  *k1 = i >= end ? s0 : (causal ? i + 1 : end);
}

/* Probabilities: col[h, j] = sum over visible i of A[h, i, j]. Layout 0:
 * A[H, T, T] with global token indices; layout 1: A[B, H, S, S] (padded
 * batch, token t = b * S + s). Global (ceil(T / CM_PROB_COLS), H): a
 * work-item sums CM_PROB_COLS (= 16, -D) neighbouring columns. In layout 0
 * it reads each row's 16 columns with one vector load (a row of A is
 * contiguous in j; one column per work-item read a float at a stride of T),
 * adding a lane's value only where that row is visible to its column, so every
 * column still sums its visible rows in increasing i from zero: the same
 * bits as the column-at-a-time loop, which the padded layout and the last
 * partial group keep. */
kernel void score_prob_columns(int T, int H, int B, int S, int layout,
                               int causal, global const int *seq_offsets,
                               global const int *key_lengths,
                               global const float *A, global float *col) {
  int j0 = get_global_id(0) * CM_PROB_COLS, h = get_global_id(1);
  if (j0 >= T || h >= H)
    return;
  int q0[CM_PROB_COLS], q1[CM_PROB_COLS], lo = T, hi = 0;
  int n = min(CM_PROB_COLS, T - j0);
  for (int l = 0; l < n; ++l) {
    visible_queries(seq_offsets, key_lengths, B, causal, j0 + l, &q0[l],
                    &q1[l]);
    lo = min(lo, q0[l]);
    hi = max(hi, q1[l]);
  }
  if (layout == 0 && n == CM_PROB_COLS) {
    int16 first = vload16(0, q0), end = vload16(0, q1);
    float16 s = (float16)(0.0f);
    for (int i = lo; i < hi; ++i) {
      float16 a = vload16(0, A + ((size_t)h * T + i) * T + j0);
      s = select(s, s + a, (int16)(i) >= first && (int16)(i) < end);
    }
    vstore16(s, 0, col + (size_t)h * T + j0);
    return;
  }
  for (int l = 0; l < n; ++l) {
    int j = j0 + l;
    float s = 0.0f;
    if (layout == 0) {
      for (int i = q0[l]; i < q1[l]; ++i)
        s += A[((size_t)h * T + i) * T + j];
    } else {
      int b = j / S, base = b * S;
      for (int i = q0[l]; i < q1[l]; ++i)
        s += A[(((size_t)b * H + h) * S + (i - base)) * S + (j - base)];
    }
    col[(size_t)h * T + j] = s;
  }
}

/* ---- Fused path: tiled kernels over Q and K ----
 *
 * Build parameters (-D, from the device's tuning entry): SCORE_RM query rows
 * per work-item (1..16), SCORE_VW vector width (4, 8 or 16). Each call
 * first packs q into
 * float32 Q[H][T][dh] (any layout and dtype: a head's rows contiguous) and
 * k into blocks of KB = 2 * VW keys, KT[H_kv][Tp / KB][dh][KB] (zeros past
 * T), so a key block is one contiguous run a work-item streams. A
 * work-item computes an RM x KB tile of Q K^T at a time in 2 * RM vector
 * accumulators (on CPUs one SIMD register each): per head-dimension step,
 * two vector loads of keys and RM scalar query loads feed 2 * RM FMAs, all
 * fp32. Rows are named variables (FOR_SROWS), not private arrays, which
 * pocl's LLVM keeps in memory. */

#define S_CAT_(a, b) a##b
#define S_CAT(a, b) S_CAT_(a, b)
#define floatS S_CAT(float, SCORE_VW)
#define intS S_CAT(int, SCORE_VW)
#define vloadS S_CAT(vload, SCORE_VW)
#define vstoreS S_CAT(vstore, SCORE_VW)
#define SCORE_KB (2 * SCORE_VW)

// clang-format off
#define FOR_SROWS(X)                                                           \
  X(0) X(1) X(2) X(3) X(4) X(5) X(6) X(7) X(8) X(9) X(10) X(11) X(12) X(13)    \
  X(14) X(15)
// clang-format on

/* Lane offsets 0 .. VW-1. */
inline intS lane_ids(void) {
#if SCORE_VW == 4
  return (intS)(0, 1, 2, 3);
#elif SCORE_VW == 8
  return (intS)(0, 1, 2, 3, 4, 5, 6, 7);
#else
  return (intS)(0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15);
#endif
}

/* Horizontal max and sum, halving the vector (a fixed order). */
inline float hmax_s(floatS v) {
#if SCORE_VW == 16
  float8 a = fmax(v.lo, v.hi);
  float4 b = fmax(a.lo, a.hi);
#elif SCORE_VW == 8
  float4 b = fmax(v.lo, v.hi);
#else
  float4 b = v;
#endif
  float2 c = fmax(b.lo, b.hi);
  return fmax(c.x, c.y);
}

inline float hsum_s(floatS v) {
#if SCORE_VW == 16
  float8 a = v.lo + v.hi;
  float4 b = a.lo + a.hi;
#elif SCORE_VW == 8
  float4 b = v.lo + v.hi;
#else
  float4 b = v;
#endif
  float2 c = b.lo + b.hi;
  return c.x + c.y;
}

/* Where the caller's lse entry of (head h, token t) lives: [H, T] (S_lse =
 * 0) or, for a padded batch, [B, H, S] (S_lse = S). */
inline size_t lse_index(int H, int T, int S_lse, int h, int t) {
  return S_lse ? ((size_t)(t / S_lse) * H + h) * S_lse + t % S_lse
               : (size_t)h * T + t;
}

/* Packs a q or k tensor (float32/16/bfloat16, element (h, t, c) at
 * h * sh + t * st + c) into float32: key blocks (kb = 1) as KT above, or
 * queries (kb = 0) as [heads][T][dh]. Tokens T .. Tp-1 are zeros. Global
 * (Tp, heads). */
kernel void score_pack(int T, int Tp, int heads, int dh, int dt,
                       global const uchar *src, long sh, long st, int kb,
                       global float *dst) {
  int t = get_global_id(0), h = get_global_id(1);
  if (t >= Tp || h >= heads)
    return;
  size_t head = (size_t)h * Tp * dh;
  global float *d =
      kb ? dst + head + (size_t)(t / SCORE_KB) * dh * SCORE_KB + t % SCORE_KB
         : dst + head + (size_t)t * dh;
  int step = kb ? SCORE_KB : 1;
  for (int c = 0; c < dh; ++c)
    d[c * step] = t < T ? cm_load1(src, dt, h * sh + t * st + c) : 0.0f;
}

/* One RM x KB tile of logits: lo_r, hi_r = Q[row r] . KT block at kt (the
 * caller declares q_##r). */
#define ROW_ZERO(r) floatS lo_##r = (floatS)(0.0f), hi_##r = (floatS)(0.0f);
#define ROW_FMA(r)                                                             \
  if (r < SCORE_RM) {                                                          \
    floatS qv = (floatS)(q_##r[c]);                                            \
    lo_##r = fma(qv, k_lo, lo_##r);                                            \
    hi_##r = fma(qv, k_hi, hi_##r);                                            \
  }
#define TILE_DOT(kt)                                                           \
  FOR_SROWS(ROW_ZERO) {                                                        \
    const global float *p_ = (kt);                                             \
    for (int c = 0; c < dh; ++c, p_ += SCORE_KB) {                             \
      floatS k_lo = vloadS(0, p_), k_hi = vloadS(1, p_);                       \
      FOR_SROWS(ROW_FMA)                                                       \
    }                                                                          \
  }

/* Declares row r of a query tile: its visible key range [k0, k1) (empty
 * for rows past the last token) and its query row. */
#define ROW_KEYS(r)                                                            \
  int k0_##r = 0, k1_##r = 0;                                                  \
  const global float *q_##r = Q + ((size_t)h * T + min(i0 + r, T - 1)) * dh;   \
  if (r < SCORE_RM && i0 + r < T)                                              \
    visible_keys(seq_offsets, key_lengths, B, causal, i0 + r, &k0_##r,         \
                 &k1_##r);                                                     \
  if (r < SCORE_RM && k1_##r > k0_##r) {                                       \
    kmin = min(kmin, k0_##r);                                                  \
    kmax = max(kmax, k1_##r);                                                  \
    klo = max(klo, k0_##r);                                                    \
    khi = min(khi, k1_##r);                                                    \
  }

/* Pass 1: each query row's log-sum-exp over its visible keys, online by
 * key blocks in key order (causal blocks above the diagonal are never
 * visited; a row's result depends on KB, not on RM). With check_lse the
 * result is compared with the caller's lse instead of stored (first
 * mismatching row into status). Global (ceil(T / RM), H). */
kernel void score_row_lse(int T, int H, int Hkv, int dh, int Tp, float scale,
                          int B, int causal, global const int *seq_offsets,
                          global const int *key_lengths, global const float *Q,
                          global const float *KT, global float *lse_out,
                          int check_lse, int S_lse, global const float *lse_in,
                          global int *status) {
  int i0 = get_global_id(0) * SCORE_RM, h = get_global_id(1);
  if (i0 >= T || h >= H)
    return;
  const global float *kt = KT + (size_t)(h / (H / Hkv)) * dh * Tp;
  /* [kmin, kmax): keys any row sees; [klo, khi): keys every row sees. */
  int kmin = INT_MAX, kmax = 0, klo = 0, khi = INT_MAX;
  FOR_SROWS(ROW_KEYS)
  intS lanes = lane_ids();
#define ROW_STATS(r) float m_##r = -INFINITY, s_##r = 0.0f;
  FOR_SROWS(ROW_STATS)
  for (int j0 = kmin / SCORE_KB * SCORE_KB; j0 < kmax; j0 += SCORE_KB) {
    TILE_DOT(kt + (size_t)j0 * dh)
    int full = j0 >= klo && j0 + SCORE_KB <= khi;
    intS j_lo = (intS)(j0) + lanes, j_hi = j_lo + SCORE_VW;
#define ROW_UPDATE(r)                                                          \
  if (r < SCORE_RM) {                                                          \
    floatS u = scale * lo_##r, v = scale * hi_##r;                             \
    if (!full) {                                                               \
      u = select((floatS)(-INFINITY), u, j_lo >= k0_##r && j_lo < k1_##r);     \
      v = select((floatS)(-INFINITY), v, j_hi >= k0_##r && j_hi < k1_##r);     \
    }                                                                          \
    float bm = fmax(hmax_s(u), hmax_s(v));                                     \
    if (bm > m_##r) {                                                          \
      s_##r *= exp(m_##r - bm);                                                \
      m_##r = bm;                                                              \
    }                                                                          \
    if (bm != -INFINITY || isnan(bm))                                          \
      s_##r += hsum_s(exp(u - m_##r) + exp(v - m_##r));                        \
  }
    FOR_SROWS(ROW_UPDATE)
  }
#define ROW_STORE(r)                                                           \
  if (r < SCORE_RM && i0 + r < T) {                                            \
    float l = k1_##r > k0_##r ? m_##r + log(s_##r) : -INFINITY;                \
    size_t at = (size_t)h * T + i0 + r;                                        \
    if (!check_lse)                                                            \
      lse_out[at] = l;                                                         \
    else if (k1_##r > k0_##r &&                                                \
             !(fabs(l - lse_in[lse_index(H, T, S_lse, h, i0 + r)]) <= 1e-3f))  \
      atomic_min(&status[SCORE_LSE_MISMATCH], (int)at);                        \
  }
  FOR_SROWS(ROW_STORE)
}

/* The key block at j0 (its tokens past T see nothing): per lane the queries
 * that see its key [q0s, q1s), and in r the union of the lanes' ranges
 * [r0, r1) and their intersection [r2, r3); a non-finite lse entry of one
 * of its tokens lowers status[SCORE_LSE_NONFINITE]. */
inline void block_queries(int T, int H, int B, int causal,
                          global const int *seq_offsets,
                          global const int *key_lengths, int S_lse,
                          global const float *lse, int has_lse,
                          global int *status, int h, int j0, int *q0s, int *q1s,
                          int *r) {
  r[0] = INT_MAX;
  r[1] = 0;
  r[2] = 0;
  r[3] = INT_MAX;
  for (int l = 0; l < SCORE_KB; ++l) {
    q0s[l] = q1s[l] = 0;
    if (j0 + l < T) {
      visible_queries(seq_offsets, key_lengths, B, causal, j0 + l, &q0s[l],
                      &q1s[l]);
      if (has_lse && !isfinite(lse[lse_index(H, T, S_lse, h, j0 + l)]))
        atomic_min(&status[SCORE_LSE_NONFINITE], h * T + j0 + l);
    }
    if (q1s[l] > q0s[l]) {
      r[0] = min(r[0], q0s[l]);
      r[1] = max(r[1], q1s[l]);
    }
    r[2] = max(r[2], q0s[l]);
    r[3] = min(r[3], q1s[l]);
  }
}

/* The first n (> 0) sums of a key block's two halves at out. */
inline void store_block(floatS lo, floatS hi, global float *out, int n) {
  if (n >= SCORE_KB) {
    vstoreS(lo, 0, out);
    vstoreS(hi, 1, out);
    return;
  }
  float lanes[SCORE_KB];
  vstoreS(lo, 0, lanes);
  vstoreS(hi, 1, lanes);
  for (int l = 0; l < n; ++l)
    out[l] = lanes[l];
}

/* Pass 2: col[h, j] = sum over the queries i that see key j of
 * exp(scale * q_i . k_j - lse[h, i]), one key block per work-item, added
 * one query at a time in increasing order (no atomics: bitwise reproducible
 * and independent of RM). lse is pass 1's or the caller's (S_lse as
 * lse_index; its non-finite entries are reported for the block's tokens).
 * Global (Tp / KB, H). */
kernel void score_col_sums(int T, int H, int Hkv, int dh, int Tp, float scale,
                           int B, int causal, global const int *seq_offsets,
                           global const int *key_lengths, global const float *Q,
                           global const float *KT, int S_lse,
                           global const float *lse, int has_lse,
                           global float *col, global int *status) {
  int j0 = get_global_id(0) * SCORE_KB, h = get_global_id(1);
  if (j0 >= T || h >= H)
    return;
  const global float *kt =
      KT + (size_t)(h / (H / Hkv)) * dh * Tp + (size_t)j0 * dh;
  int q0s[SCORE_KB], q1s[SCORE_KB], qr[4];
  block_queries(T, H, B, causal, seq_offsets, key_lengths, S_lse, lse, has_lse,
                status, h, j0, q0s, q1s, qr);
  int qmin = qr[0], qmax = qr[1], qlo = qr[2], qhi = qr[3];
  intS q0_lo = vloadS(0, q0s), q0_hi = vloadS(1, q0s);
  intS q1_lo = vloadS(0, q1s), q1_hi = vloadS(1, q1s);
  floatS sum_lo = (floatS)(0.0f), sum_hi = (floatS)(0.0f);
  for (int i0 = qmin; i0 < qmax; i0 += SCORE_RM) {
#define ROW_QUERY(r)                                                           \
  int i_##r = min(i0 + r, qmax - 1);                                           \
  const global float *q_##r = Q + ((size_t)h * T + i_##r) * dh;
    FOR_SROWS(ROW_QUERY)
    TILE_DOT(kt)
    int full = i0 >= qlo && i0 + SCORE_RM <= qhi;
#define ROW_ADD(r)                                                             \
  if (r < SCORE_RM) {                                                          \
    float l_ = lse[lse_index(H, T, S_lse, h, i_##r)];                          \
    floatS u = exp(scale * lo_##r - l_), v = exp(scale * hi_##r - l_);         \
    if (!full) {                                                               \
      intS i_ = (intS)(i0 + r);                                                \
      u = select((floatS)(0.0f), u, i_ >= q0_lo && i_ < q1_lo);                \
      v = select((floatS)(0.0f), v, i_ >= q0_hi && i_ < q1_hi);                \
    }                                                                          \
    sum_lo += u;                                                               \
    sum_hi += v;                                                               \
  }
    FOR_SROWS(ROW_ADD)
  }
  store_block(sum_lo, sum_hi, col + (size_t)h * T + j0, T - j0);
}

/* importance[j] = mean over heads of col[:, j] / (queries that see j); a
 * non-finite result lowers status[SCORE_BAD_TOKEN]; NaN everywhere after a
 * failed sequence check. Global (T). */
kernel void score_average(int T, int H, int B, int causal,
                          global const int *seq_offsets,
                          global const int *key_lengths,
                          global const float *col, global float *importance,
                          global int *status) {
  int j = get_global_id(0);
  if (j >= T)
    return;
  int q0, q1;
  visible_queries(seq_offsets, key_lengths, B, causal, j, &q0, &q1);
  float s = 0.0f;
  for (int h = 0; h < H; ++h)
    s += col[(size_t)h * T + j];
  float v = q1 > q0 ? s / (float)H / (float)(q1 - q0) : 0.0f;
  if (status[SCORE_SEQ_ERROR])
    v = NAN;
  if (!isfinite(v))
    atomic_min(&status[SCORE_BAD_TOKEN], j);
  importance[j] = v;
}

/* Per sequence: divide by its maximum (when positive), so that importance
 * lies in [0, 1]. Global (B). */
kernel void score_normalize(int B, global const int *seq_offsets,
                            global float *importance) {
  int b = get_global_id(0);
  if (b >= B)
    return;
  float m = 0.0f;
  for (int t = seq_offsets[b]; t < seq_offsets[b + 1]; ++t)
    m = fmax(m, importance[t]);
  if (m > 0.0f)
    for (int t = seq_offsets[b]; t < seq_offsets[b + 1]; ++t)
      importance[t] /= m;
}
