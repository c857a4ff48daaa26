"""Hugging Face checkpoints (safetensors files and model directories) through
libclmoe's reader: shards are memory-mapped, headers validated at open."""
import ctypes
import json

import numpy as np

from . import _lib
from ._lib import lib
from .core import Error, check

# What read() can return: numpy dtype and the library's dtype code.
_READ = {"f32": (np.float32, 1), "f16": (np.float16, 3), "bf16": (np.uint16, 4)}


class Checkpoint:
    """`Checkpoint(path)`: a .safetensors file, or a directory with
    config.json and model.safetensors or model.safetensors.index.json and
    its shards. `tensors()` lists (name, dtype, shape); `read(name,
    dtype="f32")` returns a numpy array ("f16": float16, "bf16": uint16
    bfloat16 bits); `config` is config.json as a dict (None without one).
    Use as a context manager, or call close()."""

    def __init__(self, path):
        self.handle = ctypes.c_void_p()
        check(lib.clmoe_checkpoint_open(str(path).encode(),
                                        ctypes.byref(self.handle)))
        text = ctypes.c_char_p()
        check(lib.clmoe_checkpoint_get_config(self.handle, ctypes.byref(text)))
        self.config = json.loads(text.value.decode()) if text.value else None

    def close(self):
        if self.handle:
            lib.clmoe_checkpoint_close(self.handle)
            self.handle = ctypes.c_void_p()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def __del__(self):
        self.close()

    def _live(self):
        if not self.handle:
            raise Error(-2, "the checkpoint is closed")
        return self.handle

    @staticmethod
    def _entry(info):
        return (info.name.decode(), info.dtype.decode(),
                tuple(info.shape[i] for i in range(info.rank)))

    def tensors(self):
        """[(name, dtype, shape)] in ascending name order; dtype as
        safetensors spells it ("BF16", "F32", "I64", ...)."""
        h = self._live()
        n = _lib.c_i64()
        check(lib.clmoe_checkpoint_get_num_tensors(h, ctypes.byref(n)))
        out = []
        for i in range(n.value):
            info = _lib.CheckpointTensor()
            lib.clmoe_checkpoint_tensor_init(ctypes.byref(info))
            check(lib.clmoe_checkpoint_get_tensor(h, i, ctypes.byref(info)))
            out.append(self._entry(info))
        return out

    def info(self, name):
        """(name, dtype, shape) of one tensor; NOT_FOUND names the nearest."""
        info = _lib.CheckpointTensor()
        lib.clmoe_checkpoint_tensor_init(ctypes.byref(info))
        check(lib.clmoe_checkpoint_find_tensor(self._live(), name.encode(),
                                               ctypes.byref(info)))
        return self._entry(info)

    def read(self, name, dtype="f32"):
        """Tensor `name` converted to "f32", "f16" or "bf16" (round to
        nearest even; a value that overflows is an error). F8_E4M3, F8_E5M2,
        I8 and U8 tensors are decoded element by element (no scale)."""
        if dtype not in _READ:
            raise Error(-1, f"unknown dtype {dtype!r}; expected one of "
                        f"{sorted(_READ)}")
        np_dtype, code = _READ[dtype]
        _, _, shape = self.info(name)
        out = np.empty(shape, np_dtype)
        check(lib.clmoe_checkpoint_read(self._live(), name.encode(), code,
                                        out.ctypes.data if out.size else None,
                                        out.nbytes))
        return out

    @property
    def num_files(self):
        n = _lib.c_i32()
        check(lib.clmoe_checkpoint_get_num_files(self._live(), ctypes.byref(n)))
        return n.value


_ARCHS = {"auto": 0, "mixtral": 1, "olmoe": 2, "qwen2_moe": 3,
          "qwen3_moe": 4, "deepseek_v2": 6, "deepseek_v3": 7, "glm4_moe": 8,
          "gpt_oss": 9, "llama4": 10}


def _name(table, code):
    return next(k for k, v in table.items() if v == code and k is not None)


