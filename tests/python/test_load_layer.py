"""clmoe.load_moe_layer on tiny checkpoints written here with the real tensor
names and config.json fields of Mixtral, OLMoE, Qwen2-MoE and Qwen3-MoE,
against a numpy implementation of each model's MoE block written from the
model definitions (softmax router, top-k, the model's gate normalisation,
SwiGLU experts stored [out, in], Qwen2-MoE's sigmoid-gated shared expert)."""
import json

import numpy as np
import pytest

import clmoe
from st_files import bf16_bits, bf16_values, write_model_dir

E, D, F, FS, K, LAYERS, LAYER = 6, 32, 48, 40, 2, 3, 1


class Model:
    """Random weights of one MoE layer, as the model stores them, and the
    values the reference uses (the stored dtype widened)."""

    def __init__(self, arch, dtype, rng, stacked=False):
        self.arch, self.dtype, self.stacked = arch, dtype, stacked
        self.values, self.stored = {}, {}
        self.norm = arch == "mixtral" or arch == "qwen3_moe"
        p = {"mixtral": f"model.layers.{LAYER}.block_sparse_moe."}.get(
            arch, f"model.layers.{LAYER}.mlp.")
        names = ({"gate": "w1", "up": "w3", "down": "w2"} if arch == "mixtral"
                 else {"gate": "gate_proj", "up": "up_proj",
                       "down": "down_proj"})
        self.put(p + "gate.weight", rng.normal(size=(E, D)) * 0.3)
        w = {k: rng.normal(size=(E, F if k != "down" else D,
                                 D if k != "down" else F)) * 0.15
             for k in ("gate", "up", "down")}
        if stacked:
            self.put(p + "experts.gate_up_proj",
                     np.concatenate([w["gate"], w["up"]], axis=1))
            self.put(p + "experts.down_proj", w["down"])
        else:
            for e in range(E):
                for k, n in names.items():
                    self.put(f"{p}experts.{e}.{n}.weight", w[k][e])
        self.shared = arch == "qwen2_moe"
        if self.shared:
            for k, shape in (("gate_proj", (FS, D)), ("up_proj", (FS, D)),
                             ("down_proj", (D, FS))):
                self.put(f"{p}shared_expert.{k}.weight",
                         rng.normal(size=shape) * 0.15)
            self.put(p + "shared_expert_gate.weight",
                     rng.normal(size=(1, D)) * 0.2)
        # another layer's tensor, which the loader must leave alone
        self.put(f"model.layers.{LAYER - 1}.self_attn.q_proj.weight",
                 rng.normal(size=(D, D)))
        self.prefix, self.names = p, names

    def put(self, name, a):
        a = np.asarray(a, np.float32)
        if self.dtype == "BF16":
            bits = bf16_bits(a)
            self.stored[name] = ("BF16", bits)
            self.values[name] = bf16_values(bits).astype(np.float64)
        else:
            self.stored[name] = ("F32", a)
            self.values[name] = a.astype(np.float64)

    def config(self):
        c = {"model_type": self.arch, "hidden_size": D,
             "num_hidden_layers": LAYERS, "num_experts_per_tok": K}
        if self.arch == "mixtral":
            c.update(num_local_experts=E, intermediate_size=F)
        elif self.arch == "olmoe":
            c.update(num_experts=E, intermediate_size=F,
                     norm_topk_prob=False)
        else:
            c.update(num_experts=E, moe_intermediate_size=F,
                     intermediate_size=4 * F, norm_topk_prob=self.norm,
                     decoder_sparse_step=1, mlp_only_layers=[0])
            if self.shared:
                c["shared_expert_intermediate_size"] = FS
        return c

    def write(self, directory, shards=1):
        write_model_dir(directory, self.stored, self.config(), shards)

    def expert(self, e, x):
        v, p = self.values, self.prefix
        if self.stacked:
            gu = v[p + "experts.gate_up_proj"][e]
            g, u, dn = gu[:F], gu[F:], v[p + "experts.down_proj"][e]
        else:
            n = self.names
            g, u, dn = (v[f"{p}experts.{e}.{n[k]}.weight"]
                        for k in ("gate", "up", "down"))
        a = x @ g.T
        return (a / (1 + np.exp(-a)) * (x @ u.T)) @ dn.T

    def probs(self, x):
        logits = x @ self.values[self.prefix + "gate.weight"].T
        z = np.exp(logits - logits.max(-1, keepdims=True))
        return z / z.sum(-1, keepdims=True)

    def forward(self, x, chosen=None):
        """The model's block; `chosen(probs_row)` -> (experts, weights)
        replaces its top-k routing."""
        P = self.probs(x)
        y = np.zeros_like(x)
        for t in range(x.shape[0]):
            if chosen is None:
                idx = np.argsort(-P[t], kind="stable")[:K]
                w = P[t, idx]
                if self.norm or self.arch == "mixtral":
                    w = w / w.sum()
            else:
                idx, w = chosen(P[t])
            for e, g in zip(idx, w):
                y[t] += g * self.expert(e, x[t:t + 1])[0]
        if self.shared:
            v, p = self.values, self.prefix
            a = x @ v[p + "shared_expert.gate_proj.weight"].T
            h = a / (1 + np.exp(-a)) * (x @ v[p + "shared_expert.up_proj.weight"].T)
            s = h @ v[p + "shared_expert.down_proj.weight"].T
            gate = 1 / (1 + np.exp(-(x @ v[p + "shared_expert_gate.weight"].T)))
            y += gate * s
        return y


