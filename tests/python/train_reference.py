"""A plain-PyTorch MoE layer that takes clmoe's routing decisions (which
experts each token kept) and recomputes everything else from the math in
docs/training.md, so that torch.autograd gives reference gradients."""
import math

import torch
import torch.nn.functional as F


def act(kind, a1, a3, limit=7.0, alpha=1.702):
    if kind == "relu":
        return torch.relu(a1)
    if kind == "gelu":
        return F.gelu(a1, approximate="tanh")
    if kind == "silu":
        return F.silu(a1)
    if kind == "swiglu":
        return F.silu(a1) * a3
    if kind == "geglu":
        return F.gelu(a1, approximate="tanh") * a3
    if kind == "swiglu_oai":
        g = torch.clamp(a1, max=limit)
        u = torch.clamp(a3, -limit, limit)
        return g * torch.sigmoid(alpha * g) * (u + 1)
    raise ValueError(kind)


def layer(x, p, slots, activation="swiglu", from_score=True, renorm=True,
          gate_scale=1.0, sigmoid=False, gate_input=False, coeffs=(0, 0, 0),
          expert_rows=None):
    """y and the weighted aux loss. p: dict of torch tensors (router_weight,
    router_bias?, w1, w2, w3?, b1?, b2?, b3?, shared_w1?, shared_w3?,
    shared_w2?, shared_gate?); slots: per token the list of
    kept experts in slot order; expert_rows: rows per expert (f_i * N)."""
    T, d = x.shape
    z = x.double() @ p["router_weight"].double()
    if "router_bias" in p:
        z = z + p["router_bias"].double()
    s = torch.sigmoid(z) if sigmoid else torch.softmax(z, dim=-1)
    pi = s / s.sum(-1, keepdim=True) if sigmoid else s
    q = s if from_score else pi
    E = z.shape[1]
    eps = 1e-20 if (sigmoid and from_score and renorm) else 0.0
    ys = []
    xd = x.double()
    for t in range(T):
        es = slots[t]
        acc = torch.zeros(d, dtype=torch.float64)
        if es:
            qs = torch.stack([q[t, e] for e in es])
            g = qs / (qs.sum() + eps) if renorm else qs
            g = g * gate_scale
            for j, e in enumerate(es):
                inp = xd[t] * g[j] if gate_input else xd[t]
                a1 = inp @ p["w1"][e].double()
                if "b1" in p:
                    a1 = a1 + p["b1"][e].double()
                a3 = None
                if "w3" in p:
                    a3 = inp @ p["w3"][e].double()
                    if "b3" in p:
                        a3 = a3 + p["b3"][e].double()
                h = act(activation, a1, a3)
                o = h @ p["w2"][e].double()
                if "b2" in p:
                    o = o + p["b2"][e].double()
                acc = acc + (o if gate_input else g[j] * o)
        if "shared_w1" in p:  # shared experts on every token
            a1 = xd[t] @ p["shared_w1"][0].double()
            a3 = (xd[t] @ p["shared_w3"][0].double()
                  if "shared_w3" in p else None)
            o = act(activation, a1, a3) @ p["shared_w2"][0].double()
            if "shared_gate" in p:
                o = o * torch.sigmoid(xd[t] @ p["shared_gate"].double())
            acc = acc + o
        ys.append(acc)
    y = torch.stack(ys) if T else torch.zeros(0, d, dtype=torch.float64)
    aux = torch.zeros((), dtype=torch.float64)
    if T:
        N = sum(len(es) for es in slots)
        if coeffs[0]:
            f = torch.tensor([r / N if N else 0.0 for r in expert_rows],
                             dtype=torch.float64)
            aux = aux + coeffs[0] * E * (f * pi.mean(0)).sum()
        if coeffs[1]:
            aux = aux + coeffs[1] * (torch.logsumexp(z, -1) ** 2).mean()
        if coeffs[2]:
            ent = -(pi * torch.log(pi.clamp_min(1e-300))).sum(-1)
            aux = aux + coeffs[2] * ent.mean()
    return y, aux


def slots_of(routing):
    """Per token, its kept experts in slot order, and the rows per expert."""
    off, ex = routing.offsets, routing.experts
    slots = [list(ex[off[t]:off[t + 1]]) for t in range(len(off) - 1)]
    eo = routing.expert_offsets
    return slots, [int(eo[i + 1] - eo[i]) for i in range(len(eo) - 1)]


def rel_err(a, b):
    a = torch.as_tensor(a, dtype=torch.float64)
    b = torch.as_tensor(b, dtype=torch.float64)
    scale = max(b.abs().max().item(), 1e-30)
    return (a - b).abs().max().item() / scale if b.numel() else 0.0


__all__ = ["act", "layer", "slots_of", "rel_err", "math"]
