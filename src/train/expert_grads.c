/* The expert stage of training (kernels in cl/expert_grads.cl): a forward
 * that keeps the dispatched rows, pre-activations, activations and outputs,
 * and its backward. The data gradients reuse the forward's GEMMs (the
 * grouped kernel over transposed weight panels, or CLBlast with B
 * transposed); the weight gradients are clmoe's own reduction over each
 * expert's rows in ascending order. */
#include <stdio.h>

#include "moe/blas.h"
#include "moe/dispatch_combine.h"
#include "moe/grouped_gemm.h"
#include "train/saved.h"

static const char *const FN_B = "clmoe_backward";

/* A's column layout for the experts' path (cl/expert_grads.cl a_col). */
static void set_a_layout(const clmoe_experts *x, cm_saved *sv) {
  int gated = cm_is_gated(x->activation);
  if (x->path == CLMOE_EXPERTS_PATH_GROUPED) {
    sv->lda = x->panels_up * 2 * x->vw;
    sv->blk = gated ? x->vw : sv->lda;
    sv->bstride = gated ? 2 * x->vw : sv->lda;
    sv->fpad = gated ? x->panels_up * x->vw : sv->lda;
  } else {
    sv->lda = x->F;
    sv->blk = x->f;
    sv->bstride = x->F;
    sv->fpad = x->f;
  }
}

static cl_mem buf(const cm_saved *sv, cm_saved_buffer b) { return sv->ws.buf[b]; }

/* The CLBlast path's per-expert products: C_e = A_e * op(B_e) over the
 * expert's rows (host copy of expert_offsets), op = transpose when
 * trans_b; B_e is [E][b_rows][b_cols]. */
static clmoe_status per_expert(clmoe_experts *x, clmoe_routing *rt,
                               int trans_b, int n, int k, cl_mem A, int lda,
                               cl_mem B, int b_rows, int b_cols, cl_mem C,
                               const char *what) {
  const int *off = rt->host_offsets;
  clmoe_status st = CLMOE_SUCCESS;
  for (int e = 0; e < x->E && !st; ++e) {
    int rows = off[e + 1] - off[e];
    if (rows > 0)
      st = cm_blas_sgemm_t(rt->ctx, trans_b, rows, n, k, A,
                           (size_t)off[e] * lda, lda, B,
                           (size_t)e * b_rows * b_cols, b_cols, C,
                           (size_t)off[e] * n, what);
  }
  return st;
}

static clmoe_status read_host_offsets(clmoe_experts *x, clmoe_routing *rt,
                                      const char *fn) {
  clmoe_status st = cm_routing_host_offsets(rt, x->E);
  if (st)
    return st;
  cl_int err = clEnqueueReadBuffer(
      rt->ctx->queue, rt->ws.buf[CM_RB_EXPERT_OFFSETS], CL_TRUE, 0,
      sizeof(int) * ((size_t)x->E + 1), rt->host_offsets, 0, NULL, NULL);
  if (err == CL_SUCCESS)
    return CLMOE_SUCCESS;
  char what[96];
  snprintf(what, sizeof what, "%s: clEnqueueReadBuffer", fn);
  return cm_cl_fail(err, what);
}

static clmoe_status act_forward(clmoe_experts *x, clmoe_routing *rt,
                                cm_saved *sv, int with_bias) {
  cl_kernel k;
  int N = rt->N, has_b1 = with_bias && x->b1, has_b3 = with_bias && x->b3;
  cl_mem A = buf(sv, CM_SV_A), b1 = has_b1 ? x->b1 : A, b3 = has_b3 ? x->b3 : A;
  size_t g[2] = {(size_t)x->f, (size_t)N};
  clmoe_status st = cm_kernel(rt->ctx, &rt->ws.kernels, CM_K_TRAIN_ACT_FORWARD, &k);
  return st ? st
            : cm_launch(rt->ctx, k, "train_act_forward", 2, g, NULL,
                        CM_ARGS(CM_ARG(N), CM_ARG(x->E), CM_ARG(x->f),
                                CM_ARG(x->activation), CM_ARG(x->act_params[0]),
                                CM_ARG(x->act_params[1]), CM_ARG(A),
                                CM_ARG(sv->lda), CM_ARG(sv->blk),
                                CM_ARG(sv->bstride),
                                CM_ARG(rt->ws.buf[CM_RB_EXPERT_OFFSETS]),
                                CM_ARG(has_b1), CM_ARG(b1), CM_ARG(has_b3),
                                CM_ARG(b3), CM_ARG(sv->ws.buf[CM_SV_H])));
}

