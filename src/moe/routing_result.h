/* The routing object (a route's results and the layer's workspace), shared
 * by routing_result.c, route.c and the stages after route. */
#ifndef CLMOE_ROUTING_RESULT_H
#define CLMOE_ROUTING_RESULT_H

#include "moe/group.h"
#include "runtime/kernel_abi.h"
#include "runtime/workspace.h"

/* Device buffers of a routing: the seven result arrays first (in
 * clmoe_routing_array order), then scratch. */
typedef enum cm_routing_buffer {
  CM_RB_COUNTS = CLMOE_ROUTING_COUNTS,
  CM_RB_TOKEN_OFFSETS = CLMOE_ROUTING_TOKEN_OFFSETS,
  CM_RB_EXPERT_IDS = CLMOE_ROUTING_EXPERT_IDS,
  CM_RB_GATES = CLMOE_ROUTING_GATES,
  CM_RB_EXPERT_OFFSETS = CLMOE_ROUTING_EXPERT_OFFSETS,
  CM_RB_SLOT_ROWS = CLMOE_ROUTING_SLOT_ROWS,
  CM_RB_ROW_TOKENS = CLMOE_ROUTING_ROW_TOKENS,
  CM_RB_LOGITS,       /* [T, E] router GEMM output */
  CM_RB_PROBS,        /* [T, E] softmax */
  CM_RB_ENTROPY,      /* [T] */
  CM_RB_CAND_IDS,     /* [T, kcap] sorted experts per token */
  CM_RB_CAND_P,       /* [T, kcap] their probabilities */
  CM_RB_PROP_COUNTS,  /* [T] proposals per token */
  CM_RB_MASK,         /* [T, E] uchar: (token, expert) kept */
  CM_RB_PROP_OFFSETS, /* [E+1] proposals grouped per expert */
  CM_RB_PROP_TOKENS,  /* [T*kcap] their tokens */
  CM_RB_HIST,         /* [E*blocks+1] grouping histogram */
  CM_RB_PARTIALS,     /* [CM_SCAN_MAX_CHUNKS+1] scan scratch */
  CM_RB_XNORM,        /* [T] row norms of x (COSINE) */
  CM_RB_BLOCK_SUMS,   /* [blocks, E+1] stats partial sums */
  CM_RB_STATS,        /* stats words, CM_ST_* (runtime/kernel_abi.h) */
  CM_RB_HEAP,         /* [T, E] ulong per-token sort scratch */
  CM_RB_X_SORTED,     /* [N, d] forward: dispatched rows */
  CM_RB_FFN_H,        /* [N, F] experts: x_sorted * [W1|W3] */
  CM_RB_FFN_ACT,      /* [N, f] experts: activation */
  CM_RB_Y_SORTED,     /* [N, d] forward: expert outputs */
  CM_RB_TILE_OFFSETS, /* [E+1] grouped GEMM: row tiles per expert */
  CM_RB_ROUTER_ROWS,  /* [2] router GEMM on the grouped kernel: {0, T} */
  CM_RB_ROUTER_TILES, /* [2] and its row tiles: {0, ceil(T / rm)} */
  CM_RB_X_F32,        /* [T, d] route: float32 copy of 16-bit tokens */
  CM_RB_COUNT
} cm_routing_buffer;

_Static_assert((int)CM_RB_COUNT <= (int)CM_WS_MAX_BUFFERS, "routing buffers");

struct clmoe_routing {
  clmoe_context *ctx;
  cm_workspace ws; /* buffers indexed by cm_routing_buffer, kernels */
  int valid;       /* 1 after a successful route */
  int T, E, N;
  /* The router's gates scale the expert inputs (CLMOE_GATE_INPUT): dispatch
   * multiplies each row by its slot's gate, combine adds with weight 1. */
  int gate_input;
  clmoe_tensor views[CLMOE_ROUTING_ROW_TOKENS + 1];
  int *host_offsets; /* [E+1] CLBlast path's copy of expert_offsets */
  int host_offsets_cap;
  /* Shared experts (clmoe_forward_shared): a routing of every token to one
   * expert with weight 1, made on first use; its buffers hold the shared
   * rows and each token's shared weight. */
  struct clmoe_routing *dense;
  /* Counts completed routes: a training forward's saved state (kept in
   * `saved`, src/train/saved.h) describes the route of its serial only. */
  unsigned serial;
  struct cm_saved *saved;
};

/* Frees a routing's training state (src/train/saved.c). */
void cm_saved_free(struct cm_saved *sv);

/* Makes host_offsets hold E + 1 ints (grows only). */
clmoe_status cm_routing_host_offsets(clmoe_routing *r, int E);

/* Checks that a routing is given and holds a successful route; `fn` names
 * the public call. */
clmoe_status cm_check_routing(const clmoe_routing *rt, const char *fn);
/* Checks a [rows, d] tensor of float32, float16 or bfloat16 on `ctx`
 * (rows or d < 0: any). */
clmoe_status cm_check_float_rows(const clmoe_context *ctx,
                                 const clmoe_tensor *t, const char *name,
                                 int64_t rows, int64_t d);

/* Makes buffer `which` hold at least `bytes`. */
clmoe_status cm_routing_reserve(clmoe_routing *r, cm_routing_buffer which,
                                size_t bytes);
/* Marks the routing empty (T = N = 0). */
void cm_routing_clear(clmoe_routing *r);
/* Records the sizes of a completed route and refreshes the views. */
void cm_routing_set_sizes(clmoe_routing *r, int T, int E, int N);

#endif /* CLMOE_ROUTING_RESULT_H */
