/* Grouped expert GEMM, work-group shape (GPUs): the same contract, packed
 * weights and results as gemm_grouped (grouped_gemm.cl, whose definitions
 * this file follows in one program), for devices where one work-item per
 * register tile leaves the hardware idle.
 *
 * A work-group computes one block of C: LM_BM rows of one expert against
 * LM_NP weight panels (LM_NP * 2 * VW columns). Per k tile of LM_BK it
 * stages the block's rows of A and its panel rows of B in local memory (B
 * four columns per load, widened and, quantized, scaled on the way in by
 * wf_load4 of cl/weight_formats.cl),
 * then every work-item accumulates LM_TM rows x LM_TN columns of each
 * panel half in fp32 registers. Work-item (tx, ty) owns rows ty + i *
 * ROWS_T and columns tx % CPP + j * CPP of panel tx / CPP, so neighbouring
 * work-items read neighbouring local words and store neighbouring columns.
 * Each output sums its products with fma in increasing k from zero, then
 * adds the bias and applies the epilogue, exactly as gemm_grouped does:
 * both kernels give the same bits.
 *
 * Blocks come from the row-tile list of gemm_tile_offsets (tiles of LM_BM
 * rows, one per work-group row): built on the device, so the launch needs
 * no host sync and its size does not depend on how rows fall on experts;
 * groups past the last tile return at once, and empty experts own none.
 *
 * Build parameters (-D, only when the tuning entry picks this kernel):
 * LM_BM, LM_NP, LM_BK, LM_TM (divides BM), LM_TN (divides VW). */
#ifdef LM_BM

#define LM_PANEL (2 * GEMM_VW)     /* columns of one panel */
#define LM_CPP (GEMM_VW / LM_TN)   /* work-items per panel */
#define LM_COLS_T (LM_NP * LM_CPP) /* work-items along N */
#define LM_ROWS_T (LM_BM / LM_TM)  /* work-items along M */
#define LM_ITEMS (LM_COLS_T * LM_ROWS_T)
#define LM_B_LOADS (LM_NP * LM_BK * LM_PANEL / 4) /* 4 elements each */

inline float act_s(int kind, float v) {
  if (kind == ACT_RELU)
    return fmax(v, 0.0f);
  if (kind == ACT_GELU || kind == ACT_GEGLU)
    return CM_GELU_TANH(v);
  if (kind == ACT_SILU || kind == ACT_SWIGLU)
    return CM_SILU(v);
  return v;
}

/* Global size (ceil(panels / NP) * COLS_T, tiles_bound * ROWS_T), local size
 * (COLS_T, ROWS_T); arguments as gemm_grouped's, tile_offsets counting
 * LM_BM-row tiles one per unit. */
