"""The walkthrough's figures: docs/figures.py redraws them into a temporary folder, and the committed PNGs
in docs/figures/ must be what it draws today (stale or missing fails), each embedded in the walkthrough.

How strictly the pixels are compared: docs/figures.py writes no timestamp or version string, so with the
same matplotlib a redraw is byte-identical (checked in test_redraw_is_deterministic). The comparison is
nevertheless by pixels, not bytes: zlib or libpng may compress the same pixels to other bytes, and this
project pins matplotlib only from below (setup.cfg), so CI gets the newest release. With the matplotlib
that drew the committed file (each PNG records it, text key "Source"), no pixel may differ by more than a
small antialiasing tolerance: one changed digit in a figure fails. With another matplotlib, whose text
rendering may shift by a pixel everywhere, only a gross difference fails, and a warning says to redraw.
"""
import importlib.util
import re
import warnings
from pathlib import Path

import matplotlib
import numpy as np
import pytest
from PIL import Image

DOCS = Path(__file__).resolve().parents[1] / "docs"
COMMITTED = DOCS / "figures"
WALKTHROUGH = DOCS / "walkthrough.md"
SAME_RENDERER_LEVELS = 32      # a pixel differing by more than this (of 255) in any channel is a change
SAME_RENDERER_PIXELS = 0       # ... and no such pixel is allowed
OTHER_RENDERER_RMS = 12.0      # root-mean-square difference (of 255) allowed across matplotlib versions


def load_figures():
    spec = importlib.util.spec_from_file_location("walkthrough_figures", DOCS / "figures.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


figures = load_figures()
NAMES = sorted(figures.FIGURES)


@pytest.fixture(scope="module")
def redrawn(tmp_path_factory):
    out = tmp_path_factory.mktemp("figures")
    figures.main(out)
    return out


def pixels(path):
    with Image.open(path) as im:
        return np.asarray(im.convert("RGBA"), dtype=np.int16), im.info.get("Source", "")


@pytest.mark.parametrize("name", NAMES)
def test_committed_figure_is_current(name, redrawn):
    committed = COMMITTED / f"{name}.png"
    assert committed.exists(), f"docs/figures/{name}.png is missing: run python docs/figures.py"
    old, source = pixels(committed)
    new, _ = pixels(redrawn / f"{name}.png")
    assert old.shape == new.shape, (f"docs/figures/{name}.png is {old.shape[1]}x{old.shape[0]}, the script draws "
                                    f"{new.shape[1]}x{new.shape[0]}: run python docs/figures.py")
    diff = np.abs(old - new)
    if source.endswith(f"matplotlib {matplotlib.__version__}"):
        changed = int((diff.max(axis=2) > SAME_RENDERER_LEVELS).sum())
        assert changed <= SAME_RENDERER_PIXELS, (
            f"docs/figures/{name}.png is stale: {changed} pixels differ from what docs/figures.py draws now "
            "(run python docs/figures.py)")
    else:
        warnings.warn(f"docs/figures/{name}.png was drawn by {source or 'an unknown matplotlib'}, this is "
                      f"matplotlib {matplotlib.__version__}: compared loosely; run python docs/figures.py",
                      stacklevel=1)
        rms = float(np.sqrt((diff.astype(float) ** 2).mean()))
        assert rms <= OTHER_RENDERER_RMS, f"docs/figures/{name}.png differs (RMS {rms:.1f}): run python docs/figures.py"


def test_no_stray_figures():
    assert sorted(p.stem for p in COMMITTED.glob("*.png")) == NAMES, \
        "docs/figures/ holds exactly the PNGs that docs/figures.py draws"


def test_redraw_is_deterministic(redrawn, tmp_path):
    """Same matplotlib, same bytes: nothing in the file depends on the time, the machine or the thread count."""
    figures.save(figures.FIGURES["conv_backward"](), tmp_path / "again.png")
    assert (tmp_path / "again.png").read_bytes() == (redrawn / "conv_backward.png").read_bytes()


def test_each_course_section_shows_a_figure():
    """Every figure is embedded in the walkthrough, and each of sections 1-7 embeds at least one."""
    text = WALKTHROUGH.read_text()
    sections = re.split(r"^## ", text, flags=re.M)
    embedded = {}
    for section in sections:
        number = re.match(r"(\d+)\. ", section)
        for name in re.findall(r"^!\[[^\]]+\]\(figures/(\w+)\.png\)", section, flags=re.M):
            embedded[name] = int(number.group(1)) if number else None
    assert sorted(embedded) == NAMES
    assert {n for n in embedded.values() if n} == set(range(1, 8))


def test_figures_draw_scratchnets_numbers():
    """A few of the numbers the figures show, against what the text derives (the figure functions also
    assert their own claims, e.g. that the framed dout against the flipped kernel is conv2d_backward's dx)."""
    g = figures.autograd_numbers()
    assert np.allclose(g["x_grad"], [3, 5, 7]) and float(g["y"]) == 20
    c = figures.im2col_numbers()
    assert c["cols"].shape == (6, 4) and np.array_equal(c["cols"][4], [6, 7, 10, 11])
    b = figures.conv_backward_numbers()
    assert b["frame"].shape == (7, 7) and b["dx"].shape == (5, 5)
    p = figures.maxpool_numbers()
    assert np.array_equal(np.argwhere(p["dx"]), [[0, 1], [0, 2], [2, 0], [2, 2]])
    t = figures.training_numbers()
    assert t["loss"][-1] < t["loss"][0] / 2 and t["test_accuracy"][-1] > 0.9
