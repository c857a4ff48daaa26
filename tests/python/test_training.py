"""Training: clmoe's gradients against torch.autograd on a plain-torch layer
(tests/python/train_reference.py) with the same routing decisions, for
every policy, gate mode and activation; determinism; accumulation; errors;
the torch module and the training demo."""
import ctypes
import subprocess
import sys

import numpy as np
import pytest

torch = pytest.importorskip("torch")

import clmoe  # noqa: E402
from clmoe import _lib  # noqa: E402
from clmoe.training import TrainableMoE  # noqa: E402

import train_reference as ref  # noqa: E402
from conftest import ROOT  # noqa: E402

PATHS = [str(ROOT / "bindings" / "python"), str(ROOT / "tests" / "python")]

GATED = ("swiglu", "geglu", "swiglu_oai")
TOL = 1e-4


def params(rng, d, f, E, activation, bias=True, shared=0, gate=False):
    p = {"router_weight": rng.standard_normal((d, E)).astype(np.float32) * .3,
         "w1": rng.standard_normal((E, d, f)).astype(np.float32) * .2,
         "w2": rng.standard_normal((E, f, d)).astype(np.float32) * .2}
    if activation in GATED:
        p["w3"] = rng.standard_normal((E, d, f)).astype(np.float32) * .2
    if bias:
        p["router_bias"] = rng.standard_normal(E).astype(np.float32) * .1
        p["b1"] = rng.standard_normal((E, f)).astype(np.float32) * .1
        p["b2"] = rng.standard_normal((E, d)).astype(np.float32) * .1
        if activation in GATED:
            p["b3"] = rng.standard_normal((E, f)).astype(np.float32) * .1
    if shared:
        p["shared_w1"] = rng.standard_normal((1, d, shared)).astype(
            np.float32) * .2
        p["shared_w2"] = rng.standard_normal((1, shared, d)).astype(
            np.float32) * .2
        if activation in GATED:
            p["shared_w3"] = rng.standard_normal((1, d, shared)).astype(
                np.float32) * .2
    if gate:
        p["shared_gate"] = rng.standard_normal(d).astype(np.float32) * .3
    return p


def check_grads(ctx, T=33, d=24, f=20, E=8, activation="swiglu",
                policy="top_k", coeffs=(0.01, 0.001, 0.01), bias=True,
                io_dtype=np.float32, seed=0, importance=None, path="auto",
                shared=0, gate=False, dtype="f32", **pp):
    rng = np.random.default_rng(seed)
    p = params(rng, d, f, E, activation, bias, shared, gate)
    m = TrainableMoE(ctx, activation=activation, policy=policy,
                     coeffs=coeffs, path=path, dtype=dtype, **p, **pp)
    if dtype != "f32":  # the reference uses the weights as stored
        for k in ("w1", "w2", "w3", "shared_w1", "shared_w2", "shared_w3"):
            if k in p:
                p[k] = (clmoe.from_bf16_bits(clmoe.to_bf16_bits(p[k]))
                        if dtype == "bf16" else
                        p[k].astype(np.float16).astype(np.float32))
    x32 = rng.standard_normal((T, d)).astype(np.float32)
    dy32 = rng.standard_normal((T, d)).astype(np.float32)
    if io_dtype == np.uint16:  # bfloat16 activations
        x, dy = clmoe.to_bf16_bits(x32), clmoe.to_bf16_bits(dy32)
        x32, dy32 = clmoe.from_bf16_bits(x), clmoe.from_bf16_bits(dy)
    else:
        x, dy = x32, dy32
    y, losses, saved = m.forward(x, importance, io_dtype=io_dtype)
    dx, g = m.backward(saved, dy)
    slots, rows = ref.slots_of(saved.routing)
    tp = {k: torch.tensor(v, dtype=torch.float64, requires_grad=True)
          for k, v in p.items()}
    xt = torch.tensor(x32, dtype=torch.float64, requires_grad=True)
    gates = pp.get("gates")
    renorm = (gates == "renorm") if gates else policy not in (
        "top_p", "expert_choice")
    yr, aux = ref.layer(xt, tp, slots, activation,
                        from_score=policy == "top_k", renorm=renorm,
                        coeffs=coeffs, expert_rows=rows,
                        gate_scale=pp.get("gate_scale", 1.0),
                        sigmoid=pp.get("scoring") == "sigmoid",
                        gate_input=pp.get("gate_position") == "input")
    if T == 0:  # empty sums: every gradient 0
        assert y.shape == (0, d) and dx.shape == (0, d)
        assert all(not v.any() for v in g.values())
        return m, saved, g
    (yr * torch.tensor(dy32, dtype=torch.float64)).sum().add(aux).backward()
    if io_dtype == np.uint16:
        y, dx = clmoe.from_bf16_bits(y), clmoe.from_bf16_bits(dx)
        tol_y = 1e-2  # one bfloat16 rounding of y and dx
    else:
        tol_y = TOL
    assert ref.rel_err(y, yr.detach()) <= tol_y
    assert abs(losses["total"] - aux.item()) <= 1e-5 * max(1, abs(aux.item()))
    if T:
        assert ref.rel_err(dx, xt.grad) <= tol_y
    for name, grad in g.items():
        want = tp[name].grad if tp[name].grad is not None else \
            torch.zeros_like(tp[name])
        assert ref.rel_err(grad, want) <= TOL, name
    return m, saved, g


