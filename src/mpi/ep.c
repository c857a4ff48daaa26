/* Expert parallelism over MPI (libclmoe_mpi), on libclmoe's public API:
 * route and dispatch locally, exchange rows grouped by expert, run the
 * local experts on a routing of pre-grouped rows (clmoe_routing_set_groups),
 * exchange the results back in float32 (so that combine rounds once, as
 * the single-process forward does) and combine in slot order. Every step
 * that can fail on one rank is followed by an agreement (agree()), so all
 * ranks leave a call together with the same status. */
#include "mpi/ep_internal.h"

#include <stddef.h>
#if __has_include(<mpi-ext.h>)
#include <mpi-ext.h> /* Open MPI's device-buffer queries */
#endif

#include <limits.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

clmoe_status cm_ep_fail(clmoe_status st, const char *fmt, ...) {
  char buf[512];
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(buf, sizeof buf, fmt, ap);
  va_end(ap);
  return clmoe_set_error_detail(st, buf);
}

clmoe_status cm_ep_mpi_fail(int err, const char *call) {
  char msg[MPI_MAX_ERROR_STRING];
  int len = 0;
  MPI_Error_string(err, msg, &len);
  return cm_ep_fail(CLMOE_ERROR_MPI, "%s failed: %s", call, msg);
}

/* Every rank learns whether any rank failed: the lowest failing rank's
 * status is returned everywhere; other ranks' details name it. */
static clmoe_status agree(const clmoe_ep *ep, clmoe_status st) {
  int mine = st ? ep->rank : INT_MAX, first = INT_MAX, code = st;
  int err = MPI_Allreduce(&mine, &first, 1, MPI_INT, MPI_MIN, ep->comm);
  if (err != MPI_SUCCESS)
    return cm_ep_mpi_fail(err, "MPI_Allreduce");
  if (first == INT_MAX)
    return CLMOE_SUCCESS;
  if ((err = MPI_Bcast(&code, 1, MPI_INT, first, ep->comm)) != MPI_SUCCESS)
    return cm_ep_mpi_fail(err, "MPI_Bcast");
  if (first != ep->rank)
    cm_ep_fail((clmoe_status)code, "rank %d of the communicator failed with %s",
               first, clmoe_status_string((clmoe_status)code));
  return (clmoe_status)code;
}

void clmoe_ep_desc_init_sized(clmoe_ep_desc *desc, size_t size) {
  if (!desc)
    return;
  clmoe_ep_desc d;
  memset(&d, 0, sizeof d);
  d.comm = MPI_COMM_WORLD;
  if (size > sizeof d)
    size = sizeof d;
  d.struct_size = size;
  memcpy(desc, &d, size);
}

void clmoe_ep_stats_init(clmoe_ep_stats *stats) {
  if (!stats)
    return;
  memset(stats, 0, sizeof *stats);
  stats->struct_size = sizeof *stats;
}

void clmoe_ep_destroy(clmoe_ep *ep) {
  if (!ep)
    return;
  if (ep->comm != MPI_COMM_NULL)
    MPI_Comm_free(&ep->comm);
  clmoe_routing_destroy(ep->local_rt);
  for (int i = 0; i < 8; ++i)
    free(ep->buf[i]);
  free(ep->ints);
  free(ep->reqs);
  free(ep->owner);
  free(ep->rank_first);
  free(ep->order);
  free(ep);
}

/* Owners (given, or contiguous blocks with the first E % P ranks one
 * larger) and the experts in (owner, id) order. */
