"""clmoe: dynamic Mixture-of-Experts routing on OpenCL devices (ctypes
binding over the C ABI)."""
from .core import (Context, Error, Experts, MoELayer, Router, Routing,
                   Tensor, version)

__all__ = ["Context", "Error", "Experts", "MoELayer", "Router", "Routing",
           "Tensor", "version"]
