"""ctx.score_attention against a numpy reference of the formula in docs/policies.md."""
import numpy as np
import pytest

import clmoe
from st_files import bf16_bits, bf16_values


def numpy_importance(A, causal, offsets):
    H, T, _ = A.shape
    out = np.zeros(T)
    for b in range(len(offsets) - 1):
        s0, s1 = offsets[b], offsets[b + 1]
        for j in range(s0, s1):
            q0 = j if causal else s0
            out[j] = A[:, q0:s1, j].sum() / H / (s1 - q0)
        if s1 > s0:  # sequences may be empty
            out[s0:s1] /= out[s0:s1].max()
    return out


def softmax_probs(q, k, causal, offsets):
    """Softmax rows of q [H, T, dh] against k with as many heads."""
    return gqa_probs(q, k, causal, offsets)[0]


@pytest.mark.parametrize("causal", [False, True])
@pytest.mark.parametrize("lengths", [[40], [1, 5, 30]])
def test_both_paths_match_numpy(ctx, causal, lengths):
    rng = np.random.default_rng(len(lengths) + causal)
    offsets = np.concatenate([[0], np.cumsum(lengths)]).astype(np.int32)
    H, T, dh = 3, int(offsets[-1]), 32
    q = rng.normal(size=(H, T, dh)).astype(np.float32)
    k = rng.normal(size=(H, T, dh)).astype(np.float32)
    A = softmax_probs(q, k, causal, offsets)
    ref = numpy_importance(A, causal, offsets)
    so = offsets if len(lengths) > 1 else None
    fused = ctx.score_attention(q=q, k=k, causal=causal, seq_offsets=so)
    probs = ctx.score_attention(probs=A.astype(np.float32), causal=causal,
                                seq_offsets=so)
    np.testing.assert_allclose(fused, ref, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(probs, ref, rtol=1e-5, atol=1e-6)


def test_score_errors(ctx):
    A = np.zeros((2, 6, 6), np.float32)
    A[1, 2, 4] = np.nan
    with pytest.raises(clmoe.Error) as e:
        ctx.score_attention(probs=A)
    assert e.value.status_name == "CLMOE_ERROR_NONFINITE_INPUT"
    with pytest.raises(clmoe.Error) as e:
        ctx.score_attention(probs=np.zeros((2, 6, 5), np.float32))
    assert e.value.status_name == "CLMOE_ERROR_SHAPE_MISMATCH"
    with pytest.raises(clmoe.Error) as e:
        ctx.score_attention(probs=np.ones((1, 6, 6), np.float32),
                            seq_offsets=[0, 4, 3, 6])
    assert e.value.status_name == "CLMOE_ERROR_INVALID_ARGUMENT"


def gqa_probs(q, k, causal, offsets):
    """Softmax rows of q [H, T, dh] against k [H_kv, T, dh] (query head h
    uses key head h // (H / H_kv)), and each row's log-sum-exp."""
    H, T, dh = q.shape
    kk = np.repeat(k.astype(np.float64), H // k.shape[0], axis=0)
    logits = np.einsum("hid,hjd->hij", q.astype(np.float64), kk) / np.sqrt(dh)
    mask = np.zeros((T, T), bool)
    for b in range(len(offsets) - 1):
        s0, s1 = offsets[b], offsets[b + 1]
        mask[s0:s1, s0:s1] = True
    if causal:
        mask &= np.tril(np.ones((T, T), bool))
    logits = np.where(mask, logits, -np.inf)
    m = logits.max(-1, keepdims=True)
    lse = (m + np.log(np.exp(logits - m).sum(-1, keepdims=True)))[..., 0]
    return np.exp(logits - lse[..., None]), lse


@pytest.mark.parametrize("layout", ["hsd", "shd"])
@pytest.mark.parametrize("ratio", [1, 2, 4, 8])
@pytest.mark.parametrize("causal", [False, True])
@pytest.mark.parametrize("given_lse", [False, True])
def test_fused_layouts_gqa_lse(ctx, layout, ratio, causal, given_lse):
    rng = np.random.default_rng(ratio * 4 + causal * 2 + given_lse)
    lengths = [1, 7, 26]  # a single-token sequence, T not a tile multiple
    offsets = np.concatenate([[0], np.cumsum(lengths)]).astype(np.int32)
    H, T, dh = 8, int(offsets[-1]), 20  # dh not a multiple of 16
    q = rng.normal(size=(H, T, dh)).astype(np.float32)
    k = rng.normal(size=(H // ratio, T, dh)).astype(np.float32)
    A, lse = gqa_probs(q, k, causal, offsets)
    ref = numpy_importance(A, causal, offsets)
    if layout == "shd":
        q, k = q.transpose(1, 0, 2).copy(), k.transpose(1, 0, 2).copy()
    got = ctx.score_attention(q=q, k=k, causal=causal, seq_offsets=offsets,
                              layout=layout,
                              lse=lse.astype(np.float32) if given_lse else None,
                              check_lse=given_lse)
    np.testing.assert_allclose(got, ref, rtol=1e-5, atol=1e-6)


def test_fused_lse_errors(ctx):
    rng = np.random.default_rng(1)
    H, T, dh = 2, 9, 8
    q = rng.normal(size=(H, T, dh)).astype(np.float32)
    k = rng.normal(size=(H, T, dh)).astype(np.float32)
    _, lse = gqa_probs(q, k, True, [0, T])
    lse = lse.astype(np.float32)
    with pytest.raises(clmoe.Error) as e:  # wrong shape
        ctx.score_attention(q=q, k=k, causal=True, lse=lse[:, :-1].copy())
    assert e.value.status_name == "CLMOE_ERROR_SHAPE_MISMATCH"
    bad = lse.copy()
    bad[1, 4] = np.nan
    with pytest.raises(clmoe.Error) as e:
        ctx.score_attention(q=q, k=k, causal=True, lse=bad)
    assert e.value.status_name == "CLMOE_ERROR_NONFINITE_INPUT"
    assert "lse[1, 4]" in e.value.detail
    off = lse.copy()
    off[0, 3] += 0.5  # rows would not sum to 1
    ctx.score_attention(q=q, k=k, causal=True, lse=off)  # not checked
    with pytest.raises(clmoe.Error) as e:
        ctx.score_attention(q=q, k=k, causal=True, lse=off, check_lse=True)
    assert e.value.status_name == "CLMOE_ERROR_INVALID_ARGUMENT"
    assert "lse[0, 3]" in e.value.detail
    with pytest.raises(clmoe.Error) as e:  # 3 key heads do not divide 2
        ctx.score_attention(q=q, k=np.zeros((3, T, dh), np.float32))
    assert e.value.status_name == "CLMOE_ERROR_SHAPE_MISMATCH"
    with pytest.raises(clmoe.Error) as e:  # lse is for the fused path
        ctx.score_attention(probs=np.ones((H, T, T), np.float32), lse=lse)
    assert e.value.status_name == "CLMOE_ERROR_INVALID_ARGUMENT"


@pytest.mark.parametrize("dtype", ["f16", "bf16"])
@pytest.mark.parametrize("causal", [False, True])
def test_fused_16bit_qk(ctx, dtype, causal):
    """16-bit q and k are widened exactly: the result equals the reference
    computed from the same 16-bit values."""
    rng = np.random.default_rng(7 + causal)
    offsets = np.array([0, 1, 19, 37], np.int32)
    H, Hkv, T, dh = 4, 2, 37, 24
    q32 = rng.normal(size=(T, H, dh)).astype(np.float32)
    k32 = rng.normal(size=(T, Hkv, dh)).astype(np.float32)
    if dtype == "f16":
        q, k = q32.astype(np.float16), k32.astype(np.float16)
        qv, kv = q.astype(np.float32), k.astype(np.float32)
        kwargs = {}
    else:
        q, k = bf16_bits(q32), bf16_bits(k32)
        qv, kv = bf16_values(q), bf16_values(k)
        kwargs = {"qk_dtype": "bf16"}
    A, _ = gqa_probs(qv.transpose(1, 0, 2), kv.transpose(1, 0, 2), causal,
                     offsets)
    ref = numpy_importance(A, causal, offsets)
    got = ctx.score_attention(q=q, k=k, causal=causal, seq_offsets=offsets,
                              layout="shd", **kwargs)
    np.testing.assert_allclose(got, ref, rtol=1e-5, atol=1e-6)
    with pytest.raises(clmoe.Error) as e:  # uint16 needs qk_dtype="bf16"
        ctx.score_attention(q=bf16_bits(q32), k=bf16_bits(k32), layout="shd")
    assert e.value.status_name == "CLMOE_ERROR_DTYPE_MISMATCH"


@pytest.mark.parametrize("given_lse", [False, True])
def test_fused_padded_batch(ctx, given_lse):
    """q [B, S, H, dh] from a batched attention kernel, with its lse
    [B, H, S]: B sequences of S tokens."""
    rng = np.random.default_rng(11 + given_lse)
    B, S, H, Hkv, dh = 3, 11, 4, 1, 16
    T = B * S
    q = rng.normal(size=(B, S, H, dh)).astype(np.float32)
    k = rng.normal(size=(B, S, Hkv, dh)).astype(np.float32)
    offsets = np.arange(B + 1, dtype=np.int32) * S
    qh = q.reshape(T, H, dh).transpose(1, 0, 2)
    kh = k.reshape(T, Hkv, dh).transpose(1, 0, 2)
    A, lse = gqa_probs(qh, kh, True, offsets)
    ref = numpy_importance(A, True, offsets)
    lse_bhs = lse.reshape(H, B, S).transpose(1, 0, 2).astype(np.float32)
    got = ctx.score_attention(q=q, k=k, causal=True, layout="shd",
                              lse=lse_bhs if given_lse else None,
                              check_lse=given_lse)
    np.testing.assert_allclose(got, ref, rtol=1e-5, atol=1e-6)


def test_fused_empty_sequences(ctx):
    """Varlen offsets may repeat (empty sequences); one-token ones too."""
    rng = np.random.default_rng(5)
    offsets = np.array([0, 0, 1, 9, 9, 10, 29], np.int32)
    H, T, dh = 2, 29, 8
    q = rng.normal(size=(H, T, dh)).astype(np.float32)
    k = rng.normal(size=(H, T, dh)).astype(np.float32)
    for causal in (False, True):
        A, _ = gqa_probs(q, k, causal, offsets)
        ref = numpy_importance(A, causal, offsets)
        got = ctx.score_attention(q=q, k=k, causal=causal, seq_offsets=offsets)
        np.testing.assert_allclose(got, ref, rtol=1e-5, atol=1e-6)
        again = ctx.score_attention(q=q, k=k, causal=causal,
                                    seq_offsets=offsets)
        assert got.tobytes() == again.tobytes()  # bitwise, run to run
