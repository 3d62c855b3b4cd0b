"""Atomic file writes: a checkpoint or results file is either the old one or the new one, never half.

Write to a temporary file in the same folder, flush it to disk, then `os.replace` it over the target
(atomic on POSIX), so Ctrl-C or a kill mid-write never leaves a corrupt file behind.
"""
from __future__ import annotations

import json
import math
import os
import tempfile

import numpy as np

from .backend import get_array_module, to_numpy


def atomic_write(path, write_fn, mode="wb"):
    """Atomically write a file: `write_fn(f)` fills an open temporary file that then replaces `path`."""
    path = os.fspath(path)
    folder = os.path.dirname(os.path.abspath(path))
    os.makedirs(folder, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=folder, prefix=".tmp-", suffix=os.path.basename(path))
    try:
        with os.fdopen(fd, mode) as f:
            write_fn(f)
            f.flush()
            os.fsync(f.fileno())
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp, 0o666 & ~umask)  # mkstemp creates 0600; give the file the usual permissions
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def _to_jsonable(obj):
    if isinstance(obj, dict):
        return {str(k): _to_jsonable(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_to_jsonable(v) for v in obj]
    if isinstance(obj, np.ndarray) or get_array_module(obj) is not np:  # a cupy array (0-d too): via the host
        return _to_jsonable(to_numpy(obj).tolist())
    if isinstance(obj, np.generic):
        return _to_jsonable(obj.item())
    if isinstance(obj, float) and not math.isfinite(obj):
        return None  # strict JSON has no NaN or Infinity (JavaScript's JSON.parse rejects them)
    return obj


def write_text(path, text: str):
    """Atomically write a text file (UTF-8)."""
    atomic_write(path, lambda f: f.write(text.encode("utf-8")))


def write_json(path, obj, indent=2):
    """Atomically write `obj` as strict JSON: numpy arrays and scalars become plain lists and numbers,
    NaN and infinities become null."""
    text = json.dumps(_to_jsonable(obj), indent=indent, allow_nan=False) + "\n"
    atomic_write(path, lambda f: f.write(text), mode="w")


def save_npz(path, arrays: dict):
    """Atomically save a dict of arrays (host or GPU) to an uncompressed `.npz` file."""
    host = {k: to_numpy(v) for k, v in arrays.items()}
    atomic_write(path, lambda f: np.savez(f, **host))


def load_npz(path) -> dict:
    """Load a `.npz` file into a plain dict of numpy arrays."""
    with np.load(path, allow_pickle=False) as z:
        return {k: z[k] for k in z.files}


def save_npy(path, array):
    """Atomically save one array to a `.npy` file (readable with `np.load(path)`, no pickle)."""
    atomic_write(path, lambda f: np.save(f, np.ascontiguousarray(to_numpy(array)), allow_pickle=False))
