"""P2 data and metrics: the Pets split parser and defect handling on a generated mini dataset,
mean-per-class accuracy against a hand-computed example, and the loader on the real partial copy."""
from __future__ import annotations

import warnings

import numpy as np
import pytest
from pets_helpers import photo, make_mini_pets

from problems.common.cli import UserError
from problems.p2.linear_probe import (confusion_matrix, l2_normalize, mean_per_class_accuracy,
                                          most_confused_pairs, per_class_accuracy)
from problems.p2.pets import ImageReadLog, breed_of, find_pets_root, load_pets, open_rgb, parse_split_file


def test_split_parser_and_classes(tmp_path):
    pets = make_mini_pets(tmp_path)
    entries = parse_split_file(pets / "annotations" / "test.txt")
    assert entries[0] == ("Abyssinian_5", 1) and len(entries) == 6
    with pytest.warns(UserWarning, match="1 of 6 listed images are absent"):
        ds = load_pets(tmp_path)
    assert ds.root == pets
    assert ds.class_names == ["Abyssinian", "Bengal", "basset_hound"]
    tv, te = ds.splits["trainval"], ds.splits["test"]
    assert len(tv) == 12 and tv.n_listed == 12 and tv.missing == []
    assert len(te) == 5 and te.missing == ["basset_hound_6"]
    assert te.labels.tolist() == [0, 0, 1, 1, 2]
    rep = ds.missing_report()
    assert rep["test"] == {"listed": 6, "present": 5, "missing": 1, "per_breed": {"basset_hound": 1}}
    assert rep["trainval"]["missing"] == 0
    assert ds.unlisted == ["Bengal_99"]


def test_torchvision_layout_and_missing_root(tmp_path):
    make_mini_pets(tmp_path, layout="oxford-iiit-pet")
    assert find_pets_root(tmp_path).name == "oxford-iiit-pet"
    with pytest.raises(UserError, match="not found"):
        find_pets_root(tmp_path / "nowhere")


def test_bad_split_line_is_user_error(tmp_path):
    f = tmp_path / "test.txt"
    f.write_text("Abyssinian_1 one 1 1\n")
    with pytest.raises(UserError, match="test.txt:1"):
        parse_split_file(f)
    assert breed_of("american_pit_bull_terrier_100") == "american_pit_bull_terrier"


def test_defective_images_are_converted_or_skipped(tmp_path):
    pets = make_mini_pets(tmp_path)
    img = pets / "images"
    notes = {}
    for name in ["Abyssinian_1", "Abyssinian_2", "Bengal_1", "Bengal_2", "basset_hound_1", "Bengal_3"]:
        im, note = open_rgb(img / f"{name}.jpg")
        assert im.mode == "RGB" and im.size == (40, 32)
        notes[name] = note
    assert notes == {"Abyssinian_1": "PNG-in-.jpg", "Abyssinian_2": "PNG-in-.jpg RGBA", "Bengal_1": "L",
                     "Bengal_2": "CMYK", "basset_hound_1": "GIF-in-.jpg P", "Bengal_3": None}
    # alpha 200/255 over mid-grey: a blend, not the raw colour and not black
    raw = photo(2).astype(float)
    got = np.asarray(open_rgb(img / "Abyssinian_2.jpg")[0], dtype=float)
    np.testing.assert_allclose(got, raw * 200 / 255 + 128 * 55 / 255, atol=1.01)

    log = ImageReadLog()
    assert log.skipped_line("test") is None
    out = [log.read(img / f"{n}.jpg") for n in ["basset_hound_5", "Abyssinian_1", "Bengal_1", "Bengal_3"]]
    assert out[0] is None and all(o is not None for o in out[1:])
    s = log.summary()
    assert s["n_skipped"] == 1 and "basset_hound_5.jpg" in s["skipped"][0]
    assert s["n_converted"] == 2 and s["converted"] == {"PNG-in-.jpg": 1, "L": 1}
    for n in range(5):                                   # many skips: one line, the first three named
        log.read(img / "basset_hound_5.jpg")
    line = log.skipped_line("test")
    assert "\n" not in line and line.count("basset_hound_5.jpg") == 3 and "skipped 6 " in line
    assert line.endswith("and 3 more (all listed in the results JSON)")


def test_mean_per_class_accuracy_hand_example():
    # class 0: 3 of 4 right (0.75); class 1: 1 of 1 (1.0); class 2: 0 of 2 (0.0); class 3 absent
    y_true = [0, 0, 0, 0, 1, 2, 2]
    y_pred = [0, 0, 0, 1, 1, 0, 1]
    np.testing.assert_allclose(per_class_accuracy(y_true, y_pred, 4)[:3], [0.75, 1.0, 0.0])
    assert np.isnan(per_class_accuracy(y_true, y_pred, 4)[3])
    assert mean_per_class_accuracy(y_true, y_pred, 4) == pytest.approx((0.75 + 1.0 + 0.0) / 3)
    # overall accuracy differs: 4/7, dominated by the big class
    assert np.mean(np.equal(y_true, y_pred)) == pytest.approx(4 / 7)
    cm = confusion_matrix(y_true, y_pred, 4)
    assert cm[0, 0] == 3 and cm[0, 1] == 1 and cm[2, 0] == 1 and cm[2, 1] == 1 and cm.sum() == 7
    pairs = most_confused_pairs(cm, ["a", "b", "c", "d"])
    assert [(p["a"], p["b"], p["errors"]) for p in pairs] == [("a", "b", 1), ("a", "c", 1), ("b", "c", 1)]


def test_l2_normalize():
    x = np.array([[3.0, 4.0], [0.0, 0.0]])
    np.testing.assert_allclose(l2_normalize(x), [[0.6, 0.8], [0.0, 0.0]])


def test_real_pets_copy(data_root):
    """The shared partial copy: 37 breeds in both splits, coverage as its SOURCES.md states."""
    try:
        root = find_pets_root(data_root)
    except UserError:
        pytest.skip(f"no Oxford-IIIT Pet under {data_root}")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        ds = load_pets(data_root)
    assert len(ds.class_names) == 37 and ds.class_names[0] == "Abyssinian"
    for s in ("trainval", "test"):
        sp = ds.splits[s]
        assert len(sp) + len(sp.missing) == sp.n_listed
        assert set(sp.labels.tolist()) == set(range(37))
    if (root / "SOURCES.md").is_file() and "4,187 of the 7,349" in (root / "SOURCES.md").read_text():
        assert len(ds.splits["trainval"]) == 2176 and len(ds.splits["test"]) == 2011
    # the known PNG-in-.jpg file decodes to RGB
    p = root / "images" / "Abyssinian_5.jpg"
    if p.is_file():
        im, note = open_rgb(p)
        assert im.mode == "RGB" and note.startswith("PNG-in-.jpg")
