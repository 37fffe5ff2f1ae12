#!/usr/bin/env python3
"""Writes the safetensors fixtures under tests/data/safetensors/ that tests/io/test_safetensors.c
reads back, independently of mmm's writer.

Python stdlib only (json + struct): the official `safetensors` package is not installable here,
so this follows its serialize() rules by hand:
  - u64 little-endian header length, then compact JSON (no spaces, UTF-8 as is),
    "__metadata__" first (omitted when there is none), then the tensors in data order;
  - the JSON padded with spaces to a multiple of 8 bytes;
  - tensors sorted by decreasing dtype alignment (the order of the Rust Dtype enum, largest
    first), then by name, stored back to back.
Sharded checkpoints follow transformers: tensors fill shards in the given order (a shard is
closed when the next tensor would take it past the limit), files model-0000i-of-0000n.safetensors,
and model.safetensors.index.json = json.dumps(index, indent=2, sort_keys=True) + "\\n".

Run from the repository root:  python3 tools/reference/make_safetensors_fixtures.py
"""
import json
import os
import struct

OUT = os.path.join("tests", "data", "safetensors")

# position in the official Rust Dtype enum (declared in increasing alignment)
DTYPE_ORDER = {"BOOL": 0, "U8": 1, "I8": 2, "F8_E5M2": 3, "F8_E4M3": 4, "I16": 5, "U16": 6,
               "F16": 7, "BF16": 8, "I32": 9, "U32": 10, "F32": 11, "F64": 12, "I64": 13,
               "U64": 14}


def bf16_bytes(values):
    """bf16 is the top half of an fp32; the fixtures use values that need no rounding."""
    out = b""
    for v in values:
        bits = struct.unpack("<I", struct.pack("<f", v))[0]
        assert bits & 0xFFFF == 0, f"{v} is not exact in bf16"
        out += struct.pack("<H", bits >> 16)
    return out


def encode(dtype, values):
    if dtype == "BF16":
        return bf16_bytes(values)
    fmt = {"F32": "f", "F16": "e", "I32": "i", "I64": "q"}[dtype]
    data = struct.pack("<%d%s" % (len(values), fmt), *values)
    for v, back in zip(values, struct.unpack("<%d%s" % (len(values), fmt), data)):
        assert v == back, f"{v} is not exact in {dtype}"
    return data


def serialize(tensors, metadata):
    """tensors: {name: (dtype, shape, values)} -> the bytes of a .safetensors file."""
    order = sorted(tensors, key=lambda n: (-DTYPE_ORDER[tensors[n][0]], n.encode()))
    header, blobs, offset = {}, [], 0
    if metadata:
        header["__metadata__"] = metadata
    for name in order:
        dtype, shape, values = tensors[name]
        count = 1
        for d in shape:
            count *= d
        assert count == len(values), name
        blob = encode(dtype, values)
        header[name] = {"dtype": dtype, "shape": list(shape),
                        "data_offsets": [offset, offset + len(blob)]}
        offset += len(blob)
        blobs.append(blob)
    text = json.dumps(header, separators=(",", ":"), ensure_ascii=False).encode("utf-8")
    text += b" " * (-len(text) % 8)
    return struct.pack("<Q", len(text)) + text + b"".join(blobs)


def write(path, data):
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "wb") as f:
        f.write(data)
    print(f"{path}: {len(data)} bytes")


def nbytes(dtype, values):
    return len(values) * {"F32": 4, "F16": 2, "BF16": 2, "I32": 4, "I64": 8}[dtype]


def write_sharded(directory, tensors, metadata, max_shard_bytes):
    """tensors: a dict in insertion order, split like transformers' sharding."""
    shards, fill = [], 0
    for name, (dtype, _, values) in tensors.items():
        size = nbytes(dtype, values)
        if not shards or (fill > 0 and fill + size > max_shard_bytes):
            shards.append({})
            fill = 0
        shards[-1][name] = tensors[name]
        fill += size
    weight_map = {}
    for i, shard in enumerate(shards):
        fname = "model-%05d-of-%05d.safetensors" % (i + 1, len(shards))
        write(os.path.join(directory, fname), serialize(shard, metadata))
        weight_map.update({name: fname for name in shard})
    total = sum(nbytes(d, v) for d, _, v in tensors.values())
    index = {"metadata": {"total_size": total}, "weight_map": weight_map}
    text = json.dumps(index, indent=2, sort_keys=True) + "\n"
    write(os.path.join(directory, "model.safetensors.index.json"), text.encode("utf-8"))


def main():
    # values the C test checks; every one is exact in its dtype
    basic = {
        "f32": ("F32", [2, 3], [0.0, 1.0, -2.5, 3.25, 1024.0, -0.125]),
        "f16": ("F16", [4], [1.0, -2.0, 0.5, 65504.0]),
        "bf16": ("BF16", [2, 2], [1.0, -1.5, 3.0, 0.0078125]),
        "i32": ("I32", [3], [-7, 0, 2147483647]),
        "i64": ("I64", [2], [-9000000000, 42]),
        "scalar": ("F32", [], [7.5]),
        "empty": ("F32", [0, 4], []),
    }
    write(os.path.join(OUT, "basic.safetensors"), serialize(basic, {"format": "pt"}))

    sharded = {
        "layers.0.w": ("F32", [2, 3], [float(i) for i in range(6)]),
        "layers.0.b": ("F32", [3], [0.5, -0.5, 1.5]),
        "layers.1.w": ("BF16", [2, 3], [float(-i) for i in range(6)]),
        "layers.1.b": ("F16", [3], [0.25, 0.75, -8.0]),
        "norm": ("F32", [5], [1.0] * 5),
        "step": ("I64", [1], [123]),
    }
    write_sharded(os.path.join(OUT, "sharded"), sharded, {"format": "pt"}, max_shard_bytes=32)


if __name__ == "__main__":
    main()
