"""P3 parts 1-2 cross-checked: the scratchnet runs against their PyTorch twins, epoch by epoch.

    python problems/p3_twin_check.py --pair SCRATCHNET.json TORCH.json [--pair ...] [--out DIR]
    python problems/p3_twin_check.py --from-recorded recorded/p3_twin_check.json [--out DIR]

The twin (`problems/p3_small_cnn.py --backend torch`) is the same network, initialisation scheme, optimiser,
schedule and augmentation in PyTorch, fed the same batches, crops and flips by the same training loop; its
initial weights come from PyTorch's generator. A full twin run costs as much as the scratchnet run, so the
twin may stop early: `--stop-after K` keeps the schedule of all the recipe's epochs and ends after K of
them, and the check compares the epochs both runs have. Each --pair is one network: the scratchnet
results.json first (e.g. the committed weights/p3_small.json), the twin's second; their recipes, data and
sizes must match. --from-recorded re-reads a committed check and rewrites it (the report's default).
Writes OUT/results.json (default OUT: results/p3/twin_check/).
"""
from __future__ import annotations

import argparse
from dataclasses import dataclass
from pathlib import Path

from problems.common.cli import UserError, add_common_args, command_line, portable_path
from problems.common.fmt import fmt_int, fmt_pct
from problems.common.result import Result, read_result

from .result import P3Result

REPO = Path(__file__).resolve().parents[2]
RECORDED = REPO / "recorded" / "p3_twin_check.json"
MODELS = ("small", "small_bn")
LABEL = {"small": "part 1 (plain)", "small_bn": "part 2 (batch norm)"}
AGREE_WITHIN = 0.02   # test accuracies this close (2 points) at every compared epoch: the curves agree


@dataclass(kw_only=True)
class TwinEpoch:
    epoch: int
    scratchnet_test_accuracy: float
    torch_test_accuracy: float
    scratchnet_test_loss: float
    torch_test_loss: float


@dataclass(kw_only=True)
class TwinModel:
    """One network: its scratchnet run and its PyTorch twin over the epochs both have."""
    model: str
    schedule_epochs: int            # the epochs the learning-rate schedule spans (the recipe's)
    scratchnet_file: str
    torch_file: str
    torch_device: str | None        # where the twin ran ('cpu' or 'cuda')
    epochs: list[TwinEpoch]


@dataclass(kw_only=True)
class P3TwinCheck(Result):
    """results.json of the cross-check: per network the per-epoch test accuracy and loss of both runs."""
    problem: str
    part: str
    data_source: str
    n_train: int
    n_test: int
    models: list[TwinModel]
    command: str
    recorded_from: str | None = None    # --from-recorded: the committed file these numbers come from
    discussion: list[str]


# ------------------------------------------------------------------------------------------- text
def differences(m: TwinModel) -> list[float]:
    """PyTorch minus scratchnet test accuracy per compared epoch (fractions)."""
    return [e.torch_test_accuracy - e.scratchnet_test_accuracy for e in m.epochs]


def discussion(models: list[TwinModel]) -> list[str]:
    """The cross-check in words, from its numbers; the first sentence holds for every run of the twin."""
    lines = ["The PyTorch twin is the same network with the same initialisation scheme, optimiser, learning-rate "
             "schedule and augmentation, fed the very same batches, crops and flips by the same training loop; "
             "only its initial weights differ (drawn by PyTorch's generator from the same distribution), so the "
             "two runs are not expected to agree to the last digit."]
    for m in models:
        diffs = differences(m)
        if not diffs:
            continue
        n = len(diffs)
        worst = max(range(n), key=lambda i: abs(diffs[i]))
        ahead = sum(d > 0 for d in diffs)
        span = (f"the first {fmt_int(n)} epochs of the {fmt_int(m.schedule_epochs)}-epoch schedule"
                if n < m.schedule_epochs else f"all {fmt_int(n)} epochs")
        last = m.epochs[-1]
        s = (f"{LABEL.get(m.model, m.model).capitalize()}: over {span} the two test accuracies differ by at most "
             f"{100 * abs(diffs[worst]):.2f} points (epoch {m.epochs[worst].epoch}), "
             f"{100 * sum(map(abs, diffs)) / n:.2f} on average; after epoch {last.epoch} scratchnet has "
             f"{fmt_pct(last.scratchnet_test_accuracy, 2)} and PyTorch {fmt_pct(last.torch_test_accuracy, 2)}. "
             f"PyTorch is ahead after {ahead} of {n} epochs.")
        if abs(diffs[worst]) <= AGREE_WITHIN:
            s += (f" Within {100 * AGREE_WITHIN:.0f} points at every epoch compared: the two libraries train this "
                  "network alike.")
        else:
            off = [m.epochs[i].epoch for i in range(n) if abs(diffs[i]) > AGREE_WITHIN]
            s += (f" More than {100 * AGREE_WITHIN:.0f} points apart after epoch{'s' if len(off) > 1 else ''} "
                  f"{', '.join(map(str, off))}: this check does not show the two training alike there.")
        lines.append(s)
    return lines


