"""Pythonic wrappers over the C ABI: contexts, tensors, routers, routing."""
import ctypes

import numpy as np

from . import _lib
from ._lib import lib

F32, I32, F16, BF16 = 1, 2, 3, 4
# Storage dtypes by name; bfloat16 travels in numpy as uint16 bit patterns.
DTYPES = {"f32": F32, "f16": F16, "bf16": BF16}
# Expert weight storage: the float dtypes and the quantized formats.
WEIGHT_DTYPES = dict(DTYPES, fp8_e4m3=5, mxfp4=6, int8=7, int4=8)

POLICIES = {"top_k": 1, "top_p": 2, "importance": 3, "resonance": 4,
            "expert_choice": 5}
GATES = {None: 0, "default": 0, "renorm": 1, "raw": 2}
OVERFLOW = {"drop_lowest_gate": 0, "drop_latest_token": 1}
AFFINITY = {"prob": 0, "cosine": 1}
FALLBACK = {"none": 0, None: 0, "top1": 1}
ACTIVATIONS = {"relu": 1, "gelu": 2, "silu": 3, "swiglu": 4, "geglu": 5,
               "swiglu_oai": 6}
SCORINGS = {"softmax": 0, "sigmoid": 1}
GROUP_SCORES = {"top2_sum": 0, "max": 1}
GATE_POSITIONS = {"output": 0, "input": 1}
LAYOUTS = {"in_out": 0, "out_in": 1}
PATHS = {"auto": 0, "clblast": 1, "grouped": 2}


class Error(RuntimeError):
    """A clmoe call failed: `status` (int), `status_name` and `detail`."""

    def __init__(self, status, detail):
        self.status = status
        self.status_name = lib.clmoe_status_string(status).decode()
        self.detail = detail
        super().__init__(f"{self.status_name}: {detail}")


def check(status):
    if status != 0:
        raise Error(status, lib.clmoe_last_error_detail().decode(
            errors="replace"))


def version():
    return lib.clmoe_version_string().decode()


def _convert(src_code, src, dst_code, dst_np_dtype, strict=False):
    src = np.ascontiguousarray(src)
    out = np.empty(src.shape, dst_np_dtype)
    check(lib.clmoe_convert_ex(src_code,
                               src.ctypes.data if src.size else None,
                               dst_code, out.ctypes.data if out.size else None,
                               src.size, 1 if strict else 0))
    return out


def to_bf16_bits(a, strict=False):
    """float32 (or float16) values -> uint16 bfloat16 bit patterns, rounded
    to nearest even by the library (NaN stays NaN; a finite value too large
    becomes +-Inf, as numpy and torch round it; strict=True raises Error
    instead)."""
    a = np.asarray(a)
    code = F16 if a.dtype == np.float16 else F32
    a = a if code == F16 else np.asarray(a, np.float32)
    return _convert(code, a, BF16, np.uint16, strict)


def from_bf16_bits(u):
    """uint16 bfloat16 bit patterns -> float32 (exact)."""
    return _convert(BF16, np.asarray(u, np.uint16), F32, np.float32)


def _host_code(array):
    """The clmoe dtype of a numpy weight array: float16 -> F16, uint16 ->
    BF16 (bit patterns), anything else is converted to float32."""
    dt = np.asarray(array).dtype
    return F16 if dt == np.float16 else BF16 if dt == np.uint16 else F32


def _host_array(array, code):
    np_dtype = {F32: np.float32, F16: np.float16, BF16: np.uint16}[code]
    return np.ascontiguousarray(array, dtype=np_dtype)


def _choice(table, value, what):
    try:
        return table[value]
    except KeyError:
        raise Error(-1, f"unknown {what} {value!r}; expected one of "
                    f"{sorted(k for k in table if k)}") from None


def _cl_handle(obj):
    """An OpenCL handle from a pyopencl object (or an int) as a c_void_p."""
    if obj is None:
        return None
    return ctypes.c_void_p(getattr(obj, "int_ptr", obj))


