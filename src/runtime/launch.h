/* Kernel objects, argument setting and launches, and queue ordering. */
#ifndef CLMOE_LAUNCH_H
#define CLMOE_LAUNCH_H

#include "runtime/runtime.h"

typedef struct cm_arg {
  size_t size;
  const void *ptr; /* NULL: a __local buffer of `size` bytes */
} cm_arg;

#define CM_ARG(x) ((cm_arg){sizeof(x), &(x)})
#define CM_LOCAL(bytes) ((cm_arg){(bytes), NULL})
#define CM_ARGS(...)                                                           \
  (cm_arg[]){__VA_ARGS__},                                                     \
      (int)(sizeof((cm_arg[]){__VA_ARGS__}) / sizeof(cm_arg))

/* Sets the arguments and enqueues `kernel` over global[0..dims) (rounded up
 * to a multiple of local when local is given); nothing is enqueued when a
 * global size is 0. */
clmoe_status cm_launch(clmoe_context *ctx, cl_kernel kernel, const char *name,
                       int dims, const size_t *global, const size_t *local,
                       const cm_arg *args, int nargs);

/* Orders the queue after the caller's wait list (a marker; no-op for an
 * empty list). */
clmoe_status cm_enqueue_wait(clmoe_context *ctx, uint32_t num_wait,
                             const cl_event *wait, const char *fn);
/* Returns an event that completes with everything enqueued so far. */
clmoe_status cm_enqueue_done(clmoe_context *ctx, cl_event *out_event);

/* Kernels used by a routing object, created once per routing (a kernel
 * object's arguments are per-call state, so each routing owns its own). */
typedef enum cm_kernel_id {
  CM_K_SCAN_CHUNK_SUMS,
  CM_K_SCAN_PARTIALS,
  CM_K_SCAN_APPLY,
  CM_K_SCAN_LOCAL,
  CM_K_GROUP_COUNT,
  CM_K_GROUP_EXPERT_OFFSETS,
  CM_K_GROUP_PLACE,
  CM_K_STATS_INIT,
  CM_K_ROUTE_SELECT,
  CM_K_ROW_NORMS,
  CM_K_SELECT_BY_EXPERT,
  CM_K_IMPORTANCE_BUDGET,
  CM_K_COMPACT_COUNT,
  CM_K_COMPACT_WRITE,
  CM_K_STATS_TOKENS,
  CM_K_STATS_BLOCK_SUMS,
  CM_K_STATS_FINALIZE,
  CM_K_DISPATCH_ROWS,
  CM_K_EXPERT_ACTIVATION,
  CM_K_EXPERT_ADD_BIAS,
  CM_K_COMBINE_ROWS,
  CM_K_CONVERT_ELEMENTS,
  CM_K_SHARED_GATE_VALUES,
  CM_K_SCORE_SEQUENCES,
  CM_K_SCORE_PROB_COLUMNS,
  CM_K_SCORE_PACK,
  CM_K_SCORE_ROW_LSE,
  CM_K_SCORE_COL_SUMS,
  CM_K_SCORE_AVERAGE,
  CM_K_SCORE_NORMALIZE,
  CM_K_SCORE_ROW_LSE_LOCAL,
  CM_K_SCORE_COL_SUMS_LOCAL,
  CM_K_GEMM_TILE_OFFSETS,
  CM_K_GEMM_GROUPED,
  CM_K_GEMM_GROUPED_F16,
  CM_K_GEMM_GROUPED_BF16,
  CM_K_GEMM_GROUPED_LOCAL,
  CM_K_GEMM_GROUPED_LOCAL_F16,
  CM_K_GEMM_GROUPED_LOCAL_BF16,
  CM_K_GEMM_GROUPED_F8,
  CM_K_GEMM_GROUPED_MXFP4,
  CM_K_GEMM_GROUPED_I8,
  CM_K_GEMM_GROUPED_I4,
  CM_K_GEMM_GROUPED_LOCAL_F8,
  CM_K_GEMM_GROUPED_LOCAL_MXFP4,
  CM_K_GEMM_GROUPED_LOCAL_I8,
  CM_K_GEMM_GROUPED_LOCAL_I4,
  CM_K_TRAIN_ACT_FORWARD,
  CM_K_TRAIN_ACT_BACKWARD,
  CM_K_TRAIN_WEIGHT_GRAD,
  CM_K_TRAIN_GATE_GRADS,
  CM_K_TRAIN_INPUT_GRAD,
  CM_K_TRAIN_FIND_NONFINITE,
  CM_K_TRAIN_TRANSPOSE_PANELS32,
  CM_K_TRAIN_TRANSPOSE_PANELS16,
  CM_K_TRAIN_ROUTER_GRAD,
  CM_K_TRAIN_SHARED_ROWS,
  CM_K_TRAIN_PACK_PANELS16,
  CM_K_COUNT
} cm_kernel_id;

typedef struct cm_kernels {
  cl_kernel k[CM_K_COUNT];
} cm_kernels;

clmoe_status cm_kernel(clmoe_context *ctx, cm_kernels *ks, cm_kernel_id id,
                       cl_kernel *out);
void cm_kernels_release(cm_kernels *ks);

#endif /* CLMOE_LAUNCH_H */