def load_moe_layer(ctx, path, layer, arch="auto", dtype=None, policy=None,
                   path_kind="auto", **policy_params):
    """MoE layer `layer` of a Hugging Face checkpoint (a model directory, or
    a Checkpoint) as a MoELayer, with shared experts where the model has
    them (Qwen2-MoE, DeepSeek, GLM-4.5, Llama 4). `arch`: "auto"
    (config.json's model_type), "mixtral", "olmoe", "qwen2_moe",
    "qwen3_moe", "deepseek_v2", "deepseek_v3" (also Kimi K2), "glm4_moe",
    "gpt_oss" or "llama4". `dtype`: the experts' storage ("f32", "f16",
    "bf16"; None keeps the stored dtype). `policy`: None routes like the
    model (its top-k and gate normalisation); a clmoe policy name
    ("top_p", "importance", ...) with its parameters (policy_params, as for
    Router) replaces it and runs over the model's own scores (scoring,
    selection bias, groups, gate scale and position are kept). The
    returned layer's `info` holds the model's sizes and conventions."""
    from .core import (ACTIVATIONS, GATE_POSITIONS, GROUP_SCORES, PATHS,
                       SCORINGS, WEIGHT_DTYPES, Experts, MoELayer, Router,
                       Tensor, _choice, _fill_policy)
    ck = path if isinstance(path, Checkpoint) else Checkpoint(path)
    desc = _lib.LayerDesc()
    lib.clmoe_layer_desc_init_sized(ctypes.byref(desc), ctypes.sizeof(desc))
    desc.layer = layer
    desc.arch = _choice(_ARCHS, arch, "arch")
    desc.weight_dtype = 0 if dtype is None else _choice(WEIGHT_DTYPES, dtype,
                                                         "dtype")
    desc.path = _choice(PATHS, path_kind, "path_kind")
    rd = None
    if policy is not None:
        rd = _lib.RouterDesc()
        lib.clmoe_router_desc_init_sized(ctypes.byref(rd), ctypes.sizeof(rd))
        _fill_policy(rd, policy, **policy_params)
        desc.policy = ctypes.addressof(rd)
    elif policy_params:
        raise Error(-1, "policy parameters need a policy")
    out = _lib.MoELayerOut()
    lib.clmoe_moe_layer_init_sized(ctypes.byref(out), ctypes.sizeof(out))
    check(lib.clmoe_checkpoint_load_layer(ctx.handle, ck._live(),
                                          ctypes.byref(desc),
                                          ctypes.byref(out)))
    E, d = out.num_experts, out.d_model
    router = Router._adopt(ctx, ctypes.c_void_p(out.router),
                           policy or "top_k", E)
    experts = Experts._adopt(ctx, ctypes.c_void_p(out.experts), E, d,
                             out.d_ff)
    shared = Experts._adopt(ctx, ctypes.c_void_p(out.shared_experts), 1, d,
                            out.shared_d_ff) if out.shared_experts else None
    gate = Tensor(ctx, ctypes.c_void_p(out.shared_gate)) \
        if out.shared_gate else None
    result = MoELayer(router, experts, shared=shared, shared_gate=gate)
    result.info = {"arch": {v: k for k, v in _ARCHS.items()}[out.arch],
                   "num_experts": E, "d_model": d, "d_ff": out.d_ff,
                   "shared_d_ff": out.shared_d_ff, "top_k": out.top_k,
                   "renormalize": bool(out.renormalize),
                   "dtype": {v: k for k, v in WEIGHT_DTYPES.items()}[
                       out.weight_dtype],
                   "scoring": _name(SCORINGS, out.scoring),
                   "groups": (out.num_groups, out.topk_groups),
                   "group_score": _name(GROUP_SCORES, out.group_score),
                   "gate_scale": out.gate_scale,
                   "gate_position": _name(GATE_POSITIONS, out.gate_position),
                   "selection_bias": bool(out.has_selection_bias),
                   "router_bias": bool(out.has_router_bias),
                   "expert_biases": bool(out.has_expert_biases),
                   "activation": _name(ACTIVATIONS, out.activation),
                   "shared_experts": out.shared_experts is not None}
    if out.activation == ACTIVATIONS["swiglu_oai"]:
        result.info["swiglu_limit"] = out.swiglu_limit
    if ck is not path:
        ck.close()
    return result
