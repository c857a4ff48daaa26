/* clmoe_score_attention: DA-MoE importance from attention probabilities or,
 * fused, from Q and K. Buffers and kernels live in the context's scoring
 * workspace (grow only), and the sequences are checked on the device, so a
 * steady-state call allocates nothing and blocks only for its final status
 * read (none with CLMOE_SCORE_DEFER_CHECK). */
#include <limits.h>
#include <math.h>
#include <stddef.h>
#include <stdio.h>
#include <string.h>

#include "runtime/kernel_abi.h"
#include "runtime/workspace.h"

static const char *const FN = "clmoe_score_attention";

void clmoe_score_desc_init_sized(clmoe_score_desc *desc, size_t size) {
  static const clmoe_score_desc defaults; /* everything 0 / NULL */
  cm_init_struct(desc, &defaults, sizeof defaults, size);
}

void(clmoe_score_desc_init)(clmoe_score_desc *desc) {
  clmoe_score_desc_init_sized(desc, offsetof(clmoe_score_desc, layout));
}

/* Buffers of the scoring workspace. */
enum {
  SB_OFFSETS, /* [B+1] sequence boundaries (given or implied) */
  SB_LENGTHS, /* [B] valid keys per sequence */
  SB_COL,     /* [H, T] attention received per head */
  SB_LSE,     /* [H, T] fused pass 1: each query row's log-sum-exp */
  SB_KT,      /* [H_kv, dh, Tp] float32: keys packed by dimension */
  SB_Q,       /* [H, T, dh] float32: the queries, widened and repacked */
  SB_STATUS   /* SCORE_STATUS_WORDS ints, see cl/score.cl */
};

/* Status words written by score_sequences and score_average. */
enum {
  SCORE_BAD_TOKEN = 0, /* INT_MAX unless some importance is not finite */
  SCORE_SEQ_ERROR = 1, /* 0, or which sequence check failed (1..3) */
  SCORE_SEQ_ENTRY = 2, /* the entry it failed at, and two values */
  SCORE_SEQ_A = 3,
  SCORE_SEQ_B = 4,
  SCORE_LSE_NONFINITE = 5, /* INT_MAX, or the first bad lse entry h*T+i */
  SCORE_LSE_MISMATCH = 6,  /* INT_MAX, or the first row lse does not fit */
  SCORE_STATUS_WORDS = 7
};

typedef struct score_call {
  clmoe_context *ctx;
  cm_workspace *ws;
  int T, H, B, S, dh, causal;
  /* Sequences implied by the shapes: 0 one of T tokens, 1 B padded ones of
   * S (probs [B, H, S, S] or q [B, S, H, dh]). */
  int layout;
  int qk_layout;           /* fused: CLMOE_SCORE_LAYOUT_* */
  int Hkv;                 /* fused: key heads, dividing H */
  const clmoe_tensor *lse; /* fused: the caller's row log-sum-exp, or NULL */
  int S_lse;               /* 0: lse is [H, T]; S: [B, H, S] */
} score_call;

/* Tokens the packed keys hold: T rounded up to whole key blocks (2 x the
 * vector width, at most 32). */
static int keys_padded(int T) { return (T + 31) / 32 * 32; }

/* Checks a fused input (any float dtype) against dims. */
static clmoe_status check_qk(const score_call *c, const clmoe_tensor *t,
                             const char *what, int rank, const int64_t *dims) {
  if (!t)
    return cm_fail_at(CLMOE_ERROR_NULL_POINTER, FN,
                      "the fused path needs q and k");
  clmoe_dtype dt = t->dtype;
  if (dt != CLMOE_DTYPE_F32 && dt != CLMOE_DTYPE_F16 && dt != CLMOE_DTYPE_BF16)
    dt = CLMOE_DTYPE_F32; /* the error names float32 */
  return cm_check_tensor(t, c->ctx, what, dt, rank, dims);
}

