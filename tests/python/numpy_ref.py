"""numpy reference of the routing policies, written from docs/policies.md
"Policies - exact semantics" (independent of the C host reference)."""
import math

import numpy as np


def softmax(z):
    z = z.astype(np.float64)
    e = np.exp(z - z.max(axis=1, keepdims=True))
    return (e / e.sum(axis=1, keepdims=True)).astype(np.float32)


def sorted_experts(P):
    """Per token: experts by P descending, ties by lower id (stable sort)."""
    return np.argsort(-P, axis=1, kind="stable")


def route(logits, policy, k=2, p=0.4, k_min=1, k_max=None, k_mean=0.0,
          capacity_factor=0.0, overflow="drop_lowest_gate", gates=None,
          fallback="none", importance=None):
    T, E = logits.shape
    k_max = E if not k_max else k_max
    P = softmax(logits)
    order = sorted_experts(P)
    keep = np.zeros((T, E), bool)
    K = np.zeros(T, np.int64)
    if policy in ("top_k", "resonance"):
        K[:] = k
    elif policy == "top_p":
        for t in range(T):
            cum = np.float32(0)
            K[t] = E
            for j in range(E):
                cum = np.float32(cum + P[t, order[t, j]])
                if cum > np.float32(p):
                    K[t] = j + 1
                    break
        K = np.clip(K, k_min, k_max)
    elif policy == "importance":
        s = np.clip(np.asarray(importance, np.float32), 0, 1)
        if k_mean:
            K = budget(s, k_min, k_max, k_mean)
        else:
            K = np.clip(np.ceil(s * np.float32(k_max)).astype(np.int64),
                        k_min, k_max)
    for t in range(T):
        keep[t, order[t, :K[t]]] = True
    n_prop = int(K.sum())
    cf = capacity_factor
    if policy in ("resonance", "expert_choice") and not cf:
        cf = 1.0
    if policy == "expert_choice":
        C = math.ceil(np.float32(cf) * np.float32(T) / np.float32(E))
        keep[:] = False
        for e in range(E):
            chosen = np.argsort(-P[:, e], kind="stable")[:C]
            keep[chosen, e] = True
    elif policy == "resonance" or cf > 0:
        C = math.ceil(np.float32(cf) * np.float32(n_prop) / np.float32(E))
        for e in range(E):
            tokens = np.nonzero(keep[:, e])[0]
            if policy != "resonance" and overflow == "drop_latest_token":
                ranked = tokens
            else:
                ranked = tokens[np.argsort(-P[tokens, e], kind="stable")]
            keep[ranked[C:], e] = False
    renorm = gates == "renorm" or (gates is None and
                                   policy not in ("top_p", "expert_choice"))
    counts, experts, gate = [], [], []
    for t in range(T):
        limit = E if policy == "expert_choice" else K[t]
        ids = [e for e in order[t, :limit] if keep[t, e]]
        if not ids and K[t] > 0 and fallback == "top1":
            ids = [order[t, 0]]
        g = P[t, ids].astype(np.float32)
        if renorm and len(ids):
            g = g / np.float32(np.sum(g, dtype=np.float32))
        counts.append(len(ids))
        experts.extend(ids)
        gate.extend(g.tolist())
    counts = np.array(counts, np.int32)
    offsets = np.concatenate([[0], np.cumsum(counts)]).astype(np.int32)
    return {"counts": counts, "offsets": offsets,
            "experts": np.array(experts, np.int32),
            "gates": np.array(gate, np.float32), "P": P,
            "n_proposed": n_prop}


def budget(s, k_min, k_max, k_mean):
    """DA-MoE fixed budget as the header documents it (integer arithmetic)."""
    T = len(s)
    w = np.floor(s * np.float32(65536) + np.float32(0.5)).astype(np.int64)
    if w.sum() == 0:
        w[:] = 1
    B = math.floor(T * float(np.float32(k_mean)) + 0.5)
    c, R0 = k_max - k_min, B - T * k_min
    K = np.full(T, k_min, np.int64)
    if c == 0 or R0 <= 0:
        return K
    sat = np.zeros(T, bool)
    while True:
        R, Wu = R0 - c * sat.sum(), int(w[~sat].sum())
        if R <= 0:
            break
        if Wu == 0:
            w[:] = 1
            continue
        new = (~sat) & (R * w >= c * Wu)
        if not new.any():
            break
        sat |= new
    R = max(R, 0)
    K[sat] = k_max
    free = np.nonzero(~sat)[0]
    if Wu > 0 and len(free):
        q = R * w[free]
        K[free] += q // Wu
        extra = R - int((q // Wu).sum())
        rem = q % Wu
        rank = np.lexsort((free, -rem))[:extra]
        K[free[rank]] += 1
    return K
