/* The expert stage's training kernels (src/train/expert_grads.c): the
 * forward that keeps pre-activations, the activation's derivative, the
 * per-expert weight reductions, the gates' gradients and the input gradient.
 * Every sum runs in one work-item in a fixed order (no atomics on floats),
 * so gradients are the same bits on every run and thread count. */

/* The pre-activation matrix A holds, per row, the gate columns (x W1 + b1)
 * and, for gated kinds, the up columns (x W3 + b3) in blocks: logical column
 * j of the gate half sits at (j / blk) * bstride + j % blk, its up partner
 * blk further. The grouped path's panels give blk = VW, bstride = 2 VW; the
 * CLBlast path's [gate | up] rows give blk = f, bstride = 2 f. */
inline size_t a_col(int j, int blk, int bstride) {
  return (size_t)(j / blk) * bstride + j % blk;
}

inline int is_gated(int kind) {
  return kind == ACT_SWIGLU || kind == ACT_GEGLU || kind == ACT_SWIGLU_OAI;
}

inline float act1(int kind, float v) {
  if (kind == ACT_RELU)
    return fmax(v, 0.0f);
  if (kind == ACT_GELU || kind == ACT_GEGLU)
    return CM_GELU_TANH(v);
  return CM_SILU(v);
}

/* d act1 / dv, from the same formulas. */
inline float act1_grad(int kind, float v) {
  if (kind == ACT_RELU)
    return v > 0.0f ? 1.0f : 0.0f;
  if (kind == ACT_GELU || kind == ACT_GEGLU) {
    const float c = 0.7978845608028654f;
    float th = tanh(c * (v + 0.044715f * v * v * v));
    return 0.5f * (1.0f + th) +
           0.5f * v * (1.0f - th * th) * c * (1.0f + 3.0f * 0.044715f * v * v);
  }
  float s = 1.0f / (1.0f + exp(-v));
  return s * (1.0f + v * (1.0f - s));
}

/* h[r, j] = act(A[r, :]) for j < f. With biases (the CLBlast path, whose
 * GEMM adds none), b1 / b3 [E, f] are first added into A in place. Global
 * (f, N). */
kernel void train_act_forward(int N, int E, int f, int kind, float lim,
                              float alpha, global float *A, int lda, int blk,
                              int bstride, global const int *expert_offsets,
                              int has_b1, global const float *b1, int has_b3,
                              global const float *b3, global float *h) {
  int j = get_global_id(0), r = get_global_id(1);
  if (j >= f || r >= N)
    return;
  int gated = is_gated(kind);
  size_t at = (size_t)r * lda + a_col(j, blk, bstride);
  int e = (has_b1 || has_b3) ? cm_segment_of(expert_offsets, E, r) : 0;
  float g = A[at], u = gated ? A[at + blk] : 0.0f;
  if (has_b1) {
    g += b1[(size_t)e * f + j];
    A[at] = g;
  }
  if (gated && has_b3) {
    u += b3[(size_t)e * f + j];
    A[at + blk] = u;
  }
  float out;
  if (kind == ACT_SWIGLU_OAI)
    out = CM_SWIGLU_OAI(g, u, lim, alpha);
  else if (gated)
    out = act1(kind, g) * u;
  else
    out = act1(kind, g);
  h[(size_t)r * f + j] = out;
}

/* dA = act'(A) * dh, in A's layout; the columns A pads with (j in
 * [f, fpad) of the blocks) get 0 so that a product over all of dA's
 * columns reads no garbage. Global (fpad, N). */
kernel void train_act_backward(int N, int f, int fpad, int kind, float lim,
                               float alpha, global const float *A, int lda,
                               int blk, int bstride, global const float *dh,
                               global float *dA) {
  int j = get_global_id(0), r = get_global_id(1);
  if (j >= fpad || r >= N)
    return;
  int gated = is_gated(kind);
  size_t at = (size_t)r * lda + a_col(j, blk, bstride);
  if (j >= f) {
    dA[at] = 0.0f;
    if (gated)
      dA[at + blk] = 0.0f;
    return;
  }
  float g = A[at], dy = dh[(size_t)r * f + j];
  if (!gated) {
    dA[at] = dy * act1_grad(kind, g);
    return;
  }
  float u = A[at + blk], dg, du;
  if (kind == ACT_SWIGLU_OAI) {
    /* min / clamp pass the gradient where the input is inside the range,
     * limits included (as torch.clamp). */
    float gc = min(g, lim), uc = clamp(u, -lim, lim);
    float s = 1.0f / (1.0f + exp(-alpha * gc));
    float glu = gc * s;
    dg = g <= lim ? dy * (uc + 1.0f) * (s + alpha * glu * (1.0f - s)) : 0.0f;
    du = (u >= -lim && u <= lim) ? dy * glu : 0.0f;
  } else {
    dg = dy * u * act1_grad(kind, g);
    du = dy * act1(kind, g);
  }
  dA[at] = dg;
  dA[at + blk] = du;
}