/* Shapes of q and k: [H, T, dh], [T, H, dh] or [B, S, H, dh] (SHD), k with
 * H_kv heads dividing H; and of lse: [H, T] or, for [B, S, H, dh], also
 * [B, H, S]. */
static clmoe_status read_qk_shapes(score_call *c, const clmoe_tensor *q,
                                   const clmoe_tensor *k) {
  clmoe_status st;
  int shd = c->qk_layout == CLMOE_SCORE_LAYOUT_SHD;
  int rank = shd && q && q->rank == 4 ? 4 : 3;
  int64_t any[4] = {-1, -1, -1, -1};
  if ((st = check_qk(c, q, "q", rank, any)) ||
      (st = check_qk(c, k, "k", rank, any)))
    return st;
  if (rank == 4) {
    c->layout = 1;
    c->B = (int)q->shape[0];
    c->S = (int)q->shape[1];
    if ((int64_t)c->B * c->S > INT32_MAX)
      return cm_fail_at(CLMOE_ERROR_TOO_LARGE, FN, "B * S overflows int32");
    c->T = c->B * c->S;
  } else {
    c->T = (int)q->shape[shd ? 0 : 1];
  }
  c->H = (int)q->shape[rank - 2 - !shd];
  c->Hkv = (int)k->shape[rank - 2 - !shd];
  c->dh = (int)q->shape[rank - 1];
  if (c->dh < 1)
    return cm_fail_at(CLMOE_ERROR_SHAPE_MISMATCH, FN, "q has head size 0");
  if (c->Hkv < 1 || (c->H % c->Hkv) != 0)
    return cm_fail_at(CLMOE_ERROR_SHAPE_MISMATCH, FN,
                      "k has %d heads, which does not divide q's %d", c->Hkv,
                      c->H);
  int64_t kdims[4] = {c->Hkv, c->T, c->dh, 0};
  if (rank == 4) {
    kdims[0] = c->B;
    kdims[1] = c->S;
    kdims[2] = c->Hkv;
    kdims[3] = c->dh;
  } else if (shd) {
    kdims[0] = c->T;
    kdims[1] = c->Hkv;
  }
  if ((st = check_qk(c, k, "k", rank, kdims)))
    return st;
  if (!c->lse)
    return CLMOE_SUCCESS;
  if (rank == 4 && c->lse->rank == 3) {
    c->S_lse = c->S;
    return cm_check_tensor(c->lse, c->ctx, "lse", CLMOE_DTYPE_F32, 3,
                           (int64_t[]){c->B, c->H, c->S});
  }
  return cm_check_tensor(c->lse, c->ctx, "lse", CLMOE_DTYPE_F32, 2,
                         (int64_t[]){c->H, c->T});
}

/* Shapes of the inputs: T, H, dh, layout, padded B and S. */
static clmoe_status read_shapes(score_call *c, const clmoe_tensor *probs,
                                const clmoe_tensor *q, const clmoe_tensor *k) {
  clmoe_status st;
  if (!!probs == !!(q || k))
    return cm_fail_at(CLMOE_ERROR_INVALID_ARGUMENT, FN,
                      "give either probs or both q and k");
  if (probs) {
    if (probs->rank == 4) {
      c->layout = 1;
      c->B = (int)probs->shape[0];
      c->H = (int)probs->shape[1];
      c->S = (int)probs->shape[2];
      c->T = c->B * c->S;
      return cm_check_tensor(probs, c->ctx, "probs", CLMOE_DTYPE_F32, 4,
                             (int64_t[]){-1, -1, c->S, c->S});
    }
    if ((st = cm_check_tensor(probs, c->ctx, "probs", CLMOE_DTYPE_F32, 3,
                              (int64_t[]){-1, -1, -1})))
      return st;
    c->H = (int)probs->shape[0];
    c->T = (int)probs->shape[1];
    return cm_check_tensor(probs, c->ctx, "probs", CLMOE_DTYPE_F32, 3,
                           (int64_t[]){c->H, c->T, c->T});
  }
  return read_qk_shapes(c, q, k);
}

