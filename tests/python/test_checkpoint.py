"""clmoe.Checkpoint over safetensors files written here by the test's own
writer (header layout from the format's definition), against the numpy
arrays they were written from."""
import json
import struct

import numpy as np
import pytest

import clmoe
from st_files import bf16_bits, write_safetensors

@pytest.fixture
def arrays():
    rng = np.random.default_rng(3)
    w = rng.normal(size=(4, 6)).astype(np.float32)
    return {"model.layers.0.mlp.gate.weight": w,
            "model.layers.0.mlp.experts.0.w1.weight": ("BF16", bf16_bits(w)),
            "half": rng.normal(size=(3,)).astype(np.float16),
            "steps": np.arange(5, dtype=np.int64),
            "empty": np.zeros((0, 4), np.float32)}


def test_list_and_read(tmp_path, arrays):
    write_safetensors(tmp_path / "m.safetensors", arrays, pad=3)
    with clmoe.Checkpoint(tmp_path / "m.safetensors") as ck:
        listed = ck.tensors()
        assert [n for n, _, _ in listed] == sorted(arrays)
        kinds = {n: (d, s) for n, d, s in listed}
        assert kinds["half"] == ("F16", (3,))
        assert kinds["model.layers.0.mlp.experts.0.w1.weight"] == ("BF16",
                                                                  (4, 6))
        assert ck.config is None and ck.num_files == 1
        w = arrays["model.layers.0.mlp.gate.weight"]
        np.testing.assert_array_equal(
            ck.read("model.layers.0.mlp.gate.weight"), w)
        bits = arrays["model.layers.0.mlp.experts.0.w1.weight"][1]
        got = ck.read("model.layers.0.mlp.experts.0.w1.weight")
        np.testing.assert_array_equal(
            got, (bits.astype(np.uint32) << 16).view(np.float32))
        # f32 -> bf16 rounds to nearest even, like the numpy reference.
        np.testing.assert_array_equal(
            ck.read("model.layers.0.mlp.gate.weight", "bf16"), bf16_bits(w))
        np.testing.assert_array_equal(ck.read("half", "f16"), arrays["half"])
        np.testing.assert_array_equal(ck.read("half"),
                                      arrays["half"].astype(np.float32))
        assert ck.read("empty").shape == (0, 4)
        with pytest.raises(clmoe.Error) as e:
            ck.read("steps")
        assert e.value.status_name == "CLMOE_ERROR_UNSUPPORTED"
        assert "I64" in e.value.detail
        with pytest.raises(clmoe.Error) as e:
            ck.read("model.layers.0.mlp.gate.weigth")
        assert e.value.status_name == "CLMOE_ERROR_NOT_FOUND"
        assert 'nearest: "model.layers.0.mlp.gate.weight"' in e.value.detail


def test_sharded_directory(tmp_path, arrays):
    names = sorted(n for n in arrays if n != "steps")
    weight_map = {}
    for i, chunk in enumerate((names[:1], names[1:3], names[3:])):
        shard = f"model-{i + 1:05d}-of-00003.safetensors"
        write_safetensors(tmp_path / shard, {n: arrays[n] for n in chunk})
        weight_map.update({n: shard for n in chunk})
    (tmp_path / "model.safetensors.index.json").write_text(
        json.dumps({"metadata": {}, "weight_map": weight_map}))
    (tmp_path / "config.json").write_text(
        json.dumps({"model_type": "olmoe", "num_experts": 8}))
    with clmoe.Checkpoint(tmp_path) as ck:
        assert ck.num_files == 3
        assert ck.config == {"model_type": "olmoe", "num_experts": 8}
        assert [n for n, _, _ in ck.tensors()] == names
        np.testing.assert_array_equal(ck.read("half", "f16"), arrays["half"])
    (tmp_path / "model-00002-of-00003.safetensors").unlink()
    with pytest.raises(clmoe.Error) as e:
        clmoe.Checkpoint(tmp_path)
    assert e.value.status_name == "CLMOE_ERROR_NOT_FOUND"
    assert "model-00002-of-00003.safetensors" in e.value.detail


@pytest.mark.parametrize("header,status,word", [
    (b"{nope", "CLMOE_ERROR_BAD_FILE", "not valid JSON"),
    (b'{"a": {"dtype": "F32", "shape": [2], "data_offsets": [0, 4]}}',
     "CLMOE_ERROR_BAD_FILE", "needs 8"),
    (b'{"a": {"dtype": "X9", "shape": [1], "data_offsets": [0, 4]}}',
     "CLMOE_ERROR_BAD_FILE", "unknown dtype"),
    (b'{"a": {"dtype": "F32", "shape": [1], "data_offsets": [0, 4]}, '
     b'"a": {"dtype": "F32", "shape": [1], "data_offsets": [4, 8]}}',
     "CLMOE_ERROR_BAD_FILE", "duplicate"),
    (b'{"a": {"dtype": "F32", "shape": [1], "data_offsets": [0, 4000]}}',
     "CLMOE_ERROR_BAD_FILE", "not inside"),
])
def test_malformed(tmp_path, header, status, word):
    p = tmp_path / "bad.safetensors"
    p.write_bytes(struct.pack("<Q", len(header)) + header + b"\0" * 8)
    with pytest.raises(clmoe.Error) as e:
        clmoe.Checkpoint(p)
    assert e.value.status_name == status and word in e.value.detail


def test_truncated_and_missing(tmp_path):
    p = tmp_path / "short.safetensors"
    p.write_bytes(struct.pack("<Q", 1000) + b"{}")
    with pytest.raises(clmoe.Error) as e:
        clmoe.Checkpoint(p)
    assert e.value.status_name == "CLMOE_ERROR_BAD_FILE"
    with pytest.raises(clmoe.Error) as e:
        clmoe.Checkpoint(tmp_path / "absent.safetensors")
    assert e.value.status_name == "CLMOE_ERROR_NOT_FOUND"
