"""CIFAR-10 reader in pure NumPy (+ Pillow for image files): official pickles or an image-folder tree.

Two layouts under a data root, tried in this order:

1. `<root>/cifar-10-batches-py/` - the official Python pickles: `data_batch_1..5`, `test_batch`,
   `batches.meta`. Each batch is a dict with `b'data'` (N, 3072) uint8, one row per image laid out as the
   1024 red values, then 1024 green, then 1024 blue, each plane row-major 32x32; and `b'labels'` (N ints).
2. `<root>/cifar10/` - an image tree `train/<class>/*.jpg|png`, `test/<class>/*` (e.g. a JPEG copy,
   which is lossy: accuracies on it are not comparable 1:1 with the official data).

Images come back as uint8 NHWC (N, 32, 32, 3), labels as int64. Order is deterministic: batch order for
the pickles; sorted class names, then sorted file names for the tree (label = index of the sorted class).
Decoding 60,000 small JPEGs takes tens of seconds, so the tree is decoded once and cached as `.npy`
files; the cache key hashes the source path and every file's name, size and mtime, so changed data is
never served stale. The pickles load in about a second and are not cached.
"""
from __future__ import annotations

import hashlib
import json
import os
import pickle
import sys
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from .. import io as snio

CLASS_NAMES = ("airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck")
NUM_CLASSES = 10
IMAGE_SHAPE = (32, 32, 3)
PICKLE_DIR = "cifar-10-batches-py"
TREE_DIR = "cifar10"
PICKLE_TRAIN = tuple(f"data_batch_{i}" for i in range(1, 6))
PICKLE_TEST = "test_batch"
PICKLE_META = "batches.meta"
IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png")
CACHE_ENV = "SCRATCHNET_CACHE"
_CACHE_FORMAT = 1  # bump when the cached arrays' meaning changes, so old caches are ignored
SOURCE_PICKLES = "official pickles (cifar-10-batches-py)"
SOURCE_TREE = "JPEG copy (lossy)"


class DatasetError(ValueError):
    """Missing or incomplete dataset; the message is one line naming the directory and what was expected."""


@dataclass
class CifarData:
    """CIFAR-10 in memory: x uint8 (N, 32, 32, 3) NHWC RGB, y int64 (N,) in 0..9."""
    train_x: np.ndarray
    train_y: np.ndarray
    test_x: np.ndarray
    test_y: np.ndarray
    class_names: tuple
    source: str           # SOURCE_PICKLES or a description of the image tree (says 'lossy' for JPEGs)
    directory: Path       # the dataset folder actually read
    cache_dir: Path | None = None   # where the decoded arrays are cached (None: not cached)
    from_cache: bool = False        # True if this load came from the cache without decoding
    info: dict = field(default_factory=dict)

    def describe(self) -> str:
        """One line for logs and results: source, folder, sizes."""
        return (f"CIFAR-10 from {self.directory} ({self.source}): "
                f"{len(self.train_y)} train + {len(self.test_y)} test images")


def find_dataset_dir(root) -> tuple[str, Path]:
    """('pickles' | 'tree', folder) for the first layout present under `root`; DatasetError if neither."""
    root = Path(root).expanduser()
    if (root / PICKLE_DIR).is_dir():
        return "pickles", root / PICKLE_DIR
    if (root / TREE_DIR).is_dir():
        return "tree", root / TREE_DIR
    raise DatasetError(f"no CIFAR-10 under {root}: expected {root / PICKLE_DIR}/ (official pickles) "
                       f"or {root / TREE_DIR}/ (train/<class>/*.jpg|png, test/<class>/*)")


