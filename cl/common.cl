/* Helpers shared by every clmoe kernel program (OpenCL C 1.2). */

/* Shared constants (ST_* stats words, POLICY_*, ACT_*, EPI_NONE, DT_*,
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
/* gpt-oss's clamped SwiGLU of a gate g and an up value u (scalars or vectors)
 * with limit L and sigmoid scale a: min(g, L) * sigmoid(a * min(g, L)) *
 * (clamp(u, -L, L) + 1). */
#define CM_SWIGLU_OAI(g, u, L, a)                                              \
  (min((g), (L)) / (1.0f + exp(-(a) * min((g), (L)))) *                        \
   (clamp((u), -(L), (L)) + 1.0f))

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

/* Activation rows in float32, float16 or bfloat16 (dt = DT_*), addressed by
 * element index. 16-bit values are widened on load (vload_half is core
 * OpenCL: no cl_khr_fp16) and rounded to nearest even on store; all
 * arithmetic stays in float32. */
inline float16 cm_load16(global const uchar *p, int dt, size_t i) {
  if (dt == DT_F16)
    return vload_half16(0, (global const half *)p + i);
  if (dt == DT_BF16)
    return as_float16(convert_uint16(vload16(0, (global const ushort *)p + i))
                      << 16);
  return vload16(0, (global const float *)p + i);
}

inline float cm_load1(global const uchar *p, int dt, size_t i) {
  if (dt == DT_F16)
    return vload_half(0, (global const half *)p + i);
  if (dt == DT_BF16)
    return as_float((uint)((global const ushort *)p)[i] << 16);
  return ((global const float *)p)[i];
}

/* bfloat16 bits of v, round to nearest even; NaN stays NaN (quiet). */
inline ushort16 cm_bf16_bits16(float16 v) {
  uint16 u = as_uint16(v);
  uint16 r = (u + (uint16)(0x7fffu) + ((u >> 16) & (uint16)(1u))) >> 16;
  return convert_ushort16(select(r, (u >> 16) | (uint16)(0x40u), isnan(v)));
}

inline ushort cm_bf16_bits1(float v) {
  uint u = as_uint(v);
  return (ushort)(isnan(v) ? (u >> 16) | 0x40u
                           : (u + 0x7fffu + ((u >> 16) & 1u)) >> 16);
}

inline void cm_store16(float16 v, global uchar *p, int dt, size_t i) {
  if (dt == DT_F16)
    vstore_half16_rte(v, 0, (global half *)p + i);
  else if (dt == DT_BF16)
    vstore16(cm_bf16_bits16(v), 0, (global ushort *)p + i);
  else
    vstore16(v, 0, (global float *)p + i);
}

inline void cm_store1(float v, global uchar *p, int dt, size_t i) {
  if (dt == DT_F16)
    vstore_half_rte(v, 0, (global half *)p + i);
  else if (dt == DT_BF16)
    ((global ushort *)p)[i] = cm_bf16_bits1(v);
  else
    ((global float *)p)[i] = v;
}