/* src [N, ld] row-major in 16-column panels: dst[(b * N + r) * 16 + l] =
 * src[r * ld + b * 16 + l], 0 past ncols. The weight reduction then reads
 * each operand as one sequential stream per panel instead of one cache
 * line (and page) per row. Global (ceil(ncols / 16), N). */
kernel void train_pack_panels16(int N, int ncols, global const float *src,
                                int ld, global float *dst) {
  int b = get_global_id(0), r = get_global_id(1);
  if (b * 16 >= ncols || r >= N)
    return;
  const global float *from = src + (size_t)r * ld + b * 16;
  global float *to = dst + ((size_t)b * N + r) * 16;
  int n = min(16, ncols - b * 16);
  if (n == 16) {
    vstore16(vload16(0, from), 0, to);
    return;
  }
  for (int l = 0; l < 16; ++l)
    to[l] = l < n ? from[l] : 0.0f;
}

/* Per group e of rows (offsets), the reduction X^T D over the group's rows
 * in ascending order: S[e][k][c] = sum_r X[r, k] * D[r, c] for k < K and
 * D's columns c < ncols, X and D given as 16-column panels of N rows
 * (train_pack_panels16; X NULL-like with K = 1 and xones: X = 1, the
 * column sums of the bias gradients). Each S column c is stored at
 * column j of G0 or G1 (which) by the inverse of A's block map: p = c /
 * bstride, q = c % bstride, which = q / blk, j = p * blk + q % blk; j >=
 * nout (padding) is dropped. So the gate and up halves of the
 * pre-activation gradient go to dW1 and dW3 in one pass; a plain D is
 * blk = bstride = ncols. G (+)= S, [E][K][nout]; an absent G's columns
 * (has_g0 / has_g1 = 0) are dropped. A work-item owns 16 k and 16 c: per
 * row one vector of each panel and 16 vector FMAs. Global
 * (ceil(ncols / 16), ceil(K / 16), E). */
