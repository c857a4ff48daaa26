/* Grouped expert GEMM: one launch computes C[rows of e] = A[rows of e] * B_e
 * for every expert e, reading each expert's row range from expert_offsets on
 * the device (no host sync), with the bias and activation fused into the
 * epilogue.
 *
 * Build parameters (-D, from the device's tuning entry; no defaults here):
 *   GEMM_RM  rows of C per work-item (1..16)
 *   GEMM_VW  vector width along N (4, 8 or 16)
 *   GEMM_WTYPE  storage of the packed weights (cl/weight_formats.cl, which
 *            precedes this file in the program): float32, float16,
 *            bfloat16 or a quantized format. Weights are widened to float32
 *            in registers; every product and sum is fp32.
 * Each work-item owns an RM x (2 * VW) tile held in 2 * RM vector
 * accumulators: on CPUs (pocl) that maps each accumulator onto one SIMD
 * register, with full-width FMAs and no spills. The rows are spelled out as
 * named variables (FOR_ROWS below), not private arrays: pocl's LLVM kept
 * arrays in memory and ran 3x slower. Rows >= RM are compile-time dead.
 *
 * B is packed once at clmoe_experts_create into panels of 2 * VW columns,
 * B_packed[e][panel][k][row of 2 * VW columns], zero-padded past N, so the
 * inner loop reads two aligned vectors per k at a short, fixed stride. For gated kinds a
 * panel holds VW columns of W1 followed by the same VW columns of W3, so the
 * epilogue computes act(x W1 + b1) * (x W3 + b3) without writing x [W1|W3]. */

/* Work units: a unit is up to `tiles_per_item` consecutive row tiles of
 * tile_rows rows of one expert (0: all of them), run by one work-item per
 * panel (gemm_grouped: tile_rows = GEMM_RM), so a weight panel stays in that
 * core's cache while the unit's tiles use it, or one tile per work-group
 * (gemm_grouped_local: GEMM_BM). Tiles never straddle two experts.
 * unit_offsets[e] = units of the experts before e; unit_offsets[E] = all
 * units, 0 after a failed route (then no GEMM work-item runs). One
 * work-item: E is at most 1024. */
kernel void gemm_tile_offsets(int E, int tile_rows, int tiles_per_item,
                              global const int *stats,
                              global const int *expert_offsets,
                              global int *unit_offsets) {
  if (get_global_id(0) != 0)
    return;
  int ok = cm_route_ok(stats), acc = 0;
  for (int e = 0; e < E; ++e) {
    unit_offsets[e] = acc;
    int rows = ok ? expert_offsets[e + 1] - expert_offsets[e] : 0;
    int tiles = (rows + tile_rows - 1) / tile_rows;
    acc += tiles_per_item ? (tiles + tiles_per_item - 1) / tiles_per_item
                          : tiles > 0;
  }
  unit_offsets[E] = acc;
}

inline floatV act_v(int kind, floatV v) {
  if (kind == ACT_RELU)
    return fmax(v, (floatV)(0.0f));
  if (kind == ACT_GELU || kind == ACT_GEGLU)
    return CM_GELU_TANH(v);
  if (kind == ACT_SILU || kind == ACT_SWIGLU)
    return CM_SILU(v);
  return v;
}

/* Stores the first n (<= VW) lanes of v at dst. */
inline void store_lanes(floatV v, global float *dst, int n) {
  if (n >= GEMM_VW) {
    vstoreV(v, 0, dst);
    return;
  }
  float lanes[GEMM_VW];
  vstoreV(v, 0, lanes);
  for (int i = 0; i < n; ++i)
    dst[i] = lanes[i];
}

/* One output row of a tile: bias added, epilogue applied, n_lo (and, not
 * gated, n_hi) valid columns stored. */
inline void store_row(floatV u, floatV v, int epi, int gated, float lim,
                      float alpha, global float *c, int n_lo, int n_hi) {
  if (epi == ACT_SWIGLU_OAI) {
    store_lanes(CM_SWIGLU_OAI(u, v, lim, alpha), c, n_lo);
  } else if (gated) {
    store_lanes(act_v(epi, u) * v, c, n_lo);
  } else {
    store_lanes(act_v(epi, u), c, n_lo);
    if (n_hi > 0)
      store_lanes(act_v(epi, v), c + GEMM_VW, n_hi);
  }
}

/* PREFETCH_NEXT: one software prefetch per k step into the panel the
 * work-item's core will read next (gemm_grouped says which), at pf_step bytes
 * per step. Only where the tuning entry sets PN=1 and the compiler has
 * __builtin_prefetch (clang-based CPU drivers such as pocl): the stream
 * prefetcher stops at page boundaries and a core's first pass over a fresh
 * panel otherwise waits on memory. A prefetch changes no result. */
