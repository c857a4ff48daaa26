/* clmoe_mpi (since 0.3): expert parallelism over MPI, in its own library
 * (libclmoe_mpi, built when CMake finds MPI; libclmoe itself has no MPI
 * dependency).
 *
 * Model: P ranks of an MPI communicator. Every rank holds the whole router
 * (the same on every rank) and an experts object with the experts it owns,
 * in ascending global expert id: by default rank r owns a contiguous block
 * (the first E % P ranks one expert more), or any expert -> rank map given
 * at create (the same on every rank). Every rank brings its own tokens
 * x[T_r, d] (T_r may differ between ranks and may be 0).
 *
 * A forward routes locally, sends each rank the rows for its experts
 * grouped by expert (MPI_Alltoall of the counts, MPI_Alltoallv of the
 * rows, in the activations' dtype), runs the local experts on what arrived
 * in one grouped launch, sends the results back and combines locally in
 * slot order (the BULK schedule), or overlaps the two exchanges with the
 * experts (OVERLAP, see clmoe_ep_schedule). Rows are staged through host
 * memory around the MPI calls: OpenCL buffers are not device pointers that
 * any MPI library accepts, so even an MPI that reports device-buffer
 * (CUDA / ROCm-aware) support gets host memory; clmoe_ep_stats says what
 * the library reported.
 * Each rank's y is bitwise equal to clmoe_forward of its own tokens with
 * all E experts on one device, provided the experts run on the grouped
 * path (whose per-row results do not depend on the other rows); routing is
 * per rank, so capacity and k_mean budgets apply to each rank's tokens.
 *
 * Every call below is collective over the communicator: all ranks must
 * call it, in the same order. Errors are agreed on: when any rank fails, every
 * rank returns the failing rank's status (the lowest rank's, if several);
 * the detail on the other ranks names that rank. No rank blocks forever on
 * an error, and the next forward works. Not thread-safe per object. */
#ifndef CLMOE_CLMOE_MPI_H
#define CLMOE_CLMOE_MPI_H

#include <mpi.h>

#include "clmoe/clmoe.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct clmoe_ep clmoe_ep;

/* How a forward schedules its exchanges (the same on every rank). */
typedef enum clmoe_ep_schedule {
  /* BULK: the rows out in one MPI_Alltoallv, the local experts in one
   * grouped launch, the results back in one MPI_Alltoallv. Measured faster
   * than OVERLAP on one 2-core node, where the exchange is ~5 % of the
   * layer (clmoe-bench-ep --schedule both). */
  CLMOE_EP_SCHEDULE_AUTO = 0,
  CLMOE_EP_SCHEDULE_BULK = 1,
  /* Rows to and results from every rank in flight at once (non-blocking
   * point-to-point); the local experts run on each source rank's rows as
   * they arrive (this rank's own first) and each source's results leave as
   * soon as they are ready, so compute hides the exchange where the
   * network is slow. One grouped launch per source rank instead of one. */
  CLMOE_EP_SCHEDULE_OVERLAP = 2
} clmoe_ep_schedule;

typedef struct clmoe_ep_desc {
  size_t struct_size;
  MPI_Comm comm;          /* duplicated at create */
  clmoe_context *ctx;     /* this rank's context (staging tensors); borrowed */
  clmoe_router *router;   /* all E experts' router; borrowed */
  clmoe_experts *experts; /* this rank's experts (may have none: NULL when
                             the map gives it none); borrowed */
  /* Optional [E]: the rank owning each global expert, identical on every
   * rank; NULL: contiguous blocks. */
  const int32_t *expert_ranks;
  /* Appended: the forward's schedule (AUTO = BULK). A struct without it
   * (an older caller's size) means AUTO. */
  clmoe_ep_schedule schedule;
} clmoe_ep_desc;

/* Sets struct_size (the caller's sizeof) and the defaults (MPI_COMM_WORLD,
 * NULLs). */
CLMOE_API void clmoe_ep_desc_init_sized(clmoe_ep_desc *desc, size_t size);
#define clmoe_ep_desc_init(desc)                                               \
  clmoe_ep_desc_init_sized((desc), sizeof *(desc))

/* Creates the expert-parallel layer (collective). Checks, on every rank
 * alike: the router and the experts agree on d, the local experts are the
 * number the map gives this rank, and E, d, d_ff, the activation, the
 * weight dtype, the router's policy, the map and the schedule are the same
 * on every rank (a mismatch is INVALID_ARGUMENT on every rank, naming what
 * differs).
 * Errors: NULL_POINTER, INVALID_STRUCT_SIZE, INVALID_ARGUMENT,
 * SHAPE_MISMATCH, MPI (an MPI call failed). */
CLMOE_API clmoe_status clmoe_ep_create(const clmoe_ep_desc *desc,
                                       clmoe_ep **out);

/* Frees the layer (collective: it frees the duplicated communicator).
 * NULL is ignored. */
CLMOE_API void clmoe_ep_destroy(clmoe_ep *ep);

/* y[T_r, d] = the layer applied to this rank's x[T_r, d] (collective;
 * blocks until the rank's y is complete). x and y: float32, float16 or
 * bfloat16, the same dtype on every rank; importance [T_r] for the
 * IMPORTANCE policy; `routing` receives this rank's routing. flags:
 * CLMOE_COMBINE_ACCUMULATE. Errors: those of clmoe_forward's stages, MPI,
 * and any other rank's (see above). */
CLMOE_API clmoe_status clmoe_ep_forward(clmoe_ep *ep, const clmoe_tensor *x,
                                        const clmoe_tensor *importance,
                                        clmoe_tensor *y, clmoe_routing *routing,
                                        uint32_t flags);

/* What the last successful forward moved and how long its stages took on
 * this rank (wall-clock milliseconds). */
typedef struct clmoe_ep_stats {
  size_t struct_size;
  int64_t rows_sent;     /* rows sent to other ranks (and received back) */
  int64_t bytes_sent;    /* bytes this rank sent, both exchanges */
  int64_t rows_received; /* rows the local experts ran on */
  /* OVERLAP: exchange_out_ms is the overlapped section's time not spent
   * computing, exchange_back_ms 0. */
  double route_ms, exchange_out_ms, experts_ms, exchange_back_ms, combine_ms;
  /* Appended: 1 when the MPI library reports device-buffer support (Open
   * MPI's MPIX_Query_cuda_support / MPIX_Query_rocm_support), else 0; rows
   * are staged through host memory either way (see above). */
  int32_t mpi_device_buffers;
} clmoe_ep_stats;

CLMOE_API void clmoe_ep_stats_init(clmoe_ep_stats *stats);
/* Not collective. Errors: NULL_POINTER, INVALID_STRUCT_SIZE. */
CLMOE_API clmoe_status clmoe_ep_get_stats(const clmoe_ep *ep,
                                          clmoe_ep_stats *stats);

#ifdef __cplusplus
}
#endif

#endif /* CLMOE_CLMOE_MPI_H */