static clmoe_status plan_owners(clmoe_ep *ep, const int32_t *map) {
  int E = ep->E, P = ep->P;
  ep->owner = malloc(sizeof *ep->owner * (size_t)E);
  ep->rank_first = calloc((size_t)P + 1, sizeof *ep->rank_first);
  ep->order = malloc(sizeof *ep->order * (size_t)E);
  if (!ep->owner || !ep->rank_first || !ep->order)
    return cm_ep_fail(CLMOE_ERROR_OUT_OF_HOST_MEMORY,
                      "clmoe_ep_create: out of host memory");
  /* Contiguous blocks: rank q owns E / P experts, one more when
   * q < E % P. */
  for (int e = 0, q = 0, end = E / P + (E % P > 0); e < E; ++e) {
    while (!map && e >= end) {
      ++q;
      end += E / P + (q < E % P);
    }
    ep->owner[e] = map ? map[e] : q;
  }
  for (int e = 0; e < E; ++e) {
    if (ep->owner[e] < 0 || ep->owner[e] >= P)
      return cm_ep_fail(CLMOE_ERROR_INVALID_ARGUMENT,
                        "clmoe_ep_create: expert_ranks[%d] = %d is not a rank "
                        "(0..%d)",
                        e, ep->owner[e], P - 1);
    ++ep->rank_first[ep->owner[e] + 1];
  }
  for (int q = 0; q < P; ++q)
    ep->rank_first[q + 1] += ep->rank_first[q];
  int *fill = malloc(sizeof *fill * (size_t)P);
  if (!fill)
    return cm_ep_fail(CLMOE_ERROR_OUT_OF_HOST_MEMORY,
                      "clmoe_ep_create: out of host memory");
  memcpy(fill, ep->rank_first, sizeof *fill * (size_t)P);
  for (int e = 0; e < E; ++e)
    ep->order[fill[ep->owner[e]]++] = e;
  free(fill);
  ep->E_local = ep->rank_first[ep->rank + 1] - ep->rank_first[ep->rank];
  return CLMOE_SUCCESS;
}

/* This rank's configuration against every other rank's: each field's
 * minimum and maximum over the ranks (experts' fields over the ranks that
 * own some) must agree. */
static clmoe_status check_same(const clmoe_ep *ep) {
  enum { FIELDS = 8 };
  static const char *const names[FIELDS] = {
      "E (router)", "d",    "policy",     "expert map",
      "schedule",   "d_ff", "activation", "weight dtype"};
  int32_t E, d, f = 0;
  clmoe_policy policy;
  clmoe_activation act = 0;
  clmoe_dtype wdt = 0;
  clmoe_router_get_shape(ep->router, &E, &d, &policy);
  if (ep->experts) {
    clmoe_experts_get_shape(ep->experts, NULL, NULL, &f, &act);
    clmoe_experts_get_weight_dtype(ep->experts, &wdt);
  }
  unsigned hash = 2166136261u; /* FNV-1a over the map */
  for (int e = 0; e < ep->E; ++e)
    hash = (hash ^ (unsigned)ep->owner[e]) * 16777619u;
  int has = ep->experts != NULL;
  int v[FIELDS] = {
      E, d,        (int)policy, (int)(hash & 0x7fffffff), (int)ep->schedule,
      f, (int)act, (int)wdt};
  int lo[2 * FIELDS], out[2 * FIELDS];
  for (int i = 0; i < FIELDS; ++i) {
    int counts = i < 5 || has; /* experts' fields only where owned */
    lo[i] = counts ? v[i] : INT_MAX;
    lo[FIELDS + i] = counts ? -v[i] : INT_MAX; /* min of -v = -max */
  }
  int err = MPI_Allreduce(lo, out, 2 * FIELDS, MPI_INT, MPI_MIN, ep->comm);
  if (err != MPI_SUCCESS)
    return cm_ep_mpi_fail(err, "MPI_Allreduce");
  for (int i = 0; i < FIELDS; ++i)
    if (out[i] != INT_MAX && out[i] != -out[FIELDS + i])
      return cm_ep_fail(
          CLMOE_ERROR_INVALID_ARGUMENT,
          "clmoe_ep_create: the ranks disagree on the %s (from %d "
          "to %d)",
          names[i], out[i], -out[FIELDS + i]);
  return CLMOE_SUCCESS;
}

/* What one rank can check alone. */
static clmoe_status check_local(const clmoe_ep *ep) {
  int32_t E_x = 0, d_x = 0;
  if (ep->experts)
    clmoe_experts_get_shape(ep->experts, &E_x, &d_x, NULL, NULL);
  if (ep->experts && d_x != ep->d)
    return cm_ep_fail(CLMOE_ERROR_SHAPE_MISMATCH,
                      "clmoe_ep_create: the router has d = %d but the experts "
                      "d = %d",
                      ep->d, d_x);
  if (E_x != ep->E_local)
    return cm_ep_fail(
        CLMOE_ERROR_SHAPE_MISMATCH,
        "clmoe_ep_create: rank %d owns %d experts by the map but its "
        "experts object has %d",
        ep->rank, ep->E_local, E_x);
  return CLMOE_SUCCESS;
}

