/* Expert FFN helpers around the GEMMs: gather into expert-major rows, the
 * (gated) activation with biases, and the deterministic combine. */

/* Columns per work-item of the row copies below: one 16-wide vector load and
 * store per chunk (the tail scalar) instead of one work-item per element,
 * which left pocl at a few GB/s. */
#define CM_ROW_CHUNK 16

/* x_sorted[row, :] = x[row_tokens[row], :]; global (ceil(d / CM_ROW_CHUNK),
 * rows) with rows >= N (N is read from the route's stats; nothing runs after
 * a failed route). */
kernel void dispatch_rows(int d, global const int *stats,
                          global const int *row_tokens,
                          global const float *x, global float *x_sorted) {
  int c = get_global_id(0) * CM_ROW_CHUNK, row = get_global_id(1);
  if (c >= d || row >= stats[ST_N] || !cm_route_ok(stats))
    return;
  global const float *src = x + (size_t)row_tokens[row] * d + c;
  global float *dst = x_sorted + (size_t)row * d + c;
  if (c + CM_ROW_CHUNK <= d) {
    vstore16(vload16(0, src), 0, dst);
    return;
  }
  for (int i = 0; i < d - c; ++i)
    dst[i] = src[i];
}

/* act[row, j] from h[row, :] (width F = f, or 2f for gated kinds where
 * h = [gate | up]); biases b1[E, f] and b3[E, f] are optional. Global
 * (f, N). */
kernel void expert_activation(int N, int E, int f, int kind,
                              global const int *expert_offsets,
                              global const float *h, int has_b1,
                              global const float *b1, int has_b3,
                              global const float *b3, global float *act) {
  int j = get_global_id(0), row = get_global_id(1);
  if (j >= f || row >= N)
    return;
  int gated = kind == ACT_SWIGLU || kind == ACT_GEGLU;
  int F = gated ? 2 * f : f;
  int e = (has_b1 || has_b3) ? cm_segment_of(expert_offsets, E, row) : 0;
  float g = h[(size_t)row * F + j] + (has_b1 ? b1[(size_t)e * f + j] : 0.0f);
  float out;
  if (kind == ACT_RELU)
    out = fmax(g, 0.0f);
  else if (kind == ACT_GELU || kind == ACT_GEGLU)
    out = CM_GELU_TANH(g);
  else
    out = CM_SILU(g);
  if (gated)
    out *= h[(size_t)row * F + f + j] + (has_b3 ? b3[(size_t)e * f + j] : 0.0f);
  act[(size_t)row * f + j] = out;
}

/* y_sorted[row, :] += b2[expert(row), :]; global (d, N). */
kernel void expert_add_bias(int N, int E, int d,
                            global const int *expert_offsets,
                            global const float *b2, global float *y_sorted) {
  int c = get_global_id(0), row = get_global_id(1);
  if (c >= d || row >= N)
    return;
  int e = cm_segment_of(expert_offsets, E, row);
  y_sorted[(size_t)row * d + c] += b2[(size_t)e * d + c];
}

/* y[t, c] (+)= sum over the token's slots, in slot order, of
 * gate * y_sorted[slot_rows[slot], c]: a gather, no atomics. Global
 * (ceil(d / CM_ROW_CHUNK), T);
 * y is left untouched after a failed route. */
kernel void combine_rows(int T, int d, global const int *stats,
                         global const int *token_offsets,
                         global const int *slot_rows,
                         global const float *gates,
                         global const float *y_sorted, int accumulate,
                         global float *y) {
  int c = get_global_id(0) * CM_ROW_CHUNK, t = get_global_id(1);
  if (c >= d || t >= T || !cm_route_ok(stats))
    return;
  global float *out = y + (size_t)t * d + c;
  int s0 = token_offsets[t], s1 = token_offsets[t + 1];
  if (c + CM_ROW_CHUNK <= d) {
    float16 acc = accumulate ? vload16(0, out) : (float16)(0.0f);
    for (int s = s0; s < s1; ++s)
      acc = fma((float16)(gates[s]),
                vload16(0, y_sorted + (size_t)slot_rows[s] * d + c), acc);
    vstore16(acc, 0, out);
    return;
  }
  for (int i = 0; i < d - c; ++i) {
    float acc = accumulate ? out[i] : 0.0f;
    for (int s = s0; s < s1; ++s)
      acc = fma(gates[s], y_sorted[(size_t)slot_rows[s] * d + c + i], acc);
    out[i] = acc;
  }
}
