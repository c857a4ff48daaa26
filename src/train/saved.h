/* What a training forward keeps in a routing for its backward (saved.c),
 * and the stages both use: the experts' forward and backward
 * (expert_grads.c), the router's losses and gradient (router_grads.c). */
#ifndef CLMOE_TRAIN_SAVED_H
#define CLMOE_TRAIN_SAVED_H

#include "clmoe/clmoe_train.h"
#include "moe/experts.h"
#include "moe/router.h"
#include "moe/routing_result.h"

/* The saved state's buffers (kept: what the forward stored; scratch: the
 * backward's intermediates, grow only). */
typedef enum cm_saved_buffer {
  CM_SV_XS,      /* kept [N, d] dispatched rows (input-side gates applied) */
  CM_SV_A,       /* kept [N, lda] pre-activations (biases added) */
  CM_SV_H,       /* kept [N, f] activations */
  CM_SV_O,       /* kept [N, d] expert outputs */
  CM_SV_LOSSES,  /* kept [T, 3] per-token loss shares */
  CM_SV_DO,      /* scratch [N, d] gradient of the expert outputs */
  CM_SV_DH,      /* scratch [N, f] gradient of the activations */
  CM_SV_DA,      /* scratch [N, lda] gradient of the pre-activations */
  CM_SV_DXS,     /* scratch [N, d] gradient of the dispatched rows */
  CM_SV_DG,      /* scratch [N] gradient of each slot's gate */
  CM_SV_DZ,      /* scratch [T, E] gradient of the logits */
  CM_SV_X32,     /* scratch [T, d] float32 copy of 16-bit x */
  CM_SV_CONST,   /* {1.0f}: the ones of column sums */
  CM_SV_ROWS,    /* {0, T}: the router's one group of rows */
  CM_SV_PACK_X,  /* scratch: the weight reduction's X in 16-column panels */
  CM_SV_PACK_D,  /* scratch: ... and its D */
  CM_SV_BAD,     /* scratch [1] first non-finite element of dy */
  CM_SV_COUNT
} cm_saved_buffer;

/* The kept buffers (their bytes are what clmoe_routing_saved_bytes
 * reports). */
enum { CM_SV_KEPT = CM_SV_DO };

typedef struct cm_saved {
  cm_workspace ws;         /* buffers by cm_saved_buffer */
  size_t used[CM_SV_COUNT]; /* bytes in use of each kept buffer */
  /* The forward it describes: valid while the routing's serial equals
   * `serial` and the objects are the same. */
  int valid;
  unsigned serial;
  const clmoe_router *router;
  const clmoe_experts *experts;
  const clmoe_experts *shared; /* NULL: none */
  const clmoe_tensor *shared_gate;
  float coeff[3]; /* balance, z-loss, entropy */
  /* What CM_SV_PACK_X / _D hold now (NULL: nothing valid), so that jobs
   * over the same operand pack it once per backward. */
  cl_mem packed_x, packed_d;
  /* A's layout (cl/expert_grads.cl a_col): row stride, block, block stride,
   * and the logical gate columns including padding. */
  int lda, blk, bstride, fpad;
} cm_saved;

/* The routing's saved state, created on first use. */
clmoe_status cm_saved_get(clmoe_routing *rt, cm_saved **out);
/* Makes kept or scratch buffer `which` hold `bytes` (records them). */
clmoe_status cm_saved_reserve(clmoe_routing *rt, cm_saved *sv, int which,
                              size_t bytes);

/* The coefficients of `train` (NULL: all 0) into c, checked finite and
 * >= 0; `fn` names the call. */
clmoe_status cm_train_coeffs(const clmoe_train_desc *train, float c[3],
                             const char *fn);

/* Whether experts can train, naming `fn` in the error. */
clmoe_status cm_train_check_experts(const clmoe_experts *x, const char *fn);

/* Expert stage forward over the routing's rows (N = routing->N): x
 * dispatched (or, for the shared experts' dense routing, copied: row t is
 * token t) into CM_SV_XS, then A, H, O, kept for the backward. */
clmoe_status cm_train_experts_forward(clmoe_experts *x, clmoe_routing *rt,
                                      cm_saved *sv, const clmoe_tensor *in,
                                      int dense);

/* The expert stage's backward: from dy, fills dO, dH, dA, dXs and the
 * gates' gradient CM_SV_DG, and the expert gradients `g` (may be NULL).
 * For the shared experts' dense routing, `dense_gates` holds each token's
 * weight (has_gate: a sigmoid gate, whose logit's gradient goes to
 * CM_SV_DG); NULL for routed experts. */
clmoe_status cm_train_experts_backward(clmoe_experts *x, clmoe_routing *rt,
                                       cm_saved *sv, const clmoe_tensor *in,
                                       const clmoe_tensor *dy,
                                       const clmoe_expert_grads *g,
                                       int accumulate, cl_mem dense_gates,
                                       int has_gate);

/* Per-token loss shares into CM_SV_LOSSES and, with_grad, dz into
 * CM_SV_DZ (reads CM_SV_DG). */
clmoe_status cm_train_router_pass(clmoe_router *r, clmoe_routing *rt,
                                  cm_saved *sv, int with_grad,
                                  const float coeff[3]);

/* G (+)= X^T D per group of rows (cl/expert_grads.cl train_weight_grad),
 * X and D first packed into 16-column panels (once per backward for an
 * operand that several jobs share; set sv->packed_x / packed_d to NULL
 * when their sources change):
 * groups `offsets` [groups + 1]; D's ncols columns go to G0 or G1 by the
 * block map (blk, bstride), nout columns each. X NULL: column sums
 * (K = 1). G1 may be NULL (its columns dropped). */
typedef struct cm_grad_job {
  int rows; /* N: the rows all groups hold */
  int K, ncols;
  cl_mem X;
  int ldx;
  cl_mem D;
  int ldd, blk, bstride, nout;
  cl_mem G0, G1;
} cm_grad_job;
clmoe_status cm_train_weight_grad(clmoe_routing *rt, cm_saved *sv, int groups,
                                  cl_mem offsets, const cm_grad_job *job,
                                  int accumulate);

#endif /* CLMOE_TRAIN_SAVED_H */
