"""CIFAR-10 reader: tiny generated image tree and pickle set, cache, bad inputs, and 260 real images."""
import pickle
import shutil

import numpy as np
import pytest
from PIL import Image

import scratchnet.data.cifar as cifar
from cifar_helpers import make_pickles, make_tree
from scratchnet.data import CLASS_NAMES, DatasetError, load_cifar10


def test_tree_loads_exact_pixels_and_sorted_order(tmp_path):
    images = make_tree(tmp_path / "data")
    d = load_cifar10(tmp_path / "data", cache_dir=tmp_path / "cache", progress=False)
    assert d.train_x.shape == (30, 32, 32, 3) and d.train_x.dtype == np.uint8
    assert d.test_x.shape == (20, 32, 32, 3)
    assert d.train_y.dtype == np.int64 and d.train_y.tolist() == [c for c in range(10) for _ in range(3)]
    assert d.class_names == tuple(sorted(CLASS_NAMES))
    # PNG is lossless: every pixel must come back exactly, in sorted class / file order
    np.testing.assert_array_equal(d.train_x[3 * 2 + 1], images[("train", sorted(CLASS_NAMES)[2])][1])
    np.testing.assert_array_equal(d.test_x[-1], images[("test", sorted(CLASS_NAMES)[-1])][-1])
    assert "lossless" in d.source and d.directory == tmp_path / "data" / "cifar10"
    assert not d.from_cache and d.cache_dir is not None and d.cache_dir.parent == tmp_path / "cache"


def test_tree_jpeg_is_labelled_lossy(tmp_path):
    make_tree(tmp_path / "data", n_train=1, n_test=1, ext="jpg")
    d = load_cifar10(tmp_path / "data", cache_dir=tmp_path / "cache", progress=False)
    assert d.source == "JPEG copy (lossy)" and d.train_x.shape == (10, 32, 32, 3)


def test_cache_hit_does_not_decode(tmp_path, monkeypatch):
    make_tree(tmp_path / "data")
    first = load_cifar10(tmp_path / "data", cache_dir=tmp_path / "cache", progress=False)

    def no_decode(path):
        raise AssertionError("decoded although the cache is valid")

    monkeypatch.setattr(cifar, "_decode_image", no_decode)
    second = load_cifar10(tmp_path / "data", cache_dir=tmp_path / "cache", progress=False)
    assert second.from_cache and second.cache_dir == first.cache_dir
    for k in ("train_x", "train_y", "test_x", "test_y"):
        np.testing.assert_array_equal(getattr(first, k), getattr(second, k))
    assert second.class_names == first.class_names and second.source == first.source


def test_cache_invalidated_when_files_change(tmp_path, monkeypatch):
    make_tree(tmp_path / "data")
    first = load_cifar10(tmp_path / "data", cache_dir=tmp_path / "cache", progress=False)
    extra = np.full((32, 32, 3), 7, dtype=np.uint8)
    Image.fromarray(extra).save(tmp_path / "data/cifar10/train/truck/9999.png")
    second = load_cifar10(tmp_path / "data", cache_dir=tmp_path / "cache", progress=False)
    assert not second.from_cache and second.cache_dir != first.cache_dir
    assert len(second.train_y) == 31
    np.testing.assert_array_equal(second.train_x[-1], extra)


def test_incomplete_cache_is_ignored(tmp_path):
    make_tree(tmp_path / "data")
    first = load_cifar10(tmp_path / "data", cache_dir=tmp_path / "cache", progress=False)
    (first.cache_dir / "meta.json").unlink()  # as if killed before the completion marker was written
    again = load_cifar10(tmp_path / "data", cache_dir=tmp_path / "cache", progress=False)
    assert not again.from_cache
    np.testing.assert_array_equal(first.train_x, again.train_x)


def test_cache_root_from_env(tmp_path, monkeypatch):
    make_tree(tmp_path / "data", n_train=1, n_test=1)
    monkeypatch.setenv("SCRATCHNET_CACHE", str(tmp_path / "envcache"))
    d = load_cifar10(tmp_path / "data", progress=False)
    assert d.cache_dir.parent == tmp_path / "envcache" and (d.cache_dir / "meta.json").is_file()


def test_limit_per_class(tmp_path):
    make_tree(tmp_path / "data", n_train=4, n_test=3)
    d = load_cifar10(tmp_path / "data", cache_dir=tmp_path / "cache", limit_per_class=2, progress=False)
    assert len(d.train_y) == 20 and len(d.test_y) == 20
    assert np.bincount(d.train_y).tolist() == [2] * 10


