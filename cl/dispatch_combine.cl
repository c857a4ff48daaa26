/* Dispatch (gather token rows into expert-major order) and the
 * deterministic combine. Both copy CM_ROW_CHUNK (= 16, -D) columns per
 * work-item with one vector load and store (the tail scalar) instead of one
 * work-item per element, which left pocl at a few GB/s. */

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
