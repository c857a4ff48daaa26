"""The Python binding's routing against the numpy reference."""
import numpy as np
import pytest

import clmoe
import numpy_ref


def grid_logits(rng, T, E):
    # A 1/8 grid gives exact ties (tested) and no near-ties that would
    # depend on how exp() rounds.
    return (np.round(rng.normal(size=(T, E)) * 12) / 8).astype(np.float32)


CASES = [
    ("top_k", dict(k=2)),
    ("top_k", dict(k=3, gates="raw", capacity_factor=1.0)),
    ("top_k", dict(k=2, capacity_factor=1.25, overflow="drop_latest_token")),
    ("top_p", dict(p=0.4)),
    ("top_p", dict(p=0.8, k_max=4, gates="renorm")),
    ("importance", dict(k_min=1, k_max=4)),
    ("importance", dict(k_min=1, k_max=4, k_mean=2.0)),
    ("resonance", dict(k=2)),
    ("resonance", dict(k=2, capacity_factor=0.5, fallback="top1")),
    ("expert_choice", dict(capacity_factor=1.0)),
]


@pytest.mark.parametrize("T,E", [(1, 4), (33, 8), (500, 60), (4096, 16),
                                 (257, 256)])
@pytest.mark.parametrize("policy,params", CASES)
def test_policy_matches_numpy(ctx, policy, params, T, E):
    rng = np.random.default_rng(T * 1000 + E)
    z = grid_logits(rng, T, E)
    imp = np.round(rng.uniform(size=T) * 64) / 64
    kwargs = dict(params)
    if "k" in kwargs:
        kwargs["k"] = min(kwargs["k"], E)
    if "k_max" in kwargs:
        kwargs["k_max"] = min(kwargs["k_max"], E)
    r = ctx.route(z, policy=policy, importance=imp.astype(np.float32)
                  if policy == "importance" else None, **kwargs)
    ref = numpy_ref.route(z, policy, importance=imp, **kwargs)
    np.testing.assert_array_equal(r.counts, ref["counts"])
    np.testing.assert_array_equal(r.offsets, ref["offsets"])
    np.testing.assert_array_equal(r.experts, ref["experts"])
    np.testing.assert_allclose(r.gates, ref["gates"], atol=1e-6, rtol=0)
    st = r.stats
    assert st["n"] == len(ref["experts"])
    assert st["k_hist"].sum() == T
    P = ref["P"].astype(np.float64)
    load = np.bincount(ref["experts"], minlength=E) / max(len(ref["experts"]), 1)
    np.testing.assert_allclose(st["load"], load, atol=1e-6)
    np.testing.assert_allclose(st["mean_prob"], P.mean(axis=0), atol=1e-5)
    assert st["balance_loss"] == pytest.approx(E * (load * P.mean(0)).sum(),
                                               rel=1e-4, abs=1e-5)
    ent = -(P * np.log(np.where(P > 0, P, 1))).sum(1).mean()
    assert st["entropy"] == pytest.approx(ent, rel=1e-4, abs=1e-5)


def test_expert_major_arrays(ctx):
    rng = np.random.default_rng(5)
    z = rng.normal(size=(300, 12)).astype(np.float32)
    r = ctx.route(z, policy="top_p", p=0.5)
    eoff, rows, rtok = r.expert_offsets, r.slot_rows, r.row_tokens
    tokens = np.repeat(np.arange(300), r.counts)
    assert eoff[-1] == len(r.experts)
    # every slot's row holds that slot's token, inside its expert's range,
    # tokens ascending inside each expert
    np.testing.assert_array_equal(rtok[rows], tokens)
    for e in range(12):
        seg = rtok[eoff[e]:eoff[e + 1]]
        assert np.all(np.diff(seg) > 0)
    assert np.all((eoff[r.experts] <= rows) & (rows < eoff[r.experts + 1]))


def test_router_with_weights(ctx):
    rng = np.random.default_rng(9)
    x = rng.normal(size=(64, 32)).astype(np.float32)
    w = (rng.normal(size=(32, 8)) * 0.2).astype(np.float32)
    b = (rng.normal(size=8) * 0.1).astype(np.float32)
    router = clmoe.Router(ctx, weight=w, bias=b, policy="top_k", k=2)
    r = router.route(x)
    z = (x.astype(np.float64) @ w + b).astype(np.float32)
    ref = numpy_ref.route(z, "top_k", k=2)
    np.testing.assert_array_equal(r.experts, ref["experts"])
    np.testing.assert_allclose(r.gates, ref["gates"], atol=1e-5)


def test_errors_carry_c_detail(ctx):
    z = np.zeros((4, 8), np.float32)
    with pytest.raises(clmoe.Error) as e:
        ctx.route(z, policy="no_such_policy")
    assert "policy" in str(e.value)
    z[2, 5] = np.nan
    with pytest.raises(clmoe.Error) as e:
        ctx.route(z, policy="top_k", k=2)
    assert e.value.status_name == "CLMOE_ERROR_NONFINITE_INPUT"
    assert "token 2" in e.value.detail
    with pytest.raises(clmoe.Error) as e:
        ctx.route(np.zeros((4, 8), np.float32), policy="top_k", k=9)
    assert e.value.status_name == "CLMOE_ERROR_INVALID_ARGUMENT"
    with pytest.raises(clmoe.Error) as e:
        ctx.route(np.zeros(8, np.float32), policy="top_k")
    assert e.value.status_name == "CLMOE_ERROR_SHAPE_MISMATCH"
    with pytest.raises(clmoe.Error) as e:
        ctx.route(np.zeros((4, 8), np.complex64), policy="top_k")
    assert e.value.status_name == "CLMOE_ERROR_DTYPE_MISMATCH"
    with pytest.raises(clmoe.Error):
        clmoe.Context(device="no-such-device-anywhere")


def test_pyopencl_interop_in_place(ctx):
    cl = pytest.importorskip("pyopencl")
    import pyopencl.array as cla
    clctx = cl.create_some_context(interactive=False)
    queue = cl.CommandQueue(clctx)
    c2 = clmoe.Context(cl_context=clctx, queue=queue)
    rng = np.random.default_rng(3)
    z = rng.normal(size=(100, 16)).astype(np.float32)
    dz = cla.to_device(queue, z)
    r_dev = c2.route(dz, policy="top_p", p=0.6)
    r_host = ctx.route(z, policy="top_p", p=0.6)
    np.testing.assert_array_equal(r_dev.experts, r_host.experts)
    np.testing.assert_array_equal(r_dev.gates, r_host.gates)
