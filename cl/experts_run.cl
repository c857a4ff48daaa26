/* The CLBlast expert path's elementwise kernels around its per-expert GEMMs:
 * the (gated) activation with biases, and the down projection's bias. */

/* act[row, j] from h[row, :] (width F = f, or 2f for gated kinds where
 * h = [gate | up]); biases b1[E, f] and b3[E, f] are optional; act_limit
 * and act_alpha parametrise SWIGLU_OAI. Global (f, N). */
kernel void expert_activation(int N, int E, int f, int kind,
                              global const int *expert_offsets,
                              global const float *h, int has_b1,
                              global const float *b1, int has_b3,
                              global const float *b3, global float *act,
                              float act_limit, float act_alpha) {
  int j = get_global_id(0), row = get_global_id(1);
  if (j >= f || row >= N)
    return;
  int gated = kind == ACT_SWIGLU || kind == ACT_GEGLU || kind == ACT_SWIGLU_OAI;
  int F = gated ? 2 * f : f;
  int e = (has_b1 || has_b3) ? cm_segment_of(expert_offsets, E, row) : 0;
  float g = h[(size_t)row * F + j] + (has_b1 ? b1[(size_t)e * f + j] : 0.0f);
  float out;
  if (kind == ACT_SWIGLU_OAI) {
    float u = h[(size_t)row * F + f + j] +
              (has_b3 ? b3[(size_t)e * f + j] : 0.0f);
    act[(size_t)row * f + j] = CM_SWIGLU_OAI(g, u, act_limit, act_alpha);
    return;
  }
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
