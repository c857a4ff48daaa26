/* Routing object internals shared by routing.c and route.c. */
#ifndef CLMOE_ROUTING_H
#define CLMOE_ROUTING_H

#include "launch.h"

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
  CM_RB_STATS,        /* stats words, see cl/route.cl ST_* */
  CM_RB_HEAP,         /* [T, E] ulong per-token sort scratch */
  CM_RB_X_SORTED,     /* [N, d] forward: dispatched rows */
  CM_RB_FFN_H,        /* [N, F] experts: x_sorted * [W1|W3] */
  CM_RB_FFN_ACT,      /* [N, f] experts: activation */
  CM_RB_Y_SORTED,     /* [N, d] forward: expert outputs */
  CM_RB_TILE_OFFSETS, /* [E+1] grouped GEMM: row tiles per expert */
  CM_RB_ROUTER_ROWS,  /* [2] router GEMM on the grouped kernel: {0, T} */
  CM_RB_ROUTER_TILES, /* [2] and its row tiles: {0, ceil(T / rm)} */
  CM_RB_COUNT
} cm_routing_buffer;

/* Word offsets in the stats buffer (mirrors cl/route.cl). */
enum {
  CM_ST_N = 0,
  CM_ST_N_PROPOSED = 1,
  CM_ST_MIN_K = 2,
  CM_ST_MAX_K = 3,
  CM_ST_BAD_TOKEN = 4,
  CM_ST_BALANCE_LOSS = 5,
  CM_ST_ENTROPY = 6,
  CM_ST_HEADER = 8
};

struct clmoe_routing {
  clmoe_context *ctx;
  cm_kernels kernels;
  cl_mem buf[CM_RB_COUNT];
  size_t cap[CM_RB_COUNT];
  int valid; /* 1 after a successful route */
  int T, E, N, N_proposed;
  clmoe_tensor views[CLMOE_ROUTING_ROW_TOKENS + 1];
  int *host_offsets; /* [E+1] CLBlast path's copy of expert_offsets */
  int host_offsets_cap;
};

/* Makes host_offsets hold E + 1 ints (grows only). */
clmoe_status cm_routing_host_offsets(clmoe_routing *r, int E);

/* Makes buffer `which` hold at least `bytes`. */
clmoe_status cm_routing_reserve(clmoe_routing *r, cm_routing_buffer which,
                                size_t bytes);
/* Marks the routing empty (T = N = 0). */
void cm_routing_clear(clmoe_routing *r);
/* Records the sizes of a completed route and refreshes the views. */
void cm_routing_set_sizes(clmoe_routing *r, int T, int E, int N,
                          int N_proposed);

#endif /* CLMOE_ROUTING_H */