/* Whether the MPI library says it takes device buffers (Open MPI's
 * extensions; 0 where it has none). */
static int32_t mpi_device_buffers(void) {
  int32_t yes = 0;
#if defined(MPIX_CUDA_AWARE_SUPPORT)
  yes |= MPIX_Query_cuda_support() != 0;
#endif
#if defined(MPIX_ROCM_AWARE_SUPPORT)
  yes |= MPIX_Query_rocm_support() != 0;
#endif
  return yes;
}

clmoe_status clmoe_ep_create(const clmoe_ep_desc *desc, clmoe_ep **out) {
  if (!out)
    return cm_ep_fail(CLMOE_ERROR_NULL_POINTER, "clmoe_ep_create: out is NULL");
  *out = NULL;
  if (!desc || !desc->router || !desc->ctx)
    return cm_ep_fail(CLMOE_ERROR_NULL_POINTER,
                      "clmoe_ep_create: desc, its router or its ctx is NULL");
  /* A 0.3 caller's struct may end before `schedule`. */
  size_t oldest = offsetof(clmoe_ep_desc, expert_ranks) + sizeof(void *);
  if (desc->struct_size < oldest || desc->struct_size > (1u << 16))
    return cm_ep_fail(CLMOE_ERROR_INVALID_STRUCT_SIZE,
                      "clmoe_ep_create: desc->struct_size is %zu; call "
                      "clmoe_ep_desc_init first",
                      desc->struct_size);
  clmoe_ep_schedule schedule =
      desc->struct_size >= offsetof(clmoe_ep_desc, schedule) + sizeof(int)
          ? desc->schedule
          : CLMOE_EP_SCHEDULE_AUTO;
  if (schedule < CLMOE_EP_SCHEDULE_AUTO || schedule > CLMOE_EP_SCHEDULE_OVERLAP)
    return cm_ep_fail(CLMOE_ERROR_INVALID_ARGUMENT,
                      "clmoe_ep_create: schedule %d is not a "
                      "clmoe_ep_schedule",
                      (int)schedule);
  clmoe_ep *ep = calloc(1, sizeof *ep);
  if (!ep)
    return cm_ep_fail(CLMOE_ERROR_OUT_OF_HOST_MEMORY,
                      "clmoe_ep_create: out of host memory");
  ep->comm = MPI_COMM_NULL;
  int err = MPI_Comm_dup(desc->comm, &ep->comm);
  clmoe_status st = CLMOE_SUCCESS;
  if (err != MPI_SUCCESS) {
    ep->comm = MPI_COMM_NULL;
    st = cm_ep_mpi_fail(err, "MPI_Comm_dup");
    clmoe_ep_destroy(ep);
    return st;
  }
  /* Errors come back as codes: a failing rank must not abort the job. */
  MPI_Comm_set_errhandler(ep->comm, MPI_ERRORS_RETURN);
  MPI_Comm_rank(ep->comm, &ep->rank);
  MPI_Comm_size(ep->comm, &ep->P);
  ep->schedule = schedule == CLMOE_EP_SCHEDULE_OVERLAP
                     ? CLMOE_EP_SCHEDULE_OVERLAP
                     : CLMOE_EP_SCHEDULE_BULK;
  ep->stats.mpi_device_buffers = mpi_device_buffers();
  ep->ctx = desc->ctx;
  ep->router = desc->router;
  ep->experts = desc->experts;
  int32_t E = 0, d = 0;
  clmoe_router_get_shape(ep->router, &E, &d, NULL);
  ep->E = E;
  ep->d = d;
  /* Each rank checks its own map and experts, then all agree; only then
   * are the ranks' configurations compared (a collective). */
  if (!(st = plan_owners(ep, desc->expert_ranks)))
    st = check_local(ep);
  if (!st && !(ep->reqs = malloc(sizeof *ep->reqs * 4 * (size_t)ep->P)))
    st = cm_ep_fail(CLMOE_ERROR_OUT_OF_HOST_MEMORY,
                    "clmoe_ep_create: out of host memory");
  st = agree(ep, st);
  if (!st) /* collective, and the same verdict on every rank */
    st = check_same(ep);
  if (!st)
    st = agree(ep, clmoe_routing_create(ep->ctx, &ep->local_rt));
  if (st) {
    clmoe_ep_destroy(ep);
    return st;
  }
  *out = ep;
  return CLMOE_SUCCESS;
}

