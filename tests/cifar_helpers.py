"""Generators of tiny CIFAR-10 datasets on disk (image tree and official pickles) for the tests."""
import pickle

import numpy as np
from PIL import Image

from scratchnet.data import CLASS_NAMES


def make_tree(root, n_train=3, n_test=2, classes=CLASS_NAMES, ext="png", seed=0):
    """root/cifar10/{train,test}/<class>/NNNN.<ext> with random 32x32 RGB images; returns {(split, class): [arrays]}."""
    rng = np.random.default_rng(seed)
    images = {}
    for split, n in (("train", n_train), ("test", n_test)):
        for c in classes:
            d = root / "cifar10" / split / c
            d.mkdir(parents=True)
            for i in range(n):
                a = rng.integers(0, 256, size=(32, 32, 3), dtype=np.uint8)
                Image.fromarray(a).save(d / f"{i:04d}.{ext}")
                images.setdefault((split, c), []).append(a)
    return images


def make_pickles(root, n_per_batch=20, n_test=15, seed=0):
    """root/cifar-10-batches-py/ in the official format; returns the expected NHWC arrays and labels."""
    rng = np.random.default_rng(seed)
    d = root / "cifar-10-batches-py"
    d.mkdir(parents=True)
    expected = {"train_x": [], "train_y": [], "test_x": [], "test_y": []}

    def write(name, n, split):
        x = rng.integers(0, 256, size=(n, 32, 32, 3), dtype=np.uint8)
        y = rng.integers(0, 10, size=n).tolist()
        # official row layout: 1024 R values (row-major), then 1024 G, then 1024 B
        rows = np.concatenate([x[..., 0].reshape(n, -1), x[..., 1].reshape(n, -1), x[..., 2].reshape(n, -1)], axis=1)
        with open(d / name, "wb") as f:
            pickle.dump({b"batch_label": name.encode(), b"labels": y, b"data": rows,
                         b"filenames": [b"x.png"] * n}, f)
        expected[f"{split}_x"].append(x)
        expected[f"{split}_y"].append(np.array(y))

    for i in range(1, 6):
        write(f"data_batch_{i}", n_per_batch, "train")
    write("test_batch", n_test, "test")
    with open(d / "batches.meta", "wb") as f:
        pickle.dump({b"label_names": [c.encode() for c in CLASS_NAMES], b"num_vis": 3072,
                     b"num_cases_per_batch": n_per_batch}, f)
    return {k: np.concatenate(v) for k, v in expected.items()}