clmoe_status cm_train_experts_forward(clmoe_experts *x, clmoe_routing *rt,
                                      cm_saved *sv, const clmoe_tensor *in,
                                      int dense) {
  int N = rt->N, d = x->d, f = x->f;
  set_a_layout(x, sv);
  size_t rows = (size_t)N;
  clmoe_status st;
  if ((st = cm_saved_reserve(rt, sv, CM_SV_XS, rows * d * 4)) ||
      (st = cm_saved_reserve(rt, sv, CM_SV_A, rows * sv->lda * 4)) ||
      (st = cm_saved_reserve(rt, sv, CM_SV_H, rows * f * 4)) ||
      (st = cm_saved_reserve(rt, sv, CM_SV_O, rows * d * 4)))
    return st;
  if (N == 0)
    return CLMOE_SUCCESS;
  cl_mem xs = buf(sv, CM_SV_XS), A = buf(sv, CM_SV_A), H = buf(sv, CM_SV_H),
         O = buf(sv, CM_SV_O);
  if ((st = dense ? cm_convert_elements(rt->ctx, &rt->ws.kernels,
                                        (int64_t)N * d, in->mem, in->dtype,
                                        xs, CLMOE_DTYPE_F32)
                  : cm_dispatch_rows(rt, d, N, in->mem, in->dtype, xs,
                                     CLMOE_DTYPE_F32)))
    return st;
  if (x->path == CLMOE_EXPERTS_PATH_GROUPED) {
    if ((st = cm_experts_tile_offsets(rt, x->E)) ||
        (st = cm_experts_gemm(x, rt, N, d, x->panels_up, xs, x->w13, NULL, 0,
                              CM_EPI_NONE, x->b13, A, sv->lda)) ||
        (st = act_forward(x, rt, sv, 0)))
      return st;
    return cm_experts_gemm(x, rt, N, f, x->panels_down, H, x->w2, NULL, 0,
                           CM_EPI_NONE, x->b2, O, d);
  }
  const char *what = "clmoe_forward_train: expert GEMM";
  if ((st = read_host_offsets(x, rt, "clmoe_forward_train")) ||
      (st = per_expert(x, rt, 0, x->F, d, xs, d, x->w13, d, x->F, A, what)) ||
      (st = act_forward(x, rt, sv, 1)) ||
      (st = per_expert(x, rt, 0, d, f, H, f, x->w2, f, d, O, what)))
    return st;
  if (!x->b2)
    return CLMOE_SUCCESS;
  cl_kernel k;
  size_t g[2] = {(size_t)d, (size_t)N};
  if ((st = cm_kernel(rt->ctx, &rt->ws.kernels, CM_K_EXPERT_ADD_BIAS, &k)))
    return st;
  return cm_launch(rt->ctx, k, "expert_add_bias", 2, g, NULL,
                   CM_ARGS(CM_ARG(N), CM_ARG(x->E), CM_ARG(d),
                           CM_ARG(rt->ws.buf[CM_RB_EXPERT_OFFSETS]),
                           CM_ARG(x->b2), CM_ARG(O)));
}

/* The grouped path's weights transposed for the backward's products (bits
 * moved, never converted), kept in the experts object. */
static clmoe_status transpose_one(clmoe_experts *x, clmoe_routing *rt,
                                  cl_mem src, int Ks, int Ps, int Kt, int Pt,
                                  cl_mem *dst) {
  size_t esize = cm_dtype_size(x->wdtype);
  int vw = x->vw, tn = 2 * vw, il = x->wdtype == CLMOE_DTYPE_BF16;
  size_t bytes = (size_t)x->E * Pt * Kt * tn * esize;
  cl_kernel k;
  clmoe_status st = CLMOE_SUCCESS;
  if (!*dst)
    st = cm_buffer_create(rt->ctx, bytes, CL_MEM_READ_WRITE, dst);
  if (st || (st = cm_kernel(rt->ctx, &rt->ws.kernels,
                            esize == 4 ? CM_K_TRAIN_TRANSPOSE_PANELS32
                                       : CM_K_TRAIN_TRANSPOSE_PANELS16,
                            &k)))
    return st;
  size_t g[3] = {(size_t)Pt, ((size_t)Kt + tn - 1) / tn, (size_t)x->E};
  size_t lx = (size_t)rt->ctx->tuning.lx, local[3] = {lx, 1, 1};
  return cm_launch(rt->ctx, k, "train_transpose_panels", 3, g,
                   lx ? local : NULL,
                   CM_ARGS(CM_ARG(Ks), CM_ARG(Ps), CM_ARG(Kt), CM_ARG(Pt),
                           CM_ARG(vw), CM_ARG(il), CM_ARG(src),
                           CM_ARG(*dst)));
}