def load_cifar10(root, cache_dir=None, limit_per_class: int | None = None, progress: bool = True,
                 use_cache: bool = True) -> CifarData:
    """Load CIFAR-10 from the data root `root` (pickles first, then the image tree).

    cache_dir: folder that holds the cache of decoded `.npy` arrays of an image tree, in a subfolder
      `cifar10-<hash of source path and file list>` (default: `$SCRATCHNET_CACHE`, else `~/.cache/scratchnet`);
      the data root itself may be read-only, so nothing is written there.
    limit_per_class: keep only the first k images of each class in each split (tests, quick runs).
    use_cache: False decodes the tree without reading or writing the cache.
    """
    if limit_per_class is not None and limit_per_class < 1:
        raise ValueError(f"limit_per_class must be >= 1 or None, got {limit_per_class}")
    kind, folder = find_dataset_dir(root)
    if kind == "pickles":
        return _load_pickles(folder, limit_per_class)
    return _load_tree(folder, cache_dir, limit_per_class, progress, use_cache)


# ----------------------------------------------------------------------------------------------- pickles

def _read_pickle(path: Path, folder: Path) -> dict:
    if not path.is_file():
        raise DatasetError(f"incomplete CIFAR-10 pickles in {folder}: missing {path.name} "
                           f"(expected {', '.join(PICKLE_TRAIN)}, {PICKLE_TEST}, {PICKLE_META})")
    try:
        with open(path, "rb") as f:
            # The official format is a pickle; only read it from a dataset folder you trust.
            return pickle.load(f, encoding="bytes")
    except Exception as e:
        raise DatasetError(f"unreadable CIFAR-10 pickle {path} in {folder}: {type(e).__name__}: {e}; "
                           "expected a pickled dict with b'data' and b'labels'") from None


def _pickle_batch(path: Path, folder: Path) -> tuple[np.ndarray, np.ndarray]:
    """One batch as (x uint8 (N,32,32,3), y int64 (N,))."""
    batch = _read_pickle(path, folder)
    data = batch.get(b"data") if isinstance(batch, dict) else None
    labels = batch.get(b"labels") if isinstance(batch, dict) else None
    if data is None or labels is None:
        raise DatasetError(f"CIFAR-10 pickle {path} in {folder} lacks b'data' or b'labels'")
    data = np.asarray(data)
    try:
        labels = np.asarray(labels)
    except ValueError:  # ragged
        labels = None
    if labels is None or labels.ndim != 1 or (labels.size and labels.dtype.kind not in "iu"):
        raise DatasetError(f"CIFAR-10 pickle {path} in {folder}: b'labels' must be a flat list of whole numbers "
                           f"0..{NUM_CLASSES - 1}")
    labels = labels.astype(np.int64)
    if data.dtype != np.uint8 or data.ndim != 2 or data.shape[1] != 3072 or len(labels) != len(data):
        raise DatasetError(f"CIFAR-10 pickle {path} in {folder}: expected b'data' uint8 (N, 3072) and N labels, "
                           f"got {data.dtype} {data.shape} and {len(labels)} labels")
    if len(labels) and (labels.min() < 0 or labels.max() >= NUM_CLASSES):
        raise DatasetError(f"CIFAR-10 pickle {path} in {folder}: labels must lie in 0..{NUM_CLASSES - 1}")
    # Row = [R plane | G plane | B plane], each 32x32 row-major -> (N, 3, 32, 32) -> NHWC.
    x = data.reshape(-1, 3, 32, 32).transpose(0, 2, 3, 1)
    return np.ascontiguousarray(x), labels


def _first_k_per_class(x, y, k):
    if k is None:
        return x, y
    keep = np.zeros(len(y), dtype=bool)
    for c in range(NUM_CLASSES):
        keep[np.flatnonzero(y == c)[:k]] = True
    return x[keep], y[keep]


def _load_pickles(folder: Path, limit_per_class) -> CifarData:
    meta = _read_pickle(folder / PICKLE_META, folder)
    names = meta.get(b"label_names") if isinstance(meta, dict) else None
    if names is None or len(names) != NUM_CLASSES:
        raise DatasetError(f"CIFAR-10 pickle {folder / PICKLE_META}: expected b'label_names' with "
                           f"{NUM_CLASSES} class names, got {None if names is None else len(names)}")
    class_names = tuple(n.decode() if isinstance(n, bytes) else str(n) for n in names)
    parts = [_pickle_batch(folder / name, folder) for name in PICKLE_TRAIN]
    train_x = np.concatenate([p[0] for p in parts])
    train_y = np.concatenate([p[1] for p in parts])
    test_x, test_y = _pickle_batch(folder / PICKLE_TEST, folder)
    train_x, train_y = _first_k_per_class(train_x, train_y, limit_per_class)
    test_x, test_y = _first_k_per_class(test_x, test_y, limit_per_class)
    return CifarData(train_x, train_y, test_x, test_y, class_names, SOURCE_PICKLES, folder,
                     info={"limit_per_class": limit_per_class})


