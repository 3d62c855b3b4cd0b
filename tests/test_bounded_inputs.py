"""Held-out bad inputs whose cost used to grow without bound: P5's --random-pairs count and the pretrained
models' preprocessing of extreme aspect ratios. Each is either bounded (memory checked by size, never by
time) or refused in one line with exit status 2."""
import subprocess
import sys
import tracemalloc
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from problems.common.cli import UserError
from problems.p5 import adder
from problems.p5 import cli as P5
from scratchnet.rnn import HardThresholdRNN

REPO = Path(__file__).resolve().parents[1]


# ------------------------------------------------------------------------------- P5 --random-pairs
def _peak_traced_bytes(fn):
    tracemalloc.start()
    try:
        fn()
        return tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()


def test_random_pair_check_memory_does_not_grow_with_the_count():
    """Ten times the pairs, the same peak: the check runs in fixed-size batches (numpy's buffers are traced)."""
    net = HardThresholdRNN.from_weights(adder.load_weights(REPO / "weights" / "rnn_adder.json"))
    peaks = {}
    for count in (10_000, 100_000):
        rng = np.random.default_rng(0)
        peaks[count] = _peak_traced_bytes(lambda: adder.verify_random(net, 64, count, rng))
    assert peaks[100_000] <= 1.1 * peaks[10_000] + (1 << 20), peaks
    assert peaks[100_000] < 200 << 20, peaks  # the unbatched check held ~24 KB a pair: 2.4 GB here


def test_random_pair_cap_is_parsed_and_refused_in_one_line(tmp_path):
    assert P5.parse_args(["--random-pairs", str(P5.MAX_RANDOM_PAIRS)]).random_pairs == P5.MAX_RANDOM_PAIRS
    with pytest.raises(UserError, match="--random-pairs"):
        P5.parse_args(["--random-pairs", str(P5.MAX_RANDOM_PAIRS + 1)])
    r = subprocess.run([sys.executable, "problems/p5_rnn_adder.py", "--random-pairs", str(10 ** 30),
                        "--out", str(tmp_path / "out")], capture_output=True, text=True, cwd=REPO, timeout=120)
    assert r.returncode == 2 and "Traceback" not in r.stderr, r.stderr
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: --random-pairs") and "too many" in lines[0], lines
    assert not (tmp_path / "out").exists()


# --------------------------------------------------------------------- extreme aspect ratios (P1, P2, P4)
@pytest.fixture
def resized_sizes(monkeypatch):
    """Every PIL resize's output size, so a test can bound the largest intermediate image."""
    sizes = []
    resize = Image.Image.resize

    def recording(self, size, *args, **kwargs):
        sizes.append(tuple(size))
        return resize(self, size, *args, **kwargs)

    monkeypatch.setattr(Image.Image, "resize", recording)
    return sizes


@pytest.mark.parametrize("size", [(40000, 1), (1, 40000), (40000, 3), (5, 40000), (100000, 300)])
def test_extreme_aspect_ratio_is_preprocessed_within_bounds(resized_sizes, size):
    """The whole-image resize of 40000x1 would be 10,240,000x256 pixels (~10 GB); only the crop's window
    is resampled instead."""
    from problems.common.pretrained import MAX_RESIZED_PIXELS, Geometric
    w, h = size
    im = Image.fromarray(np.random.default_rng(0).integers(0, 256, (h, w, 3), dtype=np.uint8))
    out = Geometric(256, 224)(im)
    assert out.size == (224, 224) and out.mode == "RGB"
    assert resized_sizes and max(a * b for a, b in resized_sizes) <= 224 * 256 <= MAX_RESIZED_PIXELS


def test_p1_runs_on_a_40000x1_image_within_bounds(tmp_path, resized_sizes, capsys):
    pytest.importorskip("torch")
    pytest.importorskip("timm")
    from problems.p1 import cli as P1
    from problems.common.pretrained import MAX_RESIZED_PIXELS
    path = tmp_path / "line.png"
    Image.fromarray(np.linspace(0, 255, 40000).astype(np.uint8)[None, :]).save(path)  # a small file
    assert path.stat().st_size < 100_000
    assert P1.main(["--image", str(path), "--out", str(tmp_path / "out"), "--topk", "1", "--maps", "1"]) is None
    assert (tmp_path / "out" / "results.json").exists()
    assert resized_sizes and max(a * b for a, b in resized_sizes) <= MAX_RESIZED_PIXELS
