/* clmoe_score_attention: DA-MoE importance from attention probabilities or,
 * fused, from Q and K. Buffers and kernels live in the context's scoring
 * workspace (grow only), and the sequences are checked on the device, so a
 * steady-state call allocates nothing and blocks only for its final status
 * read (none with CLMOE_SCORE_DEFER_CHECK). */
#include <limits.h>
#include <math.h>
#include <stddef.h>
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
  SB_ROW_MAX, /* [H, T] fused pass 1 */
  SB_ROW_SUM, /* [H, T] */
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
  int layout;              /* probs: 0 [H, T, T], 1 [B, H, S, S] */
  int qk_layout;           /* fused: CLMOE_SCORE_LAYOUT_* */
  int Hkv;                 /* fused: key heads, dividing H */
  const clmoe_tensor *lse; /* fused: the caller's row log-sum-exp, or NULL */
} score_call;

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
  if (!q || !k)
    return cm_fail_at(CLMOE_ERROR_NULL_POINTER, FN,
                      "the fused path needs q and k");
  if ((st = cm_check_tensor(q, c->ctx, "q", CLMOE_DTYPE_F32, 3,
                            (int64_t[]){-1, -1, -1})) ||
      (st = cm_check_tensor(k, c->ctx, "k", CLMOE_DTYPE_F32, 3,
                            (int64_t[]){-1, -1, -1})))
    return st;
  int shd = c->qk_layout == CLMOE_SCORE_LAYOUT_SHD;
  c->H = (int)q->shape[shd ? 1 : 0];
  c->T = (int)q->shape[shd ? 0 : 1];
  c->dh = (int)q->shape[2];
  c->Hkv = (int)k->shape[shd ? 1 : 0];
  if (c->dh < 1)
    return cm_fail_at(CLMOE_ERROR_SHAPE_MISMATCH, FN, "q has head size 0");
  if (c->Hkv < 1 || (c->H % c->Hkv) != 0)
    return cm_fail_at(CLMOE_ERROR_SHAPE_MISMATCH, FN,
                      "k has %d heads, which does not divide q's %d", c->Hkv,
                      c->H);
  int64_t kdims[3] = {c->Hkv, c->T, c->dh};
  if (shd) {
    kdims[0] = c->T;
    kdims[1] = c->Hkv;
  }
  if ((st = cm_check_tensor(k, c->ctx, "k", CLMOE_DTYPE_F32, 3, kdims)))
    return st;
  return c->lse ? cm_check_tensor(c->lse, c->ctx, "lse", CLMOE_DTYPE_F32, 2,
                                  (int64_t[]){c->H, c->T})
                : CLMOE_SUCCESS;
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
  if ((int64_t)c->H * c->T > INT32_MAX)
    return cm_fail_at(CLMOE_ERROR_TOO_LARGE, FN, "H * T overflows int32");
  if (c->H < 1)
    return cm_fail_at(CLMOE_ERROR_SHAPE_MISMATCH, FN, "no heads (H = 0)");
  if ((st = cm_check_tensor(importance, c->ctx, "importance", CLMOE_DTYPE_F32,
                            1, (int64_t[]){c->T})))
    return st;
  if (d->seq_offsets) {
    if (c->layout == 1)
      return cm_fail_at(CLMOE_ERROR_INVALID_ARGUMENT, FN,
                        "seq_offsets cannot be combined with a padded "
                        "[B, H, S, S] probability batch");
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
static clmoe_status reserve(score_call *c, int fused) {
  size_t HT = (size_t)c->H * c->T * sizeof(float);
  const struct {
    int which;
    size_t bytes;
  } need[] = {
      {SB_OFFSETS, ((size_t)c->B + 1) * sizeof(cl_int)},
      {SB_LENGTHS, (size_t)c->B * sizeof(cl_int)},
      {SB_COL, HT},
      {SB_ROW_MAX, fused ? HT : 4},
      {SB_ROW_SUM, fused ? HT : 4},
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

/* col[h, j]: attention received, from the probabilities or fused. */
static clmoe_status enqueue_columns(score_call *c, const clmoe_score_desc *d,
                                    const clmoe_tensor *probs,
                                    const clmoe_tensor *q,
                                    const clmoe_tensor *k) {
  clmoe_context *ctx = c->ctx;
  cl_mem *b = c->ws->buf;
  size_t g2[2] = {(size_t)c->T, (size_t)c->H};
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
  float scale = d->scale != 0.0f ? d->scale : 1.0f / sqrtf((float)c->dh);
  int has_lse = c->lse != NULL;
  int check_lse = has_lse && (d->flags & CLMOE_SCORE_CHECK_LSE) != 0;
  cl_mem lse = has_lse ? c->lse->mem : b[SB_COL];
  /* Pass 1 finds each row's max and sum, unless the caller gave lse (then
   * it runs only to check it, on request). */
  if ((!has_lse || check_lse) &&
      ((st = cm_kernel(ctx, &c->ws->kernels, CM_K_SCORE_FUSED_ROWS, &kn)) ||
       (st = cm_launch(
            ctx, kn, "score_fused_rows", 2, g2, NULL,
            CM_ARGS(CM_ARG(c->T), CM_ARG(c->H), CM_ARG(c->Hkv),
                    CM_ARG(c->qk_layout), CM_ARG(c->dh), CM_ARG(scale),
                    CM_ARG(c->B), CM_ARG(c->causal), CM_ARG(b[SB_OFFSETS]),
                    CM_ARG(b[SB_LENGTHS]), CM_ARG(q->mem), CM_ARG(k->mem),
                    CM_ARG(b[SB_ROW_MAX]), CM_ARG(b[SB_ROW_SUM]),
                    CM_ARG(check_lse), CM_ARG(lse), CM_ARG(b[SB_STATUS]))))))
    return st;
  if ((st = cm_kernel(ctx, &c->ws->kernels, CM_K_SCORE_FUSED_COLUMNS, &kn)))
    return st;
  return cm_launch(
      ctx, kn, "score_fused_columns", 2, g2, NULL,
      CM_ARGS(CM_ARG(c->T), CM_ARG(c->H), CM_ARG(c->Hkv), CM_ARG(c->qk_layout),
              CM_ARG(c->dh), CM_ARG(scale), CM_ARG(c->B), CM_ARG(c->causal),
              CM_ARG(b[SB_OFFSETS]), CM_ARG(b[SB_LENGTHS]), CM_ARG(q->mem),
              CM_ARG(k->mem), CM_ARG(b[SB_ROW_MAX]), CM_ARG(b[SB_ROW_SUM]),
              CM_ARG(has_lse), CM_ARG(lse), CM_ARG(b[SB_COL]),
              CM_ARG(b[SB_STATUS])));
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
                      "seq_offsets is not strictly increasing at entry %d (%d "
                      "then %d)",
                      entry, a, b);
  default:
    return cm_fail_at(CLMOE_ERROR_INVALID_ARGUMENT, FN,
                      "key_lengths[%d] = %d is outside 0..%d", entry, a, b);
  }
  int T = c->T > 0 ? c->T : 1;
  if (w[SCORE_LSE_NONFINITE] != INT_MAX)
    return cm_fail_at(CLMOE_ERROR_NONFINITE_INPUT, FN,
                      "lse[%d, %d] is not finite (NaN or Inf)",
                      w[SCORE_LSE_NONFINITE] / T, w[SCORE_LSE_NONFINITE] % T);
  if (w[SCORE_LSE_MISMATCH] != INT_MAX)
    return cm_fail_at(CLMOE_ERROR_INVALID_ARGUMENT, FN,
                      "lse[%d, %d] differs from the log-sum-exp of its row "
                      "by more than 1e-3 (natural log over the visible keys "
                      "of scale * q . k expected)",
                      w[SCORE_LSE_MISMATCH] / T, w[SCORE_LSE_MISMATCH] % T);
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
  if ((st = reserve(c, probs == NULL)) ||
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