# ------------------------------------------------------------------------------------------- image tree

def _list_split(folder: Path, split: str) -> tuple[list[str], list[list[os.DirEntry]]]:
    """Sorted class names and, per class, the sorted image files (DirEntry, with cached stat) of a split."""
    split_dir = folder / split
    if not split_dir.is_dir():
        raise DatasetError(f"incomplete CIFAR-10 tree {folder}: missing split folder {split}/ "
                           f"(expected train/<class>/*.jpg|png and test/<class>/*)")
    classes = sorted(e.name for e in os.scandir(split_dir) if e.is_dir() and not e.name.startswith("."))
    if len(classes) != NUM_CLASSES:
        raise DatasetError(f"CIFAR-10 tree {split_dir}: expected {NUM_CLASSES} class folders, "
                           f"found {len(classes)} ({', '.join(classes) or 'none'})")
    files = []
    for c in classes:
        entries = sorted((e for e in os.scandir(split_dir / c)
                          if e.is_file() and not e.name.startswith(".")
                          and e.name.lower().endswith(IMAGE_EXTENSIONS)), key=lambda e: e.name)
        if not entries:
            raise DatasetError(f"CIFAR-10 tree {split_dir / c}: no images; expected files "
                               f"ending in {'/'.join(IMAGE_EXTENSIONS)}")
        files.append(entries)
    return classes, files


def _decode_image(path: str) -> np.ndarray:
    """One image file -> uint8 (32, 32, 3) RGB; DatasetError if unreadable or not 32x32."""
    from PIL import Image  # noqa: PLC0415 - only the image-tree path needs Pillow
    try:
        with Image.open(path) as im:
            im = im.convert("RGB")
            arr = np.asarray(im, dtype=np.uint8)
    except Exception as e:
        raise DatasetError(f"unreadable image {path} in {os.path.dirname(path)}: "
                           f"{type(e).__name__}: {e}; expected a 32x32 RGB JPEG or PNG") from None
    if arr.shape != IMAGE_SHAPE:
        raise DatasetError(f"image {path} in {os.path.dirname(path)} is {arr.shape[1]}x{arr.shape[0]}; "
                           "expected 32x32 RGB")
    return arr


def _decode_many(paths: list[str], progress: bool, desc: str) -> np.ndarray:
    """Decode image files into one uint8 (N, 32, 32, 3) array, in the given order.

    A plain loop: it runs once per dataset thanks to the cache, and a process pool is not worth its
    fragility (spawned workers re-import __main__).
    """
    out = np.empty((len(paths),) + IMAGE_SHAPE, dtype=np.uint8)
    bar = None
    if progress:
        from tqdm import tqdm  # noqa: PLC0415
        bar = tqdm(total=len(paths), desc=desc, unit="img", file=sys.stderr, mininterval=0.5)
    try:
        for i, p in enumerate(paths):
            out[i] = _decode_image(p)
            if bar is not None and (i + 1) % 256 == 0:
                bar.update(256)
        if bar is not None:
            bar.update(len(paths) - bar.n)
    finally:
        if bar is not None:
            bar.close()
    return out


def default_cache_root() -> Path:
    """`$SCRATCHNET_CACHE` if set, else `~/.cache/scratchnet`."""
    return Path(os.environ.get(CACHE_ENV) or Path.home() / ".cache" / "scratchnet").expanduser()


def _fingerprint(folder: Path, splits: dict, limit_per_class) -> str:
    """Hash of the source path, every file's relative name, size and mtime, and the subset option."""
    h = hashlib.sha256()
    h.update(f"v{_CACHE_FORMAT}|{folder.resolve()}|limit={limit_per_class}\n".encode())
    for split, (classes, files) in splits.items():
        for c, entries in zip(classes, files):
            for e in entries:
                st = e.stat()
                h.update(f"{split}/{c}/{e.name}|{st.st_size}|{st.st_mtime_ns}\n".encode())
    return h.hexdigest()[:16]


