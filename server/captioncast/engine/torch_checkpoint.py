"""Tensors of a PyTorch checkpoint as numpy arrays, read without torch.

A checkpoint is pickled objects whose tensors point at storages by key. The newer
format is a zip with one file per storage (`archive/data/<key>`); the legacy one
(torch < 1.6, Resemblyzer's `pretrained.pt`) is five pickles in a row, the last two
followed by each storage's raw bytes behind its int64 element count. Only the classes
a state dict is made of are unpickled: anything else in the file is refused.
"""

from __future__ import annotations

import collections
import io
import pickle
import zipfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

_DTYPES = {
    "FloatStorage": np.float32, "DoubleStorage": np.float64, "HalfStorage": np.float16,
    "LongStorage": np.int64, "IntStorage": np.int32, "ShortStorage": np.int16,
    "CharStorage": np.int8, "ByteStorage": np.uint8, "BoolStorage": np.bool_,
}
_LEGACY_MAGIC = 0x1950A86A20F9469CFC6C


@dataclass
class _Storage:
    dtype: np.dtype[Any]
    data: np.ndarray | None = None


@dataclass(frozen=True)
class _Tensor:
    """A tensor named before its storage's bytes are read (legacy files store them last)."""

    storage: _Storage
    offset: int
    shape: tuple[int, ...]
    stride: tuple[int, ...]

    def array(self) -> np.ndarray:
        assert self.storage.data is not None, "storage bytes not read"
        item = self.storage.data.itemsize
        flat = self.storage.data[self.offset:]
        view = np.lib.stride_tricks.as_strided(
            flat, self.shape, tuple(s * item for s in self.stride))
        return np.array(view)  # a copy: the weights outlive the file's buffer


def _rebuild_tensor(storage: _Storage, offset: int, shape: tuple[int, ...],
                    stride: tuple[int, ...], *_: object) -> _Tensor:
    return _Tensor(storage, offset, tuple(shape), tuple(stride))


class _Unpickler(pickle.Unpickler):
    def __init__(self, file: io.BytesIO, storages: dict[str, _Storage]) -> None:
        super().__init__(file)
        self.storages = storages

    def find_class(self, module: str, name: str) -> Any:
        if (module, name) == ("collections", "OrderedDict"):
            return collections.OrderedDict
        if (module, name) == ("torch._utils", "_rebuild_tensor_v2"):
            return _rebuild_tensor
        if module == "torch" and name in _DTYPES:
            return np.dtype(_DTYPES[name])
        raise pickle.UnpicklingError(f"a checkpoint holds {module}.{name}: not a state dict")

    def persistent_load(self, pid: Any) -> _Storage:
        # ("storage", storage type, key, location, element count[, view metadata])
        _, dtype, key = pid[:3]
        return self.storages.setdefault(str(key), _Storage(dtype))


def _load_legacy(raw: bytes) -> tuple[Any, dict[str, _Storage]]:
    file = io.BytesIO(raw)
    storages: dict[str, _Storage] = {}
    if pickle.load(file) != _LEGACY_MAGIC:
        raise ValueError("not a PyTorch checkpoint")
    pickle.load(file)  # protocol version
    system = pickle.load(file)
    if not system.get("little_endian", True):
        raise ValueError("a big-endian checkpoint")
    root = _Unpickler(file, storages).load()
    for key in pickle.load(file):
        storage = storages[key]
        count = int(np.frombuffer(file.read(8), "<i8")[0])
        size = count * storage.dtype.itemsize
        storage.data = np.frombuffer(file.read(size), storage.dtype, count)
    return root, storages


def _load_zip(path: Path) -> tuple[Any, dict[str, _Storage]]:
    storages: dict[str, _Storage] = {}
    with zipfile.ZipFile(path) as archive:
        names = archive.namelist()
        prefix = names[0].split("/", 1)[0]
        root = _Unpickler(io.BytesIO(archive.read(f"{prefix}/data.pkl")), storages).load()
        for key, storage in storages.items():
            storage.data = np.frombuffer(archive.read(f"{prefix}/data/{key}"), storage.dtype)
    return root, storages


def _arrays(value: Any) -> Any:
    if isinstance(value, _Tensor):
        return value.array()
    if isinstance(value, dict):
        return {key: _arrays(item) for key, item in value.items()}
    return value


def load_state_dict(path: Path, key: str | None = None) -> dict[str, np.ndarray]:
    """The checkpoint's tensors by name (those under `key` when it is a training checkpoint)."""
    load: Callable[[], tuple[Any, dict[str, _Storage]]]
    if zipfile.is_zipfile(path):
        load = lambda: _load_zip(path)  # noqa: E731
    else:
        load = lambda: _load_legacy(path.read_bytes())  # noqa: E731
    root, _ = load()
    state = root[key] if key is not None else root
    return {name: array for name, array in _arrays(state).items()
            if isinstance(array, np.ndarray)}
