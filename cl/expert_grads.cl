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

/* Per expert e, G[e][k][n] (+)= sum over its rows r, ascending, of
 * X[r * ldx + k] * D[r * ldd + col(n)], col(n) = (n / blk) * bstride +
 * n % blk + off: X^T D over the expert's rows, read through the column map
 * that picks the gate or up half of A. ldx = 0 with X = {1} makes it a
 * column sum (bias gradients). A work-item owns one n and TRAIN_KT
 * consecutive k. Global (ncols, ceil(K / TRAIN_KT), E). */
#define TRAIN_KT 8
kernel void train_weight_grad(int K, int ncols, global const int *offsets,
                              global const float *X, int ldx,
                              global const float *D, int ldd, int blk,
                              int bstride, int off, global float *G,
                              int accumulate) {
  int n = get_global_id(0), k0 = get_global_id(1) * TRAIN_KT,
      e = get_global_id(2);
  if (n >= ncols || k0 >= K)
    return;
  float acc[TRAIN_KT];
  for (int i = 0; i < TRAIN_KT; ++i)
    acc[i] = 0.0f;
  size_t col = (size_t)(n / blk) * bstride + n % blk + off;
  int kn = min(TRAIN_KT, K - k0);
  for (int r = offsets[e]; r < offsets[e + 1]; ++r) {
    float dv = D[(size_t)r * ldd + col];
    const global float *x = X + (size_t)r * ldx + k0;
    if (kn == TRAIN_KT)
      for (int i = 0; i < TRAIN_KT; ++i)
        acc[i] = fma(x[i], dv, acc[i]);
    else
      for (int i = 0; i < kn; ++i)
        acc[i] = fma(x[i], dv, acc[i]);
  }
  global float *g = G + ((size_t)e * K + k0) * ncols + n;
  for (int i = 0; i < kn; ++i)
    g[(size_t)i * ncols] = accumulate ? g[(size_t)i * ncols] + acc[i] : acc[i];
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
 * moved as bits (32- or 16-bit), never converted. Global (TN, Kt, E * Pt). */
inline size_t in_row(int c, int vw, int il) {
  return il ? (c < vw ? 2 * c : 2 * (c - vw) + 1) : c;
}

#define TRAIN_TRANSPOSE(name, type)                                            \
  kernel void name(int Ks, int Ps, int Kt, int Pt, int vw, int il,             \
                   global const type *src, global type *dst) {                 \
    int c = get_global_id(0), k = get_global_id(1), ep = get_global_id(2);     \
    int tn = 2 * vw;                                                           \
    if (c >= tn || k >= Kt)                                                    \
      return;                                                                  \
    int e = ep / Pt, p = ep % Pt, n = p * tn + c; /* column of the result */   \
    type v = 0;                                                                \
    if (n < Ks)                                                                \
      v = src[(((size_t)e * Ps + k / tn) * Ks + n) * tn + in_row(k % tn, vw, il)]; \
    dst[(((size_t)e * Pt + p) * Kt + k) * tn + in_row(c, vw, il)] = v;         \
  }
TRAIN_TRANSPOSE(train_transpose_panels32, uint)
TRAIN_TRANSPOSE(train_transpose_panels16, ushort)
