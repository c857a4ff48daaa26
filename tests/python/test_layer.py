"""MoELayer against a numpy MoE forward written from docs/architecture.md."""
import numpy as np
import pytest

import clmoe
import numpy_ref


def silu(v):
    return v / (1 + np.exp(-v))


def gelu(v):
    return 0.5 * v * (1 + np.tanh(0.7978845608028654 * (v + 0.044715 * v**3)))


ACTS = {"relu": lambda g, u: np.maximum(g, 0), "gelu": lambda g, u: gelu(g),
        "silu": lambda g, u: silu(g), "swiglu": lambda g, u: silu(g) * u,
        "geglu": lambda g, u: gelu(g) * u}


def numpy_moe(x, wr, w1, w3, w2, activation, policy, **params):
    z = (x.astype(np.float64) @ wr).astype(np.float32)
    r = numpy_ref.route(z, policy, **params)
    y = np.zeros(x.shape, np.float64)
    for t in range(x.shape[0]):
        for s in range(r["offsets"][t], r["offsets"][t + 1]):
            e = r["experts"][s]
            g = x[t].astype(np.float64) @ w1[e]
            u = x[t].astype(np.float64) @ w3[e] if w3 is not None else None
            y[t] += r["gates"][s] * (ACTS[activation](g, u) @ w2[e])
    return y, r


@pytest.mark.parametrize("path", ["clblast", "grouped"])
@pytest.mark.parametrize("activation", sorted(ACTS))
@pytest.mark.parametrize("policy,params", [("top_k", dict(k=2)),
                                           ("top_p", dict(p=0.5)),
                                           ("resonance", dict(k=2))])
def test_layer_matches_numpy(ctx, activation, policy, params, path):
    rng = np.random.default_rng(11)
    T, d, f, E = 70, 36, 44, 8
    # binary grids keep x @ W_r exact, so both sides route identically
    x = (np.round(rng.normal(size=(T, d)) * 8) / 8).astype(np.float32)
    wr = (np.round(rng.normal(size=(d, E)) * 2) / 8).astype(np.float32)
    w1 = (rng.normal(size=(E, d, f)) * 0.2).astype(np.float32)
    w2 = (rng.normal(size=(E, f, d)) * 0.2).astype(np.float32)
    gated = activation in ("swiglu", "geglu")
    w3 = (rng.normal(size=(E, d, f)) * 0.2).astype(np.float32) if gated \
        else None
    router = clmoe.Router(ctx, weight=wr, policy=policy, **params)
    experts = clmoe.Experts(ctx, w1=w1, w2=w2, w3=w3, activation=activation,
                            path=path)
    assert experts.path == path
    y, r = clmoe.MoELayer(router, experts)(x)
    ref, rr = numpy_moe(x, wr, w1, w3, w2, activation, policy, **params)
    np.testing.assert_array_equal(r.experts, rr["experts"])
    assert np.abs(y - ref).max() <= 1e-4 * np.abs(ref).max()


def test_out_in_layout_and_errors(ctx):
    rng = np.random.default_rng(2)
    E, d, f = 4, 12, 20
    w1 = rng.normal(size=(E, d, f)).astype(np.float32)
    w2 = rng.normal(size=(E, f, d)).astype(np.float32)
    a = clmoe.Experts(ctx, w1=w1, w2=w2, activation="relu")
    b = clmoe.Experts(ctx, w1=w1.transpose(0, 2, 1), w2=w2.transpose(0, 2, 1),
                      activation="relu", layout="out_in")
    wr = rng.normal(size=(d, E)).astype(np.float32)
    x = rng.normal(size=(9, d)).astype(np.float32)
    router = clmoe.Router(ctx, weight=wr, policy="top_k", k=2)
    ya, _ = clmoe.MoELayer(router, a)(x)
    yb, _ = clmoe.MoELayer(router, b)(x)
    np.testing.assert_array_equal(ya, yb)
    with pytest.raises(clmoe.Error) as e:
        clmoe.Experts(ctx, w1=w1, w2=w2, activation="swiglu")  # no w3
    assert e.value.status_name == "CLMOE_ERROR_INVALID_ARGUMENT"
    with pytest.raises(clmoe.Error):
        clmoe.Experts(ctx, w1=w1, w2=w2[:, :5], activation="relu")
    with pytest.raises(clmoe.Error) as e:
        clmoe.MoELayer(router, a)(np.zeros((3, d + 1), np.float32))
    assert e.value.status_name == "CLMOE_ERROR_SHAPE_MISMATCH"


def test_pyopencl_layer_in_place(ctx):
    cl = pytest.importorskip("pyopencl")
    import pyopencl.array as cla
    clctx = cl.create_some_context(interactive=False)
    queue = cl.CommandQueue(clctx)
    c2 = clmoe.Context(cl_context=clctx, queue=queue)
    rng = np.random.default_rng(4)
    E, d, f = 4, 16, 24
    w1 = rng.normal(size=(E, d, f)).astype(np.float32) * 0.3
    w3 = rng.normal(size=(E, d, f)).astype(np.float32) * 0.3
    w2 = rng.normal(size=(E, f, d)).astype(np.float32) * 0.3
    wr = rng.normal(size=(d, E)).astype(np.float32)
    x = rng.normal(size=(30, d)).astype(np.float32)
    host = clmoe.MoELayer(clmoe.Router(ctx, weight=wr, k=2),
                          clmoe.Experts(ctx, w1=w1, w2=w2, w3=w3))
    dev = clmoe.MoELayer(clmoe.Router(c2, weight=wr, k=2),
                         clmoe.Experts(c2, w1=w1, w2=w2, w3=w3))
    y_host, _ = host(x)
    y_dev, _ = dev(cla.to_device(queue, x))
    assert isinstance(y_dev, cla.Array)
    np.testing.assert_array_equal(y_dev.get(), y_host)
