"""clmoe: dynamic Mixture-of-Experts routing on OpenCL devices (ctypes
binding over the C ABI)."""
from .checkpoint import Checkpoint, load_moe_layer
from .core import (Context, Error, Experts, MoELayer, Router, Routing,
                   Tensor, from_bf16_bits, to_bf16_bits, version)
from .parallel import ExpertParallel

__all__ = ["Checkpoint", "Context", "Error", "ExpertParallel", "Experts",
           "MoELayer", "Router",
           "Routing", "Tensor", "from_bf16_bits", "load_moe_layer",
           "to_bf16_bits", "version"]