class Tensor:
    """A device tensor owned by Python; created from numpy or wrapping a
    pyopencl buffer (no copy)."""

    def __init__(self, ctx, handle, keep=None, owned=True):
        self.ctx, self.handle, self._keep = ctx, handle, keep
        self._owned = owned

    _CODES = {np.dtype(np.float32): F32, np.dtype(np.int32): I32,
              np.dtype(np.float16): F16, np.dtype(np.uint16): BF16}
    _NUMPY = {F32: np.float32, I32: np.int32, F16: np.float16,
              BF16: np.uint16}

    @classmethod
    def from_numpy(cls, ctx, array, dtype=np.float32):
        """A device copy of `array` as `dtype`: float32, int32, float16, or
        uint16 holding bfloat16 bit patterns."""
        a = np.ascontiguousarray(array, dtype=dtype)
        shape = (_lib.c_i64 * max(a.ndim, 1))(*(a.shape or (1,)))
        h = ctypes.c_void_p()
        code = cls._CODES[np.dtype(dtype)]
        check(lib.clmoe_tensor_create(ctx.handle, code, max(a.ndim, 1), shape,
                                      a.ctypes.data if a.size else None,
                                      ctypes.byref(h)))
        return cls(ctx, h)

    @classmethod
    def wrap(cls, ctx, cl_buffer, shape, dtype=np.float32):
        dims = (_lib.c_i64 * len(shape))(*shape)
        h = ctypes.c_void_p()
        code = cls._CODES[np.dtype(dtype)]
        check(lib.clmoe_tensor_wrap(ctx.handle, _cl_handle(cl_buffer), code,
                                    len(shape), dims, ctypes.byref(h)))
        return cls(ctx, h, keep=cl_buffer)

    def shape(self):
        rank = _lib.c_i32()
        dims = (_lib.c_i64 * 4)()
        check(lib.clmoe_tensor_get_shape(self.handle, ctypes.byref(rank), dims))
        return tuple(dims[i] for i in range(rank.value))

    def numpy(self):
        dt = _lib.c_i32()
        check(lib.clmoe_tensor_get_dtype(self.handle, ctypes.byref(dt)))
        out = np.empty(self.shape(), self._NUMPY[dt.value])
        check(lib.clmoe_tensor_read(self.handle,
                                    out.ctypes.data if out.size else None,
                                    out.nbytes))
        return out

    def close(self):
        if self.handle and self._owned:
            lib.clmoe_tensor_destroy(self.handle)
        self.handle = None

    __del__ = close


