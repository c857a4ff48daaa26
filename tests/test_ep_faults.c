/* A device or runtime fault on one rank during an expert-parallel forward
 * (libclmoe_mpi over the fault-injection twin libclmoe_fi), run under
 * mpirun: the victim rank fails its N-th runtime call (OpenCL, CLBlast or
 * host allocation) for N = 1, 2, ... until a forward completes without
 * reaching N. For every N, every rank returns an error from that forward
 * (or, where the victim absorbed the fault, every rank succeeds with the
 * reference output), no rank blocks (an alarm ends a hung run), the
 * victim keeps no OpenCL object alive, and the next forward on every rank
 * gives the reference output bit for bit. Both schedules (BULK, OVERLAP). */
#include <mpi.h>
#include <signal.h>
#include <unistd.h>

#include "clmoe/clmoe_mpi.h"
#include "harness.h"
#include "runtime/fault_injection.h"

enum { D = 16, F = 12, E = 8 };

static int g_rank, g_P;

static float *seeded(size_t n, float scale, uint64_t seed) {
  test_rng r = {seed};
  float *v = malloc(sizeof *v * (n ? n : 1));
  for (size_t i = 0; i < n; ++i)
    v[i] = roundf(rng_normal(&r) * scale * 64) / 64;
  return v;
}

static void on_alarm(int sig) {
  (void)sig;
  static const char msg[] = "test_ep_faults: a forward hung\n";
  (void)!write(2, msg, sizeof msg - 1);
  _exit(3);
}

/* This rank's contiguous block of the E experts. */
static clmoe_experts *local_experts(const float *w1, const float *w3,
                                    const float *w2) {
  int per = E / g_P, extra = E % g_P;
  int first = g_rank * per + (g_rank < extra ? g_rank : extra);
  int n = per + (g_rank < extra);
  size_t up = (size_t)D * F;
  clmoe_experts_desc ed;
  clmoe_experts_desc_init(&ed);
  ed.num_experts = n;
  ed.d_model = D;
  ed.d_ff = F;
  ed.w1_host = w1 + first * up;
  ed.w3_host = w3 + first * up;
  ed.w2_host = w2 + first * up;
  ed.path = CLMOE_EXPERTS_PATH_GROUPED;
  clmoe_experts *x = NULL;
  REQUIRE_OK(clmoe_experts_create(test_context(), &ed, &x));
  return x;
}