clmoe_status clmoe_ep_get_stats(const clmoe_ep *ep, clmoe_ep_stats *stats) {
  if (!ep || !stats)
    return cm_ep_fail(CLMOE_ERROR_NULL_POINTER,
                      "clmoe_ep_get_stats: ep or stats is NULL");
  /* A 0.3 caller's struct may end before mpi_device_buffers. */
  size_t oldest = offsetof(clmoe_ep_stats, combine_ms) + sizeof(double);
  if (stats->struct_size < oldest || stats->struct_size > (1u << 16))
    return cm_ep_fail(CLMOE_ERROR_INVALID_STRUCT_SIZE,
                      "clmoe_ep_get_stats: call clmoe_ep_stats_init first");
  size_t size =
      stats->struct_size < sizeof *stats ? stats->struct_size : sizeof *stats;
  memcpy(stats, &ep->stats, size);
  stats->struct_size = size;
  return CLMOE_SUCCESS;
}

/* ---- forward ---- */

clmoe_status cm_ep_reserve(clmoe_ep *ep, int which, size_t bytes) {
  if (ep->cap[which] >= bytes)
    return CLMOE_SUCCESS;
  void *p = realloc(ep->buf[which], bytes);
  if (!p)
    return cm_ep_fail(CLMOE_ERROR_OUT_OF_HOST_MEMORY,
                      "clmoe_ep_forward: out of host memory for %zu bytes",
                      bytes);
  ep->buf[which] = p;
  ep->cap[which] = bytes;
  return CLMOE_SUCCESS;
}

/* A device tensor [rows, d] holding host data (rows may be 0). */
clmoe_status cm_ep_rows_tensor(clmoe_ep *ep, clmoe_dtype dt, int64_t rows,
                               const void *host, clmoe_tensor **out) {
  return clmoe_tensor_create(ep->ctx, dt, 2, (int64_t[]){rows, ep->d},
                             rows ? host : NULL, out);
}

static clmoe_status alloc_ints(clmoe_ep *ep, plan *p, exchange *out,
                               exchange *back) {
  size_t P = (size_t)ep->P, E = (size_t)ep->E, El = (size_t)ep->E_local;
  size_t need = (E + 1) + E + 2 * P + P * El + 2 * P + El + 8 * P;
  if (ep->ints_cap < need) {
    int *n = realloc(ep->ints, need * sizeof *n);
    if (!n)
      return cm_ep_fail(CLMOE_ERROR_OUT_OF_HOST_MEMORY,
                        "clmoe_ep_forward: out of host memory");
    ep->ints = n;
    ep->ints_cap = need;
  }
  int *q = ep->ints;
  p->off = q, q += E + 1;
  p->send_exp = q, q += E;
  p->exp_counts = q, q += P;
  p->exp_displs = q, q += P;
  p->recv_exp = q, q += P * El;
  p->rcounts = q, q += P;
  p->rdispls = q, q += P;
  p->group_rows = q, q += El;
  out->sc = q, q += P;
  out->sd = q, q += P;
  out->rc = q, q += P;
  out->rd = q, q += P;
  back->sc = q, q += P;
  back->sd = q, q += P;
  back->rc = q, q += P;
  back->rd = q;
  return CLMOE_SUCCESS;
}

/* Route and dispatch locally; the dispatched rows and expert_offsets to the
 * host. */
