"""PyTorch autograd over clmoe's forward and backward (optional: needs
torch; `import clmoe` does not).

    layer = clmoe.torch.MoE(d_model, d_ff, num_experts, policy="top_p", p=0.4)
    y = layer(x)                      # x [T, d] float32 or bfloat16
    (task_loss(y) + layer.aux_loss).backward()

The device weights are refreshed only when a parameter changed (its
version counter moved: an optimizer step), through clmoe_experts_update /
clmoe_router_update. Gradients are computed by clmoe_backward (float32,
bitwise reproducible) and handed to autograd."""
import math

import numpy as np
import torch

from .core import Context
from .training import TrainableMoE

_default_ctx = []


def default_context():
    """The process's shared clmoe Context (created on first use)."""
    if not _default_ctx:
        _default_ctx.append(Context())
    return _default_ctx[0]


_PARAMS = ("router_weight", "router_bias", "w1", "w2", "w3", "b1", "b2", "b3",
           "shared_w1", "shared_w2", "shared_w3", "shared_gate")


def _to_numpy(t):
    """float32 numpy, or uint16 bfloat16 bits for a bfloat16 tensor."""
    t = t.detach().contiguous().cpu()
    if t.dtype == torch.bfloat16:
        return t.view(torch.int16).numpy().view(np.uint16), np.uint16
    return t.to(torch.float32).numpy(), np.float32


def _from_numpy(a, like):
    if like == torch.bfloat16:
        return torch.from_numpy(a.view(np.int16).copy()).view(torch.bfloat16)
    return torch.from_numpy(np.ascontiguousarray(a))


class _MoEFunction(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x, importance, owner, *params):
        layer = owner._layer_for(params)
        xa, io = _to_numpy(x)
        imp = None if importance is None else \
            importance.detach().cpu().to(torch.float32).numpy()
        y, losses, saved = layer.forward(xa, imp, io_dtype=io)
        ctx.saved, ctx.layer, ctx.x_dtype = saved, layer, x.dtype
        ctx.names = owner._names
        owner._record(saved, losses)
        return _from_numpy(y, x.dtype), torch.tensor(losses["total"],
                                                     dtype=torch.float32)

    @staticmethod
    def backward(ctx, dy, daux):
        layer, saved = ctx.layer, ctx.saved
        dya, _ = _to_numpy(dy if dy is not None else
                           torch.zeros(saved.x.shape(), dtype=ctx.x_dtype))
        scale = 0.0 if daux is None else float(daux)
        dx, grads = layer.backward(saved, dya, aux_scale=scale,
                                   want_dx=ctx.needs_input_grad[0])
        ctx.saved = None
        out = [None if dx is None else _from_numpy(dx, ctx.x_dtype), None,
               None]
        out += [None if grads.get(n) is None else torch.from_numpy(grads[n])
                for n in ctx.names]
        return tuple(out)


class _Owner:
    """The clmoe objects behind one set of parameters, refreshed when a
    parameter's version moves."""

    def __init__(self, ctx, names, activation, policy, coeffs, dtype,
                 policy_params):
        self.ctx, self._names = ctx, names
        self.activation, self.policy, self.coeffs = activation, policy, coeffs
        self.dtype, self.policy_params = dtype, policy_params
        self.layer, self._versions = None, None
        self.last_saved, self.last_losses = None, None

    def _layer_for(self, params):
        versions = tuple((id(p), p._version) for p in params)
        arrays = None
        if self.layer is None or versions != self._versions:
            arrays = {n: p.detach().cpu().to(torch.float32).numpy()
                      for n, p in zip(self._names, params)}
        if self.layer is None:
            self.layer = TrainableMoE(
                self.ctx, activation=self.activation, policy=self.policy,
                coeffs=self.coeffs, dtype=self.dtype, **arrays,
                **self.policy_params)
        elif arrays is not None:
            self.layer.update(**arrays)
        self._versions = versions
        return self.layer

    def _record(self, saved, losses):
        self.last_saved, self.last_losses = saved, losses


