/* libclmoe_mpi internals shared by the forward's two schedules (ep.c: the
 * object, routing, the bulk exchange; ep_overlap.c: the overlapped one). */
#ifndef CLMOE_MPI_EP_INTERNAL_H
#define CLMOE_MPI_EP_INTERNAL_H

#include "clmoe/clmoe_mpi.h"

struct clmoe_ep {
  MPI_Comm comm;
  int rank, P;
  clmoe_context *ctx;
  clmoe_router *router;
  clmoe_experts *experts; /* NULL when this rank owns none */
  int E, d, E_local;
  int *owner;      /* [E] rank of each expert */
  int *rank_first; /* [P + 1] rank q's experts: order[rank_first[q]..] */
  int *order;      /* [E] experts by (owner, id) */
  clmoe_routing *local_rt;
  clmoe_ep_schedule schedule; /* BULK or OVERLAP (AUTO resolved) */
  clmoe_ep_stats stats;
  /* Host staging, grow only (buffer ids below). */
  unsigned char *buf[8];
  size_t cap[8];
  int *ints; /* the counts and displacements of a forward (alloc_ints) */
  size_t ints_cap;
  MPI_Request *reqs; /* [4 * P] the overlapped schedule's requests */
};

enum {
  B_XS,     /* [N, d] this rank's dispatched rows, x's dtype */
  B_SEND,   /* rows to each rank, by rank then expert */
  B_RECV,   /* rows from each rank, by rank then expert */
  B_LOCAL,  /* [M, d] float32 received rows by local expert then rank */
  B_OUT,    /* [M, d] float32 the local experts' results */
  B_BACK,   /* results to each rank, by rank then expert */
  B_RETURN, /* results of this rank's rows, as they were sent */
  B_YS      /* [N, d] float32 y_sorted */
};

/* Counts of one forward (arrays of the ints block). */
typedef struct plan {
  int *off;      /* [E + 1] this rank's expert_offsets */
  int *send_exp; /* [E] rows per expert, experts in (owner, id) order */
  int *exp_counts, *exp_displs; /* [P] of send_exp per destination */
  int *recv_exp; /* [P * E_local] rows from rank s for local expert j */
  int *rcounts, *rdispls; /* [P] of recv_exp */
  int *group_rows;        /* [E_local] */
} plan;

/* Byte counts and displacements of an exchange (4 arrays of P). */
typedef struct exchange {
  int *sc, *sd, *rc, *rd;
} exchange;

/* Sets the thread's error detail; returns st. */
clmoe_status cm_ep_fail(clmoe_status st, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));
/* CLMOE_ERROR_MPI naming the call and MPI's message. */
clmoe_status cm_ep_mpi_fail(int err, const char *call);
/* Grows staging buffer `which` to at least `bytes`. */
clmoe_status cm_ep_reserve(clmoe_ep *ep, int which, size_t bytes);
/* A device tensor [rows, d] of dt holding host data (rows may be 0). */
clmoe_status cm_ep_rows_tensor(clmoe_ep *ep, clmoe_dtype dt, int64_t rows,
                               const void *host, clmoe_tensor **out);
int64_t cm_ep_sum(const int *v, int n);
/* The local experts on n float32 rows staged in B_LOCAL, grouped by local
 * expert (groups[E_local]), in one grouped launch; results (float32, the
 * same order) into `results`. */
clmoe_status cm_ep_run_experts(clmoe_ep *ep, const int *groups, int64_t n,
                               unsigned char *results);

/* The overlapped schedule: rows to every rank and results from it in
 * flight at once (non-blocking point-to-point), the local experts run on
 * each source's rows as they arrive (own rows first) and each source's
 * results sent back as soon as they are ready. Every message is posted and
 * completed even after a local failure (then with unspecified content), so
 * no rank waits forever; the caller agrees on the status. Fills B_RETURN
 * as the bulk exchange does; *M = rows computed, *experts_ms = time spent
 * computing. */
clmoe_status cm_ep_overlap(clmoe_ep *ep, const plan *p, const exchange *out,
                           const exchange *back, clmoe_dtype dt, int64_t *M,
                           double *experts_ms);

#endif /* CLMOE_MPI_EP_INTERNAL_H */
