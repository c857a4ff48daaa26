"""Training over the C ABI with numpy arrays: a routed MoE layer whose
forward keeps what its backward needs (clmoe_forward_train), the backward
of every stage (clmoe_backward) and in-place weight updates. The PyTorch
module (clmoe.torch) is built on this; this module itself needs no torch."""
import ctypes

import numpy as np

from . import _lib
from ._lib import lib
from .core import (ACTIVATIONS, Error, Experts, Router, Routing, Tensor,
                   _choice, check)

_GATED = ("swiglu", "geglu", "swiglu_oai")


def _train_desc(coeffs):
    desc = _lib.TrainDesc()
    lib.clmoe_train_desc_init_sized(ctypes.byref(desc), ctypes.sizeof(desc))
    desc.balance_coeff, desc.z_loss_coeff, desc.entropy_coeff = coeffs
    return desc


class Saved:
    """One training forward: its routing (which keeps the saved state), x
    and the layer it ran, for exactly one backward."""

    def __init__(self, layer, routing, x, io_dtype):
        self.layer, self.routing, self.x, self.io_dtype = (layer, routing, x,
                                                           io_dtype)

    @property
    def saved_bytes(self):
        n = _lib.c_i64()
        check(lib.clmoe_routing_saved_bytes(self.routing.handle,
                                            ctypes.byref(n)))
        return n.value