/* The walk for one schedule: faults on `victim`, every rank checked. */
static void walk(clmoe_router *router, clmoe_experts *experts, const float *x,
                 int T, int victim, clmoe_ep_schedule schedule) {
  clmoe_ep_desc desc;
  clmoe_ep_desc_init(&desc);
  desc.comm = MPI_COMM_WORLD;
  desc.ctx = test_context();
  desc.router = router;
  desc.schedule = schedule;
  desc.experts = experts;
  clmoe_ep *ep = NULL;
  REQUIRE_OK(clmoe_ep_create(&desc, &ep));
  clmoe_tensor *xt = NULL, *yt = NULL;
  REQUIRE_OK(clmoe_tensor_create(test_context(), CLMOE_DTYPE_F32, 2,
                                 (int64_t[]){T, D}, x, &xt));
  REQUIRE_OK(clmoe_tensor_create(test_context(), CLMOE_DTYPE_F32, 2,
                                 (int64_t[]){T, D}, NULL, &yt));
  clmoe_routing *rt = NULL;
  REQUIRE_OK(clmoe_routing_create(test_context(), &rt));
  float *ref = malloc(sizeof *ref * (size_t)T * D),
        *y = malloc(sizeof *y * (size_t)T * D);
  /* Two clean forwards first: the second allocates nothing new, so the
   * victim's live objects are the baseline every faulted run returns to. */
  for (int i = 0; i < 2; ++i)
    REQUIRE_OK(clmoe_ep_forward(ep, xt, NULL, yt, rt, 0));
  REQUIRE_OK(clmoe_tensor_read(yt, ref, sizeof *ref * (size_t)T * D));
  int64_t baseline = clmoe_test_live_objects();

  int runs = 0, failed_runs = 0, absorbed = 0;
  for (int64_t n = 1;; ++n) {
    if (g_rank == victim)
      clmoe_test_fault_inject("any", n);
    alarm(60);
    clmoe_status st = clmoe_ep_forward(ep, xt, NULL, yt, rt, 0);
    alarm(0);
    const char *site = NULL;
    int injected = g_rank == victim && clmoe_test_fault_injected(&site) != NULL;
    clmoe_test_fault_inject("any", 0);
    MPI_Bcast(&injected, 1, MPI_INT, victim, MPI_COMM_WORLD);
    if (!injected) {
      CHECK_OK(st);
      break;
    }
    ++runs;
    /* Every rank agrees: all failed, or all succeeded (fault absorbed). */
    int ok = st == CLMOE_SUCCESS, all_ok = 0, any_ok = 0;
    MPI_Allreduce(&ok, &all_ok, 1, MPI_INT, MPI_MIN, MPI_COMM_WORLD);
    MPI_Allreduce(&ok, &any_ok, 1, MPI_INT, MPI_MAX, MPI_COMM_WORLD);
    if (all_ok != any_ok)
      fprintf(stderr, "rank %d: fault %lld at %s: ranks disagree (%s)\n",
              g_rank, (long long)n, site ? site : "another rank",
              clmoe_status_string(st));
    CHECK(all_ok == any_ok);
    failed_runs += !ok;
    absorbed += ok;
    if (!ok)
      CHECK(*clmoe_last_error_detail() != 0);
    if (g_rank == victim)
      CHECK(clmoe_test_live_objects() == baseline);
    /* The next forward works everywhere and gives the reference. */
    alarm(60);
    CHECK_OK(clmoe_ep_forward(ep, xt, NULL, yt, rt, 0));
    alarm(0);
    CHECK_OK(clmoe_tensor_read(yt, y, sizeof *y * (size_t)T * D));
    CHECK(!memcmp(y, ref, sizeof *y * (size_t)T * D));
  }
  if (g_rank == victim)
    printf("test_ep_faults (%s): %d faulted forwards on rank %d of %d (%d "
           "failed on every rank, %d absorbed)\n",
           schedule == CLMOE_EP_SCHEDULE_OVERLAP ? "overlap" : "bulk", runs,
           victim, g_P, failed_runs, absorbed);
  CHECK(runs > 10);

  clmoe_routing_destroy(rt);
  clmoe_tensor_destroy(xt);
  clmoe_tensor_destroy(yt);
  clmoe_ep_destroy(ep);
  free(ref);
  free(y);
}

int main(int argc, char **argv) {
  MPI_Init(&argc, &argv);
  MPI_Comm_rank(MPI_COMM_WORLD, &g_rank);
  MPI_Comm_size(MPI_COMM_WORLD, &g_P);
  signal(SIGALRM, on_alarm);
  const int victim = g_P - 1, T = 6 + g_rank;
  float *wr = seeded((size_t)D * E, 0.5f, 1);
  float *w1 = seeded((size_t)E * D * F, 0.3f, 2),
        *w3 = seeded((size_t)E * D * F, 0.3f, 3),
        *w2 = seeded((size_t)E * F * D, 0.3f, 4);
  float *x = seeded((size_t)T * D, 1.0f, 10 + g_rank);
  clmoe_router_desc rd;
  clmoe_router_desc_init(&rd);
  rd.num_experts = E;
  rd.d_model = D;
  rd.weight_host = wr;
  rd.k = 2;
  clmoe_router *router = NULL;
  REQUIRE_OK(clmoe_router_create(test_context(), &rd, &router));
  clmoe_experts *experts = local_experts(w1, w3, w2);
  for (int sched = 0; sched < 2; ++sched)
    walk(router, experts, x, T, victim,
         sched ? CLMOE_EP_SCHEDULE_OVERLAP : CLMOE_EP_SCHEDULE_BULK);
  clmoe_experts_destroy(experts);
  clmoe_router_destroy(router);
  free(x);
  free(wr);
  free(w1);
  free(w3);
  free(w2);
  char name[40];
  snprintf(name, sizeof name, "test_ep_faults[%d/%d]", g_rank, g_P);
  int failed = test_finish(name);
  int any = 0;
  MPI_Allreduce(&failed, &any, 1, MPI_INT, MPI_MAX, MPI_COMM_WORLD);
  MPI_Finalize();
  return any;
}
