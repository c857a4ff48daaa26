/* A layer's tensors and the rows of its expert matrices, streamed out of
 * the checkpoint's mappings for clmoe_checkpoint_load_layer: per-expert or
 * stacked tensors in nn.Linear's [out, in] order, x.W-ordered stacks
 * (gpt-oss, Llama 4) transposed one expert at a time, FP8 experts with
 * their block scales and gpt-oss's MXFP4 blocks dequantized row by row
 * (for a float target) or handed over as codes and scales. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "checkpoint/expert_source.h"
#include "quant/formats.h"
#include "runtime/runtime.h"

static const char *const FN = "clmoe_checkpoint_load_layer";

/* The tensor called `name`: present, of a dtype `ok` accepts, of `rank`
 * and dims (< 0: any, then filled in). */
static clmoe_status find_named(const clmoe_checkpoint *ck, const char *name,
                               int codes_ok, int rank, int64_t *dims,
                               const cm_st_tensor **out) {
  const cm_st_tensor *t = cm_ck_lookup(ck, name);
  if (!t)
    return cm_ck_not_found(ck, name);
  int codes = t->readable == CLMOE_DTYPE_F8_E4M3 ||
              t->readable == CLMOE_DTYPE_U8;
  if (!t->readable || (!codes_ok && cm_is_code_dtype(t->readable)) ||
      (codes_ok && !codes && !cm_is_float_dtype(t->readable)))
    return cm_fail_at(CLMOE_ERROR_UNSUPPORTED, FN,
                      "tensor \"%s\" is stored as %s; clmoe loads F32, F16 "
                      "and BF16 weights, F8_E4M3 experts with their scales "
                      "and MXFP4 blocks",
                      name, t->dtype);
  int ok = t->rank == rank;
  for (int i = 0; ok && i < rank; ++i)
    ok = dims[i] < 0 || dims[i] == t->shape[i];
  if (!ok) {
    char want[96] = "", got[96] = "";
    for (int i = 0; i < rank; ++i)
      snprintf(want + strlen(want), sizeof want - strlen(want), "%s%lld",
               i ? ", " : "", (long long)dims[i]);
    for (int i = 0; i < t->rank; ++i)
      snprintf(got + strlen(got), sizeof got - strlen(got), "%s%lld",
               i ? ", " : "", (long long)t->shape[i]);
    return cm_fail_at(CLMOE_ERROR_SHAPE_MISMATCH, FN,
                      "tensor \"%s\" has shape [%s]; the model's config "
                      "says [%s] (-1 = any)",
                      name, got, want);
  }
  for (int i = 0; i < rank; ++i)
    dims[i] = t->shape[i];
  *out = t;
  return CLMOE_SUCCESS;
}

clmoe_status cm_layer_find(const clmoe_checkpoint *ck, const plan *p,
                           const char *tmpl, int expert, int rank,
                           int64_t *dims, const cm_st_tensor **out) {
  char name[512];
  cm_expand_name(tmpl, p->layer, expert, name, sizeof name);
  return find_named(ck, name, 0, rank, dims, out);
}

clmoe_status cm_layer_find_codes(const clmoe_checkpoint *ck, const char *name,
                                 int rank, int64_t *dims,
                                 const cm_st_tensor **out) {
  return find_named(ck, name, 1, rank, dims, out);
}

int cm_layer_exists(const clmoe_checkpoint *ck, const plan *p, const char *tmpl,
                  int expert) {
  char name[512];
  cm_expand_name(tmpl, p->layer, expert, name, sizeof name);
  return cm_ck_lookup(ck, name) != NULL;
}


static clmoe_status source_rows_xw(expert_source *s, int m, int e, int row0,
                                   int n, float *dst) {
  size_t at = (size_t)m * s->E + e;
  int in = s->in[m], cols = s->cols[m];
  clmoe_status st;
  if (s->slab_t != s->t[at] || s->slab_e != e) {
    s->slab_t = NULL;
    if ((st = cm_ck_read_range(s->ck, s->t[at], s->first[at],
                               (uint64_t)in * cols, CLMOE_DTYPE_F32, s->slab)))
      return st;
    s->slab_t = s->t[at];
    s->slab_e = e;
  }
  for (int r = 0; r < n; ++r) {
    int c = s->col0[m] + (row0 + r) * s->stride[m];
    for (int k = 0; k < in; ++k)
      dst[(size_t)r * in + k] = s->slab[(size_t)k * cols + c];
  }
  return CLMOE_SUCCESS;
}

