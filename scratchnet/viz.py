"""Pictures of learned weights (pure NumPy; Pillow only to write the PNG).

`filter_grid` lays first-layer conv filters out as one RGB image, rows x cols tiles. scratchnet's conv
weight layout is HWIO = (kh, kw, C_in, C_out), e.g. (11, 11, 3, 64): filter k is weights[:, :, :, k],
an RGB image of kh x kw pixels.
"""
from __future__ import annotations

import io as _io

import numpy as np

from .backend import to_numpy
from .io import atomic_write


def stretch_each(filters: np.ndarray) -> np.ndarray:
    """Contrast-stretch each filter on its own to [0, 1]: f <- f - min(f); f <- f / max(f).

    filters: (K, ...). A constant filter has max 0 after the shift and becomes all zeros (no division).
    """
    f = np.asarray(filters, dtype=np.float64)
    axes = tuple(range(1, f.ndim))
    f = f - f.min(axis=axes, keepdims=True)
    top = f.max(axis=axes, keepdims=True)
    return np.divide(f, top, out=np.zeros_like(f), where=top > 0)


def tile_origin(row: int, col: int, kh: int, kw: int, upscale: int, gap: int) -> tuple[int, int]:
    """Top-left pixel (y, x) of tile (row, col) in a `filter_grid` image; each tile is kh*upscale x kw*upscale."""
    return row * (kh * upscale + gap), col * (kw * upscale + gap)


def filter_grid(weights_hwio, rows: int = 4, cols: int = 16, upscale: int = 4, gap: int = 2,
                gap_value: float = 1.0, as_uint8: bool = False) -> np.ndarray:
    """All C_out filters of a conv weight as one RGB image: float (H, W, 3) in [0, 1], or uint8 if as_uint8.

    weights_hwio: (kh, kw, C_in, C_out) with C_in = 3 (RGB) or 1 (shown grey); NumPy or CuPy.
    Filter k goes to tile (k // cols, k % cols), stretched on its own to span exactly [0, 1], enlarged by
    nearest neighbour (each weight becomes an upscale x upscale block). Tiles are `gap` pixels apart, the
    gaps filled with `gap_value` (white); unused tiles (C_out < rows*cols) stay at gap_value too.
    Image size: (rows*kh*upscale + (rows-1)*gap, cols*kw*upscale + (cols-1)*gap).
    """
    w = to_numpy(weights_hwio)
    if w.ndim != 4:
        raise ValueError(f"expected conv weights (kh, kw, C_in, C_out), got shape {w.shape}")
    kh, kw, cin, cout = w.shape
    if cin not in (1, 3):
        raise ValueError(f"filter_grid shows RGB (C_in=3) or grey (C_in=1) filters, got C_in={cin}")
    if cout > rows * cols:
        raise ValueError(f"{cout} filters do not fit a {rows}x{cols} grid")
    if upscale < 1 or gap < 0:
        raise ValueError(f"upscale must be >= 1 and gap >= 0, got {upscale}, {gap}")
    tiles = stretch_each(np.moveaxis(w, 3, 0))                         # (C_out, kh, kw, C_in)
    if cin == 1:
        tiles = np.repeat(tiles, 3, axis=3)
    tiles = np.repeat(np.repeat(tiles, upscale, axis=1), upscale, axis=2)  # nearest-neighbour upscale
    th, tw = kh * upscale, kw * upscale
    image = np.full((rows * th + (rows - 1) * gap, cols * tw + (cols - 1) * gap, 3), gap_value, dtype=np.float64)
    for k in range(cout):
        y, x = tile_origin(k // cols, k % cols, kh, kw, upscale, gap)
        image[y:y + th, x:x + tw] = tiles[k]
    if as_uint8:
        return np.round(np.clip(image, 0.0, 1.0) * 255.0).astype(np.uint8)
    return image.astype(np.float32)


def save_image(path, image) -> None:
    """Atomically save an RGB image (float in [0, 1] or uint8, (H, W, 3)) as PNG."""
    from PIL import Image  # noqa: PLC0415
    img = to_numpy(image)
    if img.dtype != np.uint8:
        img = np.round(np.clip(img, 0.0, 1.0) * 255.0).astype(np.uint8)
    buf = _io.BytesIO()
    Image.fromarray(img).save(buf, format="PNG")
    atomic_write(path, lambda f: f.write(buf.getvalue()))


def save_filter_grid(path, weights_hwio, rows: int = 4, cols: int = 16, upscale: int = 4, gap: int = 2) -> np.ndarray:
    """`filter_grid` written to `path` as PNG; returns the uint8 image."""
    image = filter_grid(weights_hwio, rows=rows, cols=cols, upscale=upscale, gap=gap, as_uint8=True)
    save_image(path, image)
    return image