/* What can be checked on the host: the descriptor and the shapes. */
static clmoe_status check_call(score_call *c, const clmoe_score_desc *d,
                               const clmoe_tensor *probs, const clmoe_tensor *q,
                               const clmoe_tensor *k,
                               const clmoe_tensor *importance) {
  clmoe_status st =
      cm_check_struct(d, offsetof(clmoe_score_desc, layout), "score desc");
  if (st)
    return st;
  if (d->mask != CLMOE_SCORE_MASK_NONE && d->mask != CLMOE_SCORE_MASK_CAUSAL)
    return cm_fail_at(CLMOE_ERROR_INVALID_ARGUMENT, FN, "unknown mask %d",
                      (int)d->mask);
  if (d->norm != CLMOE_SCORE_NORM_MAX && d->norm != CLMOE_SCORE_NORM_RAW)
    return cm_fail_at(CLMOE_ERROR_INVALID_ARGUMENT, FN, "unknown norm %d",
                      (int)d->norm);
  if (!isfinite(d->scale))
    return cm_fail_at(CLMOE_ERROR_INVALID_ARGUMENT, FN, "scale is not finite");
  c->causal = d->mask == CLMOE_SCORE_MASK_CAUSAL;
  c->qk_layout = CM_HAS_FIELD(d, clmoe_score_desc, layout)
                     ? d->layout
                     : CLMOE_SCORE_LAYOUT_HSD;
  c->lse = CM_HAS_FIELD(d, clmoe_score_desc, lse) ? d->lse : NULL;
  if (c->qk_layout != CLMOE_SCORE_LAYOUT_HSD &&
      c->qk_layout != CLMOE_SCORE_LAYOUT_SHD)
    return cm_fail_at(CLMOE_ERROR_INVALID_ARGUMENT, FN, "unknown layout %d",
                      (int)c->qk_layout);
  if (c->lse && probs)
    return cm_fail_at(CLMOE_ERROR_INVALID_ARGUMENT, FN,
                      "lse belongs to the fused path (q, k), not probs");
  if ((st = read_shapes(c, probs, q, k)))
    return st;
  if ((int64_t)c->H * c->T > INT32_MAX - 64)
    return cm_fail_at(CLMOE_ERROR_TOO_LARGE, FN, "H * T overflows int32");
  if (c->H < 1)
    return cm_fail_at(CLMOE_ERROR_SHAPE_MISMATCH, FN, "no heads (H = 0)");
  if ((st = cm_check_tensor(importance, c->ctx, "importance", CLMOE_DTYPE_F32,
                            1, (int64_t[]){c->T})))
    return st;
  if (d->seq_offsets) {
    if (c->layout == 1)
      return cm_fail_at(CLMOE_ERROR_INVALID_ARGUMENT, FN,
                        "seq_offsets cannot be combined with a padded batch "
                        "(probs [B, H, S, S] or q [B, S, H, dh])");
    if ((st = cm_check_tensor(d->seq_offsets, c->ctx, "seq_offsets",
                              CLMOE_DTYPE_I32, 1, (int64_t[]){-1})))
      return st;
    if (d->seq_offsets->shape[0] < 2)
      return cm_fail_at(CLMOE_ERROR_SHAPE_MISMATCH, FN,
                        "seq_offsets needs B + 1 >= 2 entries");
    if (d->seq_offsets->shape[0] - 1 > INT32_MAX / 2)
      return cm_fail_at(CLMOE_ERROR_TOO_LARGE, FN, "too many sequences");
    c->B = (int)d->seq_offsets->shape[0] - 1;
  } else if (c->layout == 0) {
    c->B = 1;
  }
  if (d->key_lengths)
    return cm_check_tensor(d->key_lengths, c->ctx, "key_lengths",
                           CLMOE_DTYPE_I32, 1, (int64_t[]){c->B});
  return CLMOE_SUCCESS;
}