@pytest.mark.parametrize("activation", ["relu", "gelu", "silu", "swiglu",
                                        "geglu", "swiglu_oai"])
def test_every_activation(ctx, activation):
    check_grads(ctx, activation=activation)


@pytest.mark.parametrize("policy,pp", [
    ("top_k", {"k": 2, "gates": "renorm"}),
    ("top_k", {"k": 3, "gates": "raw"}),
    ("top_p", {"p": 0.5, "gates": "raw"}),
    ("top_p", {"p": 0.5, "gates": "renorm"}),
    ("resonance", {"k": 2}),
    ("expert_choice", {}),
    ("top_k", {"k": 2, "capacity_factor": 0.5}),  # capacity drops
    ("top_p", {"p": 0.6, "capacity_factor": 0.7,
               "overflow": "drop_latest_token"}),
])
def test_policies(ctx, policy, pp):
    check_grads(ctx, policy=policy, **pp)


def test_importance(ctx):
    imp = np.random.default_rng(3).random(33).astype(np.float32)
    check_grads(ctx, policy="importance", importance=imp, k_max=4)


@pytest.mark.parametrize("pp", [
    {"scoring": "sigmoid", "k": 2, "gate_scale": 2.5},
    {"scoring": "sigmoid", "k": 2, "gates": "raw"},
    {"k": 1, "gate_position": "input", "scoring": "sigmoid",
     "gates": "raw"},
])
def test_model_family_routers(ctx, pp):
    check_grads(ctx, policy="top_k", **pp)


@pytest.mark.parametrize("T,E", [(0, 8), (1, 8), (33, 1), (257, 64),
                                 (33, 64)])
def test_sizes(ctx, T, E):
    k = min(2, E)
    check_grads(ctx, T=T, E=E, k=k, d=16, f=12)


@pytest.mark.parametrize("path", ["auto", "clblast"])
def test_whole_vector_tiles(ctx, path):
    """Widths that are multiples of 16: the weight reduction's vector
    stores (the other tests mostly take its per-lane edge path)."""
    check_grads(ctx, T=65, E=4, k=2, d=64, f=48, path=path)
    check_grads(ctx, T=40, E=3, k=2, d=32, f=32, activation="gelu",
                path=path)


@pytest.mark.parametrize("activation,gate,path", [
    ("swiglu", True, "auto"), ("gelu", False, "auto"),
    ("swiglu", True, "clblast")])
def test_shared_experts(ctx, activation, gate, path):
    m, saved, g = check_grads(ctx, activation=activation, shared=16,
                              gate=gate, path=path)
    assert ("shared_gate" in g) == gate and "shared_w2" in g
    assert saved.saved_bytes > 0


@pytest.mark.parametrize("dtype", ["bf16", "f16"])
def test_16bit_weights(ctx, dtype):
    check_grads(ctx, dtype=dtype)
    check_grads(ctx, dtype=dtype, T=65, E=4, k=2, d=64, f=48, shared=16,
                gate=True)


def test_bf16_activations(ctx):
    check_grads(ctx, io_dtype=np.uint16)


def test_no_biases_and_paths(ctx):
    check_grads(ctx, bias=False, activation="relu")
    check_grads(ctx, d=17, f=9, E=5, k=2)  # sizes off every tile


