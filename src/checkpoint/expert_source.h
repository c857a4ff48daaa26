/* Finding a layer's tensors and streaming expert matrices out of a
 * checkpoint (expert_source.c), for clmoe_checkpoint_load_layer: one
 * tensor per expert and matrix or stacked, nn.Linear's [out, in] or x.W
 * order, float or quantized (FP8 with block scales, MXFP4 blocks). */
#ifndef CLMOE_EXPERT_SOURCE_H
#define CLMOE_EXPERT_SOURCE_H

#include "checkpoint/checkpoint.h"
#include "checkpoint/layer_plan.h"
#include "quant/formats.h"

/* The tensor `tmpl` names for (layer, expert), checked against `rank` and
 * dims (< 0: any, then filled in): SHAPE_MISMATCH naming both shapes,
 * NOT_FOUND naming the nearest tensor, UNSUPPORTED for a dtype the loader
 * cannot read as floats (codes_ok also accepts F8_E4M3 and U8). */
clmoe_status cm_layer_find(const clmoe_checkpoint *ck, const plan *p,
                           const char *tmpl, int expert, int rank,
                           int64_t *dims, const cm_st_tensor **out);
clmoe_status cm_layer_find_codes(const clmoe_checkpoint *ck, const char *name,
                                 int rank, int64_t *dims,
                                 const cm_st_tensor **out);
int cm_layer_exists(const clmoe_checkpoint *ck, const plan *p,
                    const char *tmpl, int expert);

/* Where each expert matrix lives: tensor and element offset per (matrix,
 * expert), matrices 0 W1 [f, d] (gate), 1 W3 [f, d] (up), 2 W2 [d, f]
 * (down), read as [out, in]. A cm_row_source over it streams rows out of the
 * mappings. x.W-ordered stacks (xw) hold expert e's matrix transposed at
 * first[m][e] ([in, cols]); their columns for matrix m are col0[m] +
 * j * stride[m], and one expert's slab is decoded into `slab` at a time. */
typedef struct expert_source {
  const clmoe_checkpoint *ck;
  int E, in[3];
  const cm_st_tensor **t; /* [3][E] */
  uint64_t *first;        /* [3][E] */
  int xw, cols[3], col0[3], stride[3];
  float *slab; /* xw: [in][cols] of slab_t at slab_e */
  const cm_st_tensor *slab_t;
  int slab_e;
  /* Quantized experts as stored: F8_E4M3 (per-expert weights, each with
   * its weight_scale_inv [ceil(out/128), ceil(in/128)]) or MXFP4 (stacked
   * *_blocks [E, out, in/32, 16] and *_scales [E, out, in/32]), else 0.
   * Row j of matrix m is stored row j * rstride[m] + roff[m] (gpt-oss
   * interleaves gate and up rows). */
  clmoe_dtype codes;
  const cm_st_tensor **scale; /* [3][E] */
  uint64_t *sfirst;           /* [3][E] element offset of the scales */
  int rstride[3], roff[3];
  float *sbuf; /* F8: one matrix's block scales, those of sbuf_for */
  const cm_st_tensor *sbuf_for;
  uint8_t *cbuf; /* MXFP4: one row's codes and scales */
} expert_source;

/* cm_row_source over an expert_source: rows [row0, row0 + n) of matrix m
 * of expert e as float32 [n][in] (quantized experts dequantized). */
clmoe_status cm_source_rows(void *user, int m, int e, int row0, int n,
                            float *dst);
void cm_free_source(expert_source *s);

/* The E experts' matrices (templates w1, w3, w2 per expert, or the stacks
 * gate_up [E, 2f, d] / down [E, d, f], or x.W stacks when p->xw; FP8 and
 * MXFP4 as stored), each checked against the sizes. *stored: the experts'
 * stored dtype (F32, F16, BF16, or F8_E4M3 / MXFP4 for quantized ones). */
clmoe_status cm_find_experts(const clmoe_checkpoint *ck, const plan *p,
                             const char *w1, const char *w3, const char *w2,
                             const char *gate_up, const char *down, int E,
                             int f, expert_source *s, clmoe_dtype *stored);

/* A cm_quant_source over a quantized expert_source: expert e's matrix m
 * as stored (codes unpacked, scales as floats), one expert at a time. */
clmoe_status cm_source_qmatrix(void *user, int m, int e, cm_qmatrix *q);

#endif /* CLMOE_EXPERT_SOURCE_H */