/* Sizes the workspace for this call (grows only). */
static clmoe_status reserve(score_call *c, const clmoe_tensor *q) {
  int fused = q != NULL;
  size_t HT = (size_t)c->H * c->T * sizeof(float);
  size_t kt = fused ? (size_t)c->Hkv * c->dh * keys_padded(c->T) * 4 : 4;
  const struct {
    int which;
    size_t bytes;
  } need[] = {
      {SB_OFFSETS, ((size_t)c->B + 1) * sizeof(cl_int)},
      {SB_LENGTHS, (size_t)c->B * sizeof(cl_int)},
      {SB_COL, HT},
      {SB_LSE, fused ? HT : 4},
      {SB_KT, kt},
      {SB_Q, fused ? HT * c->dh : 4},
      {SB_STATUS, SCORE_STATUS_WORDS * sizeof(cl_int)},
  };
  for (size_t i = 0; i < sizeof need / sizeof *need; ++i) {
    clmoe_status st =
        cm_workspace_reserve(c->ctx, c->ws, need[i].which, need[i].bytes);
    if (st)
      return st;
  }
  return CLMOE_SUCCESS;
}

/* Sequence boundaries and key lengths into the workspace, checked on the
 * device; a failed check leaves one safe sequence and an error code. */
static clmoe_status enqueue_sequences(score_call *c,
                                      const clmoe_score_desc *d) {
  cl_kernel kn;
  clmoe_status st =
      cm_kernel(c->ctx, &c->ws->kernels, CM_K_SCORE_SEQUENCES, &kn);
  if (st)
    return st;
  cl_mem *b = c->ws->buf;
  int has_offsets = d->seq_offsets != NULL,
      has_lengths = d->key_lengths != NULL;
  cl_mem offsets = has_offsets ? d->seq_offsets->mem : b[SB_OFFSETS];
  cl_mem lengths = has_lengths ? d->key_lengths->mem : b[SB_LENGTHS];
  size_t one = 1;
  return cm_launch(c->ctx, kn, "score_sequences", 1, &one, NULL,
                   CM_ARGS(CM_ARG(c->T), CM_ARG(c->B), CM_ARG(c->S),
                           CM_ARG(c->layout), CM_ARG(has_offsets),
                           CM_ARG(offsets), CM_ARG(has_lengths),
                           CM_ARG(lengths), CM_ARG(b[SB_OFFSETS]),
                           CM_ARG(b[SB_LENGTHS]), CM_ARG(b[SB_STATUS])));
}

/* Element strides (head, token) of a q or k tensor in the call's layout. */
static void qk_strides(const score_call *c, int heads, cl_long *sh,
                       cl_long *st) {
  int shd = c->qk_layout == CLMOE_SCORE_LAYOUT_SHD;
  *sh = shd ? c->dh : (cl_long)c->T * c->dh;
  *st = shd ? (cl_long)heads * c->dh : c->dh;
}

/* Widens t into float32 dst: key blocks (kb = 1, KT in cl/score.cl) or
 * query rows [heads][T][dh] (kb = 0); tokens T .. Tp-1 are zeros. */
static clmoe_status enqueue_pack(score_call *c, const clmoe_tensor *t,
                                 int heads, int Tp, int kb, cl_mem dst) {
  cl_kernel kn;
  clmoe_status st = cm_kernel(c->ctx, &c->ws->kernels, CM_K_SCORE_PACK, &kn);
  if (st)
    return st;
  cl_long sh, stt;
  qk_strides(c, heads, &sh, &stt);
  int dt = t->dtype;
  size_t g[2] = {(size_t)Tp, (size_t)heads};
  return cm_launch(c->ctx, kn, "score_pack", 2, g, NULL,
                   CM_ARGS(CM_ARG(c->T), CM_ARG(Tp), CM_ARG(heads),
                           CM_ARG(c->dh), CM_ARG(dt), CM_ARG(t->mem),
                           CM_ARG(sh), CM_ARG(stt), CM_ARG(kb), CM_ARG(dst)));
}

/* The fused path: queries and keys packed (cl/score.cl),
 * pass 1 for each row's log-sum-exp unless the caller gave it (then only to
 * check it, on request), pass 2 for the column sums. */