_CACHE_FILES = ("train_x", "train_y", "test_x", "test_y")


def _read_cache(cache: Path):
    meta_path = cache / "meta.json"
    if not meta_path.is_file():  # meta.json is written last: without it the cache is incomplete
        return None
    try:
        meta = json.loads(meta_path.read_text())
        arrays = {k: np.load(cache / f"{k}.npy", allow_pickle=False) for k in _CACHE_FILES}
        n_train, n_test = meta["n_train"], meta["n_test"]
        names, source = tuple(meta["class_names"]), str(meta["source"])
    except (OSError, ValueError, KeyError, TypeError):  # unreadable, or not a meta.json this code wrote
        return None
    if (arrays["train_x"].shape != (n_train,) + IMAGE_SHAPE or arrays["test_x"].shape != (n_test,) + IMAGE_SHAPE
            or arrays["train_y"].shape != (n_train,) or arrays["test_y"].shape != (n_test,)
            or len(names) != NUM_CLASSES or not all(isinstance(c, str) for c in names)):
        return None
    return {**meta, "class_names": names, "source": source}, arrays


def _write_cache(cache: Path, meta: dict, arrays: dict) -> bool:
    """Write the arrays, then meta.json (the completion marker), each atomically; False if not writable."""
    try:
        for k in _CACHE_FILES:
            snio.save_npy(cache / f"{k}.npy", arrays[k])
        snio.write_json(cache / "meta.json", meta)
        return True
    except OSError as e:
        print(f"warning: could not write the CIFAR-10 cache {cache} ({e}); "
              "the next run decodes the images again", file=sys.stderr)
        return False


def _load_tree(folder: Path, cache_dir, limit_per_class, progress, use_cache) -> CifarData:
    splits = {s: _list_split(folder, s) for s in ("train", "test")}
    if splits["train"][0] != splits["test"][0]:
        raise DatasetError(f"CIFAR-10 tree {folder}: train/ and test/ have different class folders "
                           f"({splits['train'][0]} vs {splits['test'][0]})")
    class_names = tuple(splits["train"][0])
    if limit_per_class is not None:
        splits = {s: (cl, [entries[:limit_per_class] for entries in files]) for s, (cl, files) in splits.items()}
    exts = {e.name.lower().rsplit(".", 1)[-1] for _, files in splits.values() for es in files for e in es}
    source = SOURCE_TREE if exts & {"jpg", "jpeg"} else "image tree (PNG, lossless)"

    key = _fingerprint(folder, splits, limit_per_class)
    cache_root = Path(cache_dir).expanduser() if cache_dir is not None else default_cache_root()
    cache = cache_root / f"cifar10-{key}"
    if use_cache:
        hit = _read_cache(cache)
        if hit is not None:
            meta, a = hit
            return CifarData(a["train_x"], a["train_y"], a["test_x"], a["test_y"], tuple(meta["class_names"]),
                             meta["source"], folder, cache, True, info={"limit_per_class": limit_per_class})

    arrays = {}
    for split, (classes, files) in splits.items():
        paths = [e.path for entries in files for e in entries]
        labels = np.concatenate([np.full(len(entries), i, dtype=np.int64) for i, entries in enumerate(files)])
        arrays[f"{split}_x"] = _decode_many(paths, progress, f"decoding CIFAR-10 {split}")
        arrays[f"{split}_y"] = labels
    meta = {"class_names": list(class_names), "source": source, "directory": str(folder),
            "n_train": len(arrays["train_y"]), "n_test": len(arrays["test_y"]),
            "limit_per_class": limit_per_class, "format": _CACHE_FORMAT}
    written = use_cache and _write_cache(cache, meta, arrays)
    return CifarData(arrays["train_x"], arrays["train_y"], arrays["test_x"], arrays["test_y"], class_names,
                     source, folder, cache if written else None, False, info={"limit_per_class": limit_per_class})
