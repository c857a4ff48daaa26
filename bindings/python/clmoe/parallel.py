"""Expert parallelism over MPI (libclmoe_mpi) for mpi4py programs: every
rank holds the router and its own experts and brings its own tokens."""
import ctypes
import os

import numpy as np

from . import _lib
from ._lib import lib
from .core import Error, MoELayer, Routing, Tensor, check


class EpDesc(ctypes.Structure):
    _fields_ = [("struct_size", ctypes.c_size_t), ("comm", ctypes.c_void_p),
                ("ctx", ctypes.c_void_p), ("router", ctypes.c_void_p),
                ("experts", ctypes.c_void_p),
                ("expert_ranks", ctypes.POINTER(ctypes.c_int32)),
                ("schedule", ctypes.c_int32)]

SCHEDULES = {"auto": 0, "bulk": 1, "overlap": 2}


class EpStats(ctypes.Structure):
    _fields_ = [("struct_size", ctypes.c_size_t), ("rows_sent", ctypes.c_int64),
                ("bytes_sent", ctypes.c_int64),
                ("rows_received", ctypes.c_int64)] + [
        (n, ctypes.c_double) for n in ("route_ms", "exchange_out_ms",
                                       "experts_ms", "exchange_back_ms",
                                       "combine_ms")] + [
        ("mpi_device_buffers", ctypes.c_int32)]


def _load_mpi_lib():
    """libclmoe_mpi.so beside the loaded libclmoe, or CLMOE_MPI_LIBRARY."""
    names = [os.environ.get("CLMOE_MPI_LIBRARY")]
    base = getattr(lib, "_name", "")
    if os.sep in base:
        names.append(os.path.join(os.path.dirname(base), "libclmoe_mpi.so"))
    names += ["libclmoe_mpi.so", "libclmoe_mpi.so.0"]
    errors = []
    for name in filter(None, names):
        try:
            m = ctypes.CDLL(name)
            break
        except OSError as exc:
            errors.append(f"{name}: {exc}")
    else:
        raise ImportError("libclmoe_mpi not found (build clmoe with MPI or "
                          "set CLMOE_MPI_LIBRARY): " + "; ".join(errors))
    v = ctypes.c_void_p
    for fn, res, args in (
            ("clmoe_ep_desc_init_sized", None, [ctypes.POINTER(EpDesc),
                                                ctypes.c_size_t]),
            ("clmoe_ep_create", ctypes.c_int32, [ctypes.POINTER(EpDesc),
                                                 ctypes.POINTER(v)]),
            ("clmoe_ep_destroy", None, [v]),
            ("clmoe_ep_forward", ctypes.c_int32, [v, v, v, v, v,
                                                  ctypes.c_uint32]),
            ("clmoe_ep_stats_init", None, [ctypes.POINTER(EpStats)]),
            ("clmoe_ep_get_stats", ctypes.c_int32, [v,
                                                    ctypes.POINTER(EpStats)])):
        f = getattr(m, fn)
        f.restype, f.argtypes = res, args
    return m


class ExpertParallel:
    """`ExpertParallel(ctx, comm, router, experts, expert_ranks=None,
    schedule="auto")` over an mpi4py communicator (Open MPI): `experts` are
    this rank's, in ascending global id (contiguous blocks by default, or
    `expert_ranks[E]`, the same on every rank); `schedule` "bulk",
    "overlap" or "auto" (= bulk), the same on every rank. `y, routing = ep(x)` is collective: every rank calls it
    with its own x [T_r, d] (float32 or float16 numpy; T_r may be 0); y
    equals the single-process layer on that rank's tokens bit for bit."""

    def __init__(self, ctx, comm, router, experts, expert_ranks=None,
                 schedule="auto"):
        from mpi4py import MPI
        if schedule not in SCHEDULES:
            raise ValueError(f"schedule must be one of {sorted(SCHEDULES)}, "
                             f"not {schedule!r}")
        self._mpi = _load_mpi_lib()
        self.ctx, self.router, self.experts = ctx, router, experts
        desc = EpDesc()
        self._mpi.clmoe_ep_desc_init_sized(ctypes.byref(desc),
                                           ctypes.sizeof(desc))
        desc.comm = MPI._handleof(comm)
        desc.ctx = ctx.handle.value if hasattr(ctx.handle, "value") \
            else ctx.handle
        desc.router = router.handle.value
        desc.experts = experts.handle.value if experts is not None else None
        desc.schedule = SCHEDULES[schedule]
        self._map = None
        if expert_ranks is not None:
            self._map = np.ascontiguousarray(expert_ranks, np.int32)
            desc.expert_ranks = self._map.ctypes.data_as(
                ctypes.POINTER(ctypes.c_int32))
        self.handle = ctypes.c_void_p()
        check(self._mpi.clmoe_ep_create(ctypes.byref(desc),
                                        ctypes.byref(self.handle)))

    def __call__(self, x, importance=None, io_dtype=None):
        dtype = MoELayer._io_dtype(x, io_dtype)
        xt = x if isinstance(x, Tensor) else self.ctx.tensor(x, dtype)
        T, d = xt.shape()
        yt = Tensor.from_numpy(self.ctx, np.zeros((T, d), dtype), dtype)
        imp = self.router._importance(importance)
        routing = Routing(self.ctx)
        check(self._mpi.clmoe_ep_forward(self.handle, xt.handle,
                                         imp.handle if imp else None,
                                         yt.handle, routing.handle, 0))
        return yt.numpy(), routing

    @property
    def stats(self):
        s = EpStats()
        self._mpi.clmoe_ep_stats_init(ctypes.byref(s))
        check(self._mpi.clmoe_ep_get_stats(self.handle, ctypes.byref(s)))
        return {n: getattr(s, n) for n, _ in EpStats._fields_[1:]}

    def close(self):
        """Collective (frees the duplicated communicator)."""
        if self.handle:
            self._mpi.clmoe_ep_destroy(self.handle)
            self.handle = None
