"""Read a PyTorch ``state_dict`` checkpoint into numpy arrays, without torch and without running code.

A ``.pth`` file is a pickle; unpickling it normally can execute arbitrary code. This reader only lets the
pickle rebuild what a state dict consists of (an ``OrderedDict`` of tensors) and refuses every other global.
Both of torch's on-disk layouts are supported: the legacy one (a chain of pickles followed by raw storages)
and the zip one (``data.pkl`` plus one file per storage).
"""

from __future__ import annotations

import io
import pickle
import struct
import zipfile
from collections import OrderedDict
from dataclasses import dataclass
from pathlib import Path

import numpy as np

_LEGACY_MAGIC = 0x1950A86A20F9469CFC6C

_STORAGE_DTYPES = {
    "FloatStorage": np.float32,
    "DoubleStorage": np.float64,
    "HalfStorage": np.float16,
    "LongStorage": np.int64,
    "IntStorage": np.int32,
    "ShortStorage": np.int16,
    "CharStorage": np.int8,
    "ByteStorage": np.uint8,
    "BoolStorage": np.bool_,
}


class CheckpointError(ValueError):
    """The file is not a plain tensor checkpoint (or tries to run code)."""


@dataclass(frozen=True)
class _StorageType:
    dtype: type


@dataclass(frozen=True)
class _TensorRef:
    """A tensor whose storage bytes have not been read yet."""

    storage_key: str
    offset: int
    shape: tuple[int, ...]
    stride: tuple[int, ...]


def _rebuild_tensor(storage_key, storage_offset, size, stride, *_ignored) -> _TensorRef:
    return _TensorRef(storage_key, int(storage_offset), tuple(size), tuple(stride))


def _rebuild_parameter(data, *_ignored):
    return data


class _RestrictedUnpickler(pickle.Unpickler):
    def __init__(self, file, storages: dict[str, tuple[np.dtype, int]]):
        super().__init__(file)
        self._storages = storages

    def find_class(self, module: str, name: str):
        if (module, name) == ("collections", "OrderedDict"):
            return OrderedDict
        if (module, name) == ("torch._utils", "_rebuild_tensor_v2"):
            return _rebuild_tensor
        if (module, name) == ("torch._utils", "_rebuild_parameter"):
            return _rebuild_parameter
        if module == "torch" and name in _STORAGE_DTYPES:
            return _StorageType(_STORAGE_DTYPES[name])
        raise CheckpointError(f"checkpoint refers to {module}.{name}, which a weights file never needs")

    def persistent_load(self, saved_id):
        kind, storage_type, key, _location, numel = saved_id[:5]
        if kind != "storage" or not isinstance(storage_type, _StorageType):
            raise CheckpointError(f"unsupported persistent object {kind!r}")
        self._storages[str(key)] = (np.dtype(storage_type.dtype), int(numel))
        return str(key)


def _tensor(ref: _TensorRef, flat: np.ndarray) -> np.ndarray:
    """The tensor's elements, gathered by index arithmetic with every index checked against the storage: a crafted
    shape, stride or offset is refused instead of reading memory beyond the storage (as ``as_strided`` would)."""
    if len(ref.shape) != len(ref.stride):
        raise CheckpointError(f"tensor in storage {ref.storage_key}: shape and stride differ in length")
    if ref.offset < 0 or any(d < 0 for d in ref.shape) or any(s < 0 for s in ref.stride):
        raise CheckpointError(f"tensor in storage {ref.storage_key}: negative offset, size or stride")
    if 0 in ref.shape:
        return np.zeros(ref.shape, flat.dtype)
    last = ref.offset + sum((d - 1) * s for d, s in zip(ref.shape, ref.stride, strict=True))
    if last >= len(flat):
        raise CheckpointError(
            f"tensor in storage {ref.storage_key} reaches element {last}, beyond the storage's {len(flat)}"
        )
    index = np.full(ref.shape, ref.offset, np.int64)
    for axis, (size, stride) in enumerate(zip(ref.shape, ref.stride, strict=True)):
        index += (np.arange(size, dtype=np.int64) * stride).reshape(
            [-1 if a == axis else 1 for a in range(len(ref.shape))]
        )
    return flat[index]  # fancy indexing: an own, contiguous copy


def _materialise(obj, storages: dict[str, np.ndarray]):
    if isinstance(obj, _TensorRef):
        if obj.storage_key not in storages:
            raise CheckpointError(f"tensor refers to storage {obj.storage_key}, which the file does not hold")
        return _tensor(obj, storages[obj.storage_key])
    if isinstance(obj, dict):
        return OrderedDict((k, _materialise(v, storages)) for k, v in obj.items())
    return obj


def _load_legacy(data: bytes) -> dict[str, np.ndarray]:
    stream = io.BytesIO(data)
    header = [_RestrictedUnpickler(stream, {}).load() for _ in range(3)]
    if header[0] != _LEGACY_MAGIC:
        raise CheckpointError("not a PyTorch checkpoint (bad magic number)")
    storage_meta: dict[str, tuple[np.dtype, int]] = {}
    tree = _RestrictedUnpickler(stream, storage_meta).load()
    keys = _RestrictedUnpickler(stream, {}).load()
    storages: dict[str, np.ndarray] = {}
    for key in keys:
        dtype, numel = storage_meta[str(key)]
        (count,) = struct.unpack("<q", stream.read(8))
        if count != numel:
            raise CheckpointError(f"storage {key}: header says {numel} elements, file says {count}")
        raw = stream.read(count * dtype.itemsize)
        if len(raw) != count * dtype.itemsize:
            raise CheckpointError("checkpoint is truncated")
        storages[str(key)] = np.frombuffer(raw, dtype=dtype.newbyteorder("<"))
    return _materialise(tree, storages)


def _load_zip(archive: zipfile.ZipFile) -> dict[str, np.ndarray]:
    pickle_name = next((n for n in archive.namelist() if n.endswith("data.pkl")), None)
    if pickle_name is None:
        raise CheckpointError("zip checkpoint without data.pkl")
    prefix = pickle_name[: -len("data.pkl")]
    storage_meta: dict[str, tuple[np.dtype, int]] = {}
    tree = _RestrictedUnpickler(io.BytesIO(archive.read(pickle_name)), storage_meta).load()
    storages = {
        key: np.frombuffer(archive.read(f"{prefix}data/{key}"), dtype=dtype.newbyteorder("<"))[:numel]
        for key, (dtype, numel) in storage_meta.items()
    }
    return _materialise(tree, storages)


def load_state_dict(path: str | Path) -> dict[str, np.ndarray]:
    """Return the checkpoint's tensors by name, as float/int numpy arrays."""
    data = Path(path).read_bytes()
    state: object
    try:
        if zipfile.is_zipfile(io.BytesIO(data)):
            with zipfile.ZipFile(io.BytesIO(data)) as archive:
                state = _load_zip(archive)
        else:
            state = _load_legacy(data)
    except (pickle.UnpicklingError, EOFError, struct.error, KeyError) as exc:
        raise CheckpointError(f"cannot read checkpoint {Path(path).name}: {exc}") from exc
    if isinstance(state, dict) and "state_dict" in state:
        state = state["state_dict"]
    if not isinstance(state, dict):
        raise CheckpointError("checkpoint does not hold a state dict")
    return state