# ------------------------------------------------------------------------------------------- building
def _read(path: Path) -> P3Result:
    return read_result(P3Result, path, "P3 results file", "expected a P3 results.json")


def pair(scratchnet_path: Path, torch_path: Path) -> tuple[TwinModel, P3Result]:
    """One network's comparison; UserError when the two runs are not the same recipe on the same data."""
    s, t = _read(scratchnet_path), _read(torch_path)
    if s.backend not in ("numpy", "cupy"):
        raise UserError(f"{scratchnet_path}: backend {s.backend}; the first file of a --pair is the scratchnet run")
    if t.backend != "torch":
        raise UserError(f"{torch_path}: backend {t.backend}; the second file of a --pair is the PyTorch twin's "
                        "(--backend torch)")
    if s.model != t.model or s.model not in MODELS:
        raise UserError(f"--pair {scratchnet_path} {torch_path}: models {s.model} and {t.model}; expected the "
                        f"same network, one of {', '.join(MODELS)}")
    if s.hyperparameters is None or t.hyperparameters is None:
        raise UserError(f"--pair {scratchnet_path} {torch_path}: a file records no hyperparameters")
    a, b = s.to_json()["hyperparameters"], t.to_json()["hyperparameters"]
    differ = sorted(k for k in a if a.get(k) != b.get(k))
    if differ:
        raise UserError(f"--pair {scratchnet_path} {torch_path}: the recipes differ in "
                        + ", ".join(f"{k} ({a.get(k)} vs {b.get(k)})" for k in differ)
                        + "; train the twin with the scratchnet run's settings")
    for key in ("data_source", "n_train", "n_test"):
        if getattr(s, key) != getattr(t, key):
            raise UserError(f"--pair {scratchnet_path} {torch_path}: {key} differs ({getattr(s, key)} vs "
                            f"{getattr(t, key)}); both runs must see the same data")
    n = min(len(s.test_accuracy), len(t.test_accuracy), len(s.test_loss), len(t.test_loss))
    if n == 0:
        raise UserError(f"--pair {scratchnet_path} {torch_path}: no per-epoch test accuracy to compare")
    rows = [TwinEpoch(epoch=i + 1, scratchnet_test_accuracy=s.test_accuracy[i], torch_test_accuracy=t.test_accuracy[i],
                      scratchnet_test_loss=s.test_loss[i], torch_test_loss=t.test_loss[i]) for i in range(n)]
    model = TwinModel(model=s.model, schedule_epochs=s.hyperparameters.epochs,
                      scratchnet_file=portable_path(scratchnet_path), torch_file=portable_path(torch_path),
                      torch_device=t.device, epochs=rows)
    return model, s


def build(pairs) -> P3TwinCheck:
    """The check of every --pair (one per network, in the order given)."""
    models, runs = [], []
    for s_path, t_path in pairs:
        model, run = pair(Path(s_path), Path(t_path))
        if any(m.model == model.model for m in models):
            raise UserError(f"two --pair arguments for the {model.model} network; give one per network")
        models.append(model)
        runs.append(run)
    first = runs[0]
    for r in runs[1:]:
        if (r.data_source, r.n_train, r.n_test) != (first.data_source, first.n_train, first.n_test):
            raise UserError("the --pair runs were made on different data; compare runs on the same data")
    return P3TwinCheck(problem="p3", part="PyTorch twin cross-check", data_source=first.data_source or "",
                       n_train=first.n_train or 0, n_test=first.n_test or 0, models=models, command=command_line(),
                       discussion=discussion(models))


def from_recorded(path: Path) -> P3TwinCheck:
    """A committed check, re-read (every field checked) with its text made again from its numbers."""
    check = read_result(P3TwinCheck, path, "recorded twin check",
                        "expected the results.json that problems/p3_twin_check.py --pair wrote")
    check.recorded_from = portable_path(path)
    check.discussion = discussion(check.models)
    return check


def parse_args(argv):
    p = argparse.ArgumentParser(allow_abbrev=False, description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--pair", nargs=2, type=Path, action="append", metavar=("SCRATCHNET.json", "TORCH.json"),
                   help="one network's scratchnet results.json and its PyTorch twin's (repeat per network)")
    p.add_argument("--from-recorded", type=Path, default=None, metavar="JSON",
                   help="re-read a committed check (e.g. recorded/p3_twin_check.json) instead of building one")
    add_common_args(p, "p3/twin_check", data=False, out_help="results.json")
    args = p.parse_args(argv)
    if (args.pair is None) == (args.from_recorded is None):
        p.error("give --pair SCRATCHNET.json TORCH.json (one per network) or --from-recorded JSON, not both")
    return args


def main(argv=None) -> int:
    args = parse_args(argv)
    check = from_recorded(args.from_recorded) if args.from_recorded else build(args.pair)
    args.out.mkdir(parents=True, exist_ok=True)
    check.write(args.out / "results.json")
    for line in check.discussion:
        print(line)
    print(f"P3 twin check: {args.out / 'results.json'}")
    return 0
