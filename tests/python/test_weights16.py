"""16-bit storage: the library's conversions against independent numpy
ones (bit for bit), and MoE layers with float16 / bfloat16 weights against a
numpy forward from the same rounded weights."""
import numpy as np
import pytest

import clmoe
from clmoe import core
from test_layer import numpy_moe


def numpy_bf16_bits(a):
    """float32 -> bfloat16 bits, round to nearest even, written here from the
    definition: keep the upper 16 bits after adding 0x7fff + the kept lsb;
    NaN keeps its sign and upper payload with the quiet bit set."""
    u = np.asarray(a, np.float32).view(np.uint32).astype(np.uint64)
    rounded = ((u + 0x7FFF + ((u >> 16) & 1)) >> 16).astype(np.uint16)
    nan = np.isnan(np.asarray(a, np.float32))
    return np.where(nan, ((u >> 16) | 0x40).astype(np.uint16), rounded)


def numpy_bf16_value(bits):
    return (np.asarray(bits, np.uint16).astype(np.uint32) << 16).view(
        np.float32)


EDGES = np.array([
    0x3F808000, 0x3F818000, 0xBF808000,  # ties: to even (down), up, negative
    0x3F807FFF, 0x3F808001,              # just below / above a tie
    0x00000001, 0x00008000, 0x00018000, 0x807FFFFF,  # subnormals
    0x7FC00001, 0x7F800001, 0xFFC12345,  # NaN payloads (one would round to Inf)
    0x7F800000, 0xFF800000, 0x80000000, 0x00000000,  # +-Inf, -0, +0
    0x7F7F0000, 0x477FE000,              # largest exact values
], np.uint32).view(np.float32)


def test_to_bf16_bits_matches_numpy():
    rng = np.random.default_rng(3)
    rand = (rng.normal(size=100000) * np.exp2(rng.integers(-130, 120, 100000))
            ).astype(np.float32)
    values = np.concatenate([EDGES, rand])
    got = clmoe.to_bf16_bits(values)
    np.testing.assert_array_equal(got, numpy_bf16_bits(values))
    back = clmoe.from_bf16_bits(got)
    np.testing.assert_array_equal(back.view(np.uint32),
                                  numpy_bf16_value(got).view(np.uint32))
    assert np.isnan(clmoe.from_bf16_bits(clmoe.to_bf16_bits(
        np.array([np.nan], np.float32)))).all()


def test_bf16_overflow_rounds_to_inf():
    """As IEEE, numpy and torch: 3.4e38 rounds up to +Inf in bfloat16; the
    strict flag keeps the 0.3 error."""
    bits = clmoe.to_bf16_bits(np.array([1.0, 3.4028235e38, -3.4e38],
                                       np.float32))
    assert bits[1] == 0x7F80 and bits[2] == 0xFF80
    with pytest.raises(clmoe.Error) as e:
        clmoe.to_bf16_bits(np.array([1.0, 3.4028235e38], np.float32),
                           strict=True)
    assert "element 1" in e.value.detail


def test_f16_conversion_matches_numpy():
    rng = np.random.default_rng(4)
    rand = (rng.normal(size=100000) * np.exp2(rng.integers(-26, 16, 100000))
            ).astype(np.float32)
    rand = rand[np.abs(rand) < 65504]
    finite = np.concatenate([EDGES[np.abs(EDGES) < 65504], rand,
                             np.array([65504, 65519.99, -65504, 5.96e-8,
                                       2.98e-8, 2.99e-8, np.inf, -np.inf],
                                      np.float32)])
    got = core._convert(core.F32, finite, core.F16, np.float16)
    want = finite.astype(np.float16)
    np.testing.assert_array_equal(got.view(np.uint16), want.view(np.uint16))
    nan = core._convert(core.F32, EDGES[np.isnan(EDGES)], core.F16,
                        np.float16)
    assert np.isnan(nan).all()
    widened = core._convert(core.F16, want, core.F32, np.float32)
    np.testing.assert_array_equal(widened, want.astype(np.float32))
    big = np.array([0, 65520, -1e6], np.float32)
    with np.errstate(over="ignore"):  # +-Inf, as numpy
        want = big.astype(np.float16)
    np.testing.assert_array_equal(
        core._convert(core.F32, big, core.F16, np.float16).view(np.uint16),
        want.view(np.uint16))
    with pytest.raises(clmoe.Error) as e:
        core._convert(core.F32, big, core.F16, np.float16, strict=True)
    assert "element 1" in e.value.detail