/* F8_E4M3 rows: the codes decoded, times their 128 x 128 block's scale. */
static clmoe_status source_rows_f8(expert_source *s, int m, int e, int row0,
                                   int n, float *dst) {
  size_t at = (size_t)m * s->E + e;
  int in = s->in[m], si = (in + 127) / 128, so = (int)s->scale[at]->shape[0];
  clmoe_status st;
  if ((st = cm_ck_read_range(s->ck, s->t[at],
                             s->first[at] + (uint64_t)row0 * in,
                             (uint64_t)n * in, CLMOE_DTYPE_F32, dst)))
    return st;
  if (s->sbuf_for != s->scale[at]) { /* once per matrix, not per panel */
    s->sbuf_for = NULL;
    if ((st = cm_ck_read_range(s->ck, s->scale[at], 0, (uint64_t)so * si,
                               CLMOE_DTYPE_F32, s->sbuf)))
      return st;
    s->sbuf_for = s->scale[at];
  }
  for (int r = 0; r < n; ++r)
    for (int k = 0; k < in; ++k)
      dst[(size_t)r * in + k] *= s->sbuf[(size_t)((row0 + r) / 128) * si + k / 128];
  return CLMOE_SUCCESS;
}

/* MXFP4 row j of matrix m of expert e into s->cbuf: its in / 2 code bytes,
 * then its in / 32 e8m0 scale bytes. */
static clmoe_status mxfp4_row(expert_source *s, int m, int e, int j) {
  size_t at = (size_t)m * s->E + e;
  int in = s->in[m];
  uint64_t row = (uint64_t)j * s->rstride[m] + s->roff[m];
  clmoe_status st =
      cm_ck_read_range(s->ck, s->t[at], s->first[at] + row * (in / 2),
                       (uint64_t)in / 2, CLMOE_DTYPE_U8, s->cbuf);
  return st ? st
            : cm_ck_read_range(s->ck, s->scale[at],
                               s->sfirst[at] + row * (in / 32),
                               (uint64_t)in / 32, CLMOE_DTYPE_U8,
                               s->cbuf + in / 2);
}

/* MXFP4 rows: each row's E2M1 codes times its groups' e8m0 scales. */
static clmoe_status source_rows_mxfp4(expert_source *s, int m, int e, int row0,
                                      int n, float *dst) {
  int in = s->in[m];
  const uint8_t *codes = s->cbuf, *scales = s->cbuf + in / 2;
  clmoe_status st = CLMOE_SUCCESS;
  for (int r = 0; r < n && !st; ++r) {
    if ((st = mxfp4_row(s, m, e, row0 + r)))
      break;
    for (int k = 0; k < in; ++k)
      dst[(size_t)r * in + k] =
          cm_code_value(CLMOE_DTYPE_MXFP4, codes, (size_t)k) *
          cm_code_value(CLMOE_DTYPE_E8M0, scales, (size_t)k / 32);
  }
  return st;
}

clmoe_status cm_source_rows(void *user, int m, int e, int row0, int n,
                            float *dst) {
  expert_source *s = user;
  if (s->xw)
    return source_rows_xw(s, m, e, row0, n, dst);
  if (s->codes == CLMOE_DTYPE_F8_E4M3)
    return source_rows_f8(s, m, e, row0, n, dst);
  if (s->codes == CLMOE_DTYPE_MXFP4)
    return source_rows_mxfp4(s, m, e, row0, n, dst);
  size_t at = (size_t)m * s->E + e;
  return cm_ck_read_range(s->ck, s->t[at],
                          s->first[at] + (uint64_t)row0 * s->in[m],
                          (uint64_t)n * s->in[m], CLMOE_DTYPE_F32, dst);
}

void cm_free_source(expert_source *s) {
  free(s->t);
  free(s->first);
  free(s->slab);
  free(s->scale);
  free(s->sfirst);
  free(s->sbuf);
  free(s->cbuf);
}

