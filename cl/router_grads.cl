/* The router's training kernel (src/train/router_grads.c): per token, the
 * auxiliary losses and the gradient of the logits z = x W_r + b_r from the
 * gates' gradients and the losses. One work-item per token, every sum in
 * expert or slot order: the same bits on every run. */

/* logits: the router GEMM's x W_r [T, E] (b_r added here); pi: the token
 * distribution the route wrote (0 outside the kept groups); f_e = (rows of
 * expert e) / N from expert_offsets. from_score: TOPK, whose gates are
 * functions of the scores s; the other policies' are functions of pi.
 * losses[3 t ..]: this token's share of the balance loss, z-loss and
 * entropy (each already divided by T). With has_dg, dz[t, :] gets the
 * gradient (docs/training.md); global (T). */
kernel void train_router_grad(int T, int E, global const float *logits,
                              int has_bias, global const float *bias,
                              global const float *pi, int sigmoid, int grouped,
                              int from_score, int renorm, float eps,
                              float gate_scale,
                              global const int *token_offsets,
                              global const int *expert_ids, int has_dg,
                              global const float *dg,
                              global const int *expert_offsets, float bal,
                              float zc, float ent, global float *dz,
                              global float *losses) {
  int t = get_global_id(0);
  if (t >= T)
    return;
  const global float *z = logits + (size_t)t * E;
  const global float *pr = pi + (size_t)t * E;
#define Z(e) (z[e] + (has_bias ? bias[e] : 0.0f))
  float zmax = -INFINITY;
  for (int e = 0; e < E; ++e)
    zmax = fmax(zmax, Z(e));
  float den = 0.0f;
  for (int e = 0; e < E; ++e)
    den += exp(Z(e) - zmax);
  float lse = zmax + log(den), inv_t = 1.0f / (float)T;
#define S(e) (sigmoid ? 1.0f / (1.0f + exp(-Z(e))) : exp(Z(e) - zmax) / den)
#define ALLOWED(e) (!grouped || pr[e] > 0.0f)
  int n_all = expert_offsets[E];
#define FRAC(e)                                                                \
  (n_all > 0 ? (float)(expert_offsets[(e) + 1] - expert_offsets[e]) /         \
                   (float)n_all                                                \
             : 0.0f)
  float lb = 0.0f, le = 0.0f;
  for (int e = 0; e < E; ++e) {
    lb += FRAC(e) * pr[e];
    if (pr[e] > 0.0f)
      le -= pr[e] * log(pr[e]);
  }
  losses[3 * (size_t)t] = (float)E * lb * inv_t;
  losses[3 * (size_t)t + 1] = lse * lse * inv_t;
  losses[3 * (size_t)t + 2] = le * inv_t;
  if (!has_dg)
    return;
  global float *out = dz + (size_t)t * E;
  /* The losses' gradient with respect to pi (0 log 0 counts as 0). */
#define DPI(e)                                                                 \
  (bal * (float)E * FRAC(e) * inv_t -                                          \
   (pr[e] > 0.0f ? ent * (log(pr[e]) + 1.0f) * inv_t : 0.0f))
  int whole = !sigmoid && !grouped; /* pi is s itself */
  float sa = 0.0f;
  for (int e = 0; e < E; ++e)
    if (ALLOWED(e))
      sa += S(e);
  /* Gates: g_j = gate_scale * q_j (RAW) or gate_scale * q_j / sk (RENORM),
   * q = s (from_score) or pi. */
  int o0 = token_offsets[t], o1 = token_offsets[t + 1];
#define Q(e) (from_score ? S(e) : pr[e])
  float sk = 0.0f, c = 0.0f;
  for (int s = o0; s < o1; ++s) {
    float q = Q(expert_ids[s]);
    sk += q;
    c += dg[s] * q;
  }
  if (renorm && eps > 0.0f)
    sk += eps;
  /* A zero sum gave uniform gates: constants. */
  int live = !renorm || sk > 0.0f;
#define DQ(s)                                                                  \
  (!live ? 0.0f                                                                \
   : renorm ? gate_scale * (dg[s] / sk - c / (sk * sk))                        \
            : gate_scale * dg[s])
  /* dpi' = DPI (+ dq for the pi-gated policies); ds = (dpi' - sum_a dpi'_a
   * pi_a) / sa on the allowed experts (dpi' itself when pi = s). */
  float a = 0.0f;
  for (int e = 0; e < E; ++e)
    if (ALLOWED(e))
      a += DPI(e) * pr[e];
  if (!from_score)
    for (int s = o0; s < o1; ++s)
      a += DQ(s) * pr[expert_ids[s]];
  for (int e = 0; e < E; ++e)
    out[e] = !ALLOWED(e) ? 0.0f : whole ? DPI(e) : (DPI(e) - a) / sa;
  for (int s = o0; s < o1; ++s)
    out[expert_ids[s]] += (from_score || whole) ? DQ(s) : DQ(s) / sa;
  /* Through the scores into z. */
  if (sigmoid) {
    for (int e = 0; e < E; ++e) {
      float v = S(e);
      out[e] *= v * (1.0f - v);
    }
  } else {
    float b = 0.0f;
    for (int e = 0; e < E; ++e)
      b += S(e) * out[e];
    for (int e = 0; e < E; ++e)
      out[e] = S(e) * (out[e] - b);
  }
  if (zc != 0.0f)
    for (int e = 0; e < E; ++e)
      out[e] += zc * 2.0f * lse * exp(Z(e) - lse) * inv_t;
#undef Z
#undef S
#undef ALLOWED
#undef FRAC
#undef DPI
#undef Q
#undef DQ
}
