"""P3 part 2, controlled: the plain and the batch-norm network, each trained at both peak learning rates.

    python problems/p3_bn_control.py [--runs-dir DIR] [--headline A.json B.json] [--data-dir D] [--out DIR]
    python problems/p3_bn_control.py --from-recorded recorded/p3_bn_control.json [--out DIR]

Parts 1 and 2 train each network at its own peak learning rate (plain 0.02, batch norm 0.2), so their
difference mixes two effects: batch norm itself, and the larger learning rate it tolerates. This control
fills the other two cells of the 2 x 2 table (plain at 0.2, batch norm at 0.02) with the same recipe,
epochs, seed and batches; the two diagonal cells are the part-1 and part-2 runs themselves (--headline,
default: the committed weights/p3_small.json and weights/p3_small_bn.json).

Training mode trains the missing cells under DIR/<model>_lr<lr>/ (default DIR: OUT/runs), resuming from
their checkpoints, and reuses a cell whose results.json is already there with the same settings. A run whose
loss goes non-finite is recorded as diverged (where), not as an error. --from-recorded reads a committed
result and only redraws its figure (the report does this; `make run RETRAIN=1` trains instead).
Writes OUT/results.json and OUT/bn_control.png (default OUT: results/p3/bn_control/).
"""
from __future__ import annotations

import argparse
import math
from dataclasses import dataclass
from pathlib import Path

from problems.common.cli import UserError, add_common_args, command_line, portable_path
from problems.common.downloads import add_download_flag
from problems.common.fmt import fmt_g, fmt_pct
from problems.common.result import Result, read_result

REPO = Path(__file__).resolve().parents[2]
RECORDED = REPO / "recorded" / "p3_bn_control.json"
HEADLINE = (REPO / "weights" / "p3_small.json", REPO / "weights" / "p3_small_bn.json")
MODELS = ("small", "small_bn")
LABEL = {"small": "plain", "small_bn": "batch-norm"}


@dataclass(kw_only=True)
class ControlCell:
    """One network at one peak learning rate: its per-epoch curves, or where it diverged."""
    model: str
    lr: float
    role: str                       # 'part 1 run', 'part 2 run' or 'control run'
    diverged: str | None = None     # 'epoch E, step S' when the loss went non-finite
    train_loss: list[float]
    test_loss: list[float]
    test_accuracy: list[float]
    final_test_error: float | None  # None when it diverged
    seconds: float | None
    results_file: str


@dataclass(kw_only=True)
class P3BNControl(Result):
    """results.json of the control: the four cells and the text made from them."""
    problem: str
    part: str
    epochs: int
    batch_size: int
    seed: int
    lrs: list[float]
    data_source: str
    cells: list[ControlCell]
    command: str
    recorded_from: str | None = None    # --from-recorded: the committed file these numbers come from
    figures: dict[str, str]
    discussion: list[str]

    def cell(self, model: str, lr: float) -> ControlCell | None:
        return next((c for c in self.cells if c.model == model and math.isclose(c.lr, lr)), None)


# ------------------------------------------------------------------------------------------- text
def _error(c: ControlCell | None) -> str:
    if c is None:
        return "not run"
    return f"diverged ({c.diverged})" if c.diverged else f"{fmt_pct(c.final_test_error, 2)} test error"


def _change(before: float, after: float) -> str:
    """'lowers the test error from 28.63% to 25.01% (3.62 points)' or 'raises ...'."""
    if math.isclose(before, after, abs_tol=5e-5):
        return f"leaves the test error at {fmt_pct(after, 2)}"
    verb = "lowers" if after < before else "raises"
    return f"{verb} the test error from {fmt_pct(before, 2)} to {fmt_pct(after, 2)} ({abs(before - after) * 100:.2f} points)"