@pytest.mark.parametrize("activation", ["swiglu", "gelu", "swiglu_oai"])
def test_clblast_path(ctx, activation):
    m, _, _ = check_grads(ctx, activation=activation, path="clblast", d=17,
                          f=9)
    assert m.experts.path == "clblast"


def run_twice(ctx):
    rng = np.random.default_rng(7)
    p = params(rng, 24, 20, 8, "swiglu")
    m = TrainableMoE(ctx, **p, policy="top_p", p=0.5,
                     coeffs=(0.01, 0.01, 0.01))
    x = rng.standard_normal((129, 24)).astype(np.float32)
    dy = rng.standard_normal((129, 24)).astype(np.float32)
    out = []
    for _ in range(2):
        y, _, s = m.forward(x)
        dx, g = m.backward(s, dy)
        out.append([y, dx] + [g[k] for k in sorted(g)])
    return out


def test_bitwise_repeatable(ctx):
    a, b = run_twice(ctx)
    for u, v in zip(a, b):
        assert np.array_equal(u.view(np.uint32), v.view(np.uint32))


def test_bitwise_across_thread_counts(tmp_path):
    """The same gradients with 1 and 2 pocl threads (separate processes)."""
    code = ("import sys, numpy as np; sys.path[:0] = %r\n"
            "import clmoe, test_training as t\n"
            "a, _ = t.run_twice(clmoe.Context())\n"
            "np.save(sys.argv[1], np.concatenate([v.ravel().view(np.uint32)"
            " for v in a]))\n" % (PATHS,))
    outs = []
    for n in ("1", "2"):
        path = tmp_path / f"g{n}.npy"
        env = dict(__import__("os").environ, POCL_MAX_PTHREAD_COUNT=n)
        subprocess.run([sys.executable, "-c", code, str(path)], check=True,
                       env=env, cwd=str(tmp_path))
        outs.append(np.load(path))
    assert np.array_equal(outs[0], outs[1])


def raw_backward(m, saved, dy, grads, flags=0, aux=None, dx=None):
    rg = _lib.RouterGrads()
    _lib.lib.clmoe_router_grads_init_sized(ctypes.byref(rg),
                                           ctypes.sizeof(rg))
    rg.weight = grads["router_weight"].handle
    eg = _lib.ExpertGrads()
    _lib.lib.clmoe_expert_grads_init_sized(ctypes.byref(eg),
                                           ctypes.sizeof(eg))
    for n in ("w1", "w2", "w3"):
        setattr(eg, n, grads[n].handle)
    return _lib.lib.clmoe_backward(
        m.router.handle, m.experts.handle, None, None, saved.routing.handle,
        saved.x.handle, dy.handle, dx.handle if dx else None,
        ctypes.byref(rg), ctypes.byref(eg), None, None, aux, flags)


def grad_tensors(ctx, d, f, E):
    return {"router_weight": clmoe.Tensor.from_numpy(ctx, np.zeros((d, E))),
            "w1": clmoe.Tensor.from_numpy(ctx, np.zeros((E, d, f))),
            "w3": clmoe.Tensor.from_numpy(ctx, np.zeros((E, d, f))),
            "w2": clmoe.Tensor.from_numpy(ctx, np.zeros((E, f, d)))}


def test_accumulate(ctx):
    rng = np.random.default_rng(11)
    p = params(rng, 16, 12, 4, "swiglu", bias=False)
    m = TrainableMoE(ctx, **p, policy="top_k")
    x = rng.standard_normal((20, 16)).astype(np.float32)
    dy = clmoe.Tensor.from_numpy(ctx, rng.standard_normal((20, 16)))
    _, _, s = m.forward(x)
    once = grad_tensors(ctx, 16, 12, 4)
    assert raw_backward(m, s, dy, once) == 0
    twice = grad_tensors(ctx, 16, 12, 4)
    assert raw_backward(m, s, dy, twice) == 0
    assert raw_backward(m, s, dy, twice, flags=1) == 0  # ACCUMULATE
    for n in once:
        assert np.allclose(twice[n].numpy(), 2 * once[n].numpy(), rtol=1e-6,
                           atol=1e-7)


def status_of(call):
    status = call()
    return status, _lib.lib.clmoe_last_error_detail().decode()