class TrainableMoE:
    """Router [d, E] (+ bias) and E experts (w1, w3 [E, d, f], w2 [E, f, d],
    optional biases) created from float32 arrays, with `update` for new
    weights after an optimizer step. Optional shared experts (one expert,
    every token): shared_w1, shared_w3 [1, d, fs], shared_w2 [1, fs, d] with
    the layer's activation, weighted by sigmoid(x . shared_gate) when
    shared_gate [d] is given. `policy` and `policy_params` are those of
    clmoe.Router; `coeffs` = (balance, z-loss, entropy)."""

    def __init__(self, ctx, router_weight, w1, w2, w3=None, router_bias=None,
                 b1=None, b2=None, b3=None, activation="swiglu",
                 policy="top_k", coeffs=(0.0, 0.0, 0.0), dtype="f32",
                 path="auto", shared_w1=None, shared_w2=None, shared_w3=None,
                 shared_gate=None, **policy_params):
        self.ctx = ctx
        self.activation = activation
        _choice(ACTIVATIONS, activation, "activation")
        self.gated = activation in _GATED
        self.router = Router(ctx, weight=router_weight, bias=router_bias,
                             policy=policy, **policy_params)
        self.experts = Experts(ctx, w1, w2, w3=w3, activation=activation,
                               b1=b1, b2=b2, b3=b3, dtype=dtype, path=path)
        self.E, self.d, self.f = w1.shape[0], w1.shape[1], w1.shape[2]
        self.has_router_bias = router_bias is not None
        self.has_biases = (b1 is not None, b2 is not None, b3 is not None)
        self.coeffs = tuple(float(c) for c in coeffs)
        self.shared = self.shared_gate = None
        self.fs = 0
        if shared_w1 is not None:
            self.shared = Experts(ctx, shared_w1, shared_w2, w3=shared_w3,
                                  activation=activation, dtype=dtype,
                                  path=path)
            self.fs = shared_w1.shape[2]
        if shared_gate is not None:
            self.shared_gate = Tensor.from_numpy(ctx, shared_gate)

    def update(self, router_weight=None, router_bias=None, w1=None, w2=None,
               w3=None, b1=None, b2=None, b3=None, shared_w1=None,
               shared_w2=None, shared_w3=None, shared_gate=None):
        """New float32 weights into the existing objects (no rebuild). The
        expert matrices go together: give w1 and w2 (and w3 when gated) or
        none of them."""
        keep = []
        E, d, f, fs = self.E, self.d, self.f, self.fs
        want = {"router_weight": (d, E), "router_bias": (E,),
                "w1": (E, d, f), "w3": (E, d, f), "w2": (E, f, d),
                "b1": (E, f), "b3": (E, f), "b2": (E, d),
                "shared_w1": (1, d, fs), "shared_w3": (1, d, fs),
                "shared_w2": (1, fs, d), "shared_gate": (d,)}
        given = dict(router_weight=router_weight, router_bias=router_bias,
                     w1=w1, w2=w2, w3=w3, b1=b1, b2=b2, b3=b3,
                     shared_w1=shared_w1, shared_w2=shared_w2,
                     shared_w3=shared_w3, shared_gate=shared_gate)
        for name, value in given.items():
            if value is not None and np.shape(value) != want[name]:
                raise Error(-4, f"{name} must have shape {want[name]}; got "
                            f"{np.shape(value)}")

        def host(a):
            a = np.ascontiguousarray(a, dtype=np.float32)
            keep.append(a)
            return a.ctypes.data

        if router_weight is not None or router_bias is not None:
            check(lib.clmoe_router_update(
                self.router.handle,
                None if router_weight is None else host(router_weight), None,
                None if router_bias is None else host(router_bias), None))
        if shared_gate is not None:
            check(lib.clmoe_tensor_write(
                self.shared_gate.handle, host(shared_gate), d * 4))
        if w1 is not None:
            self._update_experts(self.experts, E, f, host,
                                 (("w1", w1), ("w2", w2), ("w3", w3),
                                  ("b1", b1), ("b2", b2), ("b3", b3)))
        if shared_w1 is not None:
            self._update_experts(self.shared, 1, fs, host,
                                 (("w1", shared_w1), ("w2", shared_w2),
                                  ("w3", shared_w3)))

    def _update_experts(self, experts, E, f, host, arrays):
        desc = _lib.ExpertsDesc()
        lib.clmoe_experts_desc_init_sized(ctypes.byref(desc),
                                          ctypes.sizeof(desc))
        desc.num_experts, desc.d_model, desc.d_ff = E, self.d, f
        desc.activation = ACTIVATIONS[self.activation]
        for name, value in arrays:
            if value is not None:
                setattr(desc, name + "_host", host(value))
        check(lib.clmoe_experts_update(experts.handle, ctypes.byref(desc)))

    def forward(self, x, importance=None, io_dtype=np.float32):
        """y [T, d] and the auxiliary losses (dict) for x [T, d]; returns
        (y, losses, saved) where `saved` goes to backward."""
        xt = x if isinstance(x, Tensor) else Tensor.from_numpy(
            self.ctx, x, io_dtype)
        T = xt.shape()[0]
        yt = Tensor.from_numpy(self.ctx, np.zeros((T, self.d), io_dtype),
                               io_dtype)
        imp = self.router._importance(importance)
        routing = Routing(self.ctx)
        losses = _lib.AuxLosses()
        lib.clmoe_aux_losses_init_sized(ctypes.byref(losses),
                                        ctypes.sizeof(losses))
        desc = _train_desc(self.coeffs)
        check(lib.clmoe_forward_train(
            self.router.handle, self.experts.handle, self._h(self.shared),
            self._h(self.shared_gate), xt.handle,
            imp.handle if imp else None, yt.handle, routing.handle, 0,
            ctypes.byref(desc), ctypes.byref(losses)))
        out = {"balance": losses.balance, "z_loss": losses.z_loss,
               "entropy": losses.entropy, "total": losses.total}
        return yt.numpy(), out, Saved(self, routing, xt, io_dtype)

    @staticmethod
    def _h(obj):
        return obj.handle if obj is not None else None

    def backward(self, saved, dy, aux_scale=1.0, want_dx=True):
        """dx [T, d] (or None) and a dict of float32 gradients: router_weight
        [d, E], router_bias [E] (when the router has one), w1, w3, w2, b1,
        b3, b2, shared_w1, shared_w3, shared_w2, shared_gate (those the
        layer has). aux_scale multiplies the auxiliary
        losses' coefficients (the upstream gradient of the aux loss)."""
        ctx, E, d, f = self.ctx, self.E, self.d, self.f
        dyt = Tensor.from_numpy(ctx, dy, saved.io_dtype)
        T = dyt.shape()[0]
        dxt = Tensor.from_numpy(ctx, np.zeros((T, d), saved.io_dtype),
                                saved.io_dtype) if want_dx else None
        shapes = {"router_weight": (d, E), "w1": (E, d, f), "w2": (E, f, d)}
        if self.has_router_bias:
            shapes["router_bias"] = (E,)
        if self.gated:
            shapes["w3"] = (E, d, f)
        for name, has, shape in (("b1", self.has_biases[0], (E, f)),
                                 ("b2", self.has_biases[1], (E, d)),
                                 ("b3", self.has_biases[2] and self.gated,
                                  (E, f))):
            if has:
                shapes[name] = shape
        if self.shared is not None:
            fs = self.fs
            shapes["shared_w1"], shapes["shared_w2"] = (1, d, fs), (1, fs, d)
            if self.gated:
                shapes["shared_w3"] = (1, d, fs)
        if self.shared_gate is not None:
            shapes["shared_gate"] = (d,)
        grads = {name: Tensor.from_numpy(ctx, np.zeros(shape, np.float32))
                 for name, shape in shapes.items()}
        rg = _lib.RouterGrads()
        lib.clmoe_router_grads_init_sized(ctypes.byref(rg), ctypes.sizeof(rg))
        rg.weight = grads["router_weight"].handle
        rg.bias = grads["router_bias"].handle if "router_bias" in grads else None
        eg = _lib.ExpertGrads()
        lib.clmoe_expert_grads_init_sized(ctypes.byref(eg), ctypes.sizeof(eg))
        for name in ("w1", "w3", "w2", "b1", "b3", "b2"):
            if name in grads:
                setattr(eg, name, grads[name].handle)
        sg = None
        if self.shared is not None:
            sg = _lib.ExpertGrads()
            lib.clmoe_expert_grads_init_sized(ctypes.byref(sg),
                                              ctypes.sizeof(sg))
            for name in ("w1", "w3", "w2"):
                if "shared_" + name in grads:
                    setattr(sg, name, grads["shared_" + name].handle)
        gate_grad = grads.get("shared_gate")
        aux = _train_desc(tuple(c * float(aux_scale) for c in self.coeffs))
        check(lib.clmoe_backward(
            self.router.handle, self.experts.handle, self._h(self.shared),
            self._h(self.shared_gate), saved.routing.handle,
            saved.x.handle, dyt.handle, dxt.handle if dxt else None,
            ctypes.byref(rg), ctypes.byref(eg),
            ctypes.byref(sg) if sg is not None else None,
            self._h(gate_grad), ctypes.byref(aux), 0))
        out = {name: t.numpy() for name, t in grads.items()}
        return (dxt.numpy() if dxt else None), out

    def close(self):
        for obj in (self.router, self.experts, self.shared, self.shared_gate):
            if obj is not None:
                obj.close()


__all__ = ["Error", "Saved", "TrainableMoE"]