kernel void train_weight_grad(int N, int K, int ncols,
                              global const int *offsets,
                              global const float *Xp, int xones,
                              global const float *Dp, int blk, int bstride,
                              int nout, int has_g0, global float *G0,
                              int has_g1, global float *G1, int accumulate) {
  int cb = get_global_id(0), kb = get_global_id(1), e = get_global_id(2);
  int c0 = cb * 16, k0 = kb * 16;
  if (c0 >= ncols || k0 >= K)
    return;
  /* Named accumulators (not an array: kept in registers). */
  float16 a0 = 0.0f, a1 = 0.0f, a2 = 0.0f, a3 = 0.0f, a4 = 0.0f, a5 = 0.0f,
          a6 = 0.0f, a7 = 0.0f, a8 = 0.0f, a9 = 0.0f, a10 = 0.0f, a11 = 0.0f,
          a12 = 0.0f, a13 = 0.0f, a14 = 0.0f, a15 = 0.0f;
  int kn = min(16, K - k0), cn = min(16, ncols - c0);
  int r0 = offsets[e], r1 = offsets[e + 1];
  const global float *d = Dp + ((size_t)cb * N + r0) * 16;
  const global float *x = Xp + ((size_t)kb * N + r0) * 16;
#define TRAIN_ACC(i, lane) a##i = fma((float16)(xv.lane), dv, a##i);
  if (xones) {
    for (int r = r0; r < r1; ++r, d += 16)
      a0 += vload16(0, d);
  } else {
    for (int r = r0; r < r1; ++r, d += 16, x += 16) {
      float16 dv = vload16(0, d), xv = vload16(0, x);
      TRAIN_ACC(0, s0) TRAIN_ACC(1, s1) TRAIN_ACC(2, s2) TRAIN_ACC(3, s3)
      TRAIN_ACC(4, s4) TRAIN_ACC(5, s5) TRAIN_ACC(6, s6) TRAIN_ACC(7, s7)
      TRAIN_ACC(8, s8) TRAIN_ACC(9, s9) TRAIN_ACC(10, sa) TRAIN_ACC(11, sb)
      TRAIN_ACC(12, sc) TRAIN_ACC(13, sd) TRAIN_ACC(14, se) TRAIN_ACC(15, sf)
    }
  }
#undef TRAIN_ACC
  float16 acc[16] = {a0, a1, a2,  a3,  a4,  a5,  a6,  a7,
                     a8, a9, a10, a11, a12, a13, a14, a15};
  /* Each lane's destination, once per work-item (divisions are slow). */
  int col[16];
  for (int l = 0; l < 16; ++l) {
    int c = c0 + l, q = c % bstride, which = q / blk;
    int jj = (c / bstride) * blk + q % blk;
    int keep = l < cn && jj < nout && (which ? has_g1 : has_g0);
    col[l] = keep ? (which ? -1 - jj : jj) : INT_MIN; /* < 0: in G1 */
  }
  /* Usually the 16 lanes land on 16 consecutive columns of one G: then
   * vector stores. */
  int run = col[0] != INT_MIN;
  for (int l = 1; l < 16; ++l)
    run &= col[l] == col[0] + (col[0] >= 0 ? l : -l);
  if (run) {
    global float *g = col[0] >= 0 ? G0 + col[0] : G1 - 1 - col[0];
    for (int i = 0; i < kn; ++i) {
      global float *at = g + ((size_t)e * K + k0 + i) * nout;
      vstore16(accumulate ? vload16(0, at) + acc[i] : acc[i], 0, at);
    }
    return;
  }
  for (int i = 0; i < kn; ++i) {
    float lanes[16];
    vstore16(acc[i], 0, lanes);
    size_t row = ((size_t)e * K + k0 + i) * nout;
    for (int l = 0; l < cn; ++l) {
      if (col[l] == INT_MIN)
        continue;
      global float *g = col[l] >= 0 ? G0 + row + col[l] : G1 + row - 1 - col[l];
      *g = accumulate ? *g + lanes[l] : lanes[l];
    }
  }
}

/* dg[slot of row r] = U[token of r, :] . V[r, :] (U in dtype u_dt: dy for
 * output-side gates, x for input-side ones; V float32: the expert outputs,
 * or the gradient of the scaled inputs). Sequential in c. Global (N). */
kernel void train_gate_grads(int N, int d, global const int *row_tokens,
                             global const int *token_offsets,
                             global const int *slot_rows,
                             global const uchar *U, int u_dt,
                             global const float *V, global float *dg) {
  int r = get_global_id(0);
  if (r >= N)
    return;
  int t = row_tokens[r];
  float acc = 0.0f;
  for (int c = 0; c < d; ++c)
    acc = fma(cm_load1(U, u_dt, (size_t)t * d + c), V[(size_t)r * d + c], acc);
  for (int s = token_offsets[t]; s < token_offsets[t + 1]; ++s)
    if (slot_rows[s] == r)
      dg[s] = acc;
}

/* Shared experts (every token, weight g_t): dO[t, :] = g_t * dy[t, :] and
 * dg[t] = dy[t, :] . O[t, :], times g_t (1 - g_t) when the weight is the
 * sigmoid gate (has_gate; the gradient of its logit). Global (T). */
kernel void train_shared_rows(int T, int d, global const uchar *dy, int dy_dt,
                              global const float *gates, int has_gate,
                              global const float *O, global float *dO,
                              global float *dg) {
  int t = get_global_id(0);
  if (t >= T)
    return;
  float g = gates[t], acc = 0.0f;
  for (int c = 0; c < d; ++c) {
    size_t at = (size_t)t * d + c;
    float v = cm_load1(dy, dy_dt, at);
    dO[at] = g * v;
    acc = fma(v, O[at], acc);
  }
  dg[t] = has_gate ? acc * g * (1.0f - g) : acc;
}

