/* The fused scoring passes in their work-group shape (GPUs): the same
 * arguments, tiles and results as score_row_lse / score_col_sums
 * (score.cl, whose definitions this file follows in one program), with the
 * operand every work-item of a group shares staged in local memory, SCORE_DC
 * head dimensions at a time: pass 1 stages the key block (its SCORE_LX
 * work-items each own RM query rows), pass 2 the query tile (each owns a
 * key block). A group walks the union of its work-items' visible ranges;
 * a block a work-item does not see is masked out of its sums exactly as
 * the private kernels mask partial blocks (adding nothing), and every dot
 * product still accumulates in increasing head dimension, so both shapes
 * give the same bits. Built only where the tuning entry sets SCORE_DC; the
 * launch's local size is SCORE_LX. */
#ifdef SCORE_DC

/* The group's union of [lo, hi) ranges (empty: lo = INT_MAX, hi = 0). */
inline void group_range(local int *shared, int lo, int hi, int *glo, int *ghi) {
  if (get_local_id(0) == 0) {
    shared[0] = INT_MAX;
    shared[1] = 0;
  }
  barrier(CLK_LOCAL_MEM_FENCE);
  atomic_min(&shared[0], lo);
  atomic_max(&shared[1], hi);
  barrier(CLK_LOCAL_MEM_FENCE);
  *glo = shared[0];
  *ghi = shared[1];
}

/* Pass 1 (see score_row_lse). Global (ceil(T / RM) rounded up to LX, H). */
kernel void score_row_lse_local(
    int T, int H, int Hkv, int dh, int Tp, float scale, int B, int causal,
    global const int *seq_offsets, global const int *key_lengths,
    global const float *Q, global const float *KT, global float *lse_out,
    int check_lse, int S_lse, global const float *lse_in, global int *status) {
  local float Ks[SCORE_DC * SCORE_KB];
  local int range[2];
  int lid = get_local_id(0), L = get_local_size(0);
  /* Work-items past the last row take part in the staging, store nothing. */
  int i0 = get_global_id(0) * SCORE_RM, h = get_global_id(1);
  const global float *kt = KT + (size_t)(h / (H / Hkv)) * dh * Tp;
  int kmin = INT_MAX, kmax = 0, klo = 0, khi = INT_MAX;
  FOR_SROWS(ROW_KEYS)
  int gmin, gmax;
  group_range(range, kmin, kmax, &gmin, &gmax);
  intS lanes = lane_ids();
  FOR_SROWS(ROW_STATS)
  for (int j0 = gmin / SCORE_KB * SCORE_KB; j0 < gmax; j0 += SCORE_KB) {
    FOR_SROWS(ROW_ZERO)
    for (int c0 = 0; c0 < dh; c0 += SCORE_DC) {
      int cn = min(SCORE_DC, dh - c0);
      barrier(CLK_LOCAL_MEM_FENCE);
      const global float *src = kt + (size_t)j0 * dh + (size_t)c0 * SCORE_KB;
      for (int at = lid; at < cn * SCORE_KB; at += L)
        Ks[at] = src[at];
      barrier(CLK_LOCAL_MEM_FENCE);
      for (int c = 0; c < cn; ++c) {
        floatS k_lo = vloadS(0, Ks + c * SCORE_KB),
               k_hi = vloadS(1, Ks + c * SCORE_KB);
#define ROW_FMA_AT(r)                                                          \
  if (r < SCORE_RM) {                                                          \
    floatS qv = (floatS)(q_##r[c0 + c]);                                       \
    lo_##r = fma(qv, k_lo, lo_##r);                                            \
    hi_##r = fma(qv, k_hi, hi_##r);                                            \
  }
        FOR_SROWS(ROW_FMA_AT)
      }
    }
    int full = j0 >= klo && j0 + SCORE_KB <= khi;
    intS j_lo = (intS)(j0) + lanes, j_hi = j_lo + SCORE_VW;
    FOR_SROWS(ROW_UPDATE)
  }
  FOR_SROWS(ROW_STORE)
}

/* Pass 2 (see score_col_sums). Global (Tp / KB rounded up to LX, H). */
kernel void
score_col_sums_local(int T, int H, int Hkv, int dh, int Tp, float scale, int B,
                     int causal, global const int *seq_offsets,
                     global const int *key_lengths, global const float *Q,
                     global const float *KT, int S_lse, global const float *lse,
                     int has_lse, global float *col, global int *status) {
  local float Qs[SCORE_RM * SCORE_DC];
  local int range[2];
  int lid = get_local_id(0), L = get_local_size(0);
  int j0 = get_global_id(0) * SCORE_KB, h = get_global_id(1);
  int active = j0 < T; /* the others take part in the staging only */
  const global float *kt = KT + (size_t)(h / (H / Hkv)) * dh * Tp +
                           (size_t)min(j0, Tp - SCORE_KB) * dh;
  int q0s[SCORE_KB], q1s[SCORE_KB], qr[4];
  block_queries(T, H, B, causal, seq_offsets, key_lengths, S_lse, lse, has_lse,
                status, h, j0, q0s, q1s, qr);
  int qmin = qr[0], qmax = qr[1], qlo = qr[2], qhi = qr[3];
  int gmin, gmax;
  group_range(range, qmin, qmax, &gmin, &gmax);
  intS q0_lo = vloadS(0, q0s), q0_hi = vloadS(1, q0s);
  intS q1_lo = vloadS(0, q1s), q1_hi = vloadS(1, q1s);
  floatS sum_lo = (floatS)(0.0f), sum_hi = (floatS)(0.0f);
  for (int i0 = gmin; i0 < gmax; i0 += SCORE_RM) {
    FOR_SROWS(ROW_ZERO)
    for (int c0 = 0; c0 < dh; c0 += SCORE_DC) {
      int cn = min(SCORE_DC, dh - c0);
      barrier(CLK_LOCAL_MEM_FENCE);
      for (int at = lid; at < SCORE_RM * cn; at += L) {
        int r = at / cn, c = at % cn;
        Qs[r * SCORE_DC + c] =
            Q[((size_t)h * T + min(i0 + r, gmax - 1)) * dh + c0 + c];
      }
      barrier(CLK_LOCAL_MEM_FENCE);
      const global float *p_ = kt + (size_t)c0 * SCORE_KB;
      for (int c = 0; c < cn; ++c, p_ += SCORE_KB) {
        floatS k_lo = vloadS(0, p_), k_hi = vloadS(1, p_);
#define ROW_FMA_STAGED(r)                                                      \
  if (r < SCORE_RM) {                                                          \
    floatS qv = (floatS)(Qs[r * SCORE_DC + c]);                                \
    lo_##r = fma(qv, k_lo, lo_##r);                                            \
    hi_##r = fma(qv, k_hi, hi_##r);                                            \
  }
        FOR_SROWS(ROW_FMA_STAGED)
      }
    }
#define ROW_INDEX(r) int i_##r = min(i0 + r, gmax - 1);
    FOR_SROWS(ROW_INDEX)
    int full = i0 >= qlo && i0 + SCORE_RM <= qhi;
    FOR_SROWS(ROW_ADD)
  }
  if (!active)
    return;
  store_block(sum_lo, sum_hi, col + (size_t)h * T + j0, T - j0);
}

#endif /* SCORE_DC */