static clmoe_status route_local(clmoe_ep *ep, const clmoe_tensor *x,
                                const clmoe_tensor *importance,
                                clmoe_routing *routing, clmoe_dtype dt,
                                size_t es, plan *p, int *N) {
  clmoe_status st =
      clmoe_route(ep->router, x, importance, routing, 0, NULL, NULL);
  int64_t n = 0;
  const clmoe_tensor *offsets = NULL;
  clmoe_tensor *xs = NULL;
  if (st || (st = clmoe_routing_get_sizes(routing, NULL, NULL, &n)) ||
      (st = clmoe_routing_get_array(routing, CLMOE_ROUTING_EXPERT_OFFSETS,
                                    &offsets)) ||
      (st = clmoe_tensor_read(offsets, p->off,
                              sizeof *p->off * ((size_t)ep->E + 1))))
    return st;
  *N = (int)n;
  size_t bytes = (size_t)n * ep->d * es;
  if (!(st = cm_ep_reserve(ep, B_XS, bytes ? bytes : 1)) &&
      !(st = cm_ep_rows_tensor(ep, dt, n, NULL, &xs)) &&
      !(st = clmoe_dispatch(routing, x, xs, 0, NULL, NULL)) && bytes)
    st = clmoe_tensor_read(xs, ep->buf[B_XS], bytes);
  clmoe_tensor_destroy(xs);
  return st;
}

int64_t cm_ep_sum(const int *v, int n) {
  int64_t s = 0;
  for (int i = 0; i < n; ++i)
    s += v[i];
  return s;
}

/* Fills displacements from counts; TOO_LARGE past int. */
static clmoe_status displs(const int *counts, int *d, int n) {
  int64_t at = 0;
  for (int i = 0; i < n; ++i) {
    d[i] = (int)at;
    at += counts[i];
    if (at > INT_MAX)
      return cm_ep_fail(CLMOE_ERROR_TOO_LARGE,
                        "clmoe_ep_forward: an exchange exceeds %d elements",
                        INT_MAX);
  }
  return CLMOE_SUCCESS;
}

/* Counts to and from every rank (collective), and the outgoing rows packed
 * by rank then expert. */
static clmoe_status plan_out(clmoe_ep *ep, plan *p, exchange *ex,
                             size_t row_bytes) {
  int P = ep->P, El = ep->E_local;
  for (int q = 0; q < P; ++q) {
    int rows = 0;
    for (int i = ep->rank_first[q]; i < ep->rank_first[q + 1]; ++i) {
      int e = ep->order[i];
      p->send_exp[i] = p->off[e + 1] - p->off[e];
      rows += p->send_exp[i];
    }
    p->exp_counts[q] = ep->rank_first[q + 1] - ep->rank_first[q];
    p->exp_displs[q] = ep->rank_first[q];
    ex->sc[q] = (int)((size_t)rows * row_bytes); /* checked below */
    p->rcounts[q] = El;
    p->rdispls[q] = q * El;
  }
  int err =
      MPI_Alltoallv(p->send_exp, p->exp_counts, p->exp_displs, MPI_INT,
                    p->recv_exp, p->rcounts, p->rdispls, MPI_INT, ep->comm);
  if (err != MPI_SUCCESS)
    return cm_ep_mpi_fail(err, "MPI_Alltoallv (counts)");
  int64_t out_rows = cm_ep_sum(p->send_exp, ep->E);
  if ((double)out_rows * row_bytes > INT_MAX)
    return cm_ep_fail(
        CLMOE_ERROR_TOO_LARGE,
        "clmoe_ep_forward: %lld rows to send exceed MPI's int counts",
        (long long)out_rows);
  for (int s = 0; s < P; ++s)
    ex->rc[s] = (int)(cm_ep_sum(p->recv_exp + s * El, El) * (int64_t)row_bytes);
  clmoe_status st;
  if ((st = displs(ex->sc, ex->sd, P)) || (st = displs(ex->rc, ex->rd, P)) ||
      (st = cm_ep_reserve(ep, B_SEND, (size_t)out_rows * row_bytes + 1)) ||
      (st = cm_ep_reserve(ep, B_RECV, (size_t)cm_ep_sum(ex->rc, P) + 1)))
    return st;
  unsigned char *to = ep->buf[B_SEND];
  for (int i = 0; i < ep->E; ++i) { /* (owner, id) order = by rank */
    int e = ep->order[i];
    size_t n = (size_t)(p->off[e + 1] - p->off[e]) * row_bytes;
    memcpy(to, ep->buf[B_XS] + (size_t)p->off[e] * row_bytes, n);
    to += n;
  }
  return CLMOE_SUCCESS;
}

