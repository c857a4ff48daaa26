/* Helpers shared by every clmoe kernel program (OpenCL C 1.2). */

/* Layout of a routing's stats buffer (32-bit words; src/routing.h mirrors
 * it). The layer kernels after route read ST_N and ST_BAD_TOKEN on the
 * device, so a forward needs no host sync between route and combine. */
#define ST_N 0
#define ST_N_PROPOSED 1
#define ST_MIN_K 2
#define ST_MAX_K 3
#define ST_BAD_TOKEN 4    /* INT_MAX unless a token had a non-finite logit */
#define ST_BALANCE_LOSS 5 /* float */
#define ST_ENTROPY 6      /* float */
#define ST_HEADER 8       /* then hist[E+1], load[E], mean_prob[E] */

/* Whether the route that filled `stats` succeeded. */
inline int cm_route_ok(global const int *stats) {
  return stats[ST_BAD_TOKEN] == INT_MAX;
}

/* Expert activations (values of clmoe_activation), written as macros so the
 * scalar kernels (ffn.cl) and the vector epilogue (gemm.cl) evaluate the
 * same formula: tanh-approximated GELU and SiLU. */
#define ACT_RELU 1
#define ACT_GELU 2
#define ACT_SILU 3
#define ACT_SWIGLU 4
#define ACT_GEGLU 5
#define CM_GELU_TANH(v)                                                        \
  (0.5f * (v) *                                                                \
   (1.0f + tanh(0.7978845608028654f * ((v) + 0.044715f * (v) * (v) * (v)))))
#define CM_SILU(v) ((v) / (1.0f + exp(-(v))))

/* Maps a float to a uint whose unsigned order is the float's order
 * (-0 and +0 map to the same key). */
inline uint cm_order_key(float f) {
  uint u = as_uint(f + 0.0f);
  return (u & 0x80000000u) ? ~u : (u | 0x80000000u);
}

/* The segment holding x in a non-decreasing offsets[0..n]: the last i < n
 * with offsets[i] <= x (binary search). */
inline int cm_segment_of(global const int *offsets, int n, int x) {
  int lo = 0, hi = n - 1;
  while (lo < hi) {
    int mid = (lo + hi + 1) / 2;
    if (offsets[mid] <= x)
      lo = mid;
    else
      hi = mid - 1;
  }
  return lo;
}