class Context:
    """A clmoe context: `device` follows the CLMOE_DEVICE rules; or pass a
    pyopencl `cl_context` (+ `queue`) to share buffers without copies."""

    def __init__(self, device=None, cl_context=None, queue=None,
                 cache_dir=None):
        self.handle = None
        desc = _lib.ContextDesc()
        lib.clmoe_context_desc_init_sized(ctypes.byref(desc),
                                          ctypes.sizeof(desc))
        if device is not None:
            self._device = str(device).encode()
            desc.device = self._device
        if cache_dir is not None:
            self._cache = str(cache_dir).encode()
            desc.cache_dir = self._cache
        if cl_context is not None:
            dev = cl_context.devices[0] if queue is None else queue.device
            desc.cl_context = _cl_handle(cl_context).value
            desc.cl_device = _cl_handle(dev).value
            desc.cl_queue = _cl_handle(queue).value if queue else None
        self._pyopencl = (cl_context, queue)
        self.handle = ctypes.c_void_p()
        check(lib.clmoe_context_create(ctypes.byref(desc),
                                       ctypes.byref(self.handle)))
        info = _lib.DeviceInfo()
        lib.clmoe_device_info_init(ctypes.byref(info))
        check(lib.clmoe_context_get_device_info(self.handle,
                                                ctypes.byref(info)))
        self.device_name = info.name.decode()
        self.device_info = {
            "name": self.device_name, "vendor": info.vendor.decode(),
            "platform": info.platform_name.decode(),
            "version": info.version.decode(),
            "driver_version": info.driver_version.decode(),
            "fp16": bool(info.has_fp16), "fp64": bool(info.has_fp64),
            "compute_units": info.compute_units}

    def tensor(self, array, dtype=np.float32):
        """Device input from numpy, or in place from a pyopencl array."""
        if hasattr(array, "base_data") and hasattr(array, "queue"):
            if array.offset or not array.flags.c_contiguous:
                raise Error(-4, "pyopencl arrays must be C-contiguous with "
                            "offset 0")
            if np.dtype(array.dtype) != np.dtype(dtype):
                raise Error(-5, f"pyopencl array is {array.dtype}; expected "
                            f"{np.dtype(dtype)}")
            return Tensor.wrap(self, array.base_data, array.shape, dtype)
        a = np.asarray(array)
        if a.dtype.kind not in "fiub":
            raise Error(-5, f"cannot convert dtype {a.dtype} to {np.dtype(dtype)}")
        return Tensor.from_numpy(self, a, dtype)

    def route(self, logits, policy="top_k", importance=None, **params):
        """Routes logits[T, E] (float32) with a policy; returns a Routing."""
        logits = self._as_2d(logits, "logits")
        router = Router(self, num_experts=logits.shape()[1], policy=policy,
                        **params)
        return router.route_logits(logits, importance=importance)

    def score_attention(self, probs=None, q=None, k=None, causal=False,
                        seq_offsets=None, key_lengths=None, norm="max",
                        scale=None, lse=None, layout="hsd", check_lse=False,
                        qk_dtype=None):
        """DA-MoE importance[T] (float32 numpy) from attention probabilities
        A[H, T, T] / A[B, H, S, S], or fused from q, k: [H, T, dh] with
        layout="hsd", [T, H, dh] or a padded batch [B, S, H, dh] with
        layout="shd"; k may have fewer heads (grouped-query attention,
        dividing H). q and k are float32 or float16 arrays as given, or
        uint16 bfloat16 bits with qk_dtype="bf16" ("f32"/"f16" convert).
        lse [H, T] (or [B, H, S] for a padded batch): each query row's
        natural-log log-sum-exp from the caller's attention kernel (skips a
        pass); check_lse verifies it."""
        desc = _lib.ScoreDesc()
        lib.clmoe_score_desc_init_sized(ctypes.byref(desc),
                                        ctypes.sizeof(desc))
        desc.mask = 1 if causal else 0
        desc.norm = _choice({"max": 0, "raw": 1}, norm, "norm")
        desc.layout = _choice({"hsd": 0, "shd": 1}, layout, "layout")
        if check_lse:
            desc.flags |= 2
        if scale is not None:
            desc.scale = scale
        keep = []
        for name, value in (("seq_offsets", seq_offsets),
                            ("key_lengths", key_lengths)):
            if value is not None:
                t = self.tensor(value, np.int32)
                keep.append(t)
                setattr(desc, name, t.handle.value)
        if lse is not None:
            t = lse if isinstance(lse, Tensor) else self.tensor(lse)
            keep.append(t)
            desc.lse = t.handle.value
        tensors = {}
        for name, value in (("probs", probs), ("q", q), ("k", k)):
            if value is not None:
                dtype = np.float32 if name == "probs" else \
                    _row_dtype(value, qk_dtype, "qk_dtype")
                tensors[name] = value if isinstance(value, Tensor) else \
                    self.tensor(value, dtype)
        if "probs" in tensors:
            shape = tensors["probs"].shape()
            T = shape[1] if len(shape) == 3 else (
                shape[0] * shape[2] if len(shape) == 4 else 0)
        elif "q" in tensors:
            shape = tensors["q"].shape()
            T = shape[0 if layout == "shd" else 1] if len(shape) == 3 else (
                shape[0] * shape[1] if len(shape) == 4 else 0)
        else:
            raise Error(-1, "give probs, or q and k")
        out = Tensor.from_numpy(self, np.zeros(T, np.float32))

        def handle(name):
            return tensors[name].handle if name in tensors else None
        check(lib.clmoe_score_attention(self.handle, ctypes.byref(desc),
                                        handle("probs"), handle("q"),
                                        handle("k"), out.handle, 0, None,
                                        None))
        return out.numpy()

    def _as_2d(self, array, what):
        t = array if isinstance(array, Tensor) else self.tensor(array)
        if len(t.shape()) != 2:
            raise Error(-4, f"{what} must be 2-d [T, ...]; got shape "
                        f"{t.shape()}")
        return t

    def finish(self):
        check(lib.clmoe_context_finish(self.handle))

    def close(self):
        if self.handle:
            lib.clmoe_context_destroy(self.handle)
            self.handle = None

    __del__ = close