/* Whether expert 0's gate weight `tmpl` is stored as F8_E4M3. */
static int is_f8(const clmoe_checkpoint *ck, const plan *p, const char *tmpl) {
  char name[512];
  cm_expand_name(tmpl, p->layer, 0, name, sizeof name);
  const cm_st_tensor *t = cm_ck_lookup(ck, name);
  return t && t->readable == CLMOE_DTYPE_F8_E4M3;
}

/* FP8 experts: per expert and matrix an F8_E4M3 [out, in] weight and its
 * `<name>_scale_inv` [ceil(out/128), ceil(in/128)] (F32, BF16 or F16). */
static clmoe_status find_experts_f8(const clmoe_checkpoint *ck, const plan *p,
                                    const char *w1, const char *w3,
                                    const char *w2, int E, int f,
                                    expert_source *s, clmoe_dtype *stored) {
  const char *tmpl[3] = {w1, w3, w2};
  int d = p->d;
  clmoe_status st = CLMOE_SUCCESS;
  for (int m = 0; m < 3 && !st; ++m) {
    if (!tmpl[m])
      continue;
    int out = m == 2 ? d : f, in = m == 2 ? f : d;
    for (int e = 0; e < E && !st; ++e) {
      char name[512], sname[540];
      cm_expand_name(tmpl[m], p->layer, e, name, sizeof name);
      snprintf(sname, sizeof sname, "%s_scale_inv", name);
      size_t at = (size_t)m * E + e;
      int64_t wd[2] = {out, in}, sd[2] = {(out + 127) / 128, (in + 127) / 128};
      if (!(st = cm_layer_find_codes(ck, name, 2, wd, &s->t[at])) &&
          s->t[at]->readable != CLMOE_DTYPE_F8_E4M3)
        st = cm_fail_at(CLMOE_ERROR_UNSUPPORTED, FN,
                        "tensor \"%s\" is %s beside F8_E4M3 experts", name,
                        s->t[at]->dtype);
      if (!st && (st = cm_layer_find_codes(ck, sname, 2, sd, &s->scale[at])))
        return st;
      if (!st && !cm_is_float_dtype(s->scale[at]->readable))
        st = cm_fail_at(CLMOE_ERROR_UNSUPPORTED, FN,
                        "scale \"%s\" is %s; FP8 block scales are F32, "
                        "BF16 or F16",
                        sname, s->scale[at]->dtype);
    }
  }
  size_t most = (size_t)((d > f ? d : f) + 127) / 128;
  if (!st && !(s->sbuf = malloc(sizeof *s->sbuf * most * most)))
    st = cm_fail(CLMOE_ERROR_OUT_OF_HOST_MEMORY, "%s: out of host memory", FN);
  s->codes = CLMOE_DTYPE_F8_E4M3;
  *stored = CLMOE_DTYPE_F8_E4M3;
  return st;
}

/* Whether the stacked gate_up weight is stored as MXFP4 blocks. */
static int stacked_mxfp4(const clmoe_checkpoint *ck, const plan *p,
                         const char *gate_up) {
  char name[512], blocks[540];
  cm_expand_name(gate_up, p->layer, 0, name, sizeof name);
  snprintf(blocks, sizeof blocks, "%s_blocks", name);
  return !cm_ck_lookup(ck, name) && cm_ck_lookup(ck, blocks);
}

/* gpt-oss's MXFP4 experts: `<gate_up>_blocks` U8 [E, 2f, d/32, 16] with
 * `_scales` U8 [E, 2f, d/32] (gate and up rows interleaved), `<down>_blocks`
 * [E, d, f/32, 16] with `_scales` [E, d, f/32]. */
