/* clmoe_score_attention: DA-MoE importance from attention probabilities or,
 * fused, from Q and K. */
#include <limits.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "launch.h"

void clmoe_score_desc_init(clmoe_score_desc *desc) {
  if (!desc)
    return;
  memset(desc, 0, sizeof *desc);
  desc->struct_size = sizeof *desc;
}

#define FN "clmoe_score_attention"

typedef struct score_call {
  clmoe_context *ctx;
  cm_kernels ks;
  int T, H, B, S, dh, layout, causal;
  int *offsets, *lengths; /* host copies, B+1 and B */
  cl_mem d_offsets, d_lengths, col, row_max, row_sum, bad;
} score_call;

static void release(score_call *c) {
  cm_kernels_release(&c->ks);
  free(c->offsets);
  free(c->lengths);
  cm_release_mem(&c->d_offsets);
  cm_release_mem(&c->d_lengths);
  cm_release_mem(&c->col);
  cm_release_mem(&c->row_max);
  cm_release_mem(&c->row_sum);
  cm_release_mem(&c->bad);
}

static clmoe_status read_ints(const clmoe_tensor *t, int n, int **out) {
  *out = malloc(sizeof **out * (size_t)(n ? n : 1));
  if (!*out)
    return cm_fail(CLMOE_ERROR_OUT_OF_HOST_MEMORY, FN ": out of host memory");
  return clmoe_tensor_read(t, *out, sizeof **out * (size_t)n);
}

/* Sequence boundaries and key lengths, validated on the host (B is small). */
static clmoe_status load_sequences(score_call *c, const clmoe_score_desc *d) {
  clmoe_status st;
  if (d->seq_offsets) {
    if (c->layout == 1)
      return cm_fail(CLMOE_ERROR_INVALID_ARGUMENT,
                     FN ": seq_offsets cannot be combined with a padded "
                        "[B, H, S, S] probability batch");
    if ((st = cm_check_tensor(d->seq_offsets, c->ctx, "seq_offsets",
                              CLMOE_DTYPE_I32, 1, (int64_t[]){-1})))
      return st;
    if (d->seq_offsets->shape[0] < 2)
      return cm_fail(CLMOE_ERROR_SHAPE_MISMATCH,
                     FN ": seq_offsets needs B + 1 >= 2 entries");
    c->B = (int)d->seq_offsets->shape[0] - 1;
    if ((st = read_ints(d->seq_offsets, c->B + 1, &c->offsets)))
      return st;
    if (c->offsets[0] != 0 || c->offsets[c->B] != c->T)
      return cm_fail(CLMOE_ERROR_INVALID_ARGUMENT,
                     FN ": seq_offsets must start at 0 and end at T = %d "
                        "(got %d .. %d)",
                     c->T, c->offsets[0], c->offsets[c->B]);
    for (int b = 0; b < c->B; ++b)
      if (c->offsets[b + 1] <= c->offsets[b])
        return cm_fail(CLMOE_ERROR_INVALID_ARGUMENT,
                       FN ": seq_offsets is not strictly increasing at "
                          "entry %d (%d then %d)",
                       b, c->offsets[b], c->offsets[b + 1]);
  } else {
    c->B = c->layout == 1 ? c->B : 1;
    c->offsets = malloc(sizeof *c->offsets * ((size_t)c->B + 1));
    if (!c->offsets)
      return cm_fail(CLMOE_ERROR_OUT_OF_HOST_MEMORY, FN ": out of host memory");
    for (int b = 0; b <= c->B; ++b)
      c->offsets[b] = c->layout == 1 ? b * c->S : (b ? c->T : 0);
  }
  if (d->key_lengths) {
    if ((st = cm_check_tensor(d->key_lengths, c->ctx, "key_lengths",
                              CLMOE_DTYPE_I32, 1, (int64_t[]){c->B})) ||
        (st = read_ints(d->key_lengths, c->B, &c->lengths)))
      return st;
    for (int b = 0; b < c->B; ++b) {
      int len = c->offsets[b + 1] - c->offsets[b];
      if (c->lengths[b] < 0 || c->lengths[b] > len)
        return cm_fail(CLMOE_ERROR_INVALID_ARGUMENT,
                       FN ": key_lengths[%d] = %d is outside 0..%d", b,
                       c->lengths[b], len);
    }
  } else {
    c->lengths = malloc(sizeof *c->lengths * (size_t)c->B);
    if (!c->lengths)
      return cm_fail(CLMOE_ERROR_OUT_OF_HOST_MEMORY, FN ": out of host memory");
    for (int b = 0; b < c->B; ++b)
      c->lengths[b] = c->offsets[b + 1] - c->offsets[b];
  }
  size_t ob = sizeof(int) * ((size_t)c->B + 1), lb = sizeof(int) * c->B;
  if ((st = cm_buffer_create(c->ctx, ob, CL_MEM_READ_ONLY, &c->d_offsets)) ||
      (st = cm_buffer_create(c->ctx, lb, CL_MEM_READ_ONLY, &c->d_lengths)))
    return st;
  /* Blocking: the host copies are freed when the call returns. */
  cl_int err = clEnqueueWriteBuffer(c->ctx->queue, c->d_offsets, CL_TRUE, 0,
                                    ob, c->offsets, 0, NULL, NULL);
  if (err == CL_SUCCESS)
    err = clEnqueueWriteBuffer(c->ctx->queue, c->d_lengths, CL_TRUE, 0, lb,
                               c->lengths, 0, NULL, NULL);
  return err == CL_SUCCESS ? CLMOE_SUCCESS
                           : cm_cl_fail(err, FN ": clEnqueueWriteBuffer");
}