static clmoe_status enqueue_fused(score_call *c, const clmoe_score_desc *d,
                                  const clmoe_tensor *q,
                                  const clmoe_tensor *k) {
  clmoe_context *ctx = c->ctx;
  cl_mem *b = c->ws->buf;
  const cm_tuning *tu = &ctx->tuning;
  int Tp = keys_padded(c->T), dh = c->dh;
  clmoe_status st = enqueue_pack(c, k, c->Hkv, Tp, 1, b[SB_KT]);
  if (st)
    return st;
  if ((st = enqueue_pack(c, q, c->H, c->T, 0, b[SB_Q])))
    return st;
  float scale = d->scale != 0.0f ? d->scale : 1.0f / sqrtf((float)dh);
  int has_lse = c->lse != NULL, S_lse = has_lse ? c->S_lse : 0;
  int check_lse = has_lse && (d->flags & CLMOE_SCORE_CHECK_LSE) != 0;
  cl_mem lse = has_lse ? c->lse->mem : b[SB_LSE];
  size_t local[2] = {(size_t)tu->score_lx, 1};
  size_t g1[2] = {(size_t)(c->T + tu->score_rm - 1) / tu->score_rm,
                  (size_t)c->H};
  size_t g2[2] = {(size_t)Tp / (2 * tu->score_vw), (size_t)c->H};
  if (tu->score_lx) { /* whole work-groups */
    g1[0] = (g1[0] + local[0] - 1) / local[0] * local[0];
    g2[0] = (g2[0] + local[0] - 1) / local[0] * local[0];
  }
  /* SCORE_DC: the work-group kernels (cl/score_local.cl), same results. */
  int wg = tu->score_dc > 0;
  cl_kernel kn;
  if ((!has_lse || check_lse) &&
      ((st = cm_kernel(ctx, &c->ws->kernels,
                       wg ? CM_K_SCORE_ROW_LSE_LOCAL : CM_K_SCORE_ROW_LSE,
                       &kn)) ||
       (st = cm_launch(
            ctx, kn, wg ? "score_row_lse_local" : "score_row_lse", 2, g1,
            tu->score_lx ? local : NULL,
            CM_ARGS(CM_ARG(c->T), CM_ARG(c->H), CM_ARG(c->Hkv), CM_ARG(dh),
                    CM_ARG(Tp), CM_ARG(scale), CM_ARG(c->B), CM_ARG(c->causal),
                    CM_ARG(b[SB_OFFSETS]), CM_ARG(b[SB_LENGTHS]),
                    CM_ARG(b[SB_Q]), CM_ARG(b[SB_KT]), CM_ARG(b[SB_LSE]),
                    CM_ARG(check_lse), CM_ARG(S_lse), CM_ARG(lse),
                    CM_ARG(b[SB_STATUS]))))))
    return st;
  if ((st = cm_kernel(ctx, &c->ws->kernels,
                      wg ? CM_K_SCORE_COL_SUMS_LOCAL : CM_K_SCORE_COL_SUMS,
                      &kn)))
    return st;
  return cm_launch(
      ctx, kn, wg ? "score_col_sums_local" : "score_col_sums", 2, g2,
      tu->score_lx ? local : NULL,
      CM_ARGS(CM_ARG(c->T), CM_ARG(c->H), CM_ARG(c->Hkv), CM_ARG(dh),
              CM_ARG(Tp), CM_ARG(scale), CM_ARG(c->B), CM_ARG(c->causal),
              CM_ARG(b[SB_OFFSETS]), CM_ARG(b[SB_LENGTHS]), CM_ARG(b[SB_Q]),
              CM_ARG(b[SB_KT]), CM_ARG(S_lse), CM_ARG(lse), CM_ARG(has_lse),
              CM_ARG(b[SB_COL]), CM_ARG(b[SB_STATUS])));
}