def discussion(cells: list[ControlCell], lrs: list[float]) -> list[str]:
    """Sentences that follow from the four cells: batch norm at equal learning rate, then what the larger
    learning rate adds, then the headline gap split into the two."""
    def get(model, lr):
        return next((c for c in cells if c.model == model and math.isclose(c.lr, lr)), None)

    def ok(c):
        return c is not None and c.diverged is None and c.final_test_error is not None

    low, high = min(lrs), max(lrs)
    out = []
    for lr in (low, high):
        plain, bn = get("small", lr), get("small_bn", lr)
        if ok(plain) and ok(bn):
            out.append(f"At the same peak learning rate {fmt_g(lr)}, batch norm {_change(plain.final_test_error, bn.final_test_error)}.")
        elif plain is not None and plain.diverged and ok(bn):
            out.append(f"At peak learning rate {fmt_g(lr)} the plain network diverged ({plain.diverged}); "
                       f"with batch norm it trains, to {fmt_pct(bn.final_test_error, 2)} test error.")
        elif bn is not None and bn.diverged and ok(plain):
            out.append(f"At peak learning rate {fmt_g(lr)} the batch-norm network diverged ({bn.diverged}); "
                       f"the plain one reached {fmt_pct(plain.final_test_error, 2)} test error.")
        elif plain is not None and bn is not None:
            out.append(f"At peak learning rate {fmt_g(lr)}: plain {_error(plain)}, batch norm {_error(bn)}.")
    for model in MODELS:
        a, b = get(model, low), get(model, high)
        if ok(a) and ok(b):
            out.append(f"Raising the peak learning rate from {fmt_g(low)} to {fmt_g(high)} "
                       f"{_change(a.final_test_error, b.final_test_error)} for the {LABEL[model]} network.")
        elif a is not None and b is not None and (a.diverged or b.diverged):
            out.append(f"The {LABEL[model]} network: {_error(a)} at {fmt_g(low)}, {_error(b)} at {fmt_g(high)}.")
    p1, p2, bn_low = get("small", low), get("small_bn", high), get("small_bn", low)
    if ok(p1) and ok(p2) and ok(bn_low):
        def points(x):
            return f"{abs(x) * 100:.2f} points {'lower' if x > 0 else 'higher'}"
        total = p1.final_test_error - p2.final_test_error
        equal = p1.final_test_error - bn_low.final_test_error
        out.append(f"Part 2 (batch norm, peak lr {fmt_g(high)}) ends with a test error {points(total)} than part 1 "
                   f"(plain, {fmt_g(low)}). Split in two: at the equal learning rate {fmt_g(low)} the batch-norm "
                   f"network's error is {points(equal)} than the plain network's, and raising its learning rate "
                   f"to {fmt_g(high)} makes it another {points(total - equal)}.")
    return out


# ------------------------------------------------------------------------------------------- cells
def cell_from_result(r, role: str, path: Path) -> ControlCell:
    """A control cell from a P3Result (a part-1/2 run or a control run)."""
    err = r.final_test_error
    return ControlCell(model=r.model, lr=float(r.hyperparameters.lr), role=role, train_loss=list(r.train_loss),
                       test_loss=list(r.test_loss), test_accuracy=list(r.test_accuracy),
                       final_test_error=None if err is None else float(err), seconds=r.seconds,
                       results_file=portable_path(path))


def _read_run(path: Path, model: str, lr: float, epochs: int, seed: int, batch_size: int, what: str):
    """A P3 results.json checked to be `model` trained at `lr` with the control's epochs, seed and batch."""
    from .result import P3Result
    r = read_result(P3Result, path, what)
    h = r.hyperparameters
    if r.model != model or not math.isclose(h.lr, lr) or (h.epochs, h.seed, h.batch_size) != (epochs, seed, batch_size):
        raise UserError(f"{what} {path} is {r.model} at lr {fmt_g(h.lr)}, {h.epochs} epochs, seed {h.seed}, batch "
                        f"{h.batch_size}; the control needs {model} at lr {fmt_g(lr)}, {epochs} epochs, seed {seed}, "
                        f"batch {batch_size}")
    if not r.train_loss or not r.test_loss:
        raise UserError(f"{what} {path} has no per-epoch curves (an --eval-only result?); pass a training run's results")
    return r


def cell_folder(runs_dir: Path, model: str, lr: float) -> Path:
    return runs_dir / f"{model}_lr{fmt_g(lr)}"