_ROW_DTYPES = {"f32": np.float32, "f16": np.float16, "bf16": np.uint16}


def _row_dtype(value, explicit, what):
    """numpy storage of 16-bit-capable rows: `explicit` ("f32", "f16",
    "bf16") or, by default, float16 for float16 arrays and float32 for the
    rest; uint16 arrays are bfloat16 bits only when said so."""
    if explicit is not None:
        return _choice(_ROW_DTYPES, explicit, what)
    dt = np.dtype(getattr(value, "dtype", np.float32))
    if dt == np.uint16:
        raise Error(-5, f"uint16 arrays are bfloat16 bits only with "
                    f"{what}=\"bf16\"")
    return np.float16 if dt == np.float16 else np.float32


def _fill_policy(desc, policy, k=None, p=None, k_min=None, k_max=None,
                 k_mean=None, capacity_factor=None, overflow="drop_lowest_gate",
                 gates=None, affinity="prob", fallback="none"):
    """The policy fields of a RouterDesc."""
    desc.policy = _choice(POLICIES, policy, "policy")
    for name, value in (("k", k), ("p", p), ("k_min", k_min),
                        ("k_max", k_max), ("k_mean", k_mean),
                        ("capacity_factor", capacity_factor)):
        if value is not None:
            setattr(desc, name, value)
    desc.overflow = _choice(OVERFLOW, overflow, "overflow")
    desc.gates = _choice(GATES, gates, "gates")
    desc.affinity = _choice(AFFINITY, affinity, "affinity")
    desc.fallback = _choice(FALLBACK, fallback, "fallback")


