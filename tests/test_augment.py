"""Vectorised augmentation: crop against a per-image loop, exact flip mapping, stats, normalisation, batching."""
import numpy as np
import pytest

from scratchnet.data import channel_stats, cutout, iterate_minibatches, normalize, random_crop, random_flip
from scratchnet.data.augment import augment_batch


def batch(n=9, h=8, w=6, c=3, seed=0, dtype=np.float32):
    return np.random.default_rng(seed).normal(size=(n, h, w, c)).astype(dtype)


def crop_reference(x, padding, offsets, mode):
    """Per-image loop: pad one image, slice its window."""
    out = np.empty_like(x)
    np_mode = "constant" if mode == "zero" else "reflect"
    for i in range(len(x)):
        p = np.pad(x[i], ((padding, padding), (padding, padding), (0, 0)), mode=np_mode)
        dy, dx = offsets[i]
        out[i] = p[dy:dy + x.shape[1], dx:dx + x.shape[2]]
    return out


@pytest.mark.parametrize("mode", ["zero", "reflect"])
@pytest.mark.parametrize("padding", [1, 4])
def test_random_crop_matches_loop(mode, padding):
    x = batch(n=40, h=8, w=6)
    out, offsets = random_crop(x, padding, np.random.default_rng(1), mode=mode, return_offsets=True)
    assert out.shape == x.shape and out.dtype == x.dtype
    assert offsets.min() >= 0 and offsets.max() <= 2 * padding
    assert len({tuple(o) for o in offsets}) > 5  # images get their own offsets
    np.testing.assert_array_equal(out, crop_reference(x, padding, offsets, mode))


def test_random_crop_uint8_and_seeded():
    x = (np.arange(5 * 32 * 32 * 3) % 251).astype(np.uint8).reshape(5, 32, 32, 3)
    a = random_crop(x, 4, np.random.default_rng(7))
    b = random_crop(x, 4, np.random.default_rng(7))
    assert a.dtype == np.uint8 and a.shape == x.shape
    np.testing.assert_array_equal(a, b)


def test_random_crop_centre_offset_is_identity():
    x = batch(n=3)
    out, offsets = random_crop(x, 0, np.random.default_rng(0), return_offsets=True)
    np.testing.assert_array_equal(out, x)


def test_random_crop_zero_padding_brings_zeros():
    x = np.ones((200, 4, 4, 1), np.float32)
    out, offsets = random_crop(x, 2, np.random.default_rng(0), return_offsets=True)
    corner = np.flatnonzero((offsets[:, 0] == 0) & (offsets[:, 1] == 0))[0]
    assert out[corner, :2, :2].sum() == 0 and out[corner, 2:, 2:].min() == 1


def test_flip_exact_mapping_and_twice_is_identity():
    x = batch(n=50)
    out, mask = random_flip(x, np.random.default_rng(3), return_mask=True)
    assert out.shape == x.shape and 0 < mask.sum() < len(mask)
    w = x.shape[2]
    for n in range(len(x)):
        for j in range(w):
            expected = x[n, :, w - 1 - j] if mask[n] else x[n, :, j]
            np.testing.assert_array_equal(out[n, :, j], expected)
    again = random_flip(out, np.random.default_rng(3))  # same seed -> same mask -> flips back
    np.testing.assert_array_equal(again, x)
    assert not np.shares_memory(out, x)


def test_flip_probability_extremes():
    x = batch(n=6)
    np.testing.assert_array_equal(random_flip(x, np.random.default_rng(0), p=0.0), x)
    np.testing.assert_array_equal(random_flip(x, np.random.default_rng(0), p=1.0), x[:, :, ::-1])


def test_augment_batch_shapes():
    x = np.zeros((7, 32, 32, 3), np.uint8)
    assert augment_batch(x, np.random.default_rng(0)).shape == x.shape


