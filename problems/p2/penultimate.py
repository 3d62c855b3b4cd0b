"""Penultimate-layer CNN features for a list of image files: batched, no_grad, cached to `.npz`.

For EfficientNet-Lite0 a feature vector is the 1280-d global average of the head conv's output after
batch norm and ReLU6, so every entry lies in [0, 6]. With `flip=True` it is the mean of the features of
the image and of its mirror image, f = (phi(x) + phi(flip(x))) / 2.

The cache file name holds a hash of everything the numbers depend on: the model name and weights, the
preprocessing recipe and the image list (names and byte sizes), so a changed list or recipe never
reuses stale features, and a second run with the same inputs skips extraction entirely. A file made
with `flip=True` holds phi(x) and phi(flip(x)) separately, so it also serves runs without flipping.
"""
from __future__ import annotations

import hashlib
import json
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from problems.p2.pets import ImageReadLog
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
    passes_per_image: int = 1   # forward passes per image in the run that filled the cache (2 with flips)


def cache_key(model_info: dict, paths) -> str:
    """sha256 over the model, its preprocessing and the image list (name, size in bytes)."""
    files = [(Path(p).name, Path(p).stat().st_size) for p in paths]
    blob = json.dumps({"v": CACHE_VERSION, "model": model_info.get("name"), "weights": model_info.get("weights"),
                       "preprocessing": model_info.get("preprocessing"), "files": files},
                      sort_keys=True)
    return hashlib.sha256(blob.encode()).hexdigest()


def cache_path_for(cache_dir: Path, model_info: dict, tag: str, paths) -> Path:
    key = cache_key(model_info, paths)[:20]
    return Path(cache_dir) / f"{model_info.get('name', 'model')}_{tag}_{key}.npz"


def _batches(n: int, size: int):
    for start in range(0, n, size):
        yield start, min(n, start + size)


def extract_features(model, preprocess, paths, penultimate, *, batch_size: int = 32, flip: bool = False,
                     channels_last: bool = True, desc: str = "features", progress: bool = True):
    """Run `penultimate(model, x)` over the images at `paths` in batches; undecodable files are skipped.

    Returns (features (N_kept, D) float32, features of the mirrored images (N_kept, D) or None when
    flip is False, kept (N,) bool, ImageReadLog, seconds).
    """
    import torch
    from tqdm import tqdm

    log = ImageReadLog()
    kept = np.zeros(len(paths), dtype=bool)
    chunks, flip_chunks = [], []
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
                chunks.append(penultimate(model, x).float().cpu().numpy())
                if flip:
                    flip_chunks.append(penultimate(model, torch.flip(x, dims=[3])).float().cpu().numpy())
            bar.update(b - a)
            bar.set_postfix_str(f"{bar.n / max(time.perf_counter() - t0, 1e-9):.1f} img/s", refresh=False)
    bar.close()
    seconds = time.perf_counter() - t0
    line = log.skipped_line(desc)
    if line:
        print(line, file=sys.stderr)
    def cat(c):
        return np.concatenate(c).astype(np.float32) if c else np.zeros((0, 0), np.float32)
    return cat(chunks), (cat(flip_chunks) if flip else None), kept, log, seconds


def cached_features(model, preprocess, paths, names, penultimate, *, cache_dir: Path, tag: str,
                    batch_size: int = 32, flip: bool = False, channels_last: bool = True,
                    progress: bool = True) -> FeatureSet:
    """Features for `paths` (flip-averaged if `flip`), from the cache when the key matches, else extracted
    and saved atomically. The key uses `model.scratchnet_info` (name, weights, preprocessing recipe, set by
    `load_pretrained`). `seconds` / `images_per_second` are those of the run that filled the cache.
    """
    model_info = dict(getattr(model, "scratchnet_info", {"name": type(model).__name__}))
    path = cache_path_for(cache_dir, model_info, tag, paths)
    names = [str(n) for n in names]
    if path.is_file():
        try:
            z = load_npz(path)
            if z["names_all"].tolist() == names and (not flip or "features_flip" in z):
                meta = json.loads(str(z["meta"]))
                kept = z["kept"].astype(bool)
                f = z["features"]
                if flip:
                    f = 0.5 * (f + z["features_flip"])
                if f.shape[0] != int(kept.sum()) or not np.isfinite(f).all():
                    raise ValueError("features and kept disagree, or features are not finite")
                return FeatureSet(f.astype(np.float32), kept, [n for n, k in zip(names, kept) if k],
                                  meta["read_log"], meta["seconds"], meta["images_per_second"], True, path,
                                  int(meta.get("passes_per_image", 1)))
        except Exception as e:  # truncated or foreign file: a cache miss, rebuilt below (and overwritten)
            print(f"warning: feature cache {path} is unreadable ({type(e).__name__}); extracting again",
                  file=sys.stderr)
    feats, feats_flip, kept, log, seconds = extract_features(
        model, preprocess, paths, penultimate, batch_size=batch_size, flip=flip,
        channels_last=channels_last, desc=tag, progress=progress)
    ips = len(paths) / seconds if seconds > 0 else float("nan")
    meta = {"read_log": log.summary(), "seconds": seconds, "images_per_second": ips, "model": model_info,
            "passes_per_image": 2 if flip else 1, "batch_size": batch_size, "channels_last": channels_last}
    arrays = {"features": feats, "kept": kept, "names_all": np.asarray(names), "meta": np.asarray(json.dumps(meta))}
    if flip:
        arrays["features_flip"] = feats_flip
    try:
        save_npz(path, arrays)
    except OSError as e:  # a read-only or full cache folder: the features are still good for this run
        print(f"warning: could not cache features in {path.parent} ({e.strerror or e}); continuing without "
              "the cache", file=sys.stderr)
    f = 0.5 * (feats + feats_flip) if flip else feats
    return FeatureSet(f, kept, [n for n, k in zip(names, kept) if k], log.summary(), seconds, ips, False, path,
                      2 if flip else 1)