def rel_err(got, want):
    return np.abs(got - want).max() / np.abs(want).max()


@pytest.mark.parametrize("arch", ["mixtral", "olmoe", "qwen2_moe",
                                  "qwen3_moe"])
@pytest.mark.parametrize("dtype", ["F32", "BF16"])
@pytest.mark.parametrize("shards", [1, 3])
def test_layer_matches_model(ctx, tmp_path, arch, dtype, shards):
    rng = np.random.default_rng(hash((arch, dtype, shards)) % 2**32)
    model = Model(arch, dtype, rng)
    model.write(tmp_path / "m", shards)
    layer = clmoe.load_moe_layer(ctx, tmp_path / "m", LAYER)
    assert layer.info["arch"] == arch
    assert layer.info["dtype"] == dtype.lower()
    assert layer.info["top_k"] == K and layer.info["d_ff"] == F
    assert (layer.shared is not None) == (arch == "qwen2_moe")
    x = rng.normal(size=(16, D)).astype(np.float32)
    y, routing = layer(x)
    want = model.forward(x.astype(np.float64))
    assert rel_err(y, want) <= 1e-5
    assert np.all(routing.counts == K)


def test_stacked_experts(ctx, tmp_path):
    """gate_up_proj [E, 2F, D] (gate rows first) and down_proj [E, D, F]."""
    rng = np.random.default_rng(5)
    model = Model("qwen3_moe", "F32", rng, stacked=True)
    model.write(tmp_path / "m")
    layer = clmoe.load_moe_layer(ctx, tmp_path / "m", LAYER,
                                 arch="qwen3_moe", dtype="bf16")
    assert layer.info["dtype"] == "bf16"
    x = rng.normal(size=(12, D)).astype(np.float32)
    y, _ = layer(x)
    # bf16 storage of the experts (the router stays float32): the reference
    # with the same rounding of the expert weights
    for name in [n for n in model.values if ".experts." in n]:
        model.values[name] = bf16_values(bf16_bits(
            model.values[name].astype(np.float32))).astype(np.float64)
    assert rel_err(y, model.forward(x.astype(np.float64))) <= 1e-5


def test_policies_on_mixtral(ctx, tmp_path):
    """top-p and importance replace Mixtral's top-2 on the real weights."""
    rng = np.random.default_rng(9)
    model = Model("mixtral", "F32", rng)
    model.write(tmp_path / "m")
    x = rng.normal(size=(20, D)).astype(np.float32)
    p = 0.6

    def top_p(row):
        order = np.argsort(-row, kind="stable")
        c = np.cumsum(row[order].astype(np.float32))
        k = int(np.argmax(c > p)) + 1 if np.any(c > p) else E
        return order[:k], row[order[:k]]  # RAW gates
    layer = clmoe.load_moe_layer(ctx, tmp_path / "m", LAYER, policy="top_p",
                                 p=p)
    y, routing = layer(x)
    assert rel_err(y, model.forward(x.astype(np.float64), top_p)) <= 1e-5
    assert routing.counts.min() >= 1
    imp = np.linspace(0, 1, x.shape[0]).astype(np.float32)
    layer = clmoe.load_moe_layer(ctx, tmp_path / "m", LAYER,
                                 policy="importance", k_min=1, k_max=4)
    _, routing = layer(x, importance=imp)
    assert routing.counts.min() >= 1 and routing.counts.max() <= 4
    assert routing.counts[-1] >= routing.counts[0]