def rounded(w, dtype):
    if dtype == "f16":
        return w.astype(np.float16).astype(np.float32)
    if dtype == "bf16":
        return numpy_bf16_value(numpy_bf16_bits(w))
    return w


@pytest.mark.parametrize("given", ["f32", "native"])
@pytest.mark.parametrize("dtype", ["f16", "bf16", "f32"])
@pytest.mark.parametrize("activation", ["swiglu", "relu"])
def test_layer_with_16bit_weights(ctx, dtype, given, activation):
    rng = np.random.default_rng(21)
    T, d, f, E = 45, 36, 44, 8
    x = (np.round(rng.normal(size=(T, d)) * 8) / 8).astype(np.float32)
    wr = (np.round(rng.normal(size=(d, E)) * 2) / 8).astype(np.float32)
    gated = activation == "swiglu"
    w = {n: (rng.normal(size=s) * 0.2).astype(np.float32)
         for n, s in (("w1", (E, d, f)), ("w2", (E, f, d)),
                      ("w3", (E, d, f)))}
    if not gated:
        del w["w3"]
    r = {n: rounded(v, dtype) for n, v in w.items()}
    if given == "native" and dtype == "f16":
        w = {n: v.astype(np.float16) for n, v in w.items()}
    elif given == "native" and dtype == "bf16":
        w = {n: numpy_bf16_bits(v) for n, v in w.items()}
    experts = clmoe.Experts(ctx, activation=activation, dtype=dtype, **w)
    assert experts.dtype == dtype
    assert experts.path == ("grouped" if dtype != "f32" else experts.path)
    router = clmoe.Router(ctx, weight=wr, policy="top_p", p=0.5)
    y, routing = clmoe.MoELayer(router, experts)(x)
    ref, rr = numpy_moe(x, wr, r["w1"], r.get("w3"), r["w2"], activation,
                        "top_p", p=0.5)
    np.testing.assert_array_equal(routing.experts, rr["experts"])
    assert np.abs(y - ref).max() <= 1e-5 * np.abs(ref).max()


def test_16bit_weights_take_half_the_memory(ctx):
    w = np.ones((4, 32, 48), np.float32)
    sizes = {dt: clmoe.Experts(ctx, w1=w, w2=w.transpose(0, 2, 1),
                               activation="relu", dtype=dt).weight_bytes
             for dt in ("f32", "f16", "bf16")}
    assert sizes["f16"] * 2 == sizes["f32"] == sizes["bf16"] * 2


def test_16bit_weight_errors(ctx):
    w = np.ones((2, 8, 12), np.float32)
    w2 = np.ones((2, 12, 8), np.float32)
    with pytest.raises(clmoe.Error) as e:
        clmoe.Experts(ctx, w1=w, w2=w2, activation="relu", dtype="f16",
                      path="clblast")
    assert e.value.status_name == "CLMOE_ERROR_UNSUPPORTED"
    big = w.copy()
    big[1, 2, 3] = 1e6
    with pytest.raises(clmoe.Error) as e:
        clmoe.Experts(ctx, w1=big, w2=w2, activation="relu", dtype="f16")
    assert "w1[" in e.value.detail and "overflows" in e.value.detail
    with pytest.raises(clmoe.Error):
        clmoe.Experts(ctx, w1=w, w2=w2, activation="relu", dtype="f8")