/* Made once per weights version, under the object's lock, and finished
 * before the lock is released: other threads' queues read them next. */
static clmoe_status transposed_weights(clmoe_experts *x, clmoe_routing *rt,
                                       const cm_saved *sv) {
  pthread_mutex_lock(&x->wt_lock);
  clmoe_status st = CLMOE_SUCCESS;
  if (!x->wt_valid || x->wt_version != x->version) {
    x->wt_valid = 0;
    int vw = x->vw;
    if (!(st = transpose_one(x, rt, x->w13, x->d, x->panels_up, sv->lda,
                             cm_panel_count(x->d, vw, 0), &x->w13t)) &&
        !(st = transpose_one(x, rt, x->w2, x->f, x->panels_down, x->d,
                             cm_panel_count(x->f, vw, 0), &x->w2t))) {
      cl_int err = clFinish(rt->ctx->queue);
      if (err != CL_SUCCESS)
        st = cm_cl_fail(err, "clmoe_backward: clFinish");
    }
    x->wt_valid = !st;
    x->wt_version = x->version;
  }
  pthread_mutex_unlock(&x->wt_lock);
  return st;
}

/* src [rows, ld] into 16-column panels in scratch `which` (unless it
 * already holds them: *cached == src). */
static clmoe_status pack16(clmoe_routing *rt, cm_saved *sv, int which,
                           cl_mem *cached, int rows, int ncols, cl_mem src,
                           int ld) {
  if (*cached == src)
    return CLMOE_SUCCESS;
  *cached = NULL;
  size_t blocks = ((size_t)ncols + 15) / 16;
  cl_kernel k;
  clmoe_status st =
      cm_saved_reserve(rt, sv, which, blocks * (size_t)rows * 16 * 4);
  size_t g[2] = {blocks, (size_t)rows};
  if (st ||
      (st = cm_kernel(rt->ctx, &rt->ws.kernels, CM_K_TRAIN_PACK_PANELS16,
                      &k)) ||
      (st = cm_launch(rt->ctx, k, "train_pack_panels16", 2, g, NULL,
                      CM_ARGS(CM_ARG(rows), CM_ARG(ncols), CM_ARG(src),
                              CM_ARG(ld), CM_ARG(sv->ws.buf[which])))))
    return st;
  *cached = src;
  return CLMOE_SUCCESS;
}

clmoe_status cm_train_weight_grad(clmoe_routing *rt, cm_saved *sv, int groups,
                                  cl_mem offsets, const cm_grad_job *job,
                                  int accumulate) {
  cl_kernel k;
  int K = job->X ? job->K : 1, xones = job->X == NULL, N = job->rows;
  int has_g0 = job->G0 != NULL, has_g1 = job->G1 != NULL;
  clmoe_status st;
  if ((st = pack16(rt, sv, CM_SV_PACK_D, &sv->packed_d, N, job->ncols,
                   job->D, job->ldd)) ||
      (!xones && (st = pack16(rt, sv, CM_SV_PACK_X, &sv->packed_x, N, K,
                              job->X, job->ldx))))
    return st;
  cl_mem Xp = xones ? sv->ws.buf[CM_SV_PACK_D] : sv->ws.buf[CM_SV_PACK_X];
  /* An absent half's columns are dropped; any valid buffer stands in. */
  cl_mem G0 = has_g0 ? job->G0 : job->G1, G1 = has_g1 ? job->G1 : job->G0;
  size_t g[3] = {((size_t)job->ncols + 15) / 16, ((size_t)K + 15) / 16,
                 (size_t)groups};
  /* The grouped kernel's work-group width (1 on CPUs: explicit vectors,
   * no implicit vectorising across work-items). */
  size_t lx = (size_t)rt->ctx->tuning.lx, local[3] = {lx, 1, 1};
  if ((st = cm_kernel(rt->ctx, &rt->ws.kernels, CM_K_TRAIN_WEIGHT_GRAD, &k)))
    return st;
  return cm_launch(rt->ctx, k, "train_weight_grad", 3, g, lx ? local : NULL,
                   CM_ARGS(CM_ARG(N), CM_ARG(K), CM_ARG(job->ncols),
                           CM_ARG(offsets), CM_ARG(Xp), CM_ARG(xones),
                           CM_ARG(sv->ws.buf[CM_SV_PACK_D]), CM_ARG(job->blk),
                           CM_ARG(job->bstride), CM_ARG(job->nout),
                           CM_ARG(has_g0), CM_ARG(G0), CM_ARG(has_g1),
                           CM_ARG(G1), CM_ARG(accumulate)));
}

