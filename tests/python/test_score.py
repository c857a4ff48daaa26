"""ctx.score_attention against a numpy reference of the formula in docs/policies.md."""
import numpy as np
import pytest

import clmoe


def numpy_importance(A, causal, offsets):
    H, T, _ = A.shape
    out = np.zeros(T)
    for b in range(len(offsets) - 1):
        s0, s1 = offsets[b], offsets[b + 1]
        for j in range(s0, s1):
            q0 = j if causal else s0
            out[j] = A[:, q0:s1, j].sum() / H / (s1 - q0)
        out[s0:s1] /= out[s0:s1].max()
    return out


def softmax_probs(q, k, causal, offsets):
    H, T, dh = q.shape
    logits = np.einsum("hid,hjd->hij", q.astype(np.float64), k) / np.sqrt(dh)
    mask = np.zeros((T, T), bool)
    for b in range(len(offsets) - 1):
        s0, s1 = offsets[b], offsets[b + 1]
        mask[s0:s1, s0:s1] = True
    if causal:
        mask &= np.tril(np.ones((T, T), bool))
    logits = np.where(mask, logits, -np.inf)
    a = np.exp(logits - logits.max(-1, keepdims=True))
    return a / a.sum(-1, keepdims=True)


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
                            seq_offsets=[0, 3, 3, 6])
    assert e.value.status_name == "CLMOE_ERROR_INVALID_ARGUMENT"
