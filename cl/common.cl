/* Helpers shared by every clmoe kernel program (OpenCL C 1.2). */

/* Shared constants (ST_* stats words, POLICY_*, ACT_*, EPI_NONE,
 * CM_ROW_CHUNK) come as -D build options from src/runtime/kernel_abi.*, their
 * one definition. */

/* Whether the route that filled `stats` succeeded. */
inline int cm_route_ok(global const int *stats) {
  return stats[ST_BAD_TOKEN] == INT_MAX;
}

/* Expert activations, written as macros so the scalar kernels
 * (experts_run.cl) and the vector epilogue (grouped_gemm.cl) evaluate the
 * same formula: tanh-approximated GELU and SiLU. */
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