/* dg[slot] = U[token] . V[row] (cl/expert_grads.cl train_gate_grads). */
static clmoe_status gate_grads(clmoe_routing *rt, cm_saved *sv, int d,
                               const clmoe_tensor *U, cl_mem V) {
  cl_kernel k;
  int N = rt->N;
  size_t g = (size_t)N;
  clmoe_status st = cm_kernel(rt->ctx, &rt->ws.kernels, CM_K_TRAIN_GATE_GRADS, &k);
  return st ? st
            : cm_launch(rt->ctx, k, "train_gate_grads", 1, &g, NULL,
                        CM_ARGS(CM_ARG(N), CM_ARG(d),
                                CM_ARG(rt->ws.buf[CM_RB_ROW_TOKENS]),
                                CM_ARG(rt->ws.buf[CM_RB_TOKEN_OFFSETS]),
                                CM_ARG(rt->ws.buf[CM_RB_SLOT_ROWS]),
                                CM_ARG(U->mem), CM_ARG(U->dtype), CM_ARG(V),
                                CM_ARG(sv->ws.buf[CM_SV_DG])));
}

/* The shared experts' dO and their gate's gradient
 * (cl/expert_grads.cl train_shared_rows). */
static clmoe_status shared_rows(clmoe_routing *rt, cm_saved *sv, int d,
                                const clmoe_tensor *dy, cl_mem gates,
                                int has_gate) {
  cl_kernel k;
  int T = rt->N;
  size_t g = (size_t)T;
  clmoe_status st =
      cm_kernel(rt->ctx, &rt->ws.kernels, CM_K_TRAIN_SHARED_ROWS, &k);
  return st ? st
            : cm_launch(rt->ctx, k, "train_shared_rows", 1, &g, NULL,
                        CM_ARGS(CM_ARG(T), CM_ARG(d), CM_ARG(dy->mem),
                                CM_ARG(dy->dtype), CM_ARG(gates),
                                CM_ARG(has_gate), CM_ARG(sv->ws.buf[CM_SV_O]),
                                CM_ARG(sv->ws.buf[CM_SV_DO]),
                                CM_ARG(sv->ws.buf[CM_SV_DG])));
}

static clmoe_status act_backward(clmoe_experts *x, clmoe_routing *rt,
                                 cm_saved *sv) {
  cl_kernel k;
  int N = rt->N;
  size_t g[2] = {(size_t)sv->fpad, (size_t)N};
  clmoe_status st = cm_kernel(rt->ctx, &rt->ws.kernels, CM_K_TRAIN_ACT_BACKWARD, &k);
  return st ? st
            : cm_launch(rt->ctx, k, "train_act_backward", 2, g, NULL,
                        CM_ARGS(CM_ARG(N), CM_ARG(x->f), CM_ARG(sv->fpad),
                                CM_ARG(x->activation), CM_ARG(x->act_params[0]),
                                CM_ARG(x->act_params[1]),
                                CM_ARG(sv->ws.buf[CM_SV_A]), CM_ARG(sv->lda),
                                CM_ARG(sv->blk), CM_ARG(sv->bstride),
                                CM_ARG(sv->ws.buf[CM_SV_DH]),
                                CM_ARG(sv->ws.buf[CM_SV_DA])));
}