/* col[h, j]: attention received, from the probabilities or fused. */
static clmoe_status enqueue_columns(score_call *c, const clmoe_score_desc *d,
                                    const clmoe_tensor *probs,
                                    const clmoe_tensor *q,
                                    const clmoe_tensor *k) {
  clmoe_context *ctx = c->ctx;
  cl_mem *b = c->ws->buf;
  size_t g2[2] = {((size_t)c->T + CM_PROB_COLS - 1) / CM_PROB_COLS,
                  (size_t)c->H};
  cl_kernel kn;
  clmoe_status st;
  if (probs)
    return (st = cm_kernel(ctx, &c->ws->kernels, CM_K_SCORE_PROB_COLUMNS, &kn))
               ? st
               : cm_launch(ctx, kn, "score_prob_columns", 2, g2, NULL,
                           CM_ARGS(CM_ARG(c->T), CM_ARG(c->H), CM_ARG(c->B),
                                   CM_ARG(c->S), CM_ARG(c->layout),
                                   CM_ARG(c->causal), CM_ARG(b[SB_OFFSETS]),
                                   CM_ARG(b[SB_LENGTHS]), CM_ARG(probs->mem),
                                   CM_ARG(b[SB_COL])));
  return enqueue_fused(c, d, q, k);
}

/* importance from col: average, then (NORM_MAX) per-sequence scaling. */
static clmoe_status enqueue_importance(score_call *c, const clmoe_score_desc *d,
                                       clmoe_tensor *importance) {
  clmoe_context *ctx = c->ctx;
  cl_mem *b = c->ws->buf;
  size_t g1 = (size_t)c->T, gb = (size_t)c->B;
  cl_kernel kn;
  clmoe_status st;
  if ((st = cm_kernel(ctx, &c->ws->kernels, CM_K_SCORE_AVERAGE, &kn)) ||
      (st = cm_launch(ctx, kn, "score_average", 1, &g1, NULL,
                      CM_ARGS(CM_ARG(c->T), CM_ARG(c->H), CM_ARG(c->B),
                              CM_ARG(c->causal), CM_ARG(b[SB_OFFSETS]),
                              CM_ARG(b[SB_LENGTHS]), CM_ARG(b[SB_COL]),
                              CM_ARG(importance->mem), CM_ARG(b[SB_STATUS])))))
    return st;
  if (d->norm != CLMOE_SCORE_NORM_MAX)
    return CLMOE_SUCCESS;
  if ((st = cm_kernel(ctx, &c->ws->kernels, CM_K_SCORE_NORMALIZE, &kn)))
    return st;
  return cm_launch(
      ctx, kn, "score_normalize", 1, &gb, NULL,
      CM_ARGS(CM_ARG(c->B), CM_ARG(b[SB_OFFSETS]), CM_ARG(importance->mem)));
}

/* "lse[h, i]" (or "lse[b, h, s]" for a [B, H, S] lse) for the row h * T + i
 * a kernel reported. */
static const char *lse_entry(const score_call *c, int row, char *out,
                             size_t len) {
  int T = c->T > 0 ? c->T : 1, h = row / T, i = row % T;
  if (c->S_lse)
    snprintf(out, len, "lse[%d, %d, %d]", i / c->S_lse, h, i % c->S_lse);
  else
    snprintf(out, len, "lse[%d, %d]", h, i);
  return out;
}