static clmoe_status find_experts_mxfp4(const clmoe_checkpoint *ck,
                                       const plan *p, const char *gate_up,
                                       const char *down, int E, int f,
                                       expert_source *s, clmoe_dtype *stored) {
  int d = p->d;
  if (d % 32 || f % 32)
    return cm_fail_at(CLMOE_ERROR_INVALID_ARGUMENT, FN,
                      "MXFP4 experts need hidden_size (%d) and the expert "
                      "width (%d) to be multiples of 32",
                      d, f);
  const char *tmpl[2] = {gate_up, down};
  int outs[2] = {2 * f, d}, ins[2] = {d, f};
  const cm_st_tensor *bt[2], *sc[2];
  clmoe_status st = CLMOE_SUCCESS;
  for (int i = 0; i < 2 && !st; ++i) {
    char name[512], b[540], sn[540];
    cm_expand_name(tmpl[i], p->layer, 0, name, sizeof name);
    snprintf(b, sizeof b, "%s_blocks", name);
    snprintf(sn, sizeof sn, "%s_scales", name);
    int64_t bd[4] = {E, outs[i], ins[i] / 32, 16},
            sd[3] = {E, outs[i], ins[i] / 32};
    if (!(st = cm_layer_find_codes(ck, b, 4, bd, &bt[i])) &&
        !(st = cm_layer_find_codes(ck, sn, 3, sd, &sc[i])) &&
        (bt[i]->readable != CLMOE_DTYPE_U8 || sc[i]->readable != CLMOE_DTYPE_U8))
      st = cm_fail_at(CLMOE_ERROR_UNSUPPORTED, FN,
                      "MXFP4 blocks and scales are U8; \"%s\" is %s and "
                      "\"%s\" %s",
                      b, bt[i]->dtype, sn, sc[i]->dtype);
  }
  if (st)
    return st;
  for (int m = 0; m < 3; ++m)
    for (int e = 0; e < E; ++e) {
      int i = m == 2;
      size_t at = (size_t)m * E + e;
      s->t[at] = bt[i];
      s->scale[at] = sc[i];
      s->first[at] = (uint64_t)e * outs[i] * (ins[i] / 2);
      s->sfirst[at] = (uint64_t)e * outs[i] * (ins[i] / 32);
    }
  s->rstride[0] = s->rstride[1] = 2; /* gate rows even, up rows odd */
  s->roff[1] = 1;
  s->codes = CLMOE_DTYPE_MXFP4;
  *stored = CLMOE_DTYPE_MXFP4;
  if (!(s->cbuf = malloc((size_t)(d > f ? d : f))))
    return cm_fail(CLMOE_ERROR_OUT_OF_HOST_MEMORY, "%s: out of host memory",
                   FN);
  return CLMOE_SUCCESS;
}

clmoe_status cm_source_qmatrix(void *user, int m, int e, cm_qmatrix *q) {
  expert_source *s = user;
  size_t at = (size_t)m * s->E + e;
  int out = q->out, in = q->in;
  if (s->codes == CLMOE_DTYPE_F8_E4M3) {
    clmoe_status st = cm_ck_read_range(s->ck, s->t[at], s->first[at],
                                       (uint64_t)out * in, CLMOE_DTYPE_F8_E4M3,
                                       q->codes);
    return st ? st
              : cm_ck_read_range(s->ck, s->scale[at], 0,
                                 cm_qmatrix_scale_count(q->dtype, out, in),
                                 CLMOE_DTYPE_F32, q->scales);
  }
  const uint8_t *codes = s->cbuf, *scales = s->cbuf + in / 2;
  clmoe_status st = CLMOE_SUCCESS;
  for (int j = 0; j < out && !st; ++j) {
    if ((st = mxfp4_row(s, m, e, j)))
      break;
    for (int k = 0; k < in; ++k)
      q->codes[(size_t)j * in + k] =
          (uint8_t)((codes[k / 2] >> (4 * (k & 1))) & 15);
    for (int g = 0; g < in / 32; ++g)
      q->scales[(size_t)j * (in / 32) + g] =
          cm_code_value(CLMOE_DTYPE_E8M0, scales, (size_t)g);
  }
  return st;
}

/* gpt-oss / Llama 4: gate_up [E, d, 2f] and down [E, f, d] in x.W order. */
static clmoe_status find_experts_xw(const clmoe_checkpoint *ck, const plan *p,
                                    int E, int f, expert_source *s) {
  int d = p->d;
  const cm_st_tensor *gu, *dn;
  clmoe_status st;
  if ((st = cm_layer_find(ck, p, p->names.gate_up, 0, 3, (int64_t[]){E, d, 2 * f},
                 &gu)) ||
      (st = cm_layer_find(ck, p, p->names.down, 0, 3, (int64_t[]){E, f, d}, &dn)))
    return st;
  size_t most = (size_t)d * 2 * f;
  if (!(s->slab = malloc(sizeof *s->slab * most)))
    return cm_fail(CLMOE_ERROR_OUT_OF_HOST_MEMORY,
                   "%s: expert slab: out of host memory", FN);
  s->xw = 1;
  s->cols[0] = s->cols[1] = 2 * f;
  s->cols[2] = d;
  s->stride[0] = s->stride[1] = p->interleaved ? 2 : 1;
  s->stride[2] = 1;
  s->col0[0] = s->col0[2] = 0;
  s->col0[1] = p->interleaved ? 1 : f; /* up: odd columns, or the 2nd half */
  for (int e = 0; e < E; ++e) {
    s->t[e] = s->t[E + e] = gu;
    s->first[e] = s->first[E + e] = (uint64_t)e * d * 2 * f;
    s->t[2 * E + e] = dn;
    s->first[2 * E + e] = (uint64_t)e * f * d;
  }
  return CLMOE_SUCCESS;
}

