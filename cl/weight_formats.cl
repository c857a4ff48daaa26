/* The storage formats of the grouped GEMM's packed weight panels, for both
 * kernel shapes (grouped_gemm.cl, grouped_gemm_local.cl): how a panel row
 * is stored and widened to float32. Every product and sum stays fp32.
 *
 * GEMM_WTYPE (-D): 0 float32, 1 float16 (vload_half: core OpenCL, no
 * cl_khr_fp16), 2 bfloat16, then the quantized formats, whose weight is
 * code * scale (docs/quantization.md): 3 F8_E4M3, 4 MXFP4, 5 I8, 6 I4.
 *
 * A panel row holds 2 * VW output columns (the low half, then the high
 * half). Stored per row:
 *  - float32 / float16: the columns in order;
 *  - bfloat16: uint j holds column j in its low and column VW + j in its
 *    high 16 bits, so one uint vector load feeds both halves;
 *  - F8_E4M3 / I8: one byte per column, in order;
 *  - MXFP4 / I4: VW bytes, byte j holding column j in its low and column
 *    VW + j in its high nibble.
 * Quantized panels carry float32 scales per column and group of QG
 * consecutive k (the kernels' qgroup argument: 128 F8, 32 MXFP4 and I4,
 * K for I8), laid out [expert][panel][group][2 * VW]; the device keeps
 * every scale as the float it is worth. */

#define CAT_(a, b) a##b
#define CAT(a, b) CAT_(a, b)
#define floatV CAT(float, GEMM_VW)
#define uintV CAT(uint, GEMM_VW)
#define intV CAT(int, GEMM_VW)
#define vloadV CAT(vload, GEMM_VW)
#define vstoreV CAT(vstore, GEMM_VW)
#define GEMM_TN (2 * GEMM_VW)

#if GEMM_WTYPE >= 3
#define GEMM_QUANT 1
typedef uchar wtype;
#endif

/* Stored elements (wtype) per panel row. */
#if GEMM_WTYPE == 4 || GEMM_WTYPE == 6
#define B_ROW GEMM_VW
#else
#define B_ROW GEMM_TN
#endif

/* wf_decodeN: the values of N codes (one per uint lane: a byte, or a
 * nibble for the 4-bit formats), before their scale. e4m3fn by rebiasing
 * its exponent into a float's (subnormals m * 2^-9, 0x7F NaN); E2M1 from
 * its exponent and mantissa bits; integers by sign extension. */
#if GEMM_WTYPE == 3 && defined(WF_DENORMS)
/* The code's magnitude bits placed under a float's exponent and mantissa
 * make 2^-120 times its value, subnormals included (as float denormals,
 * which the device keeps: the host sets WF_DENORMS from
 * CL_DEVICE_SINGLE_FP_CONFIG); one exact multiply restores it. NaN codes
 * never reach the device (refused at create). */
#define WF_DECODE(N)                                                           \
  inline CAT(float, N) CAT(wf_decode, N)(CAT(uint, N) c) {                     \
    return CAT(as_float, N)(((c & 0x7fu) << 20) | ((c & 0x80u) << 24)) *       \
           0x1p120f;                                                           \
  }
#elif GEMM_WTYPE == 3
#define WF_DECODE(N)                                                           \
  inline CAT(float, N) CAT(wf_decode, N)(CAT(uint, N) c) {                     \
    CAT(uint, N) mag = c & 0x7fu;                                              \
    CAT(float, N) v = select(CAT(as_float, N)((mag << 20) + (120u << 23)),     \
                             CAT(convert_float, N)(c & 7u) * 0x1p-9f,          \
                             mag < 8u);                                        \
    v = CAT(as_float, N)(CAT(as_uint, N)(v) | ((c & 0x80u) << 24));            \
    return select(v, (CAT(float, N))(NAN), mag == 0x7fu);                      \
  }
#elif GEMM_WTYPE == 4
/* E2M1 from its two exponent bits and one mantissa bit (a permute of a
 * table measured 4x slower on pocl; rebiasing into denormals 1.0x). */
