"""Read a PyTorch legacy (non-zip) ``.pth`` state dict into numpy arrays without importing torch."""

import collections
import pickle
from collections.abc import Sequence
from pathlib import Path
from typing import Any, BinaryIO

import numpy as np

_LEGACY_MAGIC = 0x1950A86A20F9469CFC6C  # first pickle of every legacy-format file

# Storage classes the pickle may name. find_class hands back the dtype itself, which is all
# persistent_load needs to know about a storage.
_STORAGE_DTYPES: dict[str, np.dtype] = {
    name: np.dtype(dtype).newbyteorder("<")
    for name, dtype in {
        "DoubleStorage": np.float64,
        "FloatStorage": np.float32,
        "HalfStorage": np.float16,
        "LongStorage": np.int64,
        "IntStorage": np.int32,
        "ShortStorage": np.int16,
        "CharStorage": np.int8,
        "ByteStorage": np.uint8,
        "BoolStorage": np.bool_,
    }.items()
}


class _Storage:
    """Placeholder for a storage whose bytes come after the pickle; filled in later."""

    def __init__(self, dtype: np.dtype) -> None:
        self.dtype = dtype
        self.data: np.ndarray | None = None


class _PendingTensor:
    """What _rebuild_tensor_v2 returns: a strided view to cut once storages are read."""

    def __init__(self, storage: _Storage, offset: int, size: tuple, stride: tuple) -> None:
        self.storage, self.offset, self.size, self.stride = storage, offset, size, stride

    def to_numpy(self) -> np.ndarray:
        if self.storage.data is None:
            raise pickle.UnpicklingError("a tensor refers to a storage the file does not contain")
        flat = self.storage.data[self.offset :]
        itemsize = flat.dtype.itemsize
        # Tensors may be non-contiguous (e.g. weights ported from TensorFlow), so honour the strides.
        view = np.lib.stride_tricks.as_strided(
            flat, shape=self.size, strides=[s * itemsize for s in self.stride], writeable=False
        )
        return view.copy()  # C-contiguous; unlike ascontiguousarray, keeps 0-d scalars 0-d


def _rebuild_tensor_v2(
    storage: _Storage,
    storage_offset: int,
    size: Sequence[int],
    stride: Sequence[int],
    requires_grad: bool,
    backward_hooks: object,
    metadata: object = None,
) -> _PendingTensor:
    return _PendingTensor(storage, storage_offset, tuple(size), tuple(stride))


class _StateDictUnpickler(pickle.Unpickler):
    """Unpickler that admits only the globals a state dict needs, so a hostile file cannot run code."""

    def __init__(self, file: BinaryIO, storages: dict[str, _Storage]) -> None:
        super().__init__(file)
        self._storages = storages

    def find_class(self, module: str, name: str) -> Any:
        if (module, name) == ("collections", "OrderedDict"):
            return collections.OrderedDict
        if (module, name) == ("torch._utils", "_rebuild_tensor_v2"):
            return _rebuild_tensor_v2
        if module == "torch" and name in _STORAGE_DTYPES:
            return _STORAGE_DTYPES[name]
        raise pickle.UnpicklingError(f"refusing to load global {module}.{name}")

    def persistent_load(self, pid: Any) -> _Storage:
        # ('storage', storage_type, key, location, numel[, view_metadata]); one _Storage per key.
        if not (isinstance(pid, tuple) and pid[0] == "storage" and isinstance(pid[1], np.dtype)):
            raise pickle.UnpicklingError(f"unsupported persistent id {pid!r}")
        dtype, key = pid[1], str(pid[2])
        return self._storages.setdefault(key, _Storage(dtype))


def load_state_dict(path: str | Path) -> dict[str, np.ndarray]:
    """Load a legacy-format PyTorch state dict as {name: contiguous numpy array}."""
    storages: dict[str, _Storage] = {}
    with open(path, "rb") as f:
        # Header: magic number, protocol version, sys info. Plain data, but still read restrictedly.
        header = [_StateDictUnpickler(f, storages).load() for _ in range(3)]
        if header[0] != _LEGACY_MAGIC:
            raise ValueError(f"{path}: not a legacy (non-zip) PyTorch file")
        state = _StateDictUnpickler(f, storages).load()
        keys = _StateDictUnpickler(f, storages).load()
        # Raw storages follow in the listed order, each prefixed by its little-endian int64 element count.
        for key in keys:
            storage = storages[key]
            numel = int.from_bytes(f.read(8), "little")
            raw = f.read(numel * storage.dtype.itemsize)
            if len(raw) != numel * storage.dtype.itemsize:
                raise ValueError(f"{path}: truncated data for storage {key}")
            storage.data = np.frombuffer(raw, dtype=storage.dtype)
    return {name: tensor.to_numpy() for name, tensor in state.items()}
