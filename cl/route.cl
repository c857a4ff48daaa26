/* Routing kernels: softmax + per-token ordering and K, the global selection
 * steps (capacity, expert choice, resonance acceptance, importance budget),
 * CSR compaction and stats. Every reduction has a fixed shape that depends
 * only on E and the work-group size, never on T, so a token routes the same
 * alone or in a batch; no float atomics anywhere. */

inline int key_expert(ulong key) {
  return (int)(0xFFFFFFFFu - (uint)(key & 0xFFFFFFFFul));
}

/* Max-heap of unique keys in global scratch (one token's row): O(E) to
 * build, O(log E) per pop, so K experts cost O(E + K log E), never O(E^2). */
inline void heap_sift_down(global ulong *h, int n, int i) {
  ulong v = h[i];
  for (;;) {
    int c = 2 * i + 1;
    if (c >= n)
      break;
    if (c + 1 < n && h[c + 1] > h[c])
      ++c;
    if (h[c] <= v)
      break;
    h[i] = h[c];
    i = c;
  }
  h[i] = v;
}

inline ulong heap_pop(global ulong *h, int *n) {
  ulong top = h[0];
  *n -= 1;
  if (*n > 0) {
    h[0] = h[*n];
    heap_sift_down(h, *n, 0);
  }
  return top;
}

kernel void stats_init(int E, global int *stats) {
  int i = get_global_id(0);
  if (i < ST_HEADER)
    stats[i] = (i == ST_MIN_K || i == ST_BAD_TOKEN) ? INT_MAX : 0;
  else if (i < ST_HEADER + E + 1)
    stats[i] = 0;
}

/* Order key of an allowed expert: its selection value C in the high word
 * (cm_order_key: any sign), the complement of the expert id in the low
 * word, so that a descending order puts ties in ascending expert order. */
inline ulong selection_key(float c, int e) {
  return ((ulong)cm_order_key(c) << 32) | (ulong)(0xFFFFFFFFu - (uint)e);
}

/* Group-limited routing: marks in kept[] (one bit per group) the
 * topk_groups groups with the largest scores, ties to the lower group.
 * A group scores the sum of its two largest C (GROUP_TOP2_SUM) or its
 * largest C. The heap row h serves as scratch for the group keys. */
inline void keep_groups(int E, int G, int topk_groups, int group_score,
                        global const float *s, int has_sel_bias,
                        global const float *sel_bias, global ulong *h,
                        uint *kept) {
  int size = E / G;
  for (int g = 0; g < G; ++g) {
    float m1 = -INFINITY, m2 = -INFINITY;
    for (int e = g * size; e < (g + 1) * size; ++e) {
      float c = s[e] + (has_sel_bias ? sel_bias[e] : 0.0f);
      if (c > m1) {
        m2 = m1;
        m1 = c;
      } else if (c > m2) {
        m2 = c;
      }
    }
    h[g] = selection_key(group_score == 0 ? m1 + m2 : m1, g);
  }
  for (int i = G / 2 - 1; i >= 0; --i)
    heap_sift_down(h, G, i);
  for (int w = 0; w < (G + 31) / 32; ++w)
    kept[w] = 0;
  int n = G;
  for (int j = 0; j < topk_groups; ++j) {
    int g = key_expert(heap_pop(h, &n));
    kept[g / 32] |= 1u << (g % 32);
  }
}

/* One work-item per token: scores, the order of the allowed experts (by a
 * heap in `heap` scratch [T, E]) and the token-local K. Writes the token
 * distribution pi to P[t, :] (0 for experts outside the kept groups), its
 * entropy, the first experts of the order with their gate sources into
 * cand_* (stride kcap) -- the score s for TOPK (gates_from_score), pi
 * otherwise -- and prop_counts[t]. A token with a non-finite logit (or
 * importance) gets K = 0 and lowers stats[BAD_TOKEN]. Sequential per token,
 * so a token's result never depends on T. docs/policies.md has the
 * definitions. */