class MoE(torch.nn.Module):
    """A routed MoE layer on clmoe. Parameters: router_weight [d, E]
    (router_bias [E] with router_bias=True), w1 [E, d, f], w2 [E, f, d],
    w3 [E, d, f] for gated activations, and b1/b3 [E, f], b2 [E, d] with
    expert_bias=True; shared experts with shared_d_ff = fs: shared_w1,
    shared_w3 [1, d, fs], shared_w2 [1, fs, d] and, with shared_gate=True,
    the gate vector shared_gate [d] (weight sigmoid(x . shared_gate)).
    `policy` and its parameters (p, k, k_min, k_max,
    capacity_factor, gates, ...) are those of clmoe.Router. forward(x,
    importance=None) returns y; `aux_loss` is the differentiable weighted
    sum of the auxiliary losses of the last forward, and `last_routing`
    holds its stats (mean K, per-expert load, entropy)."""

    def __init__(self, d_model, d_ff, num_experts, policy="top_p", p=0.4,
                 activation="swiglu", balance_coeff=0.01, z_coeff=0.0,
                 entropy_coeff=0.0, router_bias=False, expert_bias=False,
                 shared_d_ff=0, shared_gate=False, ctx=None, dtype="f32",
                 init_scale=None, **policy_params):
        super().__init__()
        d, f, E = d_model, d_ff, num_experts
        gated = activation in ("swiglu", "geglu", "swiglu_oai")
        s_in = init_scale or 1.0 / math.sqrt(d)
        s_ff = init_scale or 1.0 / math.sqrt(f)
        self.router_weight = torch.nn.Parameter(torch.randn(d, E) * s_in)
        self.w1 = torch.nn.Parameter(torch.randn(E, d, f) * s_in)
        self.w2 = torch.nn.Parameter(torch.randn(E, f, d) * s_ff)
        names = ["router_weight", "w1", "w2"]
        if gated:
            self.w3 = torch.nn.Parameter(torch.randn(E, d, f) * s_in)
            names.append("w3")
        if router_bias:
            self.router_bias = torch.nn.Parameter(torch.zeros(E))
            names.append("router_bias")
        if expert_bias:
            self.b1 = torch.nn.Parameter(torch.zeros(E, f))
            self.b2 = torch.nn.Parameter(torch.zeros(E, d))
            names += ["b1", "b2"]
            if gated:
                self.b3 = torch.nn.Parameter(torch.zeros(E, f))
                names.append("b3")
        if shared_d_ff:
            fs = shared_d_ff
            self.shared_w1 = torch.nn.Parameter(torch.randn(1, d, fs) * s_in)
            self.shared_w2 = torch.nn.Parameter(
                torch.randn(1, fs, d) / math.sqrt(fs))
            names += ["shared_w1", "shared_w2"]
            if gated:
                self.shared_w3 = torch.nn.Parameter(
                    torch.randn(1, d, fs) * s_in)
                names.append("shared_w3")
            if shared_gate:
                self.shared_gate = torch.nn.Parameter(torch.zeros(d))
                names.append("shared_gate")
        if policy == "top_p":
            policy_params.setdefault("p", p)
        self._owner = _Owner(ctx or default_context(), tuple(names),
                             activation, policy,
                             (balance_coeff, z_coeff, entropy_coeff), dtype,
                             policy_params)
        self.aux_loss = torch.zeros(())

    def forward(self, x, importance=None):
        params = [getattr(self, n) for n in self._owner._names]
        y, aux = _MoEFunction.apply(x, importance, self._owner, *params)
        self.aux_loss = aux
        return y

    @property
    def last_routing(self):
        """Stats of the last forward's routing (mean_k, load, entropy, ...)
        and its auxiliary losses."""
        saved = self._owner.last_saved
        if saved is None:
            return None
        stats = dict(saved.routing.stats)
        stats["aux_losses"] = dict(self._owner.last_losses)
        stats["counts"] = saved.routing.counts
        return stats


def moe(x, router_weight, w1, w2, w3=None, router_bias=None, b1=None, b2=None,
        b3=None, policy="top_k", activation=None, importance=None,
        balance_coeff=0.0, z_coeff=0.0, entropy_coeff=0.0, shared_w1=None,
        shared_w2=None, shared_w3=None, shared_gate=None, ctx=None,
        **policy_params):
    """Functional form: (y, aux_loss) for the given parameters (shapes as
    MoE's). It creates the device objects on every call; the module keeps
    them."""
    params = {"router_weight": router_weight, "w1": w1, "w2": w2, "w3": w3,
              "router_bias": router_bias, "b1": b1, "b2": b2, "b3": b3,
              "shared_w1": shared_w1, "shared_w2": shared_w2,
              "shared_w3": shared_w3, "shared_gate": shared_gate}
    names = tuple(n for n in _PARAMS if params[n] is not None)
    act = activation or ("swiglu" if w3 is not None else "relu")
    owner = _Owner(ctx or default_context(), names, act, policy,
                   (balance_coeff, z_coeff, entropy_coeff), "f32",
                   policy_params)
    return _MoEFunction.apply(x, importance, owner,
                              *[params[n] for n in names])


__all__ = ["MoE", "default_context", "moe"]