/* dH = dO W2^T and dXs = dA [W1 | W3]^T on the experts' path. */
static clmoe_status data_grads(clmoe_experts *x, clmoe_routing *rt,
                               cm_saved *sv) {
  int N = rt->N, d = x->d, f = x->f, vw = x->vw;
  cl_mem dO = buf(sv, CM_SV_DO), dH = buf(sv, CM_SV_DH),
         dA = buf(sv, CM_SV_DA), dxs = buf(sv, CM_SV_DXS);
  clmoe_status st;
  if (x->path == CLMOE_EXPERTS_PATH_GROUPED) {
    if ((st = transposed_weights(x, rt, sv)) ||
        (st = cm_experts_tile_offsets(rt, x->E)) ||
        (st = cm_experts_gemm(x, rt, N, d, cm_panel_count(f, vw, 0), dO,
                              x->w2t, NULL, 0, CM_EPI_NONE, NULL, dH, f)) ||
        (st = act_backward(x, rt, sv)))
      return st;
    return cm_experts_gemm(x, rt, N, sv->lda, cm_panel_count(d, vw, 0), dA,
                           x->w13t, NULL, 0, CM_EPI_NONE, NULL, dxs, d);
  }
  const char *what = "clmoe_backward: expert GEMM";
  if ((st = read_host_offsets(x, rt, FN_B)) ||
      (st = per_expert(x, rt, 1, f, d, dO, d, x->w2, f, d, dH, what)) ||
      (st = act_backward(x, rt, sv)))
    return st;
  return per_expert(x, rt, 1, d, x->F, dA, sv->lda, x->w13, d, x->F, dxs, what);
}

clmoe_status cm_train_experts_backward(clmoe_experts *x, clmoe_routing *rt,
                                       cm_saved *sv, const clmoe_tensor *in,
                                       const clmoe_tensor *dy,
                                       const clmoe_expert_grads *g,
                                       int accumulate, cl_mem dense_gates,
                                       int has_gate) {
  int N = rt->N, d = x->d, f = x->f, E = x->E;
  size_t rows = (size_t)N;
  clmoe_status st;
  if ((st = cm_saved_reserve(rt, sv, CM_SV_DO, rows * d * 4)) ||
      (st = cm_saved_reserve(rt, sv, CM_SV_DH, rows * f * 4)) ||
      (st = cm_saved_reserve(rt, sv, CM_SV_DA, rows * sv->lda * 4)) ||
      (st = cm_saved_reserve(rt, sv, CM_SV_DXS, rows * d * 4)) ||
      (st = cm_saved_reserve(rt, sv, CM_SV_DG, rows * 4)))
    return st;
  cl_mem dO = buf(sv, CM_SV_DO), dA = buf(sv, CM_SV_DA);
  int gate_input = rt->gate_input;
  if (N > 0 && dense_gates) {
    if ((st = shared_rows(rt, sv, d, dy, dense_gates, has_gate)) ||
        (st = data_grads(x, rt, sv)))
      return st;
  } else if (N > 0) {
    /* dO = g * dy (output-side gates) or dy itself, per row. */
    if ((st = cm_dispatch_rows_scaled(rt, d, N, dy->mem, dy->dtype, dO,
                                      CLMOE_DTYPE_F32, !gate_input)) ||
        (!gate_input && (st = gate_grads(rt, sv, d, dy, buf(sv, CM_SV_O)))) ||
        (st = data_grads(x, rt, sv)) ||
        (gate_input && (st = gate_grads(rt, sv, d, in, buf(sv, CM_SV_DXS)))))
      return st;
  }
  if (!g)
    return CLMOE_SUCCESS;
  cl_mem off = rt->ws.buf[CM_RB_EXPERT_OFFSETS], xs = buf(sv, CM_SV_XS),
         H = buf(sv, CM_SV_H);
  int blk = sv->blk, bs = sv->bstride, lda = sv->lda;
  /* dW1 and dW3 in one pass over dA's columns (an absent one's columns
   * are dropped), dW2 over dO's; then the biases' column sums. */
#define MEM(t) ((t) ? (t)->mem : NULL)
  cm_grad_job jobs[4] = {
      {N, d, lda, xs, d, dA, lda, blk, bs, f, MEM(g->w1), MEM(g->w3)},
      {N, 1, lda, NULL, 0, dA, lda, blk, bs, f, MEM(g->b1), MEM(g->b3)},
      {N, f, d, H, f, dO, d, d, d, d, MEM(g->w2), NULL},
      {N, 1, d, NULL, 0, dO, d, d, d, d, MEM(g->b2), NULL},
  };
  sv->packed_x = sv->packed_d = NULL; /* this backward's operands */
#undef MEM
  for (int i = 0; i < 4 && !st; ++i)
    if (jobs[i].G0 || jobs[i].G1)
      st = cm_train_weight_grad(rt, sv, E, off, &jobs[i], accumulate);
  return st;
}
