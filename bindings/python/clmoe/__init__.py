"""clmoe: dynamic Mixture-of-Experts routing on OpenCL devices (ctypes
binding over the C ABI)."""
from .core import (Context, Error, Experts, MoELayer, Router, Routing,
                   Tensor, from_bf16_bits, to_bf16_bits, version)

__all__ = ["Context", "Error", "Experts", "MoELayer", "Router", "Routing",
           "Tensor", "from_bf16_bits", "to_bf16_bits", "version"]
