"""Penultimate-layer CNN features for a list of image files: batched, no_grad, cached to `.npz`.

For EfficientNet-Lite0 a feature vector is the 1280-d global average of the head conv's output after
batch norm and ReLU6, so every entry lies in [0, 6]. With `flip=True` it is the mean of the features of
the image and of its mirror image, f = (phi(x) + phi(flip(x))) / 2.

The cache file name holds a hash of everything the numbers depend on: the model name and weights, the
preprocessing recipe, the flip flag, and the image list (names and byte sizes), so a changed list or
recipe never reuses stale features, and a second run with the same inputs skips extraction entirely.
"""
from __future__ import annotations

import hashlib
import json
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from problems.common.pets import ImageReadLog
from scratchnet.io import load_npz, save_npz

CACHE_VERSION = 1


@dataclass
class FeatureSet:
    """features[i] belongs to names[i]; `kept` marks which of the requested files decoded (others skipped)."""
    features: np.ndarray        # (N_kept, D) float32, raw (not normalised)
    kept: np.ndarray            # (N_requested,) bool
    names: list[str]            # (N_kept,) image names
    read_log: dict              # ImageReadLog.summary() of the extraction run
    seconds: float              # extraction wall time (0 for a cache hit's own run; see from_cache)
    images_per_second: float
    from_cache: bool
    cache_path: Path | None


def cache_key(model_info: dict, paths, flip: bool) -> str:
    """sha256 over the model, its preprocessing, the flip flag and the image list (name, size in bytes)."""
    files = [(Path(p).name, Path(p).stat().st_size) for p in paths]
    blob = json.dumps({"v": CACHE_VERSION, "model": model_info.get("name"), "weights": model_info.get("weights"),
                       "preprocessing": model_info.get("preprocessing"), "flip": bool(flip), "files": files},
                      sort_keys=True)
    return hashlib.sha256(blob.encode()).hexdigest()


def cache_path_for(cache_dir: Path, model_info: dict, tag: str, paths, flip: bool) -> Path:
    key = cache_key(model_info, paths, flip)[:20]
    return Path(cache_dir) / f"{model_info.get('name', 'model')}_{tag}{'_flip' if flip else ''}_{key}.npz"


def _batches(n: int, size: int):
    for start in range(0, n, size):
        yield start, min(n, start + size)


def extract_features(model, preprocess, paths, penultimate, *, batch_size: int = 32, flip: bool = False,
                     channels_last: bool = True, desc: str = "features", progress: bool = True):
    """Run `penultimate(model, x)` over the images at `paths` in batches; undecodable files are skipped.

    Returns (features (N_kept, D) float32, kept (N,) bool, ImageReadLog, seconds).
    """
    import torch
    from tqdm import tqdm

    log = ImageReadLog()
    kept = np.zeros(len(paths), dtype=bool)
    chunks = []
    if channels_last:
        model = model.to(memory_format=torch.channels_last)
    t0 = time.perf_counter()
    bar = tqdm(total=len(paths), desc=desc, unit="img", disable=not progress, file=sys.stderr,
               dynamic_ncols=True, mininterval=1.0)
    with torch.no_grad():
        for a, b in _batches(len(paths), batch_size):
            tensors = []
            for i in range(a, b):
                img = log.read(paths[i])
                if img is None:
                    continue
                tensors.append(preprocess(img))
                kept[i] = True
            if tensors:
                x = torch.stack(tensors)
                if channels_last:
                    x = x.contiguous(memory_format=torch.channels_last)
                f = penultimate(model, x)
                if flip:
                    f = 0.5 * (f + penultimate(model, torch.flip(x, dims=[3])))
                chunks.append(f.float().cpu().numpy())
            bar.update(b - a)
            bar.set_postfix_str(f"{bar.n / max(time.perf_counter() - t0, 1e-9):.1f} img/s", refresh=False)
    bar.close()
    seconds = time.perf_counter() - t0
    feats = np.concatenate(chunks) if chunks else np.zeros((0, 0), np.float32)
    return feats.astype(np.float32), kept, log, seconds


def cached_features(model, preprocess, paths, names, penultimate, *, cache_dir: Path, tag: str,
                    batch_size: int = 32, flip: bool = False, channels_last: bool = True,
                    progress: bool = True) -> FeatureSet:
    """Features for `paths`, from the cache when the key matches, else extracted and saved atomically.

    The key uses `model.scratchnet_info` (name, weights, preprocessing recipe, set by `load_pretrained`).
    """
    model_info = dict(getattr(model, "scratchnet_info", {"name": type(model).__name__}))
    path = cache_path_for(cache_dir, model_info, tag, paths, flip)
    if path.is_file():
        z = load_npz(path)
        if z["names_all"].tolist() == [str(n) for n in names]:
            extra = json.loads(str(z["meta"]))
            return FeatureSet(z["features"], z["kept"].astype(bool), [n for n, k in zip(names, z["kept"]) if k],
                              extra["read_log"], extra["seconds"], extra["images_per_second"], True, path)
    feats, kept, log, seconds = extract_features(model, preprocess, paths, penultimate, batch_size=batch_size,
                                                 flip=flip, channels_last=channels_last, desc=tag,
                                                 progress=progress)
    ips = len(paths) / seconds if seconds > 0 else float("nan")
    meta = {"read_log": log.summary(), "seconds": seconds, "images_per_second": ips, "model": model_info,
            "flip": flip, "batch_size": batch_size, "channels_last": channels_last}
    save_npz(path, {"features": feats, "kept": kept, "names_all": np.asarray([str(n) for n in names]),
                    "meta": np.asarray(json.dumps(meta))})
    return FeatureSet(feats, kept, [n for n, k in zip(names, kept) if k], log.summary(), seconds, ips, False, path)