#if defined(GEMM_PN) && defined(__has_builtin)
#if __has_builtin(__builtin_prefetch)
#define PREFETCH_NEXT                                                          \
  {                                                                            \
    __builtin_prefetch(pf);                                                    \
    pf += pf_step;                                                             \
  }
#endif
#endif
#ifndef PREFETCH_NEXT
#define PREFETCH_NEXT
#endif

// clang-format off
#define FOR_ROWS(X)                                                            \
  X(0) X(1) X(2) X(3) X(4) X(5) X(6) X(7) X(8) X(9) X(10) X(11) X(12) X(13)    \
  X(14) X(15)
// clang-format on

/* One panel of one expert: its packed weights, bias and output columns. */
typedef struct panel_out {
  const global wtype *b;
  floatV bias_lo, bias_hi;
  int col0, n_lo, n_hi;
  float lim, alpha;       /* SWIGLU_OAI's parameters */
  const global float *s; /* quantized: the panel's scales [groups][TN] */
} panel_out;

inline panel_out panel_at(int e, int panel, int num_panels, int K,
                          const global wtype *B, int has_bias,
                          const global float *bias, int gated, int n_out,
                          float lim, float alpha, const global float *scales,
                          int groups) {
  panel_out p;
  p.lim = lim;
  p.alpha = alpha;
  size_t at = (size_t)e * num_panels + panel;
  p.b = B + at * K * B_ROW;
  p.s = scales + at * groups * GEMM_TN;
  p.bias_lo = has_bias ? vloadV(0, bias + at * GEMM_TN) : (floatV)(0.0f);
  p.bias_hi = has_bias ? vloadV(1, bias + at * GEMM_TN) : (floatV)(0.0f);
  p.col0 = panel * (gated ? GEMM_VW : GEMM_TN);
  p.n_lo = min(GEMM_VW, n_out - p.col0);
  p.n_hi = min(GEMM_VW, n_out - p.col0 - GEMM_VW);
  return p;
}

/* One RM x 2VW tile of C: rows [row0, row0 + rows) (rows <= RM) against the
 * expert's panel b, bias added, epilogue applied. Rows past `rows` re-read
 * the last row and are not stored, so the inner loop has no branch. */