def train_cell(model: str, lr: float, recipe, data, folder: Path, progress: bool, data_dir) -> ControlCell:
    """Train (or resume, or reuse) one control cell; a non-finite loss is recorded, not raised."""
    from . import run
    from .cli import write
    done = folder / "results.json"
    if done.is_file():
        h = recipe.train
        r = _read_run(done, model, lr, h.epochs, h.seed, h.batch_size, "control run")
        print(f"P3 control {model} at lr {fmt_g(lr)}: reusing {portable_path(done)}")
        return cell_from_result(r, "control run", done)
    try:
        result, weights = run.train(model, "numpy", recipe, data, folder, resume=True, progress=progress,
                                    data_dir=data_dir)
    except run.Diverged as e:
        where = str(e).split("diverged at ", 1)[-1].split(" (")[0]
        print(f"P3 control {model} at lr {fmt_g(lr)}: diverged ({where})")
        done_epochs = completed_history(folder)  # the epochs before the divergence, from the last checkpoint
        return ControlCell(model=model, lr=lr, role="control run", diverged=where,
                           train_loss=done_epochs.get("train_loss", []), test_loss=done_epochs.get("test_loss", []),
                           test_accuracy=done_epochs.get("test_accuracy", []), final_test_error=None, seconds=None,
                           results_file=portable_path(folder))
    write(folder, result, weights)
    return cell_from_result(result, "control run", done)


def completed_history(folder: Path) -> dict:
    """The per-epoch history saved in a run folder's checkpoint (scratchnet.train.save_checkpoint), or {}."""
    import json

    from scratchnet.io import load_npz
    try:
        return json.loads(str(load_npz(folder / "checkpoint.npz")["meta"]))["history"]
    except Exception:  # no checkpoint (diverged in epoch 1) or an unreadable one: no curves to show
        return {}


def build(cells: list[ControlCell], recipe, data_source: str, recorded_from: str | None = None,
          command: str | None = None) -> P3BNControl:
    lrs = sorted({c.lr for c in cells})
    order = {(m, lr): i for i, (m, lr) in enumerate((m, lr) for m in MODELS for lr in lrs)}
    cells = sorted(cells, key=lambda c: order.get((c.model, c.lr), len(order)))
    h = recipe.train
    return P3BNControl(problem="p3", part="batch-norm control: both networks at both peak learning rates",
                       epochs=h.epochs, batch_size=h.batch_size, seed=h.seed, lrs=lrs, data_source=data_source,
                       cells=cells, command=command or command_line(), recorded_from=recorded_from,
                       figures={}, discussion=discussion(cells, lrs))


# ------------------------------------------------------------------------------------------- figure
def draw(result: P3BNControl, out: Path) -> str:
    """Training (dashed) and test (solid) loss per epoch of every cell on one axis, test error beside it."""
    from matplotlib.figure import Figure
    from matplotlib.ticker import MaxNLocator

    from problems.common.plots import save_figure
    fig = Figure(figsize=(7.6, 3.4))
    loss_ax, err_ax = fig.add_subplot(1, 2, 1), fig.add_subplot(1, 2, 2)
    colours = {("small", 0): "#9ecae1", ("small", 1): "#08519c", ("small_bn", 0): "#fdae6b", ("small_bn", 1): "#a63603"}
    for c in result.cells:
        colour = colours.get((c.model, result.lrs.index(c.lr) if c.lr in result.lrs else 0), "grey")
        label = f"{'batch norm' if c.model == 'small_bn' else 'plain'}, lr {fmt_g(c.lr)}" + (f" (diverged, {c.diverged})" if c.diverged else "")
        epochs = range(1, len(c.train_loss) + 1)
        if not c.train_loss:
            loss_ax.plot([], [], color=colour, label=label)
            continue
        end = dict(marker="x", markevery=[len(c.train_loss) - 1], markersize=7) if c.diverged else {}
        loss_ax.plot(epochs, c.train_loss, color=colour, linestyle="--", linewidth=1.2)
        loss_ax.plot(epochs, c.test_loss, color=colour, linewidth=1.6, label=label, **end)
        err_ax.plot(epochs, [100 * (1 - a) for a in c.test_accuracy], color=colour, linewidth=1.6, marker="o",
                    markersize=2.5)
    loss_ax.plot([], [], color="black", linestyle="--", label="training loss (dashed)")
    loss_ax.plot([], [], color="black", label="test loss (solid)")
    for ax, ylabel in ((loss_ax, "cross-entropy loss"), (err_ax, "test error (%)")):
        ax.set_xlabel("epoch", fontsize=9)
        ax.set_ylabel(ylabel, fontsize=9)
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.tick_params(labelsize=8.5)
        ax.grid(True, alpha=0.3)
    loss_ax.legend(fontsize=8, loc="upper right")
    loss_ax.set_title("Loss per epoch", fontsize=10)
    err_ax.set_title("Test error per epoch", fontsize=10)
    fig.tight_layout()
    save_figure(fig, out / "bn_control.png", dpi=150)
    return "bn_control.png"