def test_pickles_load_official_layout(tmp_path):
    expected = make_pickles(tmp_path / "data")
    make_tree(tmp_path / "data", n_train=1, n_test=1)  # pickles must win over the tree
    d = load_cifar10(tmp_path / "data", cache_dir=tmp_path / "cache", progress=False)
    assert d.source.startswith("official pickles") and d.directory.name == "cifar-10-batches-py"
    assert d.train_x.shape == (100, 32, 32, 3) and d.test_x.shape == (15, 32, 32, 3)
    for k in ("train_x", "train_y", "test_x", "test_y"):
        np.testing.assert_array_equal(getattr(d, k), expected[k])
    assert d.train_y.dtype == np.int64 and d.class_names == CLASS_NAMES


def test_pickles_limit_per_class(tmp_path):
    expected = make_pickles(tmp_path / "data")
    d = load_cifar10(tmp_path / "data", limit_per_class=1, progress=False)
    assert np.all(np.bincount(d.train_y, minlength=10) <= 1)
    first = np.flatnonzero(expected["train_y"] == d.train_y[0])[0]
    np.testing.assert_array_equal(d.train_x[0], expected["train_x"][first])


# ----------------------------------------------------------------------------------------------- bad inputs

def _error(root, tmp_path):
    with pytest.raises(DatasetError) as e:
        load_cifar10(root, cache_dir=tmp_path / "cache", progress=False)
    msg = str(e.value)
    assert "\n" not in msg
    return msg


def test_missing_dataset_dir(tmp_path):
    msg = _error(tmp_path / "nothing", tmp_path)
    assert str(tmp_path / "nothing") in msg and "cifar-10-batches-py" in msg and "cifar10" in msg
    assert issubclass(DatasetError, ValueError)


def test_nine_classes(tmp_path):
    make_tree(tmp_path / "data", n_train=1, n_test=1, classes=CLASS_NAMES[:9])
    msg = _error(tmp_path / "data", tmp_path)
    assert str(tmp_path / "data" / "cifar10" / "train") in msg and "expected 10 class folders, found 9" in msg


def test_missing_test_split(tmp_path):
    make_tree(tmp_path / "data", n_train=1, n_test=1)
    shutil.rmtree(tmp_path / "data/cifar10/test")
    msg = _error(tmp_path / "data", tmp_path)
    assert str(tmp_path / "data" / "cifar10") in msg and "test/" in msg


def test_corrupt_jpg(tmp_path):
    make_tree(tmp_path / "data", n_train=1, n_test=1, ext="jpg")
    bad = tmp_path / "data/cifar10/train/cat/0000.jpg"
    bad.write_bytes(b"\xff\xd8 this is not a jpeg")
    msg = _error(tmp_path / "data", tmp_path)
    assert str(bad) in msg and str(bad.parent) in msg and "unreadable" in msg


def test_wrong_image_size(tmp_path):
    make_tree(tmp_path / "data", n_train=1, n_test=1)
    bad = tmp_path / "data/cifar10/test/dog/0000.png"
    Image.fromarray(np.zeros((28, 30, 3), dtype=np.uint8)).save(bad)
    msg = _error(tmp_path / "data", tmp_path)
    assert str(bad) in msg and "30x28" in msg and "expected 32x32" in msg


def test_empty_class_folder(tmp_path):
    make_tree(tmp_path / "data", n_train=1, n_test=1)
    (tmp_path / "data/cifar10/train/frog/0000.png").unlink()
    msg = _error(tmp_path / "data", tmp_path)
    assert str(tmp_path / "data/cifar10/train/frog") in msg and "no images" in msg


def test_missing_pickle_batch(tmp_path):
    make_pickles(tmp_path / "data")
    (tmp_path / "data/cifar-10-batches-py/data_batch_3").unlink()
    msg = _error(tmp_path / "data", tmp_path)
    assert str(tmp_path / "data/cifar-10-batches-py") in msg and "data_batch_3" in msg


def test_wrong_pickle_shape(tmp_path):
    make_pickles(tmp_path / "data")
    with open(tmp_path / "data/cifar-10-batches-py/test_batch", "wb") as f:
        pickle.dump({b"data": np.zeros((4, 1000), np.uint8), b"labels": [0] * 4}, f)
    msg = _error(tmp_path / "data", tmp_path)
    assert "test_batch" in msg and "(N, 3072)" in msg


# ----------------------------------------------------------------------------------------------- real data

def test_real_subset(data_root, tmp_path):
    if not (data_root / "cifar10" / "train").is_dir() and not (data_root / "cifar-10-batches-py").is_dir():
        pytest.skip(f"no CIFAR-10 under {data_root}")
    d = load_cifar10(data_root, cache_dir=tmp_path / "cache", limit_per_class=26, progress=False)
    assert d.train_x.shape == (260, 32, 32, 3) and d.test_x.shape == (260, 32, 32, 3)
    assert d.class_names == CLASS_NAMES  # the official names, sorted, are also the official order
    assert np.bincount(d.train_y).tolist() == [26] * 10
    # real photos, not blank: a spread of intensities in each image
    assert d.train_x[:256].reshape(256, -1).std(axis=1).min() > 5
