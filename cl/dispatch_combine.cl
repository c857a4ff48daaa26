/* Dispatch (gather token rows into expert-major order), the deterministic
 * combine, and dtype conversion of rows. They copy CM_ROW_CHUNK (= 16, -D) columns per
 * work-item with one vector load and store (the tail scalar) instead of one
 * work-item per element, which left pocl at a few GB/s. */

/* The gate of the slot that fills x_sorted's `row` (input-side gates):
 * found among its token's few slots. */
inline float row_gate(int row, int t, global const int *token_offsets,
                      global const int *slot_rows, global const float *gates) {
  for (int s = token_offsets[t]; s < token_offsets[t + 1]; ++s)
    if (slot_rows[s] == row)
      return gates[s];
  return 0.0f; /* not reached for a completed route */
}

/* x_sorted[row, :] = x[row_tokens[row], :], each in its dtype (DT_*:
 * converted on the way), times the row's gate when gate_input (computed in
 * float32, rounded once); global (ceil(d / CM_ROW_CHUNK), rows) with
 * rows >= N (N is read from the route's stats; nothing runs after a failed
 * route). */
kernel void dispatch_rows(int d, global const int *stats,
                          global const int *row_tokens,
                          global const uchar *x, int x_dt,
                          global uchar *x_sorted, int xs_dt, int gate_input,
                          global const int *token_offsets,
                          global const int *slot_rows,
                          global const float *gates) {
  int c = get_global_id(0) * CM_ROW_CHUNK, row = get_global_id(1);
  if (c >= d || row >= stats[ST_N] || !cm_route_ok(stats))
    return;
  int t = row_tokens[row];
  float g = gate_input ? row_gate(row, t, token_offsets, slot_rows, gates)
                       : 1.0f;
  size_t src = (size_t)t * d + c, dst = (size_t)row * d + c;
  if (c + CM_ROW_CHUNK <= d) {
    float16 v = cm_load16(x, x_dt, src);
    cm_store16(gate_input ? v * g : v, x_sorted, xs_dt, dst);
    return;
  }
  for (int i = 0; i < d - c; ++i) {
    float v = cm_load1(x, x_dt, src + i);
    cm_store1(gate_input ? v * g : v, x_sorted, xs_dt, dst + i);
  }
}

/* y[t, c] (+)= sum over the token's slots, in slot order, of
 * gate * y_sorted[slot_rows[slot], c] (gate 1 when gate_input: the gates
 * scaled the inputs), then (has_shared) plus
 * shared_gate[t] * shared[t, c]: a gather, no atomics, accumulated in
 * float32 in that fixed order and rounded once into y's dtype. Global
 * (ceil(d / CM_ROW_CHUNK), T); y is left untouched after a failed route. */
kernel void combine_rows(int T, int d, global const int *stats,
                         global const int *token_offsets,
                         global const int *slot_rows,
                         global const float *gates,
                         global const uchar *y_sorted, int ys_dt,
                         int accumulate, global uchar *y, int y_dt,
                         int has_shared, global const float *shared_gate,
                         global const float *shared, int gate_input) {
  int c = get_global_id(0) * CM_ROW_CHUNK, t = get_global_id(1);
  if (c >= d || t >= T || !cm_route_ok(stats))
    return;
  size_t out = (size_t)t * d + c;
  int s0 = token_offsets[t], s1 = token_offsets[t + 1];
  if (c + CM_ROW_CHUNK <= d) {
    float16 acc = accumulate ? cm_load16(y, y_dt, out) : (float16)(0.0f);
    for (int s = s0; s < s1; ++s)
      acc = fma((float16)(gate_input ? 1.0f : gates[s]),
                cm_load16(y_sorted, ys_dt, (size_t)slot_rows[s] * d + c),
                acc);
    if (has_shared)
      acc = fma((float16)(shared_gate[t]), vload16(0, shared + out), acc);
    cm_store16(acc, y, y_dt, out);
    return;
  }
  for (int i = 0; i < d - c; ++i) {
    float acc = accumulate ? cm_load1(y, y_dt, out + i) : 0.0f;
    for (int s = s0; s < s1; ++s)
      acc = fma(gate_input ? 1.0f : gates[s],
                cm_load1(y_sorted, ys_dt, (size_t)slot_rows[s] * d + c + i),
                acc);
    if (has_shared)
      acc = fma(shared_gate[t], shared[out + i], acc);
    cm_store1(acc, y, y_dt, out + i);
  }
}

/* The shared experts' weight per token: sigmoid(x[t] . w) (dot product in
 * index order, float32), or 1 without a gate. Global (T). */
kernel void shared_gate_values(int T, int d, global const uchar *x, int x_dt,
                               int has_gate, global const float *w,
                               global float *out) {
  int t = get_global_id(0);
  if (t >= T)
    return;
  if (!has_gate) {
    out[t] = 1.0f;
    return;
  }
  float s = 0.0f;
  for (int c = 0; c < d; ++c)
    s = fma(cm_load1(x, x_dt, (size_t)t * d + c), w[c], s);
  out[t] = 1.0f / (1.0f + exp(-s));
}

/* dst[i] = src[i] for i < n, converted between dtypes (DT_*): the route's
 * float32 copy of 16-bit tokens, and 16-bit rows around the experts. Global
 * (ceil(n / CM_ROW_CHUNK)). */
kernel void convert_elements(long n, global const uchar *src, int src_dt,
                             global uchar *dst, int dst_dt) {
  size_t i = get_global_id(0) * (size_t)CM_ROW_CHUNK;
  if (i >= (size_t)n)
    return;
  if (i + CM_ROW_CHUNK <= (size_t)n) {
    cm_store16(cm_load16(src, src_dt, i), dst, dst_dt, i);
    return;
  }
  for (; i < (size_t)n; ++i)
    cm_store1(cm_load1(src, src_dt, i), dst, dst_dt, i);
}