def write(result: P3BNControl, out: Path) -> Path:
    out.mkdir(parents=True, exist_ok=True)
    result.figures = {"bn_control": draw(result, out)}
    result.write(out / "results.json")
    return out / "results.json"


# ------------------------------------------------------------------------------------------- CLI
def parse_args(argv):
    from problems.common.cli import positive_int
    p = argparse.ArgumentParser(allow_abbrev=False, description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--from-recorded", type=Path, default=None, metavar="JSON",
                   help="redraw a recorded control (e.g. recorded/p3_bn_control.json) instead of training")
    p.add_argument("--headline", nargs=2, type=Path, default=list(HEADLINE), metavar=("SMALL.json", "SMALL_BN.json"),
                   help="the part-1 and part-2 training runs, the diagonal cells (default: the committed "
                        "weights/p3_small.json and weights/p3_small_bn.json)")
    p.add_argument("--runs-dir", type=Path, default=None,
                   help="where the control cells train and checkpoint (default: OUT/runs)")
    p.add_argument("--epochs", type=positive_int, default=None,
                   help="epochs per run (default: the part-1/2 recipes' 15; the --headline runs must match)")
    p.add_argument("--limit-per-class", type=positive_int, default=None,
                   help="use only the first K images per class of each split (smoke tests)")
    add_download_flag(p, "the official CIFAR-10")
    p.add_argument("--no-progress", action="store_true", help="no progress bars")
    add_common_args(p, "p3/bn_control")
    return p.parse_args(argv)


def from_recorded(path: Path, out: Path) -> P3BNControl:
    result = read_result(P3BNControl, path, "recorded control", "train it with: python problems/p3_bn_control.py")
    result.recorded_from = portable_path(path)
    result.discussion = discussion(result.cells, result.lrs)  # today's wording, the recorded numbers
    return result


def main(argv=None) -> int:
    args = parse_args(argv)
    if args.from_recorded is not None:
        result = from_recorded(args.from_recorded, args.out)
    else:
        from scratchnet import cpu

        from .cli import recipe_of
        from .run import load_data
        cpu.tune()  # a run of scratchnet's CPU kernels: process-wide BLAS and malloc tuning (scratchnet.cpu)
        args.batch_size = args.lr = args.label_smoothing = None  # the recipes' own values
        recipes = {m: recipe_of(args, m) for m in MODELS}
        own_lr = {m: recipes[m].train.lr for m in MODELS}
        h = recipes["small"].train
        if (h.epochs, h.batch_size) != (recipes["small_bn"].train.epochs, recipes["small_bn"].train.batch_size):
            raise UserError("the two recipes differ in epochs or batch size: no controlled comparison")
        cells = []
        for (model, role), path in zip((("small", "part 1 run"), ("small_bn", "part 2 run")), args.headline):
            r = _read_run(path, model, own_lr[model], h.epochs, h.seed, h.batch_size, f"{role} results")
            cells.append(cell_from_result(r, role, path))
        data = load_data(args.data_dir, download=args.download, limit_per_class=args.limit_per_class,
                         progress=not args.no_progress)
        for c, path in zip(cells, args.headline):  # like with like: the cells must share the data
            r = _read_run(path, c.model, c.lr, h.epochs, h.seed, h.batch_size, "run")
            if (r.data_source, r.n_train, r.n_test) != (data.source, len(data.train_y), len(data.test_y)):
                raise UserError(f"{path} was trained on {r.n_train} + {r.n_test} images ({r.data_source}); the control "
                                f"has {len(data.train_y)} + {len(data.test_y)} ({data.source}): pass --headline runs "
                                "made on the same data")
        runs_dir = args.runs_dir or args.out / "runs"
        for model in MODELS:
            for lr in own_lr.values():
                if not math.isclose(lr, own_lr[model]):
                    recipe = recipe_of(argparse.Namespace(**{**vars(args), "lr": lr}), model)
                    cells.append(train_cell(model, lr, recipe, data, cell_folder(runs_dir, model, lr),
                                            not args.no_progress, args.data_dir))
        result = build(cells, recipes["small"], data.source)
    path = write(result, args.out)
    for line in result.discussion:
        print(line)
    print(f"P3 batch-norm control: results in {portable_path(path)}")
    return 0
