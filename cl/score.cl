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
 * (layout 1) or one of T. A failed check records its code (1: ends, 2: not
 * increasing, 3: key length), entry and values, and leaves one safe
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
    offsets[i] = has_offsets ? given_offsets[i]
                             : (layout == 1 ? i * S : (i ? T : 0));
  if (offsets[0] != 0 || offsets[B] != T) {
    code = 1;
    a = offsets[0];
    b = offsets[B];
  }
  for (int i = 0; i < B && !code; ++i)
    if (offsets[i + 1] <= offsets[i]) {
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
 * batch, token t = b * S + s). Global (T, H). */
kernel void score_prob_columns(int T, int H, int B, int S, int layout,
                               int causal, global const int *seq_offsets,
                               global const int *key_lengths,
                               global const float *A, global float *col) {
  int j = get_global_id(0), h = get_global_id(1);
  if (j >= T || h >= H)
    return;
  int q0, q1;
  visible_queries(seq_offsets, key_lengths, B, causal, j, &q0, &q1);
  float s = 0.0f;
  if (layout == 0) {
    for (int i = q0; i < q1; ++i)
      s += A[((size_t)h * T + i) * T + j];
  } else {
    int b = j / S, base = b * S;
    for (int i = q0; i < q1; ++i)
      s += A[(((size_t)b * H + h) * S + (i - base)) * S + (j - base)];
  }
  col[(size_t)h * T + j] = s;
}

inline float qk(global const float *q, global const float *k, int dh) {
  float s = 0.0f;
  for (int c = 0; c < dh; ++c)
    s = fma(q[c], k[c], s);
  return s;
}

/* Start of token t's row of head h in a [heads, T, dh] (layout 0) or
 * [T, heads, dh] (layout 1) tensor. */
inline size_t head_row(int layout, int heads, int T, int h, int t, int dh) {
  return (layout ? (size_t)t * heads + h : (size_t)h * T + t) * dh;
}

/* Fused pass 1: for query i of head h, the row max and the softmax
 * denominator over its visible keys (online, in key order); query head h
 * reads key head h / (H / Hkv). With check_lse the row's log-sum-exp is
 * compared with the caller's lse instead (first mismatching row into
 * status). Global (T, H). */
kernel void score_fused_rows(int T, int H, int Hkv, int layout, int dh,
                             float scale, int B, int causal,
                             global const int *seq_offsets,
                             global const int *key_lengths,
                             global const float *Q, global const float *K,
                             global float *row_max, global float *row_sum,
                             int check_lse, global const float *lse,
                             global int *status) {
  int i = get_global_id(0), h = get_global_id(1);
  if (i >= T || h >= H)
    return;
  int k0, k1, hk = h / (H / Hkv);
  visible_keys(seq_offsets, key_lengths, B, causal, i, &k0, &k1);
  global const float *q = Q + head_row(layout, H, T, h, i, dh);
  float m = -INFINITY, s = 0.0f;
  for (int j = k0; j < k1; ++j) {
    float v = scale * qk(q, K + head_row(layout, Hkv, T, hk, j, dh), dh);
    if (v > m) {
      s = s * exp(m - v) + 1.0f;
      m = v;
    } else {
      s += exp(v - m);
    }
  }
  size_t r = (size_t)h * T + i;
  if (check_lse) {
    if (k1 > k0 && !(fabs(m + log(s) - lse[r]) <= 1e-3f))
      atomic_min(&status[SCORE_LSE_MISMATCH], (int)r);
    return;
  }
  row_max[r] = m;
  row_sum[r] = s;
}

/* Fused pass 2: col[h, j] = sum over visible queries i of
 * exp(scale q_i . k_j - max_i) / sum_i, or exp(scale q_i . k_j - lse_i)
 * with the caller's lse (its first non-finite entry into status). Global
 * (T, H). */
kernel void score_fused_columns(int T, int H, int Hkv, int layout, int dh,
                                float scale, int B, int causal,
                                global const int *seq_offsets,
                                global const int *key_lengths,
                                global const float *Q, global const float *K,
                                global const float *row_max,
                                global const float *row_sum, int has_lse,
                                global const float *lse, global float *col,
                                global int *status) {
  int j = get_global_id(0), h = get_global_id(1);
  if (j >= T || h >= H)
    return;
  int q0, q1, hk = h / (H / Hkv);
  visible_queries(seq_offsets, key_lengths, B, causal, j, &q0, &q1);
  global const float *k = K + head_row(layout, Hkv, T, hk, j, dh);
  if (has_lse && !isfinite(lse[(size_t)h * T + j]))
    atomic_min(&status[SCORE_LSE_NONFINITE], h * T + j);
  float s = 0.0f;
  for (int i = q0; i < q1; ++i) {
    size_t r = (size_t)h * T + i;
    float v = scale * qk(Q + head_row(layout, H, T, h, i, dh), k, dh);
    s += has_lse ? exp(v - lse[r]) : exp(v - row_max[r]) / row_sum[r];
  }
  col[(size_t)h * T + j] = s;
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