#define WF_DECODE(N)                                                           \
  inline CAT(float, N) CAT(wf_decode, N)(CAT(uint, N) c) {                     \
    CAT(uint, N) e = (c >> 1) & 3u, m = c & 1u;                                \
    CAT(uint, N)                                                               \
    bits = select(((e + 126u) << 23) | (m << 22), m * 0x3f000000u, e == 0u);   \
    return CAT(as_float, N)(bits | ((c & 8u) << 28));                          \
  }
#elif GEMM_WTYPE == 5
#define WF_DECODE(N)                                                           \
  inline CAT(float, N) CAT(wf_decode, N)(CAT(uint, N) c) {                     \
    return CAT(convert_float, N)(CAT(as_int, N)(c << 24) >> 24);               \
  }
#elif GEMM_WTYPE == 6
#define WF_DECODE(N)                                                           \
  inline CAT(float, N) CAT(wf_decode, N)(CAT(uint, N) c) {                     \
    return CAT(convert_float, N)(CAT(as_int, N)(c << 28) >> 28);               \
  }
#endif
#ifdef WF_DECODE
WF_DECODE(GEMM_VW)
#if GEMM_VW != 4
WF_DECODE(4)
#endif
#endif

/* LOAD_B(p, s_lo, s_hi, b0, b1): the panel row at p widened to its two
 * halves b0 and b1 (quantized: times the row's group scales s_lo, s_hi). */
#if GEMM_WTYPE == 1
typedef half wtype;
#define LOAD_B(p, s_lo, s_hi, b0, b1)                                          \
  {                                                                            \
    b0 = CAT(vload_half, GEMM_VW)(0, p);                                       \
    b1 = CAT(vload_half, GEMM_VW)(1, p);                                       \
  }
#elif GEMM_WTYPE == 2
typedef ushort wtype;
#define LOAD_B(p, s_lo, s_hi, b0, b1)                                          \
  {                                                                            \
    uintV w_ = vloadV(0, (const global uint *)(p));                            \
    b0 = CAT(as_float, GEMM_VW)(w_ << 16);                                     \
    b1 = CAT(as_float, GEMM_VW)(w_ & (uintV)(0xffff0000u));                    \
  }
#elif GEMM_WTYPE == 4 || GEMM_WTYPE == 6
#define LOAD_B(p, s_lo, s_hi, b0, b1)                                          \
  {                                                                            \
    uintV c_ = CAT(convert_uint, GEMM_VW)(vloadV(0, p));                       \
    b0 = CAT(wf_decode, GEMM_VW)(c_ & 15u) * (s_lo);                           \
    b1 = CAT(wf_decode, GEMM_VW)(c_ >> 4) * (s_hi);                            \
  }
#elif GEMM_QUANT
#define LOAD_B(p, s_lo, s_hi, b0, b1)                                          \
  {                                                                            \
    b0 = CAT(wf_decode, GEMM_VW)(CAT(convert_uint, GEMM_VW)(vloadV(0, p))) *   \
         (s_lo);                                                               \
    b1 = CAT(wf_decode, GEMM_VW)(CAT(convert_uint, GEMM_VW)(vloadV(1, p))) *   \
         (s_hi);                                                               \
  }
#else
typedef float wtype;
#define LOAD_B(p, s_lo, s_hi, b0, b1)                                          \
  {                                                                            \
    b0 = vloadV(0, p);                                                         \
    b1 = vloadV(1, p);                                                         \
  }
#endif

/* Panel columns m..m+3 (m a multiple of 4) of the panel row at `row`,
 * widened (and, quantized, scaled by the row's group scales `srow`). */
inline float4 wf_load4(const global wtype *row, const global float *srow,
                       int m) {
  int hi = m >= GEMM_VW, j = hi ? m - GEMM_VW : m;
#if GEMM_WTYPE == 1
  return vload_half4(0, row + m);
#elif GEMM_WTYPE == 2
  uint4 w = vload4(0, (const global uint *)row + j);
  return as_float4(hi ? w & (uint4)(0xffff0000u) : w << 16);
#elif GEMM_WTYPE == 4 || GEMM_WTYPE == 6
  uint4 c = convert_uint4(vload4(0, row + j));
  return wf_decode4(hi ? c >> 4 : c & 15u) * vload4(0, srow + m);
#elif GEMM_QUANT
  return wf_decode4(convert_uint4(vload4(0, row + m))) * vload4(0, srow + m);
#else
  return vload4(0, row + m);
#endif
}