class Router:
    """Router weights W_r[d, E] (+ bias[E]) and a policy with its
    parameters. Without `weight` it routes logits only."""

    @classmethod
    def _adopt(cls, ctx, handle, policy, num_experts):
        """Wraps a router created by the library (owned from now on)."""
        r = cls.__new__(cls)
        r.ctx, r.handle, r._keep = ctx, handle, []
        r.policy, r.num_experts = policy, num_experts
        return r

    def __init__(self, ctx, weight=None, bias=None, policy="top_k",
                 num_experts=None, k=None, p=None, k_min=None, k_max=None,
                 k_mean=None, capacity_factor=None, overflow="drop_lowest_gate",
                 gates=None, affinity="prob", fallback="none", dtype=None,
                 scoring="softmax", selection_bias=None, groups=None,
                 group_score="top2_sum", gate_scale=1.0,
                 gate_position="output"):
        """`scoring` ("softmax" or "sigmoid"), `selection_bias` ([E],
        steers selection only), `groups` ((num_groups, topk_groups):
        group-limited selection, groups scored by `group_score`
        "top2_sum" or "max"), `gate_scale` (multiplies every gate) and
        `gate_position` ("output", or "input": the gate scales the expert's
        input) describe the routers of DeepSeek-V2/V3, Kimi K2, GLM-4.5,
        gpt-oss and Llama 4; docs/policies.md has the exact semantics."""
        self.ctx, self.handle = ctx, None
        desc = _lib.RouterDesc()
        lib.clmoe_router_desc_init_sized(ctypes.byref(desc),
                                         ctypes.sizeof(desc))
        self._keep = []
        if weight is not None:
            # float32, float16, or uint16 bfloat16 bits; dtype rounds a
            # float32 weight to that precision first. The router computes in
            # float32 (16-bit weights are widened exactly).
            code = _host_code(weight)
            w = _host_array(weight, code)
            want = F32 if dtype is None else _choice(DTYPES, dtype, "dtype")
            if code == F32 and want != F32:
                code = want
                w = _convert(F32, w, code,
                             np.float16 if code == F16 else np.uint16)
            if w.ndim != 2:
                raise Error(-4, f"weight must be [d, E]; got shape {w.shape}")
            desc.d_model, desc.num_experts = w.shape
            desc.weight_host = w.ctypes.data
            desc.weight_dtype = code
            self._keep.append(w)
        if num_experts is not None:
            desc.num_experts = num_experts
        if bias is not None:
            b = np.ascontiguousarray(bias, dtype=np.float32)
            if b.shape != (desc.num_experts,):
                raise Error(-4, f"bias must be [E] = [{desc.num_experts}]; got "
                            f"shape {b.shape}")
            desc.bias_host = b.ctypes.data
            self._keep.append(b)
        _fill_policy(desc, policy, k=k, p=p, k_min=k_min, k_max=k_max,
                     k_mean=k_mean, capacity_factor=capacity_factor,
                     overflow=overflow, gates=gates, affinity=affinity,
                     fallback=fallback)
        desc.scoring = _choice(SCORINGS, scoring, "scoring")
        desc.group_score = _choice(GROUP_SCORES, group_score, "group_score")
        desc.gate_position = _choice(GATE_POSITIONS, gate_position,
                                     "gate_position")
        desc.gate_scale = gate_scale
        if groups is not None:
            if len(groups) != 2:
                raise Error(-1, "groups must be (num_groups, topk_groups)")
            desc.num_groups, desc.topk_groups = (int(g) for g in groups)
        if selection_bias is not None:
            sb = np.ascontiguousarray(selection_bias, dtype=np.float32)
            if sb.shape != (desc.num_experts,):
                raise Error(-4, f"selection_bias must be [E] = "
                            f"[{desc.num_experts}]; got shape {sb.shape}")
            desc.selection_bias_host = sb.ctypes.data
            self._keep.append(sb)
        self.policy = policy
        self.num_experts = desc.num_experts
        self.handle = ctypes.c_void_p()
        check(lib.clmoe_router_create(ctx.handle, ctypes.byref(desc),
                                      ctypes.byref(self.handle)))
        self._keep = []

    def _importance(self, importance):
        if self.policy != "importance":
            return None
        if importance is None:
            raise Error(-2, "the importance policy needs importance[T]")
        t = importance if isinstance(importance, Tensor) else \
            self.ctx.tensor(importance)
        return t

    def route(self, x, importance=None):
        """Routes x[T, d] through the router GEMM and the policy."""
        xt = self.ctx._as_2d(x, "x")
        imp = self._importance(importance)
        routing = Routing(self.ctx)
        check(lib.clmoe_route(self.handle, xt.handle,
                              imp.handle if imp else None, routing.handle, 0,
                              None, None))
        return routing

    def route_logits(self, logits, importance=None):
        lt = self.ctx._as_2d(logits, "logits")
        imp = self._importance(importance)
        routing = Routing(self.ctx)
        check(lib.clmoe_route_logits(self.handle, lt.handle,
                                     imp.handle if imp else None,
                                     routing.handle, 0, None, None))
        return routing

    def close(self):
        if self.handle:
            lib.clmoe_router_destroy(self.handle)
            self.handle = None

    __del__ = close


class Routing:
    """The result of a route: ragged (CSR) arrays read back as numpy."""

    _ARRAYS = {"counts": 0, "offsets": 1, "experts": 2, "gates": 3,
               "expert_offsets": 4, "slot_rows": 5, "row_tokens": 6}

    def __init__(self, ctx):
        self.ctx, self.handle = ctx, None
        self.handle = ctypes.c_void_p()
        check(lib.clmoe_routing_create(ctx.handle, ctypes.byref(self.handle)))
        self._cache = {}

    def array(self, name):
        if name not in self._cache:
            view = ctypes.c_void_p()
            check(lib.clmoe_routing_get_array(self.handle, self._ARRAYS[name],
                                              ctypes.byref(view)))
            # a view owned by the routing: never destroyed from Python
            self._cache[name] = Tensor(self.ctx, view, owned=False).numpy()
        return self._cache[name]

    def __getattr__(self, name):
        if name in Routing._ARRAYS:
            return self.array(name)
        raise AttributeError(name)

    @property
    def stats(self):
        n_t, n_e = _lib.c_i64(), _lib.c_i64()
        check(lib.clmoe_routing_get_sizes(self.handle, ctypes.byref(n_t),
                                          ctypes.byref(n_e), None))
        E = n_e.value
        hist = np.zeros(E + 1, np.int64)
        load = np.zeros(E + 1, np.float32)
        prob = np.zeros(E + 1, np.float32)
        st = _lib.RoutingStats()
        lib.clmoe_routing_stats_init(ctypes.byref(st))
        st.k_histogram = hist.ctypes.data_as(ctypes.POINTER(_lib.c_i64))
        st.expert_load = load.ctypes.data_as(ctypes.POINTER(ctypes.c_float))
        st.mean_prob = prob.ctypes.data_as(ctypes.POINTER(ctypes.c_float))
        st.array_capacity = E + 1
        check(lib.clmoe_routing_read_stats(self.handle, ctypes.byref(st)))
        return {"n": st.num_slots, "dropped": st.dropped, "mean_k": st.mean_k,
                "min_k": st.min_k, "max_k": st.max_k, "k_hist": hist,
                "load": load[:E], "mean_prob": prob[:E],
                "balance_loss": st.balance_loss, "entropy": st.mean_entropy}

    def close(self):
        if self.handle:
            lib.clmoe_routing_destroy(self.handle)
            self.handle = None

    __del__ = close


