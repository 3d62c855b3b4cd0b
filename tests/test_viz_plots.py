"""Filter grid (contrast stretch per tile, layout, PNG) and the training plots."""
import numpy as np
import pytest
from PIL import Image

from scratchnet.viz import filter_grid, save_filter_grid, stretch_each, tile_origin


def test_each_tile_spans_exactly_zero_to_one():
    rng = np.random.default_rng(0)
    w = rng.normal(size=(11, 11, 3, 64)) * rng.uniform(0.01, 10, size=64) + rng.normal(size=64)
    w[..., 5] = 0.37  # a constant filter
    up, gap = 3, 2
    img = filter_grid(w, rows=4, cols=16, upscale=up, gap=gap)
    assert img.shape == (4 * 33 + 3 * gap, 16 * 33 + 15 * gap, 3) and img.dtype == np.float32
    for k in range(64):
        y, x = tile_origin(k // 16, k % 16, 11, 11, up, gap)
        tile = img[y:y + 33, x:x + 33]
        if k == 5:
            assert np.all(tile == 0)  # constant filter -> zeros, no NaN
            continue
        assert tile.min() == 0.0 and tile.max() == 1.0
        # nearest-neighbour upscale of the stretched filter
        f = w[..., k] - w[..., k].min()
        f = f / f.max()
        np.testing.assert_allclose(tile[::up, ::up], f, atol=1e-6)
        np.testing.assert_array_equal(tile[1::up, 2::up], tile[::up, ::up])
    # gaps between tiles keep the gap value
    assert np.all(img[33:33 + gap] == 1.0) and np.all(img[:, 33:33 + gap] == 1.0)
    assert not np.isnan(img).any()


def test_stretch_each_independent():
    f = np.stack([np.arange(4.0), 10 * np.arange(4.0) - 3, np.full(4, 2.0)])
    s = stretch_each(f)
    np.testing.assert_allclose(s[0], [0, 1 / 3, 2 / 3, 1])
    np.testing.assert_allclose(s[1], [0, 1 / 3, 2 / 3, 1])
    np.testing.assert_array_equal(s[2], 0)


def test_grid_filter_order_and_grey():
    w = np.zeros((2, 2, 1, 3))
    w[0, 0, 0, 1] = 1.0  # filter 1: only its top-left pixel is bright
    img = filter_grid(w, rows=1, cols=3, upscale=1, gap=1, gap_value=0.5)
    assert img.shape == (2, 8, 3)
    np.testing.assert_array_equal(img[:, 2], 0.5)  # gap column
    np.testing.assert_array_equal(img[0, 3], [1, 1, 1])  # tile 1 starts at x=3
    np.testing.assert_array_equal(img[1, 4], [0, 0, 0])


def test_grid_bad_inputs():
    with pytest.raises(ValueError):
        filter_grid(np.zeros((3, 3, 3, 65)))
    with pytest.raises(ValueError):
        filter_grid(np.zeros((3, 3, 4, 8)))
    with pytest.raises(ValueError):
        filter_grid(np.zeros((3, 3, 3)))


def test_save_filter_grid_png(tmp_path):
    w = np.random.default_rng(1).normal(size=(11, 11, 3, 64))
    path = tmp_path / "sub" / "filters.png"
    img = save_filter_grid(path, w, upscale=4, gap=2)
    with Image.open(path) as im:
        assert im.size == (16 * 44 + 15 * 2, 4 * 44 + 3 * 2) and im.mode == "RGB"
        np.testing.assert_array_equal(np.asarray(im), img)


def test_plots_write_pngs(tmp_path):
    from problems.common.plots import plot_accuracy_vs_time, plot_loss_curves
    p = plot_loss_curves([("no BN", [1, 2, 3], [2.0, 1.5, 1.2]), ("BN", [1, 2, 3], [1.8, 1.2, 0.9])],
                         tmp_path / "loss.png", title="loss")
    q = plot_accuracy_vs_time([("numpy", [10, 20], [0.3, 0.5])], tmp_path / "acc.png")
    for path in (p, q):
        with Image.open(path) as im:
            assert im.format == "PNG" and im.size[0] > 200
    assert not list(tmp_path.glob(".tmp-*"))


def test_report_figures_are_drawn_near_the_size_they_print(tmp_path):
    """The report prints these at about 95-110 mm (curves) and at the 176-mm text width (the 37-breed
    confusion matrix): drawn wider, their 7-9 pt text would print below 7 pt."""
    from problems.common.plots import plot_accuracy_vs_time, plot_loss_curves
    from problems.p2.linear_probe import plot_confusion

    def inches(path, dpi=120):
        with Image.open(path) as im:
            return im.size[0] / dpi
    loss = plot_loss_curves([("a", [1, 2, 3], [2.0, 1.5, 1.2]), ("b", [1, 2, 3], [1.8, 1.2, 1.0])], tmp_path / "l.png")
    acc = plot_accuracy_vs_time([("a", [10, 20], [0.5, 0.6])], tmp_path / "a.png")
    assert inches(loss) <= 4.6 and inches(acc) <= 4.6
    names = [f"breed_name_{i:02d}" for i in range(37)]
    cm = np.eye(37, dtype=int) * 20
    plot_confusion(cm, names, tmp_path / "cm.png", "confusion")
    assert inches(tmp_path / "cm.png") <= 6.95