inline void gemm_tile(int K, int qgroup, const global float *A, panel_out p,
                      int row0, int rows, int epi, int gated, global float *C,
                      int ldc, const global char *pf, int pf_step) {
  const global wtype *b = p.b;
  const global float *a_base = A + (size_t)row0 * K;
  int last = rows - 1;
#define ROW_INIT(i)                                                            \
  const global float *a##i = a_base + (size_t)min(i, last) * K;                \
  floatV lo##i = (floatV)(0.0f), hi##i = (floatV)(0.0f);
  FOR_ROWS(ROW_INIT)
  /* The k loop for the first ROWS_LIMIT rows (a compile-time bound): small
   * tiles (decode: an expert's one or two rows) skip the dead rows' FMAs. */
#define ROW_FMA(i)                                                             \
  if (i < GEMM_RM && i < ROWS_LIMIT) {                                         \
    floatV av = (floatV)(*a##i++);                                             \
    lo##i = fma(av, b0, lo##i);                                                \
    hi##i = fma(av, b1, hi##i);                                                \
  }
/* Quantized weights: the k loop runs group by group, each with its
 * scales (QG = qgroup consecutive k). */
#ifdef GEMM_QUANT
#define K_LOOP                                                                 \
  for (int k0 = 0, g = 0; k0 < K; k0 += qgroup, ++g) {                         \
    floatV s_lo = vloadV(2 * g, p.s), s_hi = vloadV(2 * g + 1, p.s);           \
    for (int k = k0; k < min(K, k0 + qgroup); ++k) {                           \
      floatV b0, b1;                                                           \
      PREFETCH_NEXT;                                                           \
      LOAD_B(b, s_lo, s_hi, b0, b1);                                           \
      b += B_ROW;                                                              \
      FOR_ROWS(ROW_FMA)                                                        \
    }                                                                          \
  }
#else
#define K_LOOP                                                                 \
  for (int k = 0; k < K; ++k) {                                                \
    floatV b0, b1;                                                             \
    PREFETCH_NEXT;                                                             \
    LOAD_B(b, 0, 0, b0, b1);                                                   \
    b += GEMM_TN;                                                              \
    FOR_ROWS(ROW_FMA)                                                          \
  }
#endif
  if (rows <= 2) {
#define ROWS_LIMIT 2
    K_LOOP
#undef ROWS_LIMIT
  } else if (rows <= 4) {
#define ROWS_LIMIT 4
    K_LOOP
#undef ROWS_LIMIT
  } else {
#define ROWS_LIMIT 16
    K_LOOP
#undef ROWS_LIMIT
  }
#define ROW_STORE(i)                                                           \
  if (i < GEMM_RM && i < rows)                                                 \
    store_row(lo##i + p.bias_lo, hi##i + p.bias_hi, epi, gated, p.lim,         \
              p.alpha, C + (size_t)(row0 + i) * ldc + p.col0, p.n_lo, p.n_hi);
  FOR_ROWS(ROW_STORE)
}

/* Two panels p and q of a tile of at most 4 rows at once: twice the
 * independent FMA chains for small (decode) tiles, whose single-panel loop
 * waits on FMA latency, and each output element still sums in k order, so
 * results equal gemm_tile's bit for bit. */
inline void gemm_tile_pair(int K, int qgroup, const global float *A,
                           panel_out p, panel_out q, int row0, int rows,
                           int epi, int gated, global float *C, int ldc,
                           const global char *pf, int pf_step) {
  const global wtype *bp = p.b, *bq = q.b;
  const global float *a_base = A + (size_t)row0 * K;
  int last = rows - 1;
#define FOR_ROWS4(X) X(0) X(1) X(2) X(3)
#define PAIR_INIT(i)                                                           \
  const global float *a##i = a_base + (size_t)min(i, last) * K;                \
  floatV plo##i = (floatV)(0.0f), phi##i = (floatV)(0.0f),                     \
         qlo##i = (floatV)(0.0f), qhi##i = (floatV)(0.0f);
  FOR_ROWS4(PAIR_INIT)
#define PAIR_FMA(i)                                                            \
  if (i < GEMM_RM && i < ROWS_LIMIT) {                                         \
    floatV av = (floatV)(*a##i++);                                             \
    plo##i = fma(av, p0, plo##i);                                              \
    phi##i = fma(av, p1, phi##i);                                              \
    qlo##i = fma(av, q0, qlo##i);                                              \
    qhi##i = fma(av, q1, qhi##i);                                              \
  }
#ifdef GEMM_QUANT
#define PAIR_LOOP                                                              \
  for (int k0 = 0, g = 0; k0 < K; k0 += qgroup, ++g) {                         \
    floatV ps_lo = vloadV(2 * g, p.s), ps_hi = vloadV(2 * g + 1, p.s);         \
    floatV qs_lo = vloadV(2 * g, q.s), qs_hi = vloadV(2 * g + 1, q.s);         \
    for (int k = k0; k < min(K, k0 + qgroup); ++k) {                           \
      floatV p0, p1, q0, q1;                                                   \
      PREFETCH_NEXT;                                                           \
      LOAD_B(bp, ps_lo, ps_hi, p0, p1);                                        \
      LOAD_B(bq, qs_lo, qs_hi, q0, q1);                                        \
      bp += B_ROW;                                                             \
      bq += B_ROW;                                                             \
      FOR_ROWS4(PAIR_FMA)                                                      \
    }                                                                          \
  }
#else
#define PAIR_LOOP                                                              \
  for (int k = 0; k < K; ++k) {                                                \
    floatV p0, p1, q0, q1;                                                     \
    PREFETCH_NEXT;                                                             \
    LOAD_B(bp, 0, 0, p0, p1);                                                  \
    LOAD_B(bq, 0, 0, q0, q1);                                                  \
    bp += GEMM_TN;                                                             \
    bq += GEMM_TN;                                                             \
    FOR_ROWS4(PAIR_FMA)                                                        \
  }
#endif
  if (rows <= 2) {
#define ROWS_LIMIT 2
    PAIR_LOOP
#undef ROWS_LIMIT
  } else {
#define ROWS_LIMIT 4
    PAIR_LOOP
#undef ROWS_LIMIT
  }
#define PAIR_STORE(i)                                                          \
  if (i < GEMM_RM && i < rows) {                                               \
    global float *c_ = C + (size_t)(row0 + i) * ldc;                           \
    store_row(plo##i + p.bias_lo, phi##i + p.bias_hi, epi, gated, p.lim,       \
              p.alpha, c_ + p.col0, p.n_lo, p.n_hi);                           \
    store_row(qlo##i + q.bias_lo, qhi##i + q.bias_hi, epi, gated, q.lim,       \
              q.alpha, c_ + q.col0, q.n_lo, q.n_hi);                           \
  }
  FOR_ROWS4(PAIR_STORE)
}

/* Global size (units, ceil(panels / 2)): a work-item runs a pair of panels;
 * units is an upper bound (ceil(N / RM) + E);
 * surplus work-items return at once. Work order (tiles_per_item, the
 * table's TC): TC = 0 runs all of an expert's tiles against one panel, then
 * the other (panel-major; experts of up to 4 rows keep the two-panel loop);
 * TC > 0 runs up to TC tiles, each against both panels. Every output
 * element sums the same products in the same order either way, so the
 * results are the same bits. epi selects the epilogue: EPI_NONE
 * (plain, + bias when has_bias), an activation of both halves, or a gated
 * pair. bias is packed like B's panels ([E][panels][2 * VW]). ldc is C's
 * row stride; n_out the number of valid output columns (f for gated, else
 * N); act_limit and act_alpha parametrise SWIGLU_OAI; scales and qgroup
 * are a quantized B's (cl/weight_formats.cl; unused otherwise). */
kernel void gemm_grouped(int E, int K, int num_panels, int tiles_per_item,
                         global const int *expert_offsets,
                         global const int *unit_offsets, global const float *A,
                         global const wtype *B, int epi, int has_bias,
                         global const float *bias, global float *C, int ldc,
                         int n_out, float act_limit, float act_alpha,
                         global const float *scales, int qgroup) {
  int unit = get_global_id(0), panel = 2 * (int)get_global_id(1);
  if (unit >= unit_offsets[E] || panel >= num_panels)
    return;
  /* The last expert whose first unit is <= unit: empty experts own none. */
  int e = cm_segment_of(unit_offsets, E, unit);
  int r0 = expert_offsets[e], r1 = expert_offsets[e + 1];
  int tiles = (r1 - r0 + GEMM_RM - 1) / GEMM_RM;
  int first = tiles_per_item ? (unit - unit_offsets[e]) * tiles_per_item : 0;
  int end = tiles_per_item ? min(tiles, first + tiles_per_item) : tiles;
  int gated = epi == ACT_SWIGLU || epi == ACT_GEGLU || epi == ACT_SWIGLU_OAI;
  int two = panel + 1 < num_panels;
  int groups = (K + qgroup - 1) / qgroup;
  panel_out p = panel_at(e, panel, num_panels, K, B, has_bias, bias, gated,
                         n_out, act_limit, act_alpha, scales, groups);
  panel_out q = panel_at(e, two ? panel + 1 : panel, num_panels, K, B, has_bias,
                         bias, gated, n_out, act_limit, act_alpha, scales,
                         groups);
  /* What the unit warms (PREFETCH_NEXT): the same panels of the next
   * expert, which pocl's work-group order hands to the same core next. */
  const global char *next =
      (const global char *)(B +
                            ((size_t)min(e + 1, E - 1) * num_panels + panel) *
                                K * B_ROW);
  long panel_bytes = (long)K * B_ROW * sizeof(wtype);
  if (!tiles_per_item && two && r1 - r0 > 4) {
    /* Panel-major: all the expert's tiles against p, then against q, so
     * only one panel and the expert's rows need to stay in cache; q is
     * warmed while p is used, the next expert's p while q is. */
    int step = (int)min(64L, panel_bytes / ((long)tiles * K));
    for (int side = 0; side < 2; ++side) {
      panel_out cur = side ? q : p;
      const global char *pf = side ? next : (const global char *)q.b;
      for (int t = 0; t < tiles; ++t) {
        int row0 = r0 + t * GEMM_RM, rows = min(GEMM_RM, r1 - row0);
        gemm_tile(K, qgroup, A, cur, row0, rows, epi, gated, C, ldc, pf,
                  step);
        pf += (long)step * K;
      }
    }
    return;
  }
  /* Tile-major: each tile against both panels; the unit warms its share
   * (its tiles' fraction) of the next expert's two panels. */
  long region = (two ? 2 : 1) * panel_bytes;
  int ntiles = max(tiles, 1);
  const global char *pf = next + region * first / ntiles;
  for (int t = first; t < end; ++t) {
    int row0 = r0 + t * GEMM_RM, rows = min(GEMM_RM, r1 - row0);
    int calls = two && rows > 4 ? 2 : 1;
    int step = (int)min(64L, region / ntiles / ((long)calls * K));
    if (two && rows <= 4) {
      gemm_tile_pair(K, qgroup, A, p, q, row0, rows, epi, gated, C, ldc, pf,
                     step);
    } else {
      gemm_tile(K, qgroup, A, p, row0, rows, epi, gated, C, ldc, pf, step);
      if (two)
        gemm_tile(K, qgroup, A, q, row0, rows, epi, gated, C, ldc,
                  pf + (long)step * K, step);
    }
    pf += (long)step * K * calls;
  }
}