class Experts:
    """E expert FFNs. Weights w1 [E, d, f], w3 [E, d, f] (gated activations
    only), w2 [E, f, d] as float32, float16, or uint16 arrays holding
    bfloat16 bits; with layout="out_in" they are given as [E, f, d] /
    [E, d, f] (PyTorch) and transposed once. Optional float32 biases
    b1/b3 [E, f], b2 [E, d]. `dtype` is the device storage ("f32", "f16",
    "bf16"; values rounded to nearest even); 16-bit storage takes half the
    memory and runs on the grouped path."""

    @classmethod
    def _adopt(cls, ctx, handle, num_experts, d_model, d_ff):
        """Wraps experts created by the library (owned from now on)."""
        x = cls.__new__(cls)
        x.ctx, x.handle = ctx, handle
        x.num_experts, x.d_model, x.d_ff = num_experts, d_model, d_ff
        return x

    def __init__(self, ctx, w1, w2, w3=None, activation="swiglu",
                 b1=None, b2=None, b3=None, layout="in_out", path="auto",
                 dtype="f32", swiglu_limit=None, swiglu_alpha=None):
        self.ctx, self.handle = ctx, None
        desc = _lib.ExpertsDesc()
        lib.clmoe_experts_desc_init_sized(ctypes.byref(desc),
                                          ctypes.sizeof(desc))
        # activation="swiglu_oai": gpt-oss's clamped SwiGLU (defaults 7.0
        # and 1.702).
        if swiglu_limit is not None:
            desc.swiglu_limit = swiglu_limit
        if swiglu_alpha is not None:
            desc.swiglu_alpha = swiglu_alpha
        desc.activation = _choice(ACTIVATIONS, activation, "activation")
        desc.layout = _choice(LAYOUTS, layout, "layout")
        desc.path = _choice(PATHS, path, "path")
        desc.weight_dtype = _choice(WEIGHT_DTYPES, dtype, "dtype")
        weights = [v for v in (w1, w2, w3) if v is not None]
        codes = {_host_code(v) for v in weights}
        # One host dtype for the three matrices: mixed inputs go as float32.
        host = codes.pop() if len(codes) == 1 else F32
        desc.host_dtype = host
        arrays = {}
        for name, value in (("w1", w1), ("w2", w2), ("w3", w3), ("b1", b1),
                            ("b2", b2), ("b3", b3)):
            if value is None:
                continue
            if name[0] == "b":
                a = np.ascontiguousarray(value, dtype=np.float32)
            elif host == F32 and _host_code(value) == BF16:
                a = from_bf16_bits(value)
            else:
                a = _host_array(value, host)
            arrays[name] = a
            setattr(desc, name + "_host", a.ctypes.data)
        w1a = arrays["w1"]
        if w1a.ndim != 3:
            raise Error(-4, f"w1 must be 3-d [E, d, f]; got shape {w1a.shape}")
        E, a, b = w1a.shape
        d, f = (a, b) if layout == "in_out" else (b, a)
        for name, want in (("w3", (E, a, b)),
                           ("w2", (E, b, a)), ("b1", (E, f)), ("b3", (E, f)),
                           ("b2", (E, d))):
            if name in arrays and arrays[name].shape != want:
                raise Error(-4, f"{name} must have shape {want}; got "
                            f"{arrays[name].shape}")
        desc.num_experts, desc.d_model, desc.d_ff = E, d, f
        self.num_experts, self.d_model, self.d_ff = E, d, f
        self.handle = ctypes.c_void_p()
        check(lib.clmoe_experts_create(ctx.handle, ctypes.byref(desc),
                                       ctypes.byref(self.handle)))

    @property
    def dtype(self):
        """The weights' device storage: "f32", "f16", "bf16", "fp8_e4m3",
        "mxfp4", "int8" or "int4"."""
        code = ctypes.c_int32()
        check(lib.clmoe_experts_get_weight_dtype(self.handle,
                                                 ctypes.byref(code)))
        return {v: k for k, v in WEIGHT_DTYPES.items()}[code.value]

    @property
    def weight_bytes(self):
        """Device bytes of the weight matrices (half of f32's for 16-bit)."""
        n = _lib.c_i64()
        check(lib.clmoe_experts_get_bytes(self.handle, ctypes.byref(n), None))
        return n.value

    @property
    def path(self):
        """The expert GEMM path in use: "clblast" or "grouped"."""
        p = ctypes.c_int32()
        check(lib.clmoe_experts_get_path(self.handle, ctypes.byref(p)))
        return {v: k for k, v in PATHS.items()}[p.value]

    def close(self):
        if self.handle:
            lib.clmoe_experts_destroy(self.handle)
            self.handle = None

    __del__ = close