def test_channel_stats_and_normalize():
    rng = np.random.default_rng(0)
    x = rng.integers(0, 256, size=(50, 5, 4, 3), dtype=np.uint8)
    x[..., 2] //= 2
    mean, std = channel_stats(x, chunk=7)  # chunking must not change the result
    f = x.reshape(-1, 3) / 255.0
    np.testing.assert_allclose(mean, f.mean(axis=0), rtol=1e-12)
    np.testing.assert_allclose(std, f.std(axis=0), rtol=1e-9)
    z = normalize(x, mean, std)
    assert z.dtype == np.float32 and z.shape == x.shape
    np.testing.assert_allclose(z.reshape(-1, 3).mean(axis=0), 0, atol=1e-5)
    np.testing.assert_allclose(z.reshape(-1, 3).std(axis=0), 1, atol=1e-5)
    np.testing.assert_allclose(z, ((x / 255.0 - mean) / std).astype(np.float32), rtol=1e-5, atol=1e-5)
    assert normalize(x, mean, std, dtype=np.float64).dtype == np.float64
    with pytest.raises(ValueError):
        normalize(x, mean, np.array([1.0, 0.0, 1.0]))


def test_iterate_minibatches():
    rng = np.random.default_rng(0)
    batches = list(iterate_minibatches(10, 4, rng))
    assert [len(b) for b in batches] == [4, 4, 2]
    assert sorted(np.concatenate(batches).tolist()) == list(range(10))
    assert np.concatenate(batches).tolist() != list(range(10))  # shuffled
    assert [len(b) for b in iterate_minibatches(10, 4, rng, drop_last=True)] == [4, 4]
    assert np.concatenate(list(iterate_minibatches(5, 2, shuffle=False))).tolist() == [0, 1, 2, 3, 4]
    a = np.concatenate(list(iterate_minibatches(100, 32, np.random.default_rng(5))))
    b = np.concatenate(list(iterate_minibatches(100, 32, np.random.default_rng(5))))
    np.testing.assert_array_equal(a, b)
    with pytest.raises(ValueError):
        list(iterate_minibatches(10, 4, None))


def cutout_reference(x, size, corners, fill):
    """Per-image loop: overwrite one square."""
    out = x.copy()
    for i, (cy, cx) in enumerate(corners):
        out[i, cy:cy + size, cx:cx + size] = fill
    return out


@pytest.mark.parametrize("size", [1, 3, 6])
@pytest.mark.parametrize("fill", [0.0, np.array([1.5, -2.0, 0.25], np.float32)])
def test_cutout_matches_loop(size, fill):
    x = batch(n=60, h=8, w=6)
    out, corners = cutout(x, size, np.random.default_rng(4), fill=fill, return_corners=True)
    assert out.shape == x.shape and out.dtype == x.dtype
    assert corners[:, 0].min() >= 0 and corners[:, 0].max() <= 8 - size
    assert corners[:, 1].min() >= 0 and corners[:, 1].max() <= 6 - size
    np.testing.assert_array_equal(out, cutout_reference(x, size, corners, fill))
    assert (out != x).any(axis=-1).sum() == 60 * size * size  # exactly one square per image, inside it
    x_before = x.copy()
    cutout(x, size, np.random.default_rng(4))
    np.testing.assert_array_equal(x, x_before)  # the input is not modified


def test_cutout_reaches_every_corner_and_is_seeded():
    x = np.full((400, 5, 5, 1), 9, np.uint8)
    out, corners = cutout(x, 3, np.random.default_rng(0), fill=np.array([2]), return_corners=True)
    assert {tuple(c) for c in corners} == {(i, j) for i in range(3) for j in range(3)}
    assert out.dtype == np.uint8 and set(np.unique(out)) == {2, 9}
    np.testing.assert_array_equal(out, cutout(x, 3, np.random.default_rng(0), fill=np.array([2])))


@pytest.mark.parametrize("size", [0, 9, -1])
def test_cutout_rejects_sizes_outside_the_image(size):
    with pytest.raises(ValueError, match="cutout size"):
        cutout(batch(n=2, h=8, w=9), size, np.random.default_rng(0))