/* An Alltoallv of bytes (after every rank agreed it can take part). */
static clmoe_status exchange_bytes(clmoe_ep *ep, int from, const exchange *ex,
                                   int to, const char *what) {
  int err = MPI_Alltoallv(ep->buf[from], ex->sc, ex->sd, MPI_BYTE, ep->buf[to],
                          ex->rc, ex->rd, MPI_BYTE, ep->comm);
  return err == MPI_SUCCESS ? CLMOE_SUCCESS : cm_ep_mpi_fail(err, what);
}

clmoe_status cm_ep_run_experts(clmoe_ep *ep, const int *groups, int64_t n,
                               unsigned char *results) {
  clmoe_tensor *xs = NULL, *ys = NULL;
  clmoe_status st;
  if (!(st = clmoe_routing_set_groups(ep->local_rt, ep->E_local, groups)) &&
      !(st =
            cm_ep_rows_tensor(ep, CLMOE_DTYPE_F32, n, ep->buf[B_LOCAL], &xs)) &&
      !(st = cm_ep_rows_tensor(ep, CLMOE_DTYPE_F32, n, NULL, &ys)) &&
      !(st = clmoe_experts_run(ep->experts, ep->local_rt, xs, ys, 0, NULL,
                               NULL)))
    st = clmoe_tensor_read(ys, results, (size_t)n * ep->d * sizeof(float));
  clmoe_tensor_destroy(xs);
  clmoe_tensor_destroy(ys);
  return st;
}

/* The local experts on what arrived, regrouped by local expert (float32;
 * 16-bit rows widened exactly); results into B_OUT. */
static clmoe_status run_local(clmoe_ep *ep, plan *p, const exchange *ex,
                              clmoe_dtype dt, size_t es, int64_t *M_out) {
  int P = ep->P, El = ep->E_local, d = ep->d;
  int64_t M = 0;
  for (int j = 0; j < El; ++j) {
    p->group_rows[j] = 0;
    for (int s = 0; s < P; ++s)
      p->group_rows[j] += p->recv_exp[s * El + j];
    M += p->group_rows[j];
  }
  *M_out = M;
  size_t bytes = (size_t)M * d * sizeof(float);
  clmoe_status st;
  if ((st = cm_ep_reserve(ep, B_LOCAL, bytes + 1)) ||
      (st = cm_ep_reserve(ep, B_OUT, bytes + 1)))
    return st;
  /* Source s's block (at its receive displacement) holds its rows for
   * expert j after those for its earlier experts. */
  float *to = (float *)ep->buf[B_LOCAL];
  for (int j = 0; j < El && !st; ++j)
    for (int s = 0; s < P && !st; ++s) {
      const unsigned char *from = ep->buf[B_RECV] + ex->rd[s];
      int64_t before = cm_ep_sum(p->recv_exp + s * El, j);
      int64_t n = (int64_t)p->recv_exp[s * El + j] * d;
      st = clmoe_convert(dt, from + (size_t)before * d * es, CLMOE_DTYPE_F32,
                         to, n);
      to += n;
    }
  if (st || M == 0)
    return st;
  return cm_ep_run_experts(ep, p->group_rows, M, ep->buf[B_OUT]);
}

/* The results' exchange (float32 rows, as many as the rows exchanged) and
 * room for them and for this rank's y_sorted. */
static clmoe_status size_back(clmoe_ep *ep, const exchange *ex, exchange *back,
                              size_t es, int N) {
  int P = ep->P, d = ep->d;
  size_t f32_row = (size_t)d * sizeof(float), row = (size_t)d * es;
  for (int q = 0; q < P; ++q) { /* byte counts: rows x float32 */
    back->sc[q] = (int)((int64_t)ex->rc[q] / (int64_t)row * (int64_t)f32_row);
    back->rc[q] = (int)((int64_t)ex->sc[q] / (int64_t)row * (int64_t)f32_row);
  }
  clmoe_status st;
  if ((st = displs(back->sc, back->sd, P)) ||
      (st = displs(back->rc, back->rd, P)) ||
      (st = cm_ep_reserve(ep, B_BACK, (size_t)cm_ep_sum(back->sc, P) + 1)) ||
      (st = cm_ep_reserve(ep, B_RETURN, (size_t)cm_ep_sum(back->rc, P) + 1)) ||
      (st = cm_ep_reserve(ep, B_YS, (size_t)N * f32_row + 1)))
    return st;
  return CLMOE_SUCCESS;
}