def test_errors(ctx):
    rng = np.random.default_rng(13)
    p = params(rng, 16, 12, 4, "swiglu", bias=False)
    m = TrainableMoE(ctx, **p, policy="top_k")
    x = rng.standard_normal((20, 16)).astype(np.float32)
    g = grad_tensors(ctx, 16, 12, 4)
    dy_np = rng.standard_normal((20, 16)).astype(np.float32)
    # no training forward yet
    routing = clmoe.Routing(ctx)
    fake = type("S", (), {"routing": routing,
                          "x": clmoe.Tensor.from_numpy(ctx, x)})
    dy = clmoe.Tensor.from_numpy(ctx, dy_np)
    st, detail = status_of(lambda: raw_backward(m, fake, dy, g))
    assert st == -1 and "no training forward" in detail
    _, _, s = m.forward(x)
    # NaN in dy names the element
    bad = dy_np.copy()
    bad[3, 5] = np.nan
    st, detail = status_of(lambda: raw_backward(
        m, s, clmoe.Tensor.from_numpy(ctx, bad), g))
    assert st == -11 and "dy[3, 5]" in detail
    # wrong shapes
    st, detail = status_of(lambda: raw_backward(
        m, s, clmoe.Tensor.from_numpy(ctx, dy_np[:19]), g))
    assert st == -1 and "dy" in detail  # another batch's rows
    st, detail = status_of(lambda: raw_backward(
        m, s, clmoe.Tensor.from_numpy(ctx, dy_np[:, :15]), g))
    assert st == -4 and "dy" in detail
    wrong = dict(g, w2=clmoe.Tensor.from_numpy(ctx, np.zeros((4, 16, 12))))
    st, detail = status_of(lambda: raw_backward(m, s, dy, wrong))
    assert st == -4 and "w2" in detail
    wrong = dict(g, w1=clmoe.Tensor.from_numpy(ctx, np.zeros((4, 16, 12)),
                                               np.float16))
    st, detail = status_of(lambda: raw_backward(m, s, dy, wrong))
    assert st == -5
    # another experts object than the forward's
    other = TrainableMoE(ctx, **p, policy="top_k")
    st, detail = status_of(lambda: raw_backward(other, s, dy, g))
    assert st == -1 and "another" in detail
    # routed again since: the saved state is gone
    m.router.route(x)  # a different routing: ours still valid
    assert raw_backward(m, s, dy, g) == 0
    _lib.lib.clmoe_route(m.router.handle, s.x.handle, None,  # noqa: E501
                         s.routing.handle, 0, None, None)
    st, detail = status_of(lambda: raw_backward(m, s, dy, g))
    assert st == -1
    # bad coefficients
    with pytest.raises(clmoe.Error) as e:
        TrainableMoE(ctx, **p, coeffs=(-1, 0, 0)).forward(x)
    assert e.value.status == -1 and "balance_coeff" in str(e.value)
    # quantized experts are inference-only
    q = TrainableMoE(ctx, **p, dtype="int8")
    with pytest.raises(clmoe.Error) as e:
        q.forward(x)
    assert e.value.status == -13 and "inference-only" in str(e.value)


def test_update_matches_fresh_objects(ctx):
    rng = np.random.default_rng(17)
    p = params(rng, 24, 20, 8, "swiglu")
    q = params(rng, 24, 20, 8, "swiglu")
    x = rng.standard_normal((30, 24)).astype(np.float32)
    for dtype in ("f32", "bf16"):
        m = TrainableMoE(ctx, **p, dtype=dtype)
        y0, _, s0 = m.forward(x)
        m.backward(s0, y0)  # builds the transposed copies of p
        m.update(**q)
        fresh = TrainableMoE(ctx, **q, dtype=dtype)
        y1, _, s1 = m.forward(x)
        y2, _, s2 = fresh.forward(x)
        assert np.array_equal(y1, y2)
        _, g1 = m.backward(s1, y1)
        _, g2 = fresh.backward(s2, y2)
        for k in g1:
            assert np.array_equal(g1[k], g2[k]), (dtype, k)
    with pytest.raises(clmoe.Error) as e:
        m.update(w1=q["w1"][:, :, :10], w2=q["w2"], w3=q["w3"])
    assert e.value.status == -4