/* The E experts' matrices: one tensor per expert and projection
 * (templates w1, w3, w2), stacked [E, 2f, d] / [E, d, f], or stacked in
 * x.W order (p->xw), each checked against the sizes. *stored: the first
 * gate matrix's dtype. */
clmoe_status cm_find_experts(const clmoe_checkpoint *ck, const plan *p,
                                 const char *w1, const char *w3, const char *w2,
                                 const char *gate_up, const char *down, int E,
                                 int f, expert_source *s, clmoe_dtype *stored) {
  int gated = w3 || gate_up, d = p->d;
  s->ck = ck;
  s->E = E;
  s->in[0] = s->in[1] = d;
  s->in[2] = f;
  s->t = calloc((size_t)3 * E, sizeof *s->t);
  s->first = calloc((size_t)3 * E, sizeof *s->first);
  s->scale = calloc((size_t)3 * E, sizeof *s->scale);
  s->sfirst = calloc((size_t)3 * E, sizeof *s->sfirst);
  if (!s->t || !s->first || !s->scale || !s->sfirst)
    return cm_fail(CLMOE_ERROR_OUT_OF_HOST_MEMORY,
                   "%s: expert table: out of host memory", FN);
  for (int m = 0; m < 3; ++m) {
    s->rstride[m] = 1;
    s->roff[m] = 0;
  }
  const cm_st_tensor *t;
  clmoe_status st = CLMOE_SUCCESS;
  if (p->xw && !w1 && stacked_mxfp4(ck, p, gate_up))
    return find_experts_mxfp4(ck, p, gate_up, down, E, f, s, stored);
  if (p->xw && !w1) {
    if (!(st = find_experts_xw(ck, p, E, f, s)))
      *stored = s->t[0]->readable;
    return st;
  }
  if (w1 && is_f8(ck, p, w1))
    return find_experts_f8(ck, p, w1, w3, w2, E, f, s, stored);
  int stacked =
      !w1 || (!cm_layer_exists(ck, p, w1, 0) && gate_up && cm_layer_exists(ck, p, gate_up, 0));
  if (stacked &&
      !(st = cm_layer_find(ck, p, gate_up, 0, 3, (int64_t[]){E, 2 * f, d}, &t)))
    for (int e = 0; e < E; ++e) {
      s->t[e] = s->t[E + e] = t;
      s->first[e] = (uint64_t)e * 2 * f * d;
      s->first[E + e] = s->first[e] + (uint64_t)f * d;
    }
  for (int e = 0; !stacked && e < E && !st; ++e)
    if (!(st = cm_layer_find(ck, p, w1, e, 2, (int64_t[]){f, d}, &s->t[e])) && gated)
      st = cm_layer_find(ck, p, w3, e, 2, (int64_t[]){f, d}, &s->t[E + e]);
  if (st)
    return st;
  *stored = s->t[0]->readable;
  if (!w2 || (!cm_layer_exists(ck, p, w2, 0) && down && cm_layer_exists(ck, p, down, 0))) {
    if ((st = cm_layer_find(ck, p, down, 0, 3, (int64_t[]){E, d, f}, &t)))
      return st;
    for (int e = 0; e < E; ++e) {
      s->t[2 * E + e] = t;
      s->first[2 * E + e] = (uint64_t)e * d * f;
    }
    return CLMOE_SUCCESS;
  }
  for (int e = 0; e < E && !st; ++e)
    st = cm_layer_find(ck, p, w2, e, 2, (int64_t[]){d, f}, &s->t[2 * E + e]);
  return st;
}

