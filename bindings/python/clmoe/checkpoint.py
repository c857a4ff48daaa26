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
        nearest even; a value that overflows is an error)."""
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
