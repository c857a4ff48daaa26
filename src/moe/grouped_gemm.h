/* The grouped GEMM's packed weight layout and its launch, shared by the
 * experts (grouped path) and the router GEMM. */
#ifndef CLMOE_GROUPED_GEMM_H
#define CLMOE_GROUPED_GEMM_H

#include "runtime/launch.h"

/* Element (i, j) of matrix e of E [rows, cols] matrices in `layout`
 * (CLMOE_LAYOUT_IN_OUT: row-major [rows, cols]; OUT_IN: [cols, rows]). */
static inline float cm_weight_at(const float *w, int layout, int e, int rows,
                                 int cols, int i, int j) {
  size_t base = (size_t)e * rows * cols;
  return layout == CLMOE_LAYOUT_IN_OUT ? w[base + (size_t)i * cols + j]
                                       : w[base + (size_t)j * rows + i];
}

/* Panels of 2 * vw columns (gated: vw columns of W1 beside the same vw of
 * W3) covering `cols` output columns. */
int cm_panel_count(int cols, int vw, int gated);

/* Packs E matrices [rows, cols] (layout `lay`, CLMOE_LAYOUT_*) into
 * dst[E][panels][rows][2 * vw], zero past cols (see cl/grouped_gemm.cl). w_hi
 * is the gated kind's second matrix (W3), or NULL. A NULL w packs zeros. */
void cm_pack_panels(float *dst, const float *w, const float *w_hi, int gated,
                    int lay, int E, int rows, int cols, int vw);

/* The row tiles that tile_offsets counts for the context's grouped kernel,
 * and the tiles a unit (work-item or work-group) runs: pass both to
 * gemm_tile_offsets, or write its result with them. */
int cm_gemm_tile_rows(const cm_tuning *t);
int cm_gemm_tiles_per_item(const cm_tuning *t);

/* One grouped GEMM launch on the routing's queue, in the shape the tuning
 * entry picks (gemm_grouped or gemm_grouped_local), for B packed in `wdtype`
 * (F32, F16 or BF16; the program variant that widens it): for every group e,
 * C[rows of e, :n_out] = epi(A[rows of e, :K] * B_e + bias_e), rows of e =
 * expert_offsets[e]..[e+1]. A unit runs up to tiles_per_item row tiles of
 * one group (0: all of the group's), counted in tile_offsets by
 * gemm_tile_offsets with cm_gemm_tile_rows and the same tiles_per_item (or
 * written exactly); the local kernel always runs one tile per work-group.
 * rows_bound >= the rows of all groups sizes the launch. bias may be NULL.
 * act[2] = {limit, alpha} of the SWIGLU_OAI epilogue (NULL for the others).
 * scales: a quantized B's (NULL for float32 and 16-bit B). */
typedef struct cm_gemm_scales {
  cl_mem buf; /* [E][panels][groups][2 * vw] float32 (cl/weight_formats.cl) */
  int group;  /* consecutive k per scale */
} cm_gemm_scales;
clmoe_status cm_gemm_grouped(clmoe_context *ctx, cm_kernels *kernels, int E,
                             int rows_bound, int K, int panels,
                             int tiles_per_item, cl_mem expert_offsets,
                             cl_mem tile_offsets, cl_mem A, cl_mem B,
                             clmoe_dtype wdtype, int epi, cl_mem bias, cl_mem C,
                             int n_out, const float *act,
                             const cm_gemm_scales *scales);

#endif /* CLMOE_GROUPED_GEMM_H */