/* Blocks for the status words and turns them into an error. */
static clmoe_status read_status(score_call *c, int from_probs) {
  cl_int w[SCORE_STATUS_WORDS];
  cl_int err = clEnqueueReadBuffer(c->ctx->queue, c->ws->buf[SB_STATUS],
                                   CL_TRUE, 0, sizeof w, w, 0, NULL, NULL);
  if (err != CL_SUCCESS)
    return cm_cl_fail(err, "clmoe_score_attention: clEnqueueReadBuffer");
  int entry = w[SCORE_SEQ_ENTRY], a = w[SCORE_SEQ_A], b = w[SCORE_SEQ_B];
  switch (w[SCORE_SEQ_ERROR]) {
  case 0:
    break;
  case 1:
    return cm_fail_at(CLMOE_ERROR_INVALID_ARGUMENT, FN,
                      "seq_offsets must start at 0 and end at T = %d (got %d "
                      ".. %d)",
                      c->T, a, b);
  case 2:
    return cm_fail_at(CLMOE_ERROR_INVALID_ARGUMENT, FN,
                      "seq_offsets decreases at entry %d (%d then %d)", entry,
                      a, b);
  default:
    return cm_fail_at(CLMOE_ERROR_INVALID_ARGUMENT, FN,
                      "key_lengths[%d] = %d is outside 0..%d", entry, a, b);
  }
  char entry_name[48];
  if (w[SCORE_LSE_NONFINITE] != INT_MAX)
    return cm_fail_at(
        CLMOE_ERROR_NONFINITE_INPUT, FN, "%s is not finite (NaN or Inf)",
        lse_entry(c, w[SCORE_LSE_NONFINITE], entry_name, sizeof entry_name));
  if (w[SCORE_LSE_MISMATCH] != INT_MAX)
    return cm_fail_at(
        CLMOE_ERROR_INVALID_ARGUMENT, FN,
        "%s differs from the log-sum-exp of its row by more "
        "than 1e-3 (natural log over the visible keys of "
        "scale * q . k expected)",
        lse_entry(c, w[SCORE_LSE_MISMATCH], entry_name, sizeof entry_name));
  if (w[SCORE_BAD_TOKEN] != INT_MAX)
    return cm_fail_at(CLMOE_ERROR_NONFINITE_INPUT, FN,
                      "the attention received by token %d is not finite "
                      "(NaN or Inf in the %s)",
                      w[SCORE_BAD_TOKEN],
                      from_probs ? "probabilities" : "queries or keys");
  return CLMOE_SUCCESS;
}

static clmoe_status run(score_call *c, const clmoe_score_desc *d,
                        const clmoe_tensor *probs, const clmoe_tensor *q,
                        const clmoe_tensor *k, clmoe_tensor *importance,
                        uint32_t num_wait, const cl_event *wait) {
  clmoe_status st;
  if ((st = reserve(c, q)) ||
      (st = cm_enqueue_wait(c->ctx, num_wait, wait, FN)) ||
      (st = enqueue_sequences(c, d)) ||
      (st = enqueue_columns(c, d, probs, q, k)) ||
      (st = enqueue_importance(c, d, importance)))
    return st;
  return (d->flags & CLMOE_SCORE_DEFER_CHECK) ? CLMOE_SUCCESS
                                              : read_status(c, probs != NULL);
}

clmoe_status clmoe_score_attention(clmoe_context *ctx,
                                   const clmoe_score_desc *desc,
                                   const clmoe_tensor *probs,
                                   const clmoe_tensor *q, const clmoe_tensor *k,
                                   clmoe_tensor *importance, uint32_t num_wait,
                                   const cl_event *wait, cl_event *out_event) {
  if (out_event)
    *out_event = NULL;
  if (!ctx)
    return cm_fail_at(CLMOE_ERROR_NULL_POINTER, FN, "ctx is NULL");
  clmoe_score_desc defaults;
  clmoe_score_desc_init(&defaults);
  score_call c;
  memset(&c, 0, sizeof c);
  c.ctx = ctx;
  c.ws = ctx->score_ws;
  clmoe_status st =
      check_call(&c, desc ? desc : &defaults, probs, q, k, importance);
  if (st || c.T == 0)
    return st ? st : cm_enqueue_done(ctx, out_event);
  /* The workspace serves one call at a time; the queue is in order, so the
   * next call may reuse its buffers as soon as this one is enqueued. */
  pthread_mutex_lock(&ctx->score_lock);
  st =
      run(&c, desc ? desc : &defaults, probs, q, k, importance, num_wait, wait);
  pthread_mutex_unlock(&ctx->score_lock);
  return st ? st : cm_enqueue_done(ctx, out_event);
}
