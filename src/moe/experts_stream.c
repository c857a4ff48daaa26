/* Experts built panel by panel from a row source (checkpoint loading): the
 * host never holds more than one panel's rows and a staging buffer, so
 * loading a model's experts does not need their size in host memory. The
 * packed layout and the 16-bit encodings are those of clmoe_experts_create
 * (see cl/grouped_gemm.cl). */
#include <stdlib.h>
#include <string.h>

#include "moe/experts.h"
#include "moe/grouped_gemm.h"
#include "quant/formats.h"

/* Panels are flushed to the device in batches of at most this many bytes. */
#define STAGE_BYTES (8u << 20)

typedef struct stream {
  clmoe_experts *x;
  cm_row_source source;
  void *user;
  float *rows_lo, *rows_hi; /* [2 * vw][K] rows of one panel */
  float *tile;              /* [K][2 * vw] the panel before encoding */
  unsigned char *stage;     /* packed panels waiting to be written */
  size_t stage_cap, staged;
  cl_mem buf;
  size_t buf_at; /* byte offset of the staged data in buf */
} stream;

static clmoe_status flush(stream *s) {
  if (!s->staged)
    return CLMOE_SUCCESS;
  cl_int err =
      clEnqueueWriteBuffer(s->x->ctx->queue, s->buf, CL_TRUE, s->buf_at,
                           s->staged, s->stage, 0, NULL, NULL);
  if (err != CL_SUCCESS)
    return cm_cl_fail(err, "clmoe_checkpoint_load_layer: clEnqueueWriteBuffer");
  s->buf_at += s->staged;
  s->staged = 0;
  return CLMOE_SUCCESS;
}

/* One panel: output columns of matrix m (and, gated, the same columns of
 * W3 in the upper half) over all K inputs, laid out as a float tile
 * [K][2 * vw] (bfloat16 tile rows interleave their halves, as
 * cl/grouped_gemm.cl reads them) and then encoded in the storage dtype. */
static clmoe_status pack_panel(stream *s, int e, int m, int gated, int p, int K,
                               int cols) {
  clmoe_experts *x = s->x;
  int vw = x->vw, tn = 2 * vw, bf16 = x->wdtype == CLMOE_DTYPE_BF16;
  int c0 = gated ? p * vw : p * tn, width = gated ? vw : tn;
  int n = cols - c0 < width ? cols - c0 : width;
  size_t es = cm_dtype_size(x->wdtype), count = (size_t)K * tn;
  clmoe_status st;
  if (s->staged + count * es > s->stage_cap && (st = flush(s)))
    return st;
  if ((st = s->source(s->user, m, e, c0, n, s->rows_lo)) ||
      (gated && (st = s->source(s->user, 1, e, c0, n, s->rows_hi))))
    return st;
  for (int c = 0; c < tn; ++c) {
    int hi = gated && c >= vw, j = hi ? c - vw : c;
    int at = bf16 ? (c < vw ? 2 * c : 2 * (c - vw) + 1) : c;
    const float *row = (hi ? s->rows_hi : s->rows_lo) + (size_t)j * K;
    for (int k = 0; k < K; ++k)
      s->tile[(size_t)k * tn + at] = j < n ? row[k] : 0.0f;
  }
  size_t bad = cm_encode(x->wdtype, s->tile, s->stage + s->staged, count);
  if (bad < count) {
    int c = (int)(bad % tn), col = bf16 ? (c % 2 ? vw + c / 2 : c / 2) : c;
    int hi = gated && col >= vw;
    return cm_fail(CLMOE_ERROR_INVALID_ARGUMENT,
                   "expert %d's %s row %d holds %g, which overflows %s", e,
                   hi       ? "w3"
                   : m == 0 ? "w1"
                            : "w2",
                   c0 + (hi ? col - vw : col), (double)s->tile[bad],
                   cm_dtype_name(x->wdtype));
  }
  s->staged += count * es;
  return CLMOE_SUCCESS;
}

/* All experts' panels of one matrix into *out. */
static clmoe_status pack_matrix(stream *s, int m, int gated, int K, int cols,
                                int panels, cl_mem *out) {
  clmoe_experts *x = s->x;
  size_t bytes =
      (size_t)x->E * panels * K * 2 * x->vw * cm_dtype_size(x->wdtype);
  clmoe_status st = cm_buffer_create(x->ctx, bytes, CL_MEM_READ_ONLY, out);
  s->buf = *out;
  s->buf_at = 0;
  for (int e = 0; e < x->E && !st; ++e)
    for (int p = 0; p < panels && !st; ++p)
      st = pack_panel(s, e, m, gated, p, K, cols);
  return st ? st : flush(s);
}

clmoe_status cm_experts_create_from_rows(clmoe_context *ctx,
                                         const clmoe_experts_desc *desc,
                                         cm_row_source source, void *user,
                                         clmoe_experts **out) {
  *out = NULL;
  clmoe_experts_path path;
  clmoe_dtype wdtype;
  clmoe_status st = cm_experts_resolve(ctx, desc, &path, &wdtype);
  if (st)
    return st;
  /* The caller loads arrays instead: the CLBlast layout is transposed, and
   * quantized blocks span more rows than a panel. */
  if (path != CLMOE_EXPERTS_PATH_GROUPED || cm_is_quant_dtype(wdtype))
    return CLMOE_ERROR_UNSUPPORTED;
  stream s = {0};
  if ((st = cm_experts_alloc(ctx, desc, path, wdtype, &s.x)))
    return st;
  clmoe_experts *x = s.x;
  int gated = cm_is_gated(x->activation), vw = x->vw;
  int most = x->d > x->f ? x->d : x->f;
  x->panels_up = cm_panel_count(x->f, vw, gated);
  x->panels_down = cm_panel_count(x->d, vw, 0);
  s.source = source;
  s.user = user;
  s.stage_cap = STAGE_BYTES;
  size_t panel = (size_t)most * 2 * vw * cm_dtype_size(wdtype);
  if (s.stage_cap < panel)
    s.stage_cap = panel;
  s.rows_lo = malloc(sizeof(float) * 2 * vw * (size_t)most);
  s.rows_hi = malloc(sizeof(float) * 2 * vw * (size_t)most);
  s.tile = malloc(sizeof(float) * 2 * vw * (size_t)most);
  s.stage = malloc(s.stage_cap);
  if (!s.rows_lo || !s.rows_hi || !s.tile || !s.stage)
    st = cm_fail(CLMOE_ERROR_OUT_OF_HOST_MEMORY,
                 "clmoe_checkpoint_load_layer: out of host memory for the "
                 "staging buffers");
  if (!st)
    st = pack_matrix(&s, 0, gated, x->d, x->f, x->panels_up, &x->w13);
  if (!st)
    st = pack_matrix(&s, 2, 0, x->f, x->d, x->panels_down, &x->w2);
  if (!st)
    st = cm_experts_upload_biases(x, desc->b1_host, desc->b3_host,
                                  desc->b2_host);
  x->weight_bytes = (int64_t)(((size_t)x->E * x->panels_up * x->d +
                               (size_t)x->E * x->panels_down * x->f) *
                              2 * vw * cm_dtype_size(wdtype));
  free(s.rows_lo);
  free(s.rows_hi);
  free(s.tile);
  free(s.stage);
  if (st)
    clmoe_experts_destroy(x);
  else
    *out = x;
  return st;
}