class MoELayer:
    """router + experts: `y, routing = layer(x, importance=None)`. y has x's
    dtype: float32 or float16 numpy arrays, or uint16 bfloat16 bits with
    io_dtype="bf16". With a pyopencl-backed context, a pyopencl array x
    gives a pyopencl array y. 16-bit tokens are widened in the kernels that
    read them and y is rounded once, when it is stored. `shared` (Experts of
    one expert) is applied to every token, weighted by
    sigmoid(x . shared_gate) with `shared_gate` ([d] float32) or by 1, and
    added after the routed sum."""


    def __init__(self, router, experts, shared=None, shared_gate=None):
        if router.ctx is not experts.ctx:
            raise Error(-15, "router and experts belong to different contexts")
        self.router, self.experts, self.ctx = router, experts, router.ctx
        self.shared = shared
        self.shared_gate = None if shared_gate is None else (
            shared_gate if isinstance(shared_gate, Tensor)
            else self.ctx.tensor(shared_gate))

    @staticmethod
    def _io_dtype(x, io_dtype):
        return _row_dtype(x, io_dtype, "io_dtype")

    def __call__(self, x, importance=None, residual=None, io_dtype=None):
        ctx = self.ctx
        dtype = self._io_dtype(x, io_dtype)
        xt = x if isinstance(x, Tensor) else ctx.tensor(x, dtype)
        if len(xt.shape()) != 2:
            raise Error(-4, f"x must be 2-d [T, d]; got shape {xt.shape()}")
        T = xt.shape()[0]
        d = self.experts.d_model
        pyopencl_in = hasattr(x, "base_data")
        if pyopencl_in:
            import pyopencl.array as cla
            y_arr = (residual.copy() if residual is not None else
                     cla.zeros(x.queue, (T, d), dtype))
            yt = ctx.tensor(y_arr, dtype)
        else:
            init = (np.zeros((T, d), dtype) if residual is None
                    else np.asarray(residual, dtype))
            yt = Tensor.from_numpy(ctx, init, dtype)
        imp = self.router._importance(importance)
        routing = Routing(ctx)
        flags = 1 if residual is not None else 0
        check(lib.clmoe_forward_shared(
            self.router.handle, self.experts.handle,
            self.shared.handle if self.shared else None,
            self.shared_gate.handle if self.shared_gate else None, xt.handle,
            imp.handle if imp else None, yt.handle, routing.handle, flags, 0,
            None, None))
        if pyopencl_in:
            ctx.finish()
            return y_arr, routing
        return yt.numpy(), routing