kernel void route_select(int T, int E, global const float *logits,
                         int has_bias, global const float *bias,
                         global float *P, global float *entropy, int policy,
                         int k, float p, int k_min, int k_max,
                         global const float *importance, int budget_mode,
                         int kcap, global int *cand_ids,
                         global float *cand_p, global int *prop_counts,
                         global int *stats, global ulong *heap, int sigmoid,
                         int has_sel_bias, global const float *sel_bias,
                         int num_groups, int topk_groups, int group_score,
                         int gates_from_score) {
  int t = get_global_id(0);
  if (t >= T)
    return;
  global const float *zrow = logits + (size_t)t * E;
  global float *prow = P + (size_t)t * E;
  global ulong *h = heap + (size_t)t * E;
  int finite = policy != POLICY_IMPORTANCE || isfinite(importance[t]);
  float zmax = -INFINITY;
  for (int e = 0; e < E; ++e) {
    float z = zrow[e] + (has_bias ? bias[e] : 0.0f);
    finite &= isfinite(z);
    zmax = fmax(zmax, z);
  }
  if (!finite) {
    prop_counts[t] = 0;
    entropy[t] = 0.0f;
    atomic_min(&stats[ST_BAD_TOKEN], t);
    return;
  }
  /* The scores s, in P's row until pi replaces them. Softmax: exp once per
   * expert, then divided in place. */
  float denom = 0.0f;
  for (int e = 0; e < E; ++e) {
    float z = zrow[e] + (has_bias ? bias[e] : 0.0f);
    float v = sigmoid ? 1.0f / (1.0f + exp(-z)) : exp(z - zmax);
    prow[e] = v;
    denom += v;
  }
  if (!sigmoid)
    for (int e = 0; e < E; ++e)
      prow[e] = prow[e] / denom;
  uint kept[32]; /* one bit per group: E <= 1024 */
  if (num_groups > 1)
    keep_groups(E, num_groups, topk_groups, group_score, prow, has_sel_bias,
                sel_bias, h, kept);
  int size = E / num_groups;
#define ALLOWED(e) (num_groups <= 1 || ((kept[((e) / size) / 32] >> (((e) / size) % 32)) & 1u))
  /* pi = s / (sum of s over the allowed experts); P itself for softmax over
   * every expert. */
  int whole = !sigmoid && num_groups <= 1;
  float allowed_sum = 0.0f;
  int n = 0;
  for (int e = 0; e < E; ++e) {
    if (!ALLOWED(e))
      continue;
    allowed_sum += prow[e];
    h[n++] = selection_key(prow[e] + (has_sel_bias ? sel_bias[e] : 0.0f), e);
  }
#define PI(e) (whole ? prow[e] : prow[e] / allowed_sum)
  for (int i = n / 2 - 1; i >= 0; --i)
    heap_sift_down(h, n, i);
  int K = k, pops = k;
  if (policy == POLICY_IMPORTANCE) {
    float imp = clamp(importance[t], 0.0f, 1.0f);
    K = budget_mode ? 0 /* set by route_importance_budget */
                    : clamp((int)ceil(imp * (float)k_max), k_min, k_max);
    pops = budget_mode ? k_max : K;
  } else if (policy == POLICY_EXPERT_CHOICE) {
    K = pops = n;
  } else if (policy == POLICY_TOPP) {
    pops = k_max; /* at most; the loop stops once K is known */
  }
  size_t c0 = (size_t)t * kcap;
  float cum = 0.0f;
  int crossed = 0;
  for (int j = 0; j < pops; ++j) {
    int e = key_expert(heap_pop(h, &n));
    float pi = PI(e);
    cand_ids[c0 + j] = e;
    cand_p[c0 + j] = gates_from_score ? prow[e] : pi;
    if (policy == POLICY_TOPP) {
      cum += pi;
      if (!crossed && cum > p) {
        crossed = 1;
        K = j + 1;
      }
      if (crossed && j + 1 >= max(K, k_min))
        break;
    }
  }
  /* TOPP: no crossing within k_max pops means K >= k_max. */
  if (policy == POLICY_TOPP)
    K = crossed ? clamp(K, k_min, k_max) : k_max;
  prop_counts[t] = K;
  float ent = 0.0f;
  for (int e = 0; e < E; ++e) {
    float pi = ALLOWED(e) ? PI(e) : 0.0f;
    prow[e] = pi;
    if (pi > 0.0f)
      ent -= pi * log(pi);
  }
  entropy[t] = ent;
#undef PI
#undef ALLOWED
}

/* Euclidean norm of each row of x[T, d] (for cosine affinity). */
kernel void row_norms(int T, int d, global const float *x, global float *out) {
  int t = get_global_id(0);
  if (t >= T)
    return;
  float s = 0.0f;
  for (int i = 0; i < d; ++i) {
    float v = x[(size_t)t * d + i];
    s = fma(v, v, s);
  }
  out[t] = sqrt(s);
}