/* The local results for the ranks their rows came from, packed by rank
 * then expert (B_OUT is by local expert then source). */
static void pack_back(clmoe_ep *ep, const plan *p, const exchange *back) {
  int P = ep->P, El = ep->E_local;
  size_t f32_row = (size_t)ep->d * sizeof(float);
  const unsigned char *out = ep->buf[B_OUT];
  for (int j = 0; j < El; ++j)
    for (int s = 0; s < P; ++s) {
      int64_t before = back->sd[s] / (int64_t)f32_row;
      before += cm_ep_sum(p->recv_exp + s * El, j);
      size_t n = (size_t)p->recv_exp[s * El + j] * f32_row;
      memcpy(ep->buf[B_BACK] + (size_t)before * f32_row, out, n);
      out += n;
    }
}

/* This rank's results, returned in send order, into y_sorted order. */
static void unpack_back(clmoe_ep *ep, const plan *p) {
  size_t f32_row = (size_t)ep->d * sizeof(float);
  const unsigned char *from = ep->buf[B_RETURN];
  for (int i = 0; i < ep->E; ++i) {
    int e = ep->order[i];
    size_t n = (size_t)(p->off[e + 1] - p->off[e]) * f32_row;
    memcpy(ep->buf[B_YS] + (size_t)p->off[e] * f32_row, from, n);
    from += n;
  }
}

/* BULK: rows out in one Alltoallv, the local experts in one launch,
 * results back in one Alltoallv. ms: the three stages' times. */
static clmoe_status run_bulk(clmoe_ep *ep, plan *p, exchange *out,
                             exchange *back, clmoe_dtype dt, size_t es, int N,
                             int64_t *M, double ms[3]) {
  double t0 = MPI_Wtime();
  clmoe_status st =
      exchange_bytes(ep, B_SEND, out, B_RECV, "MPI_Alltoallv (rows)");
  if (st)
    return st;
  double t1 = MPI_Wtime();
  if ((st = agree(ep, run_local(ep, p, out, dt, es, M))))
    return st;
  double t2 = MPI_Wtime();
  if (!(st = size_back(ep, out, back, es, N)))
    pack_back(ep, p, back);
  if ((st = agree(ep, st)) || (st = exchange_bytes(ep, B_BACK, back, B_RETURN,
                                                   "MPI_Alltoallv (results)")))
    return st;
  ms[0] = 1e3 * (t1 - t0);
  ms[1] = 1e3 * (t2 - t1);
  ms[2] = 1e3 * (MPI_Wtime() - t2);
  return CLMOE_SUCCESS;
}

/* OVERLAP (ep_overlap.c): ms[0] is the section's time not spent computing. */
static clmoe_status run_overlapped(clmoe_ep *ep, plan *p, exchange *out,
                                   exchange *back, clmoe_dtype dt, size_t es,
                                   int N, int64_t *M, double ms[3]) {
  double t0 = MPI_Wtime(), experts = 0;
  clmoe_status st;
  if ((st = agree(ep, size_back(ep, out, back, es, N))) ||
      (st = agree(ep, cm_ep_overlap(ep, p, out, back, dt, M, &experts))))
    return st;
  ms[0] = 1e3 * (MPI_Wtime() - t0) - experts;
  ms[1] = experts;
  ms[2] = 0;
  return CLMOE_SUCCESS;
}

static clmoe_status check_forward(const clmoe_ep *ep, const clmoe_tensor *x,
                                  const clmoe_tensor *y, clmoe_dtype *dt) {
  int32_t rank = 0;
  int64_t shape[4] = {0}, T;
  clmoe_dtype ydt = 0;
  clmoe_status st;
  if ((st = clmoe_tensor_get_dtype(x, dt)) ||
      (st = clmoe_tensor_get_shape(x, &rank, shape)))
    return st;
  if (rank != 2 || shape[1] != ep->d)
    return cm_ep_fail(CLMOE_ERROR_SHAPE_MISMATCH,
                      "clmoe_ep_forward: x must be [T, %d]", ep->d);
  T = shape[0];
  if ((st = clmoe_tensor_get_dtype(y, &ydt)) ||
      (st = clmoe_tensor_get_shape(y, &rank, shape)))
    return st;
  if (rank != 2 || shape[0] != T || shape[1] != ep->d)
    return cm_ep_fail(CLMOE_ERROR_SHAPE_MISMATCH,
                      "clmoe_ep_forward: y must be [%lld, %d]", (long long)T,
                      ep->d);
  if (ydt != *dt)
    return cm_ep_fail(CLMOE_ERROR_DTYPE_MISMATCH,
                      "clmoe_ep_forward: x is %d but y is %d; they must match",
                      (int)*dt, (int)ydt);
  return CLMOE_SUCCESS;
}