/* dx[t, c] = (accumulate ? dx : 0) + (sum over t's slots j in slot order of
 * w_j * dxs[slot_rows[j], c] (w_j = the gate for input-side gates, else 1)
 * + sum over e of dz[t, e] * Wr[c, e] (the router's share, when has_router)
 * + shared[t, c] + dgate[t] * sgate[c] (shared experts and their gate's
 * logit, when has_shared / has_sgate)). float32 sums, dx rounded once into
 * its dtype. Global (d, T). */
kernel void train_input_grad(int T, int d, int E,
                             global const int *token_offsets,
                             global const int *slot_rows,
                             global const float *gates, int gate_input,
                             global const float *dxs, int has_router,
                             global const float *dz, global const float *Wr,
                             int has_shared, global const float *shared,
                             int has_sgate, global const float *dgate,
                             global const float *sgate, global uchar *dx,
                             int dx_dt, int accumulate) {
  int c = get_global_id(0), t = get_global_id(1);
  if (c >= d || t >= T)
    return;
  size_t at = (size_t)t * d + c;
  float acc = 0.0f;
  for (int s = token_offsets[t]; s < token_offsets[t + 1]; ++s) {
    float v = dxs[(size_t)slot_rows[s] * d + c];
    acc += gate_input ? gates[s] * v : v;
  }
  if (has_router) {
    float r = 0.0f;
    for (int e = 0; e < E; ++e)
      r = fma(dz[(size_t)t * E + e], Wr[(size_t)c * E + e], r);
    acc += r;
  }
  if (has_shared)
    acc += shared[at];
  if (has_sgate)
    acc += dgate[t] * sgate[c];
  /* The gradient is summed first and then added: dx + g, one rounding. */
  cm_store1(accumulate ? cm_load1(dx, dx_dt, at) + acc : acc, dx, dx_dt, at);
}

/* bad[0] = the lowest index of a NaN or Inf among n elements of p (stays
 * INT_MAX when there is none). Global (n). */
kernel void train_find_nonfinite(int n, global const uchar *p, int dt,
                                 global int *bad) {
  int i = get_global_id(0);
  if (i < n && !isfinite(cm_load1(p, dt, (size_t)i)))
    atomic_min(bad, i);
}

/* Transposes packed weight panels for the backward's products: the source
 * holds E matrices of Ks rows in Ps panels of TN = 2 VW columns
 * ([E][Ps][Ks][TN], cl/grouped_gemm.cl), the destination their transposes,
 * Kt rows (the source's packed columns) in Pt panels ([E][Pt][Kt][TN]);
 * destination columns past Ks are 0. `il`: bfloat16 rows interleave their
 * two halves (element 2i is column i, 2i + 1 is column VW + i). Elements are
 * moved as bits (32- or 16-bit), never converted. A work-item moves one
 * TN x TN block (TN contiguous source runs into TN destination rows, all
 * in L1). Global (Pt, ceil(Kt / TN), E). */
inline size_t in_row(int c, int vw, int il) {
  return il ? (c < vw ? 2 * c : 2 * (c - vw) + 1) : c;
}

#define TRAIN_TRANSPOSE(name, type)                                            \
  kernel void name(int Ks, int Ps, int Kt, int Pt, int vw, int il,             \
                   global const type *src, global type *dst) {                 \
    int p = get_global_id(0), k0 = get_global_id(1) * 2 * vw,                 \
        e = get_global_id(2), tn = 2 * vw;                                     \
    if (p >= Pt || k0 >= Kt)                                                   \
      return;                                                                  \
    int kn = min(tn, Kt - k0);                                                 \
    const global type *from = src + ((size_t)e * Ps + k0 / tn) * Ks * tn;      \
    global type *to = dst + (((size_t)e * Pt + p) * Kt + k0) * tn;             \
    for (int c = 0; c < tn; ++c) {                                             \
      int n = p * tn + c; /* the source row */                                 \
      size_t at = in_row(c, vw, il);                                           \
      for (int kk = 0; kk < kn; ++kk)                                          \
        to[(size_t)kk * tn + at] =                                             \
            n < Ks ? from[(size_t)n * tn + in_row(kk, vw, il)] : (type)0;      \
    }                                                                          \
  }
TRAIN_TRANSPOSE(train_transpose_panels32, uint)
TRAIN_TRANSPOSE(train_transpose_panels16, ushort)