def test_load_errors(ctx, tmp_path):
    rng = np.random.default_rng(2)
    model = Model("qwen2_moe", "F32", rng)
    model.write(tmp_path / "m")
    with pytest.raises(clmoe.Error) as e:  # mlp_only_layers
        clmoe.load_moe_layer(ctx, tmp_path / "m", 0)
    assert e.value.status_name == "CLMOE_ERROR_INVALID_ARGUMENT"
    assert "dense MLP" in e.value.detail
    with pytest.raises(clmoe.Error) as e:  # outside the model
        clmoe.load_moe_layer(ctx, tmp_path / "m", LAYERS)
    assert e.value.status_name == "CLMOE_ERROR_INVALID_ARGUMENT"
    with pytest.raises(clmoe.Error) as e:  # layer 2 has no tensors
        clmoe.load_moe_layer(ctx, tmp_path / "m", 2)
    assert e.value.status_name == "CLMOE_ERROR_NOT_FOUND"
    assert "model.layers.2.mlp.gate.weight" in e.value.detail
    assert "nearest" in e.value.detail
    cfg = model.config()
    cfg["hidden_size"] = D + 1  # disagrees with the tensors
    (tmp_path / "m" / "config.json").write_text(json.dumps(cfg))
    with pytest.raises(clmoe.Error) as e:
        clmoe.load_moe_layer(ctx, tmp_path / "m", LAYER)
    assert e.value.status_name == "CLMOE_ERROR_SHAPE_MISMATCH"
    assert "gate.weight" in e.value.detail
    cfg["hidden_size"] = D
    cfg["model_type"] = "llama"
    (tmp_path / "m" / "config.json").write_text(json.dumps(cfg))
    with pytest.raises(clmoe.Error) as e:
        clmoe.load_moe_layer(ctx, tmp_path / "m", LAYER)
    assert e.value.status_name == "CLMOE_ERROR_UNSUPPORTED"
    assert "llama" in e.value.detail
    # an explicit arch still works whatever model_type says
    layer = clmoe.load_moe_layer(ctx, tmp_path / "m", LAYER,
                                 arch="qwen2_moe")
    assert layer.shared is not None
    (tmp_path / "m" / "config.json").unlink()
    with pytest.raises(clmoe.Error) as e:
        clmoe.load_moe_layer(ctx, tmp_path / "m", LAYER)
    assert e.value.status_name == "CLMOE_ERROR_INVALID_ARGUMENT"
    assert "config.json" in e.value.detail


@pytest.mark.parametrize("path_kind", ["clblast", "grouped"])
def test_both_expert_paths(ctx, tmp_path, path_kind):
    """The grouped path streams panels from the checkpoint; the CLBlast path
    (float32 only) loads whole arrays: both give the model's output."""
    rng = np.random.default_rng(13)
    model = Model("qwen2_moe", "F32", rng)
    model.write(tmp_path / "m")
    layer = clmoe.load_moe_layer(ctx, tmp_path / "m", LAYER,
                                 path_kind=path_kind)
    assert layer.experts.path == path_kind
    assert layer.shared.path == path_kind
    x = rng.normal(size=(9, D)).astype(np.float32)
    y, _ = layer(x)
    assert rel_err(y, model.forward(x.astype(np.float64))) <= 1e-5


def test_demo_on_checkpoint(tmp_path, capsys):
    """python3 -m clmoe.demo --checkpoint: the model's top-k, top-p and
    importance on the loaded layer, with a plot."""
    import clmoe.demo
    rng = np.random.default_rng(17)
    model = Model("mixtral", "BF16", rng)
    model.write(tmp_path / "m")
    hidden = tmp_path / "x.npy"
    np.save(hidden, rng.normal(size=(40, D)).astype(np.float32))
    plot = tmp_path / "k.png"
    clmoe.demo.main(["--checkpoint", str(tmp_path / "m"), "--layer",
                     str(LAYER), "--hidden", str(hidden), "--plot",
                     str(plot)])
    out = capsys.readouterr().out
    assert "mixtral, E=6" in out and "T=40" in out
    for name in ("model top-2", "TOPP(p=0.5)", "IMPORTANCE(k~2)"):
        assert name in out
    line = next(l for l in out.splitlines() if l.startswith("model top-2"))
    assert float(line.split()[2]) == 2.0  # mean K of the model's top-2
    assert plot.stat().st_size > 0