/* The affinity an expert ranks a token by, as an order key. */
inline uint affinity_key(int cosine, int t, int e, int E,
                         global const float *P, global const float *logits,
                         global const float *xnorm,
                         global const float *wnorm) {
  if (!cosine)
    return cm_order_key(P[(size_t)t * E + e]);
  float n = xnorm[t] * wnorm[e];
  return cm_order_key(n > 0.0f ? logits[(size_t)t * E + e] / n : 0.0f);
}

/* One work-item per expert: keeps at most C of the tokens in its segment.
 * dense = 1 (expert choice): the segment is every token, C from T.
 * dense = 0: the segment is the expert's proposals seg_offsets[e]..[e+1]
 * (tokens ascending, from the grouping kernels), C from the proposal count.
 * C = ceil(capacity_factor * n / E) in fp32. by_order = 1 keeps the first C
 * tokens; otherwise the C highest affinities, ties by lower token index
 * (threshold found by bisection on the 32-bit key, then ties in token order).
 * mask[t * E + e] receives 1 (kept) or 0 for every token of the segment. */
kernel void select_by_expert(int T, int E, int dense, float capacity_factor,
                             int capacity_n, global const int *seg_offsets,
                             global const int *row_tokens, int by_order,
                             int cosine, global const float *P,
                             global const float *logits,
                             global const float *xnorm,
                             global const float *wnorm, global uchar *mask) {
  int e = get_global_id(0);
  if (e >= E)
    return;
  int n_all = dense ? capacity_n : seg_offsets[E];
  int C = (int)ceil(capacity_factor * (float)n_all / (float)E);
  int begin = dense ? 0 : seg_offsets[e];
  int n = dense ? T : seg_offsets[e + 1] - begin;
#define ROW_TOKEN(r) (dense ? (r) : row_tokens[begin + (r)])
#define ROW_KEY(r)                                                             \
  affinity_key(cosine, ROW_TOKEN(r), e, E, P, logits, xnorm, wnorm)
  if (n <= C || by_order) {
    for (int r = 0; r < n; ++r)
      mask[(size_t)ROW_TOKEN(r) * E + e] = r < C;
    return;
  }
  uint thr = 0;
  for (int bit = 31; bit >= 0; --bit) {
    uint cand = thr | (1u << bit);
    int cnt = 0;
    for (int r = 0; r < n && cnt < C; ++r)
      cnt += ROW_KEY(r) >= cand;
    if (cnt >= C)
      thr = cand;
  }
  int need = C;
  for (int r = 0; r < n; ++r)
    need -= ROW_KEY(r) > thr;
  for (int r = 0; r < n; ++r) {
    uint key = ROW_KEY(r);
    int keep = key > thr;
    if (key == thr && need > 0) {
      keep = 1;
      --need;
    }
    mask[(size_t)ROW_TOKEN(r) * E + e] = keep;
  }
#undef ROW_KEY
#undef ROW_TOKEN
}

/* DA-MoE budget mode: K_t = k_min + share of R = B - T*k_min, proportional
 * to w_t = floor(s_t*65536 + 0.5) with each share capped at
 * c = k_max - k_min (water-filling), remainders by largest remainder, ties
 * by lower token index. All integer: exact. */

/* w_t, or 1 for every token once the weights are uniform. */
inline long budget_weight(global const float *importance, int t, int unit) {
  return unit ? 1l
              : (long)(clamp(importance[t], 0.0f, 1.0f) * 65536.0f + 0.5f);
}

/* Water-filling: sets sat[t] = 1 for every token whose share reaches the cap
 * c; returns the budget left for the others (>= 0) and *Wu, their weight.
 * *unit switches to uniform weights when the unsaturated tokens weigh
 * nothing. */
inline long budget_saturate(int T, global const float *importance, long c,
                            long R0, int *unit, global int *sat, long *Wu) {
  long R;
  for (;;) {
    long n_sat = 0;
    *Wu = 0;
    for (int t = 0; t < T; ++t) {
      n_sat += sat[t];
      *Wu += sat[t] ? 0 : budget_weight(importance, t, *unit);
    }
    R = R0 - c * n_sat;
    if (R <= 0)
      break;
    if (*Wu == 0) {
      if (*unit)
        break; /* cannot happen: R0 <= T * c */
      *unit = 1; /* the rest weigh nothing: share it equally */
      continue;
    }
    int newly = 0;
    for (int t = 0; t < T; ++t)
      if (!sat[t] && R * budget_weight(importance, t, *unit) >= c * *Wu) {
        sat[t] = 1;
        newly = 1;
      }
    if (!newly)
      break;
  }
  return R < 0 ? 0 : R;
}