__attribute__((reqd_work_group_size(LM_COLS_T, LM_ROWS_T, 1))) kernel void
gemm_grouped_local(int E, int K, int num_panels,
                   global const int *expert_offsets,
                   global const int *tile_offsets, global const float *A,
                   global const wtype *B, int epi, int has_bias,
                   global const float *bias, global float *C, int ldc,
                   int n_out, float act_limit, float act_alpha,
                   global const float *scales, int qgroup) {
  /* +1: the transposed A tile's columns fall on different banks. */
  local float As[LM_BK][LM_BM + 1];
  local float Bs[LM_BK][LM_NP * LM_PANEL];
  int tile = get_group_id(1), panel0 = get_group_id(0) * LM_NP;
  /* The same for every work-item of the group: no barrier is skipped. */
  if (tile >= tile_offsets[E] || panel0 >= num_panels)
    return;
  int e = cm_segment_of(tile_offsets, E, tile);
  int row0 = expert_offsets[e] + (tile - tile_offsets[e]) * LM_BM;
  int rows = min(LM_BM, expert_offsets[e + 1] - row0);
  int panels = min(LM_NP, num_panels - panel0);
  int tx = get_local_id(0), ty = get_local_id(1);
  int lid = ty * LM_COLS_T + tx;
  int my_panel = tx / LM_CPP, my_col = tx % LM_CPP;
  const global wtype *Be = B + ((size_t)e * num_panels + panel0) * K * B_ROW;
  int groups = (K + qgroup - 1) / qgroup;
  const global float *Se =
      scales + ((size_t)e * num_panels + panel0) * groups * LM_PANEL;
  const global float *Ab = A + (size_t)row0 * K;

  float lo[LM_TM][LM_TN], hi[LM_TM][LM_TN];
  for (int i = 0; i < LM_TM; ++i)
    for (int j = 0; j < LM_TN; ++j)
      lo[i][j] = hi[i][j] = 0.0f;

  for (int k0 = 0; k0 < K; k0 += LM_BK) {
    int kn = min(LM_BK, K - k0);
    /* Consecutive work-items read consecutive k of one row. */
    for (int at = lid; at < LM_BM * LM_BK; at += LM_ITEMS) {
      int r = at / LM_BK, kk = at % LM_BK;
      As[kk][r] = r < rows && kk < kn ? Ab[(size_t)r * K + k0 + kk] : 0.0f;
    }
    /* A panel's BK rows are contiguous: consecutive work-items read
     * consecutive groups of four stored elements. */
    for (int at = lid; at < LM_B_LOADS; at += LM_ITEMS) {
      int m = at * 4 % LM_PANEL, kk = at * 4 / LM_PANEL % LM_BK,
          p = at * 4 / (LM_PANEL * LM_BK);
      int k = k0 + kk;
      float4 w = p < panels && kk < kn
                     ? wf_load4(Be + ((size_t)p * K + k) * B_ROW,
                                Se + ((size_t)p * groups + k / qgroup) *
                                         LM_PANEL,
                                m)
                     : (float4)(0.0f);
      vstore4(w, 0, &Bs[kk][p * LM_PANEL + m]);
    }
    barrier(CLK_LOCAL_MEM_FENCE);
    for (int kk = 0; kk < kn; ++kk) {
      float a[LM_TM], bl[LM_TN], bh[LM_TN];
      for (int i = 0; i < LM_TM; ++i)
        a[i] = As[kk][ty + i * LM_ROWS_T];
      for (int j = 0; j < LM_TN; ++j) {
        int c = my_panel * LM_PANEL + my_col + j * LM_CPP;
        bl[j] = Bs[kk][c];
        bh[j] = Bs[kk][c + GEMM_VW];
      }
      for (int i = 0; i < LM_TM; ++i)
        for (int j = 0; j < LM_TN; ++j) {
          lo[i][j] = fma(a[i], bl[j], lo[i][j]);
          hi[i][j] = fma(a[i], bh[j], hi[i][j]);
        }
    }
    barrier(CLK_LOCAL_MEM_FENCE);
  }

  int panel = panel0 + my_panel;
  if (my_panel >= panels)
    return;
  int gated = epi == ACT_SWIGLU || epi == ACT_GEGLU || epi == ACT_SWIGLU_OAI;
  const global float *pb = bias + ((size_t)e * num_panels + panel) * LM_PANEL;
  for (int i = 0; i < LM_TM; ++i) {
    int r = ty + i * LM_ROWS_T;
    if (r >= rows)
      continue;
    global float *c = C + (size_t)(row0 + r) * ldc;
    for (int j = 0; j < LM_TN; ++j) {
      int col = my_col + j * LM_CPP; /* within the panel's half */
      float u = lo[i][j] + (has_bias ? pb[col] : 0.0f);
      float v = hi[i][j] + (has_bias ? pb[GEMM_VW + col] : 0.0f);
      if (gated) {
        int out = panel * GEMM_VW + col;
        if (out < n_out)
          c[out] = epi == ACT_SWIGLU_OAI
                       ? CM_SWIGLU_OAI(u, v, act_limit, act_alpha)
                       : act_s(epi, u) * v;
      } else {
        int out = panel * LM_PANEL + col;
        if (out < n_out)
          c[out] = act_s(epi, u);
        if (out + GEMM_VW < n_out)
          c[out + GEMM_VW] = act_s(epi, v);
      }
    }
  }
}

#endif /* LM_BM */
