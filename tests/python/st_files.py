"""The Python tests' own bfloat16 rounding and safetensors writer (the
format's layout: 8-byte little-endian header length, JSON header, data),
independent of the library's."""
import json
import struct

import numpy as np

ST_DTYPES = {np.dtype(np.float32): "F32", np.dtype(np.float16): "F16",
             np.dtype(np.int64): "I64"}


def bf16_bits(a):
    """float32 -> bfloat16 bits, round to nearest even (finite inputs)."""
    u = np.asarray(a, np.float32).view(np.uint32).astype(np.uint64)
    return ((u + 0x7FFF + ((u >> 16) & 1)) >> 16).astype(np.uint16)


def bf16_values(bits):
    return (bits.astype(np.uint32) << 16).view(np.float32)


def write_safetensors(path, tensors, pad=0, metadata=True):
    """tensors: {name: array, or (dtype, array) e.g. ("BF16", uint16 bits)};
    `pad` bytes before the first tensor (unaligned data)."""
    header = {"__metadata__": {"format": "pt"}} if metadata else {}
    blobs, offset = [b"\0" * pad], pad
    for name, value in tensors.items():
        dtype, a = value if isinstance(value, tuple) else (
            ST_DTYPES[value.dtype], value)
        raw = np.ascontiguousarray(a).tobytes()
        header[name] = {"dtype": dtype, "shape": list(a.shape),
                        "data_offsets": [offset, offset + len(raw)]}
        blobs.append(raw)
        offset += len(raw)
    text = json.dumps(header).encode()
    path.write_bytes(struct.pack("<Q", len(text)) + text + b"".join(blobs))


def write_model_dir(directory, stored, config, shards=1):
    """A Hugging Face model directory: config.json and `stored` (as for
    write_safetensors) in one file or `shards` files with an index."""
    directory.mkdir(exist_ok=True)
    (directory / "config.json").write_text(json.dumps(config))
    if shards == 1:
        write_safetensors(directory / "model.safetensors", stored)
        return directory
    names = sorted(stored)
    weight_map = {}
    for s in range(shards):
        shard = f"model-{s + 1:05d}-of-{shards:05d}.safetensors"
        part = names[s::shards]
        write_safetensors(directory / shard, {n: stored[n] for n in part})
        weight_map.update({n: shard for n in part})
    (directory / "model.safetensors.index.json").write_text(
        json.dumps({"metadata": {}, "weight_map": weight_map}))
    return directory