/* The `extra` +1s left after the floors go to the largest remainders
 * R * w_t % Wu (values < Wu < 2^48): returns the threshold, found by
 * bisection, and *tie_quota, how many tokens exactly at it also get one (in
 * token order). */
inline long budget_remainder_threshold(int T, global const float *importance,
                                       int unit, global const int *sat,
                                       long R, long Wu, long extra,
                                       long *tie_quota) {
  long thr = 0;
  for (int bit = 47; bit >= 0; --bit) {
    long cand = thr | (1l << bit);
    long cnt = 0;
    for (int t = 0; t < T && cnt < extra; ++t)
      cnt += !sat[t] && (R * budget_weight(importance, t, unit)) % Wu >= cand;
    if (cnt >= extra)
      thr = cand;
  }
  *tie_quota = extra;
  for (int t = 0; t < T; ++t)
    *tie_quota -= !sat[t] && (R * budget_weight(importance, t, unit)) % Wu > thr;
  return thr;
}

/* One work-item. prop_counts doubles as the "saturated" flag while the
 * shares are found. */
kernel void route_importance_budget(int T, global const float *importance,
                                    int k_min, int k_max, long budget,
                                    global const int *stats,
                                    global int *prop_counts) {
  if (get_global_id(0) != 0)
    return;
  /* A non-finite token has no candidates (route_select skipped it) and the
   * route will fail: give nobody a slot, so nothing after this reads
   * candidates that were never written. */
  if (!cm_route_ok(stats)) {
    for (int t = 0; t < T; ++t)
      prop_counts[t] = 0;
    return;
  }
  long c = k_max - k_min, R0 = budget - (long)T * k_min, W = 0;
  for (int t = 0; t < T; ++t) {
    W += budget_weight(importance, t, 0);
    prop_counts[t] = 0;
  }
  int unit = W == 0;
  if (c == 0 || R0 <= 0) {
    for (int t = 0; t < T; ++t)
      prop_counts[t] = k_min;
    return;
  }
  long Wu;
  long R = budget_saturate(T, importance, c, R0, &unit, prop_counts, &Wu);
  long extra = R;
  for (int t = 0; t < T; ++t)
    if (!prop_counts[t] && Wu > 0)
      extra -= R * budget_weight(importance, t, unit) / Wu;
  long thr = 0, tie_quota = 0;
  if (extra > 0)
    thr = budget_remainder_threshold(T, importance, unit, prop_counts, R, Wu,
                                     extra, &tie_quota);
  for (int t = 0; t < T; ++t) {
    if (prop_counts[t]) {
      prop_counts[t] = k_max;
      continue;
    }
    long q = Wu > 0 ? R * budget_weight(importance, t, unit) : 0;
    long rem = Wu > 0 ? q % Wu : 0;
    int K = k_min + (int)(Wu > 0 ? q / Wu : 0);
    if (extra > 0 && rem > thr) {
      K += 1;
    } else if (extra > 0 && rem == thr && tie_quota > 0) {
      K += 1;
      --tie_quota;
    }
    prop_counts[t] = K;
  }
}

/* Kept slots per token: the proposals whose (token, expert) the mask kept,
 * or all of them without a mask; a TOP1 fallback keeps the first proposal of
 * a token that lost all. */
inline int kept_slot(int use_mask, global const uchar *mask, int t, int E,
                     int e) {
  return !use_mask || mask[(size_t)t * E + e];
}

kernel void compact_count(int T, int E, int kcap,
                          global const int *prop_counts,
                          global const int *cand_ids, int use_mask,
                          global const uchar *mask, int fallback_top1,
                          global int *counts) {
  int t = get_global_id(0);
  if (t >= T)
    return;
  int K = prop_counts[t], kept = 0;
  for (int j = 0; j < K; ++j)
    kept += kept_slot(use_mask, mask, t, E, cand_ids[(size_t)t * kcap + j]);
  counts[t] = (kept == 0 && K > 0 && fallback_top1) ? 1 : kept;
}