def test_torch_module_matches_reference():
    from clmoe.torch import MoE
    torch.manual_seed(0)
    layer = MoE(16, 24, 8, policy="top_p", p=0.5, balance_coeff=0.01,
                entropy_coeff=0.01, z_coeff=0.001, router_bias=True,
                expert_bias=True)
    x = torch.randn(40, 16, requires_grad=True)
    y = layer(x)
    loss = (y ** 2).sum() + layer.aux_loss
    loss.backward()
    r = layer.last_routing
    assert 1.0 <= r["mean_k"] <= 8 and len(r["load"]) == 8
    saved = layer._owner.last_saved
    slots, rows = ref.slots_of(saved.routing)
    names = layer._owner._names
    tp = {n: getattr(layer, n).detach().double().requires_grad_()
          for n in names}
    xr = x.detach().double().requires_grad_()
    yr, aux = ref.layer(xr, tp, slots, "swiglu", from_score=False,
                        renorm=False, coeffs=(0.01, 0.001, 0.01),
                        expert_rows=rows)
    ((yr ** 2).sum() + aux).backward()
    assert ref.rel_err(x.grad, xr.grad) <= TOL
    for n in names:
        assert ref.rel_err(getattr(layer, n).grad, tp[n].grad) <= TOL, n
    # an optimizer step moves the weights; the next forward sees them
    opt = torch.optim.SGD(layer.parameters(), lr=0.1)
    opt.step()
    y2 = layer(x.detach())
    yr2, _ = ref.layer(x.detach().double(),
                       {n: getattr(layer, n).detach().double()
                        for n in names},
                       ref.slots_of(layer._owner.last_saved.routing)[0],
                       "swiglu", from_score=False, renorm=False)
    assert ref.rel_err(y2.detach(), yr2) <= TOL


def test_functional_form_and_bf16():
    from clmoe.torch import moe
    torch.manual_seed(1)
    d, f, E = 16, 8, 4
    w = {"router_weight": torch.randn(d, E, requires_grad=True),
         "w1": (torch.randn(E, d, f) * .3).requires_grad_(),
         "w2": (torch.randn(E, f, d) * .3).requires_grad_(),
         "w3": (torch.randn(E, d, f) * .3).requires_grad_()}
    x = torch.randn(12, d)
    y, aux = moe(x, **w, policy="top_k", k=2, balance_coeff=0.1)
    (y.sum() + aux).backward()
    assert all(v.grad is not None for v in w.values())
    xb = x.to(torch.bfloat16).requires_grad_()
    yb, _ = moe(xb, **{k: v.detach() for k, v in w.items()}, policy="top_k",
                k=2)
    assert yb.dtype == torch.bfloat16
    yb.float().sum().backward()
    assert xb.grad.dtype == torch.bfloat16
    assert ref.rel_err(yb.float().detach(), y.detach()) <= 2e-2


def test_import_clmoe_needs_no_torch():
    code = ("import sys; sys.modules['torch'] = None; sys.path[:0] = %r\n"
            "import clmoe, clmoe.training; print('ok')" % (PATHS,))
    out = subprocess.run([sys.executable, "-c", code], check=True,
                         capture_output=True, text=True)
    assert out.stdout.strip() == "ok"


def test_training_demo_loss_falls(tmp_path):
    plot = tmp_path / "train.svg"
    out = subprocess.run([sys.executable, "-m", "clmoe.train", "--steps",
                          "150", "--plot", str(plot)], capture_output=True,
                         text=True, cwd=str(ROOT),
                         env=dict(__import__("os").environ,
                                  PYTHONPATH=PATHS[0]))
    assert out.returncode == 0, out.stdout + out.stderr
    assert "K and accuracy by difficulty" in out.stdout
    assert plot.read_text().startswith("<svg")


def test_torch_module_shared_experts():
    from clmoe.torch import MoE
    torch.manual_seed(2)
    layer = MoE(16, 24, 4, policy="top_k", k=2, shared_d_ff=8,
                shared_gate=True)
    with torch.no_grad():
        layer.shared_gate.normal_()
    x = torch.randn(10, 16, requires_grad=True)
    layer(x).pow(2).sum().backward()
    names = layer._owner._names
    saved = layer._owner.last_saved
    slots, rows = ref.slots_of(saved.routing)
    tp = {n: getattr(layer, n).detach().double().requires_grad_()
          for n in names}
    xr = x.detach().double().requires_grad_()
    yr, _ = ref.layer(xr, tp, slots, "swiglu", expert_rows=rows)
    yr.pow(2).sum().backward()
    assert ref.rel_err(x.grad, xr.grad) <= TOL
    for n in names:
        assert ref.rel_err(getattr(layer, n).grad, tp[n].grad) <= TOL, n
