"""Minimal safetensors reader/writer for numpy arrays (json + struct + numpy, no `safetensors`).

Writes by the same rules as make_safetensors_fixtures.py: u64 header length, compact JSON padded
with spaces to 8 bytes, "__metadata__" first, tensors sorted by decreasing dtype alignment then
name, stored back to back.
"""
import json
import struct

import numpy as np

from make_safetensors_fixtures import DTYPE_ORDER

NUMPY_OF = {"F64": "<f8", "F32": "<f4", "F16": "<f2", "I64": "<i8", "I32": "<i4", "U8": "u1",
            "BOOL": "?"}
DTYPE_OF = {np.dtype(v): k for k, v in NUMPY_OF.items()}


def write(path, tensors, metadata=None):
    """tensors: {name: numpy array}; each array is stored in its own dtype."""
    arrays = {name: np.ascontiguousarray(a) for name, a in tensors.items()}
    dtypes = {name: DTYPE_OF[a.dtype] for name, a in arrays.items()}
    order = sorted(arrays, key=lambda n: (-DTYPE_ORDER[dtypes[n]], n.encode()))
    header, blobs, offset = {}, [], 0
    if metadata:
        header["__metadata__"] = metadata
    for name in order:
        blob = arrays[name].tobytes()
        header[name] = {"dtype": dtypes[name], "shape": list(arrays[name].shape),
                        "data_offsets": [offset, offset + len(blob)]}
        offset += len(blob)
        blobs.append(blob)
    text = json.dumps(header, separators=(",", ":"), ensure_ascii=False).encode("utf-8")
    text += b" " * (-len(text) % 8)
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(text)) + text + b"".join(blobs))


def read(path):
    """-> ({name: numpy array}, metadata or None); checks offsets tile the data exactly."""
    with open(path, "rb") as f:
        data = f.read()
    (n,) = struct.unpack("<Q", data[:8])
    header = json.loads(data[8:8 + n].decode("utf-8"))
    metadata = header.pop("__metadata__", None)
    body = data[8 + n:]
    out, spans = {}, []
    for name, info in header.items():
        begin, end = info["data_offsets"]
        dt = np.dtype(NUMPY_OF[info["dtype"]])
        count = int(np.prod(info["shape"], dtype=np.int64))
        assert end - begin == count * dt.itemsize, f"{path}: tensor '{name}': size mismatch"
        out[name] = np.frombuffer(body[begin:end], dtype=dt).reshape(info["shape"])
        spans.append((begin, end))
    spans.sort()
    pos = 0
    for begin, end in spans:
        assert begin == pos, f"{path}: gap or overlap in the data at byte {begin}"
        pos = end
    assert pos == len(body), f"{path}: {len(body) - pos} trailing bytes"
    return out, metadata
