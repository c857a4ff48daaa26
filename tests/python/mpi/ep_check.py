"""Run under mpirun: clmoe.ExpertParallel against the single-process layer
of each rank's tokens (bitwise), with contiguous blocks and an explicit
map, float32 and float16 tokens, a rank without tokens, both schedules.
Prints OK."""
import sys

import numpy as np
from mpi4py import MPI

import clmoe

comm = MPI.COMM_WORLD
rank, P = comm.Get_rank(), comm.Get_size()
E, D, F = 10, 16, 24
rng = np.random.default_rng(0)  # the same weights on every rank
wr = (np.round(rng.normal(size=(D, E)) * 32) / 64).astype(np.float32)
w1, w3 = (rng.normal(size=(2, E, D, F)) * 0.3).astype(np.float32)
w2 = (rng.normal(size=(E, F, D)) * 0.3).astype(np.float32)
ctx = clmoe.Context()
router = clmoe.Router(ctx, weight=wr, policy="top_p", p=0.5)
full = clmoe.Experts(ctx, w1=w1, w2=w2, w3=w3, path="grouped")
reference = clmoe.MoELayer(router, full)
T = 0 if rank == 1 else 6 + 5 * rank
x = (np.round(np.random.default_rng(10 + rank).normal(size=(T, D)) * 8) / 8
     ).astype(np.float32)
ok = True


def check(ranks, schedule):
    """One layout: every rank against the reference, both dtypes."""
    global ok
    sizes = [E // P + (q < E % P) for q in range(P)]  # contiguous blocks
    owner = ranks or [q for q in range(P) for _ in range(sizes[q])]
    mine = [e for e in range(E) if owner[e] == rank]
    local = clmoe.Experts(ctx, w1=w1[mine], w2=w2[mine], w3=w3[mine],
                          path="grouped") if mine else None
    ep = clmoe.ExpertParallel(ctx, comm, router, local, expert_ranks=ranks,
                              schedule=schedule)
    for dtype in (np.float32, np.float16):
        xs = x.astype(dtype)
        y, _ = ep(xs)
        want, _ = reference(xs)
        ok &= y.dtype == dtype and y.tobytes() == want.tobytes()
    ok &= ep.stats["rows_sent"] >= 0 and ep.stats["mpi_device_buffers"] in (0, 1)
    ep.close()


try:  # a failure on one rank must not leave the others waiting
    for layout in (None, [(3 * e + 1) % P for e in range(E)]):
        for schedule in ("bulk", "overlap"):
            check(layout, schedule)
    try:  # checked before anything collective
        clmoe.ExpertParallel(ctx, comm, router, None, schedule="sometimes")
        ok = False
    except ValueError:
        pass
except Exception as exc:  # noqa: BLE001
    print(f"rank {rank}: {exc!r}", file=sys.stderr, flush=True)
    comm.Abort(1)
ok = comm.allreduce(int(ok), op=MPI.MIN)
if rank == 0:
    print("OK" if ok else "MISMATCH")
sys.exit(0 if ok else 1)
