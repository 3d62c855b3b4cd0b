"""The validation-split augmentation search for the 22-epoch airbench recipe (recorded/p3_val_e22_*.json):
every file reads as a P3 result scored on the validation split (so the report would refuse it), the runs
differ only in their augmentation (or, for the re-scored one, its test-time views), and docs/p3_better.md
quotes their numbers as the files hold them."""
import json
from pathlib import Path

import pytest

from problems.p3.result import P3Result

REPO = Path(__file__).resolve().parents[1]
RUNS = {  # file -> the docs row's first two cells
    "p3_val_e22_crop2.json": ("2-pixel crops, flips (the committed recipe)", "none"),
    "p3_val_e22_crop4_cutout12.json": ("4-pixel crops, flips, Cutout 12x12 (airbench96's augmentation)",
                                       "`--crop-padding 4 --cutout 12`"),
    "p3_val_e22_crop2_cutout8.json": ("2-pixel crops, flips, Cutout 8x8", "`--cutout 8`"),
}
AUGMENTATION = ("crop_padding", "cutout")


def pct(x):
    return f"{100 * x:.2f}%"


def load(name):
    return json.loads((REPO / "recorded" / name).read_text())


def search_section():
    doc = (REPO / "docs" / "p3_better.md").read_text()
    return doc[doc.index("## Choosing the augmentation"):doc.index("## The earlier run")]


@pytest.mark.parametrize("name", sorted(RUNS) + ["p3_val_e22_crop2_tta3.json"])
def test_each_is_a_validation_run_of_the_same_recipe(name):
    r = P3Result.read(REPO / "recorded" / name)
    assert r.evaluated_on == "validation split (last 500 training images per class)"
    assert "not the test set" in r.unfit_for_report() and r.n_test == 5000 and r.n_train == 45000
    base = load("p3_val_e22_crop2.json")["hyperparameters"]
    hp = load(name)["hyperparameters"]
    other = {k: v for k, v in hp.items() if k not in AUGMENTATION + ("tta",)}
    assert other == {k: v for k, v in base.items() if k not in AUGMENTATION + ("tta",)}
    assert hp["epochs"] == 22 and hp["recipe"] == "airbench" and hp["seed"] == 0


@pytest.mark.parametrize("name", sorted(RUNS))
def test_the_docs_table_quotes_each_run(name):
    r = load(name)
    what, flags = RUNS[name]
    assert (f"| {what} | {flags} | {pct(r['train_accuracy'][-1])} | {pct(r['final_test_accuracy_without_tta'])} | "
            f"{pct(r['final_test_accuracy'])} |") in search_section()


def test_the_ten_views_rescore_the_baseline_weights():
    base, ten = load("p3_val_e22_crop2.json"), load("p3_val_e22_crop2_tta3.json")
    assert ten["eval_only"] and ten["hyperparameters"]["tta"] == 3 and base["hyperparameters"]["tta"] == 2
    assert ten["final_test_accuracy_without_tta"] == base["final_test_accuracy_without_tta"]   # same weights
    text = " ".join(search_section().split())
    assert (f"reach {pct(ten['final_test_accuracy'])} with 10 views against {pct(base['final_test_accuracy'])} "
            "with 6") in text
