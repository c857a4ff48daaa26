"""clmoe.load_moe_layer on tiny checkpoints of DeepSeek-V3 / Kimi K2,
GLM-4.5, DeepSeek-V2, gpt-oss and Llama 4, written here with the released
models' tensor names and config.json fields (BF16 weights beside F32
vectors, sharded, dense layers present), against numpy implementations of
each model's MoE block written from the model definitions: the routers
(sigmoid + selection bias + group-limited top-k + scaling; softmax +
group-limited greedy; top-k of biased logits with a softmax over them;
top-1 sigmoid on the expert input), the experts (SwiGLU; gpt-oss's clamped
SwiGLU with biases and interleaved gate/up columns; Llama 4's x.W stacks)
and the shared experts."""

import numpy as np
import pytest

import clmoe
from st_files import bf16_bits, bf16_values, write_model_dir

D, LAYERS, LAYER = 24, 3, 1


def sigmoid(v):
    return 1.0 / (1.0 + np.exp(-v))


def silu(v):
    return v * sigmoid(v)


class Family:
    """One MoE layer of a model family: random weights as the model stores
    them (BF16 matrices, F32 vectors), the values the reference reads (the
    stored values widened) and the model's block in float64."""

    def __init__(self, kind, rng, E=16, K=4, F=20, groups=(4, 2),
                 shared=1, norm=True, scale=2.5, xw_bits=False):
        self.kind, self.rng = kind, rng
        self.E, self.K, self.F, self.groups = E, K, F, groups
        self.n_shared, self.norm, self.scale = shared, norm, scale
        self.stored, self.values = {}, {}
        self.limit, self.alpha = 7.0, 1.702
        if kind in ("deepseek_v3", "kimi_k2", "glm4_moe", "deepseek_v2"):
            self._deepseek()
        elif kind == "gpt_oss":
            self._gpt_oss()
        else:
            self._llama4()
        self.put(f"model.layers.{LAYER - 1}.self_attn.q_proj.weight",
                 rng.normal(size=(D, D)), "BF16")

    def put(self, name, a, dtype="BF16"):
        a = np.asarray(a, np.float32)
        if dtype == "BF16":
            bits = bf16_bits(a)
            self.stored[name] = ("BF16", bits)
            self.values[name] = bf16_values(bits).astype(np.float64)
        else:
            self.stored[name] = ("F32", a)
            self.values[name] = a.astype(np.float64)

    def _deepseek(self):
        rng, E, F = self.rng, self.E, self.F
        self.p = p = f"model.layers.{LAYER}.mlp."
        self.put(p + "gate.weight", rng.normal(size=(E, D)) * 0.4)
        if self.kind != "deepseek_v2":
            self.put(p + "gate.e_score_correction_bias",
                     rng.normal(size=E) * 0.3, "F32")
        for e in range(E):
            for n, shape in (("gate_proj", (F, D)), ("up_proj", (F, D)),
                             ("down_proj", (D, F))):
                self.put(f"{p}experts.{e}.{n}.weight",
                         rng.normal(size=shape) * 0.15)
        FS = self.n_shared * F
        for n, shape in (("gate_proj", (FS, D)), ("up_proj", (FS, D)),
                         ("down_proj", (D, FS))):
            if FS:
                self.put(f"{p}shared_experts.{n}.weight",
                         rng.normal(size=shape) * 0.15)
        # layer 0 is dense (first_k_dense_replace = 1)
        self.put("model.layers.0.mlp.gate_proj.weight",
                 rng.normal(size=(2 * F, D)))

    def _gpt_oss(self):
        rng, E, F = self.rng, self.E, self.F
        self.p = p = f"model.layers.{LAYER}.mlp."
        self.put(p + "router.weight", rng.normal(size=(E, D)) * 0.4)
        self.put(p + "router.bias", rng.normal(size=E) * 0.3)
        # large enough that the clamp at the limit is reached
        self.put(p + "experts.gate_up_proj",
                 rng.normal(size=(E, D, 2 * F)) * 0.9)
        self.put(p + "experts.gate_up_proj_bias",
                 rng.normal(size=(E, 2 * F)) * 0.5)
        self.put(p + "experts.down_proj", rng.normal(size=(E, F, D)) * 0.15)
        self.put(p + "experts.down_proj_bias", rng.normal(size=(E, D)) * 0.1)

    def _llama4(self):
        rng, E, F = self.rng, self.E, self.F
        self.p = p = f"language_model.model.layers.{LAYER}.feed_forward."
        self.put(p + "router.weight", rng.normal(size=(E, D)) * 0.4)
        self.put(p + "experts.gate_up_proj", rng.normal(size=(E, D, 2 * F)) *
                 0.15)
        self.put(p + "experts.down_proj", rng.normal(size=(E, F, D)) * 0.15)
        for n, shape in (("gate_proj", (F, D)), ("up_proj", (F, D)),
                         ("down_proj", (D, F))):
            self.put(f"{p}shared_expert.{n}.weight",
                     rng.normal(size=shape) * 0.15)
        # layer 0 is dense (interleave_moe_layer_step = 2)
        self.put("language_model.model.layers.0.feed_forward.gate_proj.weight",
                 rng.normal(size=(2 * F, D)))

    def config(self):
        E, K, F = self.E, self.K, self.F
        if self.kind == "gpt_oss":
            return {"model_type": "gpt_oss", "hidden_size": D,
                    "num_hidden_layers": LAYERS, "num_local_experts": E,
                    "num_experts_per_tok": K, "intermediate_size": F,
                    "swiglu_limit": self.limit}
        if self.kind == "llama4":
            return {"model_type": "llama4", "text_config": {
                "model_type": "llama4_text", "hidden_size": D,
                "num_hidden_layers": LAYERS, "num_local_experts": E,
                "num_experts_per_tok": K, "intermediate_size": F,
                "intermediate_size_mlp": 2 * F,
                "interleave_moe_layer_step": 2}}
        c = {"model_type": self.kind, "hidden_size": D,
             "num_hidden_layers": LAYERS, "n_routed_experts": E,
             "num_experts_per_tok": K, "moe_intermediate_size": F,
             "intermediate_size": 2 * F, "n_shared_experts": self.n_shared,
             "n_group": self.groups[0], "topk_group": self.groups[1],
             "norm_topk_prob": self.norm,
             "routed_scaling_factor": self.scale,
             "first_k_dense_replace": 1, "moe_layer_freq": 1}
        if self.kind in ("deepseek_v3", "kimi_k2"):
            c.update(topk_method="noaux_tc", scoring_func="sigmoid")
        elif self.kind == "deepseek_v2":
            c.update(topk_method="group_limited_greedy",
                     scoring_func="softmax")
        return c  # glm4_moe ships without topk_method / scoring_func

    def write(self, directory, shards=2, config=None):
        return write_model_dir(directory, self.stored,
                               config or self.config(), shards)

    # ---- the model's block in float64 ----

    def route(self, x):
        """Per token: (experts, gates) as the model picks them."""
        v, p, E, K = self.values, self.p, self.E, self.K
        out = []
        if self.kind == "gpt_oss":
            z = x @ v[p + "router.weight"].T + v[p + "router.bias"]
            for t in range(len(x)):
                idx = np.argsort(-z[t], kind="stable")[:K]
                w = np.exp(z[t, idx] - z[t, idx].max())
                out.append((idx, w / w.sum()))
            return out
        z = x @ v[p + "router.weight" if self.kind == "llama4"
                  else p + "gate.weight"].T
        if self.kind == "llama4":
            for t in range(len(x)):
                idx = np.argsort(-z[t], kind="stable")[:K]
                out.append((idx, sigmoid(z[t, idx])))
            return out
        G, TG = self.groups
        for t in range(len(x)):
            if self.kind == "deepseek_v2":
                s = np.exp(z[t] - z[t].max())
                s /= s.sum()
                c = s.copy()
                gscore = c.reshape(G, E // G).max(axis=1)
            else:
                s = sigmoid(z[t])
                c = s + v[p + "gate.e_score_correction_bias"]
                top2 = np.sort(c.reshape(G, E // G), axis=1)[:, -2:]
                gscore = top2.sum(axis=1)
            kept = np.argsort(-gscore, kind="stable")[:TG]
            allowed = np.zeros(E, bool)
            for g in kept:
                allowed[g * (E // G):(g + 1) * (E // G)] = True
            c = np.where(allowed, c, -np.inf)
            idx = np.argsort(-c, kind="stable")[:K]
            w = s[idx]
            if self.norm:
                w = w / (w.sum() + 1e-20)
            out.append((idx, w * self.scale))
        return out

    def expert(self, e, x):
        v, p, F = self.values, self.p, self.F
        if self.kind == "gpt_oss":
            h = x @ v[p + "experts.gate_up_proj"][e] + \
                v[p + "experts.gate_up_proj_bias"][e]
            gate = np.minimum(h[..., 0::2], self.limit)
            up = np.clip(h[..., 1::2], -self.limit, self.limit)
            a = gate * sigmoid(self.alpha * gate) * (up + 1)
            return a @ v[p + "experts.down_proj"][e] + \
                v[p + "experts.down_proj_bias"][e]
        if self.kind == "llama4":
            h = x @ v[p + "experts.gate_up_proj"][e]
            return (silu(h[..., :F]) * h[..., F:]) @ v[p + "experts.down_proj"][e]
        g, u, dn = (v[f"{p}experts.{e}.{n}.weight"]
                    for n in ("gate_proj", "up_proj", "down_proj"))
        return (silu(x @ g.T) * (x @ u.T)) @ dn.T

    def shared(self, x):
        v = self.values
        p = self.p + ("shared_expert." if self.kind == "llama4"
                      else "shared_experts.")
        if p + "gate_proj.weight" not in v:
            return np.zeros_like(x)
        g, u, dn = (v[p + n + ".weight"]
                    for n in ("gate_proj", "up_proj", "down_proj"))
        return (silu(x @ g.T) * (x @ u.T)) @ dn.T

    def forward(self, x, routes=None):
        routes = routes if routes is not None else self.route(x)
        y = self.shared(x)
        for t, (idx, w) in enumerate(routes):
            for e, g in zip(idx, w):
                if self.kind == "llama4":  # the score scales the input
                    y[t] += self.expert(e, x[t] * g)
                else:
                    y[t] += g * self.expert(e, x[t])
        return y


def rel_err(got, want):
    return np.abs(got - want).max() / np.abs(want).max()


def expert_sets(routing):
    off, ids = routing.offsets, routing.experts
    return [sorted(ids[off[t]:off[t + 1]].tolist())
            for t in range(len(off) - 1)]


FAMILIES = {
    "deepseek_v3": dict(groups=(4, 2), shared=1, norm=True, scale=2.5),
    "kimi_k2": dict(groups=(1, 1), shared=1, norm=True, scale=2.827),
    "glm4_moe": dict(groups=(1, 1), shared=1, norm=True, scale=1.0),
    "deepseek_v2": dict(E=16, K=3, groups=(4, 2), shared=2, norm=False,
                        scale=16.0),
    "gpt_oss": dict(E=8, K=4, F=16, shared=0),
    "llama4": dict(E=8, K=1, F=16, shared=1),
}
ARCH = {"kimi_k2": "deepseek_v3"}


@pytest.mark.parametrize("kind", list(FAMILIES))
def test_family_matches_model(ctx, tmp_path, kind):
    rng = np.random.default_rng(sum(map(ord, kind)))
    model = Family(kind, rng, **FAMILIES[kind])
    model.write(tmp_path / "m", shards=3)
    layer = clmoe.load_moe_layer(ctx, tmp_path / "m", LAYER)
    info = layer.info
    assert info["arch"] == ARCH.get(kind, kind)
    assert info["num_experts"] == model.E and info["top_k"] == model.K
    assert info["dtype"] == "bf16"
    want_shared = kind != "gpt_oss"
    assert (layer.shared is not None) == want_shared
    if kind == "deepseek_v2":
        assert info["shared_d_ff"] == 2 * model.F
    x = rng.normal(size=(23, D)).astype(np.float32)
    y, routing = layer(x)
    routes = model.route(x.astype(np.float64))
    assert expert_sets(routing) == [sorted(i.tolist()) for i, _ in routes]
    assert rel_err(y, model.forward(x.astype(np.float64), routes)) <= 1e-5


def test_conventions_reported(ctx, tmp_path):
    rng = np.random.default_rng(3)
    cases = {
        "deepseek_v3": dict(scoring="sigmoid", groups=(4, 2),
                            group_score="top2_sum", gate_scale=2.5,
                            selection_bias=True, gate_position="output"),
        "deepseek_v2": dict(scoring="softmax", groups=(4, 2),
                            group_score="max", gate_scale=16.0,
                            selection_bias=False),
        "gpt_oss": dict(scoring="softmax", router_bias=True,
                        expert_biases=True, activation="swiglu_oai",
                        swiglu_limit=7.0),
        "llama4": dict(scoring="sigmoid", gate_position="input",
                       activation="swiglu", renormalize=False),
    }
    for kind, want in cases.items():
        model = Family(kind, rng, **FAMILIES[kind])
        layer = clmoe.load_moe_layer(ctx, model.write(tmp_path / kind), LAYER)
        for key, value in want.items():
            got = layer.info[key]
            assert got == pytest.approx(value) if isinstance(value, float) \
                else got == value, (kind, key, got)


def test_top_p_over_deepseek_scores(ctx, tmp_path):
    """policy="top_p" replaces DeepSeek-V3's top-k and keeps its sigmoid
    scores, selection bias, groups, scale and shared experts: pi = s / (sum
    of s over the kept groups), cumulative pi in C order, RENORM gates
    times routed_scaling_factor."""
    rng = np.random.default_rng(21)
    model = Family("deepseek_v3", rng, **FAMILIES["deepseek_v3"])
    model.write(tmp_path / "m")
    p = 0.5
    layer = clmoe.load_moe_layer(ctx, tmp_path / "m", LAYER, policy="top_p",
                                 p=p, gates="renorm")
    x = rng.normal(size=(19, D)).astype(np.float32)
    y, routing = layer(x)
    v, pre, E = model.values, model.p, model.E
    G, TG = model.groups
    z = x.astype(np.float64) @ v[pre + "gate.weight"].T
    routes = []
    for t in range(len(x)):
        s = sigmoid(z[t])
        c = s + v[pre + "gate.e_score_correction_bias"]
        gscore = np.sort(c.reshape(G, -1), axis=1)[:, -2:].sum(axis=1)
        allowed = np.repeat(np.isin(np.arange(G), np.argsort(
            -gscore, kind="stable")[:TG]), E // G)
        pi = np.where(allowed, s, 0) / s[allowed].sum()
        order = [e for e in np.argsort(-np.where(allowed, c, -np.inf),
                                       kind="stable") if allowed[e]]
        cum = np.cumsum(pi[order])
        k = int(np.argmax(cum > p)) + 1 if np.any(cum > p) else len(order)
        idx = np.array(order[:k])
        routes.append((idx, pi[idx] / pi[idx].sum() * model.scale))
    assert expert_sets(routing) == [sorted(i.tolist()) for i, _ in routes]
    assert rel_err(y, model.forward(x.astype(np.float64), routes)) <= 1e-5
    assert routing.counts.max() > routing.counts.min()  # K varies


def test_llama4_text_layout(ctx, tmp_path):
    """model_type llama4_text: the text model's fields at the top level and
    its tensors under model.layers."""
    rng = np.random.default_rng(8)
    model = Family("llama4", rng, **FAMILIES["llama4"])
    model.stored = {k.replace("language_model.", ""): v
                    for k, v in model.stored.items()}
    cfg = model.config()["text_config"]
    model.write(tmp_path / "m", config=cfg)
    layer = clmoe.load_moe_layer(ctx, tmp_path / "m", LAYER)
    x = rng.normal(size=(7, D)).astype(np.float32)
    y, _ = layer(x)
    assert rel_err(y, model.forward(x.astype(np.float64))) <= 1e-5


@pytest.mark.parametrize("path_kind", ["clblast", "grouped"])
def test_gpt_oss_both_paths(ctx, tmp_path, path_kind):
    rng = np.random.default_rng(4)
    model = Family("gpt_oss", rng, **FAMILIES["gpt_oss"])
    model.write(tmp_path / "m", shards=1)
    layer = clmoe.load_moe_layer(ctx, tmp_path / "m", LAYER, dtype="f32",
                                 path_kind=path_kind)
    assert layer.experts.path == path_kind
    x = rng.normal(size=(11, D)).astype(np.float32)
    y, _ = layer(x)
    assert rel_err(y, model.forward(x.astype(np.float64))) <= 1e-5


def expect_error(status, fragment, fn, *args, **kwargs):
    with pytest.raises(clmoe.Error) as e:
        fn(*args, **kwargs)
    assert e.value.status_name == "CLMOE_ERROR_" + status, e.value
    assert fragment in e.value.detail, e.value.detail


def test_family_errors(ctx, tmp_path):
    rng = np.random.default_rng(5)
    ds = Family("deepseek_v3", rng, **FAMILIES["deepseek_v3"])
    m = ds.write(tmp_path / "ds")
    load = clmoe.load_moe_layer
    expect_error("INVALID_ARGUMENT", "first_k_dense_replace", load, ctx, m, 0)
    cfg = ds.config()
    cfg["moe_layer_freq"] = 2
    ds.write(m, config=cfg)
    expect_error("INVALID_ARGUMENT", "moe_layer_freq", load, ctx, m, LAYER)
    cfg = ds.config()
    cfg["n_group"] = 3  # 16 experts do not split into 3 groups
    ds.write(m, config=cfg)
    expect_error("INVALID_ARGUMENT", "num_groups", load, ctx, m, LAYER)
    cfg = ds.config()
    cfg["topk_group"] = 5
    ds.write(m, config=cfg)
    expect_error("INVALID_ARGUMENT", "topk_groups", load, ctx, m, LAYER)
    cfg = ds.config()
    cfg["num_experts_per_tok"] = 9  # 2 kept groups hold 8 experts
    ds.write(m, config=cfg)
    expect_error("INVALID_ARGUMENT", "kept groups", load, ctx, m, LAYER)
    cfg = ds.config()
    cfg["moe_intermediate_size"] = ds.F + 1
    ds.write(m, config=cfg)
    expect_error("SHAPE_MISMATCH", "gate_proj", load, ctx, m, LAYER)
    cfg = ds.config()
    cfg["quantization_config"] = {"quant_method": "awq", "bits": 4}
    ds.write(m, config=cfg)
    expect_error("UNSUPPORTED", "quantization_config", load, ctx, m, LAYER)
    cfg = ds.config()
    cfg["topk_method"] = "magic"
    ds.write(m, config=cfg)
    expect_error("UNSUPPORTED", "topk_method", load, ctx, m, LAYER)
    bias = f"model.layers.{LAYER}.mlp.gate.e_score_correction_bias"
    ds.stored[bias] = ("F32", np.array([0, np.nan] + [0] * 14, np.float32))
    ds.write(m)
    expect_error("INVALID_ARGUMENT", "selection_bias[1]", load, ctx, m, LAYER)

    oss = Family("gpt_oss", rng, **FAMILIES["gpt_oss"])
    del oss.stored[f"model.layers.{LAYER}.mlp.experts.down_proj_bias"]
    m = oss.write(tmp_path / "oss")
    expect_error("INVALID_ARGUMENT", "down_proj_bias", load, ctx, m, LAYER)
    oss = Family("gpt_oss", rng, **FAMILIES["gpt_oss"])
    del oss.stored[f"model.layers.{LAYER}.mlp.router.bias"]
    m = oss.write(tmp_path / "oss2")
    expect_error("INVALID_ARGUMENT", "router.bias", load, ctx, m, LAYER)

    l4 = Family("llama4", rng, **FAMILIES["llama4"])
    m = l4.write(tmp_path / "l4")
    expect_error("INVALID_ARGUMENT", "interleave_moe_layer_step", load, ctx,
                 m, 0)
    cfg = l4.config()
    cfg["text_config"]["moe_layers"] = [2]
    l4.write(m, config=cfg)
    expect_error("INVALID_ARGUMENT", "moe_layers", load, ctx, m, LAYER)
    cfg = l4.config()
    del cfg["text_config"]
    cfg.update(hidden_size=D)
    l4.write(m, config=cfg)
    expect_error("INVALID_ARGUMENT", "text_config", load, ctx, m, LAYER)


@pytest.mark.parametrize("kind", ["deepseek_v3", "gpt_oss", "llama4"])
def test_demo_prints_conventions(tmp_path, capsys, kind):
    """python3 -m clmoe.demo --checkpoint works for the families and prints
    their conventions."""
    import clmoe.demo
    rng = np.random.default_rng(12)
    model = Family(kind, rng, **FAMILIES[kind])
    model.write(tmp_path / "m")
    clmoe.demo.main(["--checkpoint", str(tmp_path / "m"), "--layer",
                     str(LAYER), "--tokens", "24"])
    out = capsys.readouterr().out
    line = next(l for l in out.splitlines() if l.startswith("conventions:"))
    want = {"deepseek_v3": ["sigmoid scores", "selection bias",
                            "2 of 4 groups (top2_sum)", "gates x 2.5"],
            "gpt_oss": ["router bias", "swiglu_oai experts with biases"],
            "llama4": ["sigmoid scores", "gates on the expert input"]}[kind]
    for w in want:
        assert w in line, line
    for name in ("model top-", "TOPP(p=0.5)", "IMPORTANCE("):
        assert name in out


def test_router_fields_from_python(ctx):
    """clmoe.Router's scoring / selection_bias / groups / group_score /
    gate_scale on logits, against numpy: DeepSeek-V3's routing."""
    rng = np.random.default_rng(31)
    T, E, K, G, TG = 40, 32, 4, 8, 3
    z = (np.round(rng.normal(size=(T, E)) * 8) / 8).astype(np.float32)
    b = (np.round(rng.normal(size=E) * 16) / 64).astype(np.float32)
    r = clmoe.Router(ctx, num_experts=E, k=K, gates="renorm",
                     scoring="sigmoid", selection_bias=b, groups=(G, TG),
                     group_score="top2_sum", gate_scale=2.5)
    routing = r.route_logits(z)
    s = sigmoid(z.astype(np.float64))
    c = s + b
    top2 = np.sort(c.reshape(T, G, E // G), axis=2)[:, :, -2:].sum(axis=2)
    for t in range(T):
        kept = np.argsort(-top2[t], kind="stable")[:TG]
        allowed = np.repeat(np.isin(np.arange(G), kept), E // G)
        idx = np.argsort(-np.where(allowed, c[t], -np.inf), kind="stable")[:K]
        w = s[t, idx] / (s[t, idx].sum() + 1e-20) * 2.5
        o = routing.offsets
        assert routing.experts[o[t]:o[t + 1]].tolist() == idx.tolist()
        assert np.allclose(routing.gates[o[t]:o[t + 1]], w, rtol=1e-6)
    with pytest.raises(clmoe.Error) as e:
        clmoe.Router(ctx, num_experts=E, groups=(5, 2))
    assert "num_groups" in e.value.detail


def test_swiglu_oai_experts_from_python(ctx):
    """clmoe.Experts(activation="swiglu_oai") with biases and its limit and
    alpha, behind a gpt-oss-style router (bias, top-k, renormalised)."""
    rng = np.random.default_rng(32)
    T, E, F, K, L, A = 17, 4, 12, 2, 3.0, 1.5
    w1, w3 = (rng.normal(size=(E, D, F)).astype(np.float32) for _ in "ab")
    w2 = (rng.normal(size=(E, F, D)) * 0.2).astype(np.float32)
    b1, b3 = (rng.normal(size=(E, F)).astype(np.float32) for _ in "ab")
    b2 = rng.normal(size=(E, D)).astype(np.float32)
    wr = rng.normal(size=(D, E)).astype(np.float32)
    br = rng.normal(size=E).astype(np.float32)
    layer = clmoe.MoELayer(
        clmoe.Router(ctx, weight=wr, bias=br, k=K, gates="renorm"),
        clmoe.Experts(ctx, w1=w1, w2=w2, w3=w3, b1=b1, b2=b2, b3=b3,
                      activation="swiglu_oai", swiglu_limit=L,
                      swiglu_alpha=A))
    x = rng.normal(size=(T, D)).astype(np.float32)
    y, _ = layer(x)
    xd = x.astype(np.float64)
    z = xd @ wr + br
    want = np.zeros_like(xd)
    for t in range(T):
        idx = np.argsort(-z[t], kind="stable")[:K]
        g = np.exp(z[t, idx] - z[t, idx].max())
        g /= g.sum()
        for e, ge in zip(idx, g):
            gate = np.minimum(xd[t] @ w1[e] + b1[e], L)
            up = np.clip(xd[t] @ w3[e] + b3[e], -L, L)
            a = gate * sigmoid(A * gate) * (up + 1)
            want[t] += ge * (a @ w2[e] + b2[e])
    assert rel_err(y, want) <= 1e-5
