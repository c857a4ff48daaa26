"""Quantized experts from Python and released-format quantized checkpoints:
Qwen3-MoE FP8 (F32 and BF16 block scales), DeepSeek-V3 FP8 (FP8 shared
experts too) and gpt-oss MXFP4 (U8 blocks and e8m0 scales), written here
with the released tensor names and config.json fields, against numpy blocks
on weights dequantized by this file's own decoders; kept in their format or
dequantized on load (dtype="bf16"); clmoe's quantizers from Python."""
import numpy as np
import pytest

import clmoe
from st_files import bf16_bits, bf16_values, write_model_dir

LAYER = 1


def e4m3_values(codes):
    c = np.asarray(codes, np.int64)
    e, m = (c >> 3) & 15, c & 7
    v = np.where(e == 0, m * 2.0 ** -9, (1 + m / 8.0) * 2.0 ** (e - 7))
    v = np.where((c & 0x7F) == 0x7F, np.nan, v)
    return np.where(c & 0x80, -v, v)


E2M1 = np.array([0, .5, 1, 1.5, 2, 3, 4, 6, -0., -.5, -1, -1.5, -2, -3, -4,
                 -6])


def silu(v):
    return v / (1 + np.exp(-v))


def random_f8(rng, out, inn):
    """An F8_E4M3 weight [out, in] (no NaN codes) and its scale_inv."""
    codes = rng.integers(0, 256, size=(out, inn)).astype(np.uint8)
    codes[(codes & 0x7F) == 0x7F] ^= 1
    scale = (rng.uniform(0.5, 1.5, size=(-(-out // 128), -(-inn // 128)))
             / 448 * 0.3).astype(np.float32)
    return codes, scale


def dequant_f8(codes, scale):
    s = np.repeat(np.repeat(scale.astype(np.float64), 128, 0), 128, 1)
    return e4m3_values(codes) * s[:codes.shape[0], :codes.shape[1]]


class FP8Model:
    """Qwen3-MoE or DeepSeek-V3 with FP8 experts (router BF16)."""

    def __init__(self, kind, rng, scale_dtype="F32", E=4, K=2, D=160,
                 F=96):
        self.kind, self.E, self.K, self.D, self.F = kind, E, K, D, F
        self.stored, self.values = {}, {}
        p = self.p = f"model.layers.{LAYER}.mlp."
        g = (rng.normal(size=(E, D)) * 0.3).astype(np.float32)
        self.stored[p + "gate.weight"] = ("BF16", bf16_bits(g))
        self.values["gate"] = bf16_values(bf16_bits(g)).astype(np.float64)
        mats = [(f"experts.{e}.{n}", e) for e in range(E)
                for n in ("gate_proj", "up_proj", "down_proj")]
        if kind == "deepseek_v3":
            mats += [(f"shared_experts.{n}", None)
                     for n in ("gate_proj", "up_proj", "down_proj")]
            b = (rng.normal(size=E) * 0.2).astype(np.float32)
            self.stored[p + "gate.e_score_correction_bias"] = b
            self.values["bias"] = b.astype(np.float64)
        for name, _ in mats:
            shape = (D, F) if name.endswith("down_proj") else (F, D)
            codes, scale = random_f8(rng, *shape)
            self.stored[p + name + ".weight"] = ("F8_E4M3", codes)
            if scale_dtype == "BF16":
                bits = bf16_bits(scale)
                self.stored[p + name + ".weight_scale_inv"] = ("BF16", bits)
                scale = bf16_values(bits)
            else:
                self.stored[p + name + ".weight_scale_inv"] = scale
            self.values[name] = dequant_f8(codes, scale)

    def config(self):
        c = {"model_type": self.kind, "hidden_size": self.D,
             "num_hidden_layers": 2, "num_experts_per_tok": self.K,
             "moe_intermediate_size": self.F, "norm_topk_prob": True,
             "quantization_config": {"quant_method": "fp8", "fmt": "e4m3",
                                     "activation_scheme": "dynamic",
                                     "weight_block_size": [128, 128]}}
        if self.kind == "qwen3_moe":
            c.update(num_experts=self.E, mlp_only_layers=[],
                     decoder_sparse_step=1)
        else:
            c.update(n_routed_experts=self.E, n_shared_experts=1, n_group=2,
                     topk_group=1, topk_method="noaux_tc",
                     scoring_func="sigmoid", routed_scaling_factor=2.5,
                     first_k_dense_replace=1)
        return c

    def ffn(self, name, x):
        v = self.values
        return (silu(x @ v[name + "gate_proj"].T) *
                (x @ v[name + "up_proj"].T)) @ v[name + "down_proj"].T

    def forward(self, x, round_bf16=False):
        v = dict(self.values)
        if round_bf16:  # dequantized on load into bfloat16
            for k in list(v):
                if k not in ("gate", "bias"):
                    v[k] = bf16_values(bf16_bits(v[k].astype(np.float32)))
            self.values, saved = v, self.values
        z = x @ self.values["gate"].T
        y = np.zeros_like(x)
        for t in range(len(x)):
            if self.kind == "qwen3_moe":
                P = np.exp(z[t] - z[t].max())
                P /= P.sum()
                idx = np.argsort(-P, kind="stable")[:self.K]
                w = P[idx] / P[idx].sum()
            else:
                s = 1 / (1 + np.exp(-z[t]))
                c = s + self.values["bias"]
                gs = np.sort(c.reshape(2, -1), axis=1)[:, -2:].sum(axis=1)
                keep = np.argsort(-gs, kind="stable")[:1]
                allowed = np.repeat(np.isin(np.arange(2), keep), self.E // 2)
                idx = np.argsort(-np.where(allowed, c, -np.inf),
                                 kind="stable")[:self.K]
                w = s[idx] / (s[idx].sum() + 1e-20) * 2.5
            for e, g in zip(idx, w):
                y[t] += g * self.ffn(f"experts.{e}.", x[t:t + 1])[0]
        if self.kind == "deepseek_v3":
            y += self.ffn("shared_experts.", x)
        if round_bf16:
            self.values = saved
        return y


def rel_err(got, want):
    return np.abs(got - want).max() / np.abs(want).max()


@pytest.mark.parametrize("kind,scale_dtype", [("qwen3_moe", "F32"),
                                              ("qwen3_moe", "BF16"),
                                              ("deepseek_v3", "F32")])
def test_fp8_checkpoint(ctx, tmp_path, kind, scale_dtype):
    rng = np.random.default_rng(len(kind) + len(scale_dtype))
    model = FP8Model(kind, rng, scale_dtype)
    d = write_model_dir(tmp_path / "m", model.stored, model.config(), 2)
    x = rng.normal(size=(13, model.D)).astype(np.float32)
    layer = clmoe.load_moe_layer(ctx, d, LAYER)
    assert layer.info["dtype"] == "fp8_e4m3"
    assert layer.experts.dtype == "fp8_e4m3"
    if kind == "deepseek_v3":
        assert layer.shared.dtype == "fp8_e4m3"
    # a byte a weight plus scales: under a third of float32
    assert layer.experts.weight_bytes < 4 * 3 * model.E * model.D * \
        model.F / 3
    y, _ = layer(x)
    assert rel_err(y, model.forward(x.astype(np.float64))) <= 1e-5
    # dequantized on load into bfloat16
    layer = clmoe.load_moe_layer(ctx, d, LAYER, dtype="bf16")
    assert layer.experts.dtype == "bf16"
    y, _ = layer(x)
    assert rel_err(y, model.forward(x.astype(np.float64), True)) <= 1e-5
    with clmoe.Checkpoint(d) as ck:  # F8 decodes element by element
        name = f"model.layers.{LAYER}.mlp.experts.0.up_proj.weight"
        np.testing.assert_array_equal(
            ck.read(name, "f32"),
            e4m3_values(model.stored[name][1]).astype(np.float32))


def test_fp8_checkpoint_errors(ctx, tmp_path):
    rng = np.random.default_rng(7)
    model = FP8Model("qwen3_moe", rng)
    p = model.p
    name = p + "experts.2.down_proj.weight_scale_inv"
    scale = model.stored.pop(name)
    d = write_model_dir(tmp_path / "a", model.stored, model.config())
    with pytest.raises(clmoe.Error) as e:
        clmoe.load_moe_layer(ctx, d, LAYER)
    assert e.value.status_name == "CLMOE_ERROR_NOT_FOUND"
    assert "down_proj.weight_scale_inv" in e.value.detail
    model.stored[name] = scale[:1].copy()  # wrong shape
    d = write_model_dir(tmp_path / "b", model.stored, model.config())
    with pytest.raises(clmoe.Error) as e:
        clmoe.load_moe_layer(ctx, d, LAYER)
    assert e.value.status_name == "CLMOE_ERROR_SHAPE_MISMATCH"
    assert "scale_inv" in e.value.detail
    cfg = model.config()
    cfg["quantization_config"]["weight_block_size"] = [64, 64]
    model.stored[name] = scale
    d = write_model_dir(tmp_path / "c", model.stored, cfg)
    with pytest.raises(clmoe.Error) as e:
        clmoe.load_moe_layer(ctx, d, LAYER)
    assert e.value.status_name == "CLMOE_ERROR_UNSUPPORTED"
    assert "weight_block_size" in e.value.detail


class MXFP4Model:
    """gpt-oss with MXFP4 experts as released: *_blocks U8 [E, out, in/32,
    16] and *_scales U8 [E, out, in/32], gate/up rows interleaved, BF16
    router and biases."""

    def __init__(self, rng, E=4, K=2, D=64, F=32):
        self.E, self.K, self.D, self.F = E, K, D, F
        self.stored, self.v = {}, {}
        p = self.p = f"model.layers.{LAYER}.mlp."
        for name, shape, scale in (("router.weight", (E, D), 0.4),
                                   ("router.bias", (E,), 0.3),
                                   ("experts.gate_up_proj_bias", (E, 2 * F),
                                    0.5),
                                   ("experts.down_proj_bias", (E, D), 0.1)):
            a = (rng.normal(size=shape) * scale).astype(np.float32)
            self.stored[p + name] = ("BF16", bf16_bits(a))
            self.v[name] = bf16_values(bf16_bits(a)).astype(np.float64)
        for name, out, inn in (("gate_up_proj", 2 * F, D),
                               ("down_proj", D, F)):
            codes = rng.integers(0, 16, size=(E, out, inn)).astype(np.uint8)
            scales = rng.integers(122, 127, size=(E, out, inn // 32)
                                  ).astype(np.uint8)
            blocks = (codes[..., 0::2] | (codes[..., 1::2] << 4)).reshape(
                E, out, inn // 32, 16)
            self.stored[p + f"experts.{name}_blocks"] = ("U8", blocks)
            self.stored[p + f"experts.{name}_scales"] = ("U8", scales)
            self.v[name] = E2M1[codes] * np.repeat(
                2.0 ** (scales.astype(np.float64) - 127), 32, axis=2)

    def config(self):
        return {"model_type": "gpt_oss", "hidden_size": self.D,
                "num_hidden_layers": 2, "num_local_experts": self.E,
                "num_experts_per_tok": self.K, "intermediate_size": self.F,
                "swiglu_limit": 7.0,
                "quantization_config": {"quant_method": "mxfp4"}}

    def forward(self, x):
        v = self.v
        z = x @ v["router.weight"].T + v["router.bias"]
        y = np.zeros_like(x)
        for t in range(len(x)):
            idx = np.argsort(-z[t], kind="stable")[:self.K]
            w = np.exp(z[t, idx] - z[t, idx].max())
            w /= w.sum()
            for e, g in zip(idx, w):
                # [out, in] weights; gate rows even, up rows odd
                h = v["gate_up_proj"][e] @ x[t] + v["experts.gate_up_proj_bias"][e]
                gate = np.minimum(h[0::2], 7.0)
                up = np.clip(h[1::2], -7.0, 7.0)
                a = gate / (1 + np.exp(-1.702 * gate)) * (up + 1)
                y[t] += g * (v["down_proj"][e] @ a +
                             v["experts.down_proj_bias"][e])
        return y


def test_mxfp4_checkpoint(ctx, tmp_path):
    rng = np.random.default_rng(11)
    model = MXFP4Model(rng)
    d = write_model_dir(tmp_path / "m", model.stored, model.config(), 2)
    layer = clmoe.load_moe_layer(ctx, d, LAYER)
    assert layer.experts.dtype == "mxfp4"
    x = rng.normal(size=(9, model.D)).astype(np.float32)
    y, _ = layer(x)
    want = model.forward(x.astype(np.float64))
    assert rel_err(y, want) <= 1e-5
    layer = clmoe.load_moe_layer(ctx, d, LAYER, dtype="f32")
    assert layer.experts.dtype == "f32"
    y, _ = layer(x)
    assert rel_err(y, want) <= 1e-5
    # blocks whose last dimension is not 16
    name = model.p + "experts.down_proj_blocks"
    dt, b = model.stored[name]
    model.stored[name] = (dt, b.reshape(model.E, model.D, -1, 8))
    d = write_model_dir(tmp_path / "bad", model.stored, model.config())
    with pytest.raises(clmoe.Error) as e:
        clmoe.load_moe_layer(ctx, d, LAYER)
    assert e.value.status_name == "CLMOE_ERROR_SHAPE_MISMATCH"
    assert "down_proj_blocks" in e.value.detail


@pytest.mark.parametrize("dtype", ["fp8_e4m3", "mxfp4", "int8", "int4"])
def test_quantized_experts_from_python(ctx, dtype):
    """Experts(dtype=...) quantizes by clmoe's rule: the result is close to
    the float experts, the storage is smaller, and the format is reported."""
    rng = np.random.default_rng(3)
    E, D, F = 4, 64, 96
    w1, w3 = (rng.normal(size=(E, D, F)).astype(np.float32) * 0.2
              for _ in "ab")
    w2 = rng.normal(size=(E, F, D)).astype(np.float32) * 0.2
    wr = rng.normal(size=(D, E)).astype(np.float32)
    x = rng.normal(size=(21, D)).astype(np.float32)
    ref = clmoe.MoELayer(clmoe.Router(ctx, weight=wr, k=2),
                         clmoe.Experts(ctx, w1=w1, w2=w2, w3=w3))
    q = clmoe.Experts(ctx, w1=w1, w2=w2, w3=w3, dtype=dtype)
    assert q.dtype == dtype
    bits = {"fp8_e4m3": 8, "mxfp4": 4, "int8": 8, "int4": 4}[dtype]
    weights = 3 * E * D * F
    assert weights * bits / 8 <= q.weight_bytes <= weights * bits / 8 * 1.5
    y_ref, _ = ref(x)
    y, _ = clmoe.MoELayer(clmoe.Router(ctx, weight=wr, k=2), q)(x)
    tol = {"fp8_e4m3": 0.1, "mxfp4": 0.3, "int8": 0.02, "int4": 0.3}[dtype]
    assert rel_err(y, y_ref.astype(np.float64)) <= tol
    small = dict(w1=w1[:, :40], w2=w2[:, :, :40], w3=w3[:, :40], dtype=dtype)
    if bits == 8:  # any size
        assert clmoe.Experts(ctx, **small).d_model == 40
        return
    with pytest.raises(clmoe.Error) as e:  # MXFP4/I4 group 32 inputs
        clmoe.Experts(ctx, **small)
    assert "multiples of 32" in e.value.detail