clmoe_status clmoe_ep_forward(clmoe_ep *ep, const clmoe_tensor *x,
                              const clmoe_tensor *importance, clmoe_tensor *y,
                              clmoe_routing *routing, uint32_t flags) {
  if (!ep) /* nothing collective can be done without the communicator */
    return cm_ep_fail(CLMOE_ERROR_NULL_POINTER, "clmoe_ep_forward: ep is NULL");
  clmoe_status st = CLMOE_SUCCESS;
  clmoe_dtype dt = CLMOE_DTYPE_F32;
  int64_t M = 0;
  int N = 0;
  plan p;
  exchange out, back;
  memset(&p, 0, sizeof p);
  memset(&out, 0, sizeof out);
  memset(&back, 0, sizeof back);
  if (!x || !y || !routing)
    st = cm_ep_fail(CLMOE_ERROR_NULL_POINTER,
                    "clmoe_ep_forward: x, y or routing is NULL");
  if (!st)
    st = check_forward(ep, x, y, &dt);
  /* Input-side gates scale the rows in float32 before the experts: such
   * rows travel as float32, so every rank matches the one-process
   * forward bit for bit. */
  clmoe_gate_position gate_at = CLMOE_GATE_OUTPUT;
  clmoe_router_get_gate_position(ep->router, &gate_at);
  if (gate_at == CLMOE_GATE_INPUT)
    dt = CLMOE_DTYPE_F32;
  size_t es = dt == CLMOE_DTYPE_F32 ? 4 : 2, row = (size_t)ep->d * es;
  double t0 = MPI_Wtime();
  if (!st && !(st = alloc_ints(ep, &p, &out, &back)))
    st = route_local(ep, x, importance, routing, dt, es, &p, &N);
  if ((st = agree(ep, st)))
    return st;
  double t1 = MPI_Wtime();
  double ms[3]; /* exchange out, experts, exchange back */
  if ((st = agree(ep, plan_out(ep, &p, &out, row))) ||
      (st = ep->schedule == CLMOE_EP_SCHEDULE_OVERLAP
                ? run_overlapped(ep, &p, &out, &back, dt, es, N, &M, ms)
                : run_bulk(ep, &p, &out, &back, dt, es, N, &M, ms)))
    return st;
  unpack_back(ep, &p);
  clmoe_tensor *ys = NULL;
  if (!(st = cm_ep_rows_tensor(ep, CLMOE_DTYPE_F32, N, ep->buf[B_YS], &ys)) &&
      !(st = clmoe_combine(routing, ys, y, flags, 0, NULL, NULL)))
    st = clmoe_context_finish(ep->ctx);
  clmoe_tensor_destroy(ys);
  if ((st = agree(ep, st)))
    return st;
  /* What left this rank (and came back): rows for other ranks' experts. */
  int64_t away = 0;
  for (int i = 0; i < ep->E; ++i)
    if (ep->owner[ep->order[i]] != ep->rank)
      away += p.send_exp[i];
  clmoe_ep_stats *s = &ep->stats;
  s->struct_size = sizeof *s;
  s->rows_sent = away;
  s->bytes_sent = away * (int64_t)(row + (size_t)ep->d * sizeof(float));
  s->rows_received = M;
  s->route_ms = 1e3 * (t1 - t0);
  s->exchange_out_ms = ms[0];
  s->experts_ms = ms[1];
  s->exchange_back_ms = ms[2];
  s->combine_ms = 1e3 * (MPI_Wtime() - t1) - ms[0] - ms[1] - ms[2];
  return CLMOE_SUCCESS;
}
