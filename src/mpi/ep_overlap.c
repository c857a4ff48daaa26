/* The overlapped schedule of an expert-parallel forward: every rank's rows
 * and results in flight at once, the local experts run per source rank as
 * its rows arrive. A row's result does not depend on the other rows of its
 * launch (the grouped path), so the results equal the bulk schedule's bit
 * for bit. */
#include "mpi/ep_internal.h"

#include <string.h>

enum { TAG_ROWS = 1, TAG_RESULTS = 2 };

/* The local experts on source s's rows (grouped by local expert, as s sent
 * them) into `results` (float32, as s expects them back). */
static clmoe_status run_source(clmoe_ep *ep, const plan *p, int s,
                               const unsigned char *rows, clmoe_dtype dt,
                               unsigned char *results, int64_t *rows_run) {
  int El = ep->E_local, d = ep->d;
  const int *groups = p->recv_exp + (size_t)s * El;
  int64_t n = cm_ep_sum(groups, El);
  *rows_run += n;
  if (n == 0)
    return CLMOE_SUCCESS;
  clmoe_status st = cm_ep_reserve(ep, B_LOCAL, (size_t)n * d * sizeof(float));
  if (st ||
      (st = clmoe_convert(dt, rows, CLMOE_DTYPE_F32, ep->buf[B_LOCAL], n * d)))
    return st;
  return cm_ep_run_experts(ep, groups, n, results);
}

/* Keeps the first failure. */
static void keep(clmoe_status *st, clmoe_status now) {
  if (!*st)
    *st = now;
}

static void posted(clmoe_status *st, int err, const char *call) {
  if (err != MPI_SUCCESS)
    keep(st, cm_ep_mpi_fail(err, call));
}

clmoe_status cm_ep_overlap(clmoe_ep *ep, const plan *p, const exchange *out,
                           const exchange *back, clmoe_dtype dt, int64_t *M,
                           double *experts_ms) {
  int P = ep->P, me = ep->rank;
  MPI_Request *rows_in = ep->reqs, *results_in = rows_in + P,
              *rows_out = results_in + P, *results_out = rows_out + P;
  clmoe_status st = CLMOE_SUCCESS;
  *M = 0;
  *experts_ms = 0;
  for (int q = 0; q < P; ++q) {
    rows_in[q] = results_in[q] = rows_out[q] = results_out[q] =
        MPI_REQUEST_NULL;
    if (q == me)
      continue;
    posted(&st,
           MPI_Irecv(ep->buf[B_RECV] + out->rd[q], out->rc[q], MPI_BYTE, q,
                     TAG_ROWS, ep->comm, &rows_in[q]),
           "MPI_Irecv (rows)");
    posted(&st,
           MPI_Irecv(ep->buf[B_RETURN] + back->rd[q], back->rc[q], MPI_BYTE, q,
                     TAG_RESULTS, ep->comm, &results_in[q]),
           "MPI_Irecv (results)");
    posted(&st,
           MPI_Isend(ep->buf[B_SEND] + out->sd[q], out->sc[q], MPI_BYTE, q,
                     TAG_ROWS, ep->comm, &rows_out[q]),
           "MPI_Isend (rows)");
  }
  /* This rank's own rows first, straight into its returned results. */
  double t = MPI_Wtime();
  keep(&st, run_source(ep, p, me, ep->buf[B_SEND] + out->sd[me], dt,
                       ep->buf[B_RETURN] + back->rd[me], M));
  *experts_ms += 1e3 * (MPI_Wtime() - t);
  /* Then each source as its rows arrive; its results leave at once. After
   * a failure the rest is skipped but every message still goes, so no
   * rank waits forever (the caller agrees on the status). */
  for (int left = P - 1; left > 0; --left) {
    int s = MPI_UNDEFINED;
    int err = MPI_Waitany(P, rows_in, &s, MPI_STATUS_IGNORE);
    if (err != MPI_SUCCESS || s == MPI_UNDEFINED) {
      posted(&st, err != MPI_SUCCESS ? err : MPI_ERR_REQUEST, "MPI_Waitany");
      break;
    }
    t = MPI_Wtime();
    if (!st)
      st = run_source(ep, p, s, ep->buf[B_RECV] + out->rd[s], dt,
                      ep->buf[B_BACK] + back->sd[s], M);
    *experts_ms += 1e3 * (MPI_Wtime() - t);
    posted(&st,
           MPI_Isend(ep->buf[B_BACK] + back->sd[s], back->sc[s], MPI_BYTE, s,
                     TAG_RESULTS, ep->comm, &results_out[s]),
           "MPI_Isend (results)");
  }
  /* Sources not served after an MPI failure still get (empty-handed)
   * results, so their receives complete. */
  for (int s = 0; s < P; ++s)
    if (s != me && results_out[s] == MPI_REQUEST_NULL) {
      MPI_Wait(&rows_in[s], MPI_STATUS_IGNORE);
      posted(&st,
             MPI_Isend(ep->buf[B_BACK] + back->sd[s], back->sc[s], MPI_BYTE, s,
                       TAG_RESULTS, ep->comm, &results_out[s]),
             "MPI_Isend (results)");
    }
  posted(&st, MPI_Waitall(3 * P, results_in, MPI_STATUSES_IGNORE),
         "MPI_Waitall");
  return st;
}