/* Shapes of the inputs: T, H, dh, layout, padded B and S. */
static clmoe_status read_shapes(score_call *c, const clmoe_tensor *probs,
                                const clmoe_tensor *q, const clmoe_tensor *k) {
  clmoe_status st;
  if (!!probs == !!(q || k))
    return cm_fail(CLMOE_ERROR_INVALID_ARGUMENT,
                   FN ": give either probs or both q and k");
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
    return cm_fail(CLMOE_ERROR_NULL_POINTER, FN ": the fused path needs q and k");
  if ((st = cm_check_tensor(q, c->ctx, "q", CLMOE_DTYPE_F32, 3,
                            (int64_t[]){-1, -1, -1})))
    return st;
  c->H = (int)q->shape[0];
  c->T = (int)q->shape[1];
  c->dh = (int)q->shape[2];
  if (c->dh < 1)
    return cm_fail(CLMOE_ERROR_SHAPE_MISMATCH, FN ": q has head size 0");
  return cm_check_tensor(k, c->ctx, "k", CLMOE_DTYPE_F32, 3,
                         (int64_t[]){c->H, c->T, c->dh});
}

static clmoe_status run(score_call *c, const clmoe_score_desc *d,
                        const clmoe_tensor *probs, const clmoe_tensor *q,
                        const clmoe_tensor *k, clmoe_tensor *importance) {
  clmoe_context *ctx = c->ctx;
  size_t HT = (size_t)c->H * c->T;
  clmoe_status st;
  if ((st = cm_buffer_create(ctx, HT * 4, CL_MEM_READ_WRITE, &c->col)) ||
      (st = cm_buffer_create(ctx, 4, CL_MEM_READ_WRITE, &c->bad)))
    return st;
  const cl_int int_max = INT_MAX;
  cl_int err = clEnqueueWriteBuffer(ctx->queue, c->bad, CL_TRUE, 0, 4,
                                    &int_max, 0, NULL, NULL);
  if (err != CL_SUCCESS)
    return cm_cl_fail(err, FN ": clEnqueueWriteBuffer");
  size_t g2[2] = {(size_t)c->T, (size_t)c->H}, g1 = (size_t)c->T,
         gb = (size_t)c->B;
  cl_kernel kn;
  if (probs) {
    if ((st = cm_kernel(ctx, &c->ks, CM_K_SCORE_PROB_COLUMNS, &kn)) ||
        (st = cm_launch(ctx, kn, "score_prob_columns", 2, g2, NULL,
                        CM_ARGS(CM_ARG(c->T), CM_ARG(c->H), CM_ARG(c->B),
                                CM_ARG(c->S), CM_ARG(c->layout),
                                CM_ARG(c->causal), CM_ARG(c->d_offsets),
                                CM_ARG(c->d_lengths), CM_ARG(probs->mem),
                                CM_ARG(c->col)))))
      return st;
  } else {
    float scale = d->scale != 0.0f ? d->scale : 1.0f / sqrtf((float)c->dh);
    if ((st = cm_buffer_create(ctx, HT * 4, CL_MEM_READ_WRITE, &c->row_max)) ||
        (st = cm_buffer_create(ctx, HT * 4, CL_MEM_READ_WRITE, &c->row_sum)) ||
        (st = cm_kernel(ctx, &c->ks, CM_K_SCORE_FUSED_ROWS, &kn)) ||
        (st = cm_launch(ctx, kn, "score_fused_rows", 2, g2, NULL,
                        CM_ARGS(CM_ARG(c->T), CM_ARG(c->H), CM_ARG(c->dh),
                                CM_ARG(scale), CM_ARG(c->B), CM_ARG(c->causal),
                                CM_ARG(c->d_offsets), CM_ARG(c->d_lengths),
                                CM_ARG(q->mem), CM_ARG(k->mem),
                                CM_ARG(c->row_max), CM_ARG(c->row_sum)))) ||
        (st = cm_kernel(ctx, &c->ks, CM_K_SCORE_FUSED_COLUMNS, &kn)) ||
        (st = cm_launch(ctx, kn, "score_fused_columns", 2, g2, NULL,
                        CM_ARGS(CM_ARG(c->T), CM_ARG(c->H), CM_ARG(c->dh),
                                CM_ARG(scale), CM_ARG(c->B), CM_ARG(c->causal),
                                CM_ARG(c->d_offsets), CM_ARG(c->d_lengths),
                                CM_ARG(q->mem), CM_ARG(k->mem),
                                CM_ARG(c->row_max), CM_ARG(c->row_sum),
                                CM_ARG(c->col)))))
      return st;
  }
  if ((st = cm_kernel(ctx, &c->ks, CM_K_SCORE_AVERAGE, &kn)) ||
      (st = cm_launch(ctx, kn, "score_average", 1, &g1, NULL,
                      CM_ARGS(CM_ARG(c->T), CM_ARG(c->H), CM_ARG(c->B),
                              CM_ARG(c->causal), CM_ARG(c->d_offsets),
                              CM_ARG(c->d_lengths), CM_ARG(c->col),
                              CM_ARG(importance->mem), CM_ARG(c->bad)))))
    return st;
  if (d->norm == CLMOE_SCORE_NORM_MAX &&
      ((st = cm_kernel(ctx, &c->ks, CM_K_SCORE_NORMALIZE, &kn)) ||
       (st = cm_launch(ctx, kn, "score_normalize", 1, &gb, NULL,
                       CM_ARGS(CM_ARG(c->B), CM_ARG(c->d_offsets),
                               CM_ARG(importance->mem))))))
    return st;
  if (d->flags & CLMOE_SCORE_DEFER_CHECK)
    return CLMOE_SUCCESS;
  cl_int bad = INT_MAX;
  err = clEnqueueReadBuffer(ctx->queue, c->bad, CL_TRUE, 0, 4, &bad, 0, NULL,
                            NULL);
  if (err != CL_SUCCESS)
    return cm_cl_fail(err, FN ": clEnqueueReadBuffer");
  if (bad != INT_MAX)
    return cm_fail(CLMOE_ERROR_NONFINITE_INPUT,
                   FN ": the attention received by token %d is not finite "
                      "(NaN or Inf in the %s)",
                   bad, probs ? "probabilities" : "queries or keys");
  return CLMOE_SUCCESS;
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
    return cm_fail(CLMOE_ERROR_NULL_POINTER, FN ": ctx is NULL");
  clmoe_score_desc defaults;
  clmoe_score_desc_init(&defaults);
  if (!desc)
    desc = &defaults;
  clmoe_status st = cm_check_struct(desc, sizeof *desc, "score desc");
  if (st)
    return st;
  if (desc->mask != CLMOE_SCORE_MASK_NONE &&
      desc->mask != CLMOE_SCORE_MASK_CAUSAL)
    return cm_fail(CLMOE_ERROR_INVALID_ARGUMENT, FN ": unknown mask %d",
                   (int)desc->mask);
  if (desc->norm != CLMOE_SCORE_NORM_MAX && desc->norm != CLMOE_SCORE_NORM_RAW)
    return cm_fail(CLMOE_ERROR_INVALID_ARGUMENT, FN ": unknown norm %d",
                   (int)desc->norm);
  if (!isfinite(desc->scale))
    return cm_fail(CLMOE_ERROR_INVALID_ARGUMENT, FN ": scale is not finite");
  score_call c;
  memset(&c, 0, sizeof c);
  c.ctx = ctx;
  c.causal = desc->mask == CLMOE_SCORE_MASK_CAUSAL;
  if (!(st = read_shapes(&c, probs, q, k))) {
    if ((int64_t)c.H * c.T > INT32_MAX)
      st = cm_fail(CLMOE_ERROR_TOO_LARGE, FN ": H * T overflows int32");
    else if (c.H < 1)
      st = cm_fail(CLMOE_ERROR_SHAPE_MISMATCH, FN ": no heads (H = 0)");
  }
  if (!st)
    st = cm_check_tensor(importance, ctx, "importance", CLMOE_DTYPE_F32, 1,
                         (int64_t[]){c.T});
  if (!st && c.T > 0 && !(st = load_sequences(&c, desc)) &&
      !(st = cm_enqueue_wait(ctx, num_wait, wait, FN)))
    st = run(&c, desc, probs, q, k, importance);
  release(&c);
  return st ? st : cm_enqueue_done(ctx, out_event);
}