@pytest.mark.parametrize("dtype", ["f16", "bf16"])
def test_router_weight_dtype(ctx, dtype):
    rng = np.random.default_rng(8)
    x = rng.normal(size=(64, 16)).astype(np.float32)
    wr = rng.normal(size=(16, 6)).astype(np.float32)
    a = clmoe.Router(ctx, weight=wr, dtype=dtype).route(x)
    b = clmoe.Router(ctx, weight=rounded(wr, dtype)).route(x)
    native = wr.astype(np.float16) if dtype == "f16" else numpy_bf16_bits(wr)
    c = clmoe.Router(ctx, weight=native).route(x)
    for r in (a, c):
        np.testing.assert_array_equal(r.experts, b.experts)
        np.testing.assert_array_equal(r.gates, b.gates)


@pytest.mark.parametrize("io", ["f16", "bf16"])
def test_layer_with_16bit_tokens(ctx, io):
    """y comes back in x's dtype, the correctly rounded value of the float32
    result (within 1e-5 relative)."""
    rng = np.random.default_rng(5)
    T, d, f, E = 40, 32, 24, 6
    x = (np.round(rng.normal(size=(T, d)) * 8) / 8).astype(np.float32)
    wr = (np.round(rng.normal(size=(d, E)) * 2) / 8).astype(np.float32)
    w1 = (rng.normal(size=(E, d, f)) * 0.2).astype(np.float32)
    w2 = (rng.normal(size=(E, f, d)) * 0.2).astype(np.float32)
    layer = clmoe.MoELayer(clmoe.Router(ctx, weight=wr),
                           clmoe.Experts(ctx, w1=w1, w2=w2, activation="relu",
                                         dtype="bf16"))
    if io == "f16":
        y, _ = layer(x.astype(np.float16))
        assert y.dtype == np.float16
        got = y.astype(np.float32)
    else:
        y, _ = layer(numpy_bf16_bits(x), io_dtype="bf16")
        assert y.dtype == np.uint16
        got = numpy_bf16_value(y)
    ref, _ = numpy_moe(x, wr, rounded(w1, "bf16"), None, rounded(w2, "bf16"),
                       "relu", "top_k", k=2)
    tol = 1e-5 * np.abs(ref).max()
    lo = rounded((ref - tol).astype(np.float32), io)
    hi = rounded((ref + tol).astype(np.float32), io)
    assert np.all((got >= lo) & (got <= hi))
    with pytest.raises(clmoe.Error):
        layer(numpy_bf16_bits(x))  # uint16 without io_dtype


def test_pyopencl_16bit_tokens_in_place(ctx):
    """A pyopencl float16 array in gives a pyopencl float16 array out, equal
    to the numpy path; bfloat16 bits travel as uint16 with io_dtype."""
    cl = pytest.importorskip("pyopencl")
    import pyopencl.array as cla
    clctx = cl.create_some_context(interactive=False)
    queue = cl.CommandQueue(clctx)
    c2 = clmoe.Context(cl_context=clctx, queue=queue)
    rng = np.random.default_rng(9)
    E, d, f = 4, 16, 24
    w1 = (rng.normal(size=(E, d, f)) * 0.3).astype(np.float32)
    w2 = (rng.normal(size=(E, f, d)) * 0.3).astype(np.float32)
    wr = rng.normal(size=(d, E)).astype(np.float32)
    x = rng.normal(size=(30, d)).astype(np.float16)

    def layer(c):
        return clmoe.MoELayer(clmoe.Router(c, weight=wr),
                              clmoe.Experts(c, w1=w1, w2=w2, activation="relu",
                                            dtype="bf16"))
    y_host, _ = layer(ctx)(x)
    y_dev, _ = layer(c2)(cla.to_device(queue, x))
    assert isinstance(y_dev, cla.Array) and y_dev.dtype == np.float16
    np.testing.assert_array_equal(y_dev.get(), y_host)
    xb = numpy_bf16_bits(x.astype(np.float32))
    yb_host, _ = layer(ctx)(xb, io_dtype="bf16")
    yb_dev, _ = layer(c2)(cla.to_device(queue, xb), io_dtype="bf16")
    assert yb_dev.dtype == np.uint16
    np.testing.assert_array_equal(yb_dev.get(), yb_host)