/* Writes the token's kept slots at token_offsets[t], in sorted order, with
 * RAW or RENORM gates (renormalised by the sum of the kept gate sources in
 * that order, plus renorm_eps when it is > 0; otherwise a zero sum gives
 * uniform gates), then multiplied by gate_scale. */
kernel void compact_write(int T, int E, int kcap,
                          global const int *prop_counts,
                          global const int *cand_ids,
                          global const float *cand_p, int use_mask,
                          global const uchar *mask,
                          int renorm, global const int *token_offsets,
                          global int *expert_ids, global float *gates,
                          float renorm_eps, float gate_scale) {
  int t = get_global_id(0);
  if (t >= T)
    return;
  int K = prop_counts[t], o = token_offsets[t], n = token_offsets[t + 1] - o;
  size_t c0 = (size_t)t * kcap;
  int w = 0;
  float sum = 0.0f;
  for (int j = 0; j < K && w < n; ++j) {
    int e = cand_ids[c0 + j];
    if (!kept_slot(use_mask, mask, t, E, e))
      continue;
    expert_ids[o + w] = e;
    gates[o + w] = cand_p[c0 + j];
    sum += cand_p[c0 + j];
    ++w;
  }
  if (w < n) { /* TOP1 fallback (compact_count gave n = 1): first proposal */
    expert_ids[o] = cand_ids[c0];
    gates[o] = cand_p[c0];
    sum = cand_p[c0];
  }
  if (renorm && renorm_eps > 0.0f)
    for (int j = 0; j < n; ++j)
      gates[o + j] = gates[o + j] / (sum + renorm_eps);
  else if (renorm)
    for (int j = 0; j < n; ++j)
      gates[o + j] = sum > 0.0f ? gates[o + j] / sum : 1.0f / (float)n;
  if (gate_scale != 1.0f)
    for (int j = 0; j < n; ++j)
      gates[o + j] *= gate_scale;
}

/* Stats: per-token counts (integer atomics: order-independent). */
kernel void stats_tokens(int T, global const int *counts, global int *stats) {
  int t = get_global_id(0);
  if (t >= T)
    return;
  int K = counts[t];
  atomic_inc(&stats[ST_HEADER + K]);
  atomic_min(&stats[ST_MIN_K], K);
  atomic_max(&stats[ST_MAX_K], K);
}

/* Stats: per block of tokens, the column sums of P and (column E) the sum
 * of entropies, each in token order. */
kernel void stats_block_sums(int T, int E, int block,
                             global const float *P,
                             global const float *entropy,
                             global float *partials) {
  int b = get_global_id(0), e = get_global_id(1);
  int num_blocks = (T + block - 1) / block;
  if (b >= num_blocks || e > E)
    return;
  int end = min(T, (b + 1) * block);
  float s = 0.0f;
  for (int t = b * block; t < end; ++t)
    s += e < E ? P[(size_t)t * E + e] : entropy[t];
  partials[(size_t)b * (E + 1) + e] = s;
}

/* Stats: one work-item reduces the block sums in block order. */
kernel void stats_finalize(int T, int E, int num_blocks,
                           global const float *partials,
                           global const int *expert_offsets,
                           global const int *token_offsets,
                           global int *stats) {
  if (get_global_id(0) != 0)
    return;
  int N = token_offsets[T];
  global float *load = (global float *)(stats + ST_HEADER + E + 1);
  global float *mean_prob = load + E;
  float loss = 0.0f, ent = 0.0f;
  for (int e = 0; e <= E; ++e) {
    float s = 0.0f;
    for (int b = 0; b < num_blocks; ++b)
      s += partials[(size_t)b * (E + 1) + e];
    float mean = T > 0 ? s / (float)T : 0.0f;
    if (e == E) {
      ent = mean;
    } else {
      float f = N > 0 ? (float)(expert_offsets[e + 1] - expert_offsets[e]) /
                            (float)N
                      : 0.0f;
      load[e] = f;
      mean_prob[e] = mean;
      loss += f * mean;
    }
  }
  stats[ST_N] = N;
  if (T == 0) {
    stats[ST_MIN_K] = 0;
    stats[ST_MAX_K] = 0;
  }
  stats[ST_BALANCE_LOSS] = as_int(loss * (float)E);
  stats[ST_ENTROPY] = as_int(ent);
}
