/* The quantized weight formats on the host: element codes (encode with
 * round-to-nearest-even and saturation, decode exactly), the scale layout
 * of each format, and clmoe's own quantizers. The device reads the same
 * codes (cl/weight_formats.cl); docs/quantization.md has the definitions. */
#ifndef CLMOE_QUANT_FORMATS_H
#define CLMOE_QUANT_FORMATS_H

#include <stddef.h>
#include <stdint.h>

#include "clmoe/clmoe.h"

/* F8_E4M3, MXFP4, I8 or I4: the expert weight formats. */
int cm_is_quant_dtype(clmoe_dtype dtype);
/* Any dtype clmoe_convert decodes to F32 (the formats above, F8_E5M2, U8,
 * E8M0). */
int cm_is_code_dtype(clmoe_dtype dtype);
/* Bits of one element code: 4 (MXFP4, I4) or 8. */
int cm_code_bits(clmoe_dtype dtype);

/* The value of element i of a code array (4-bit codes two per byte, the
 * low nibble for even i), without scale. */
float cm_code_value(clmoe_dtype dtype, const void *codes, size_t i);

/* e4m3fn code of v: round to nearest even, saturating to +-448 (NaN gives
 * 0x7F). */
uint8_t cm_e4m3_code(float v);
/* E2M1 code (4 bits) of v: round to nearest even, saturating to +-6. */
uint8_t cm_e2m1_code(float v);

/* Contraction ("in") elements that share a scale in each output row: 128
 * (F8_E4M3's blocks), 32 (MXFP4, I4), or all `in` (I8). */
int cm_quant_group(clmoe_dtype dtype, int in);

/* A quantized matrix in [out, in] form: one code per element (unpacked,
 * one byte each: e4m3 byte, E2M1 nibble, int8 byte, int4 nibble) and a
 * float32 scale per (output row or block, group), as scale_at reads it. */
typedef struct cm_qmatrix {
  clmoe_dtype dtype;
  int out, in;
  uint8_t *codes;  /* [out][in] */
  float *scales;   /* F8: [ceil(out/128)][ceil(in/128)]; I8: [out];
                      MXFP4, I4: [out][in / 32] */
} cm_qmatrix;

/* Scales in a cm_qmatrix. */
size_t cm_qmatrix_scale_count(clmoe_dtype dtype, int out, int in);
/* The scale of element (row j, column k). */
float cm_qmatrix_scale_at(const cm_qmatrix *q, int j, int k);
/* Allocates codes and scales (zeroed); 0 or -1 when out of memory. */
int cm_qmatrix_alloc(cm_qmatrix *q, clmoe_dtype dtype, int out, int in);
void cm_qmatrix_free(cm_qmatrix *q);

/* clmoe's quantizer: q from w[j * ldj + k * ldk] (j < out, k < in), by the
 * format's rule. Returns the index j * in + k of the first non-finite
 * weight, or -1. */
int64_t cm_quantize(cm_qmatrix *q, const float *w, size_t ldj, size_t ldk);

#endif /* CLMOE_QUANT_FORMATS_H */
