"""The commands that produce every result the report shows, written once for the driver and the builder.

`make_report.py` runs them; `build_report.py` prints the same command in a section's "not yet produced"
box, so the hint a reader sees is exactly what `make report` would run. Every result has a key
(p1, p2, p3_small, ...) and a results file under the results root.
"""
from __future__ import annotations

import os
import shlex
from dataclasses import dataclass, field
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]

# result key -> results file relative to the results root (each script's default --out is results/<problem>/).
RESULT_FILES = {
    "p1": ["p1/results.json"],
    "p2": ["p2/results.json"],
    "p3_small": ["p3/small/results.json"],
    "p3_small_bn": ["p3/small_bn/results.json"],
    "p3_compare": ["p3/comparison.json"],
    "p3_bn_control": ["p3/bn_control/results.json"],
    "p3_twin_check": ["p3/twin_check/results.json"],
    "p3_better": ["p3/better/results.json"],
    "p4": ["p4/results.json"],
    "p4_eot": ["p4/results_eot.json"],
    "p4_study": ["p4/study.json"],
    "p5": ["p5/results.json"],
}

P3_BN_CONTROL = "recorded/p3_bn_control.json"   # the batch-norm control's committed result (hours to retrain)
P3_TWIN_CHECK = "recorded/p3_twin_check.json"   # parts 1-2 against their PyTorch twins, committed (the twin is slow)
P3_TWIN_EPOCHS = 2                              # the twins' epochs of the 15-epoch schedule (--stop-after)
P2_BACKBONES = "recorded/p2_backbones.json"     # P2's backbone table, recorded (Lite1/Lite2 features take minutes)
P4_STUDY = "recorded/p4_study.json"   # P4 study: update-rule table and EOT sweep, recorded (the EOT sweep is slow)
P3_WEIGHTS = {"small": "weights/p3_small.npz", "small_bn": "weights/p3_small_bn.npz",
              "better": "weights/p3_better.npz"}
# How the committed part-3 network was trained (its JSON's hyperparameters say the same; a test checks):
# retraining runs this, so RETRAIN=1 remakes that network, not the script's default recipe.
P3_BETTER_TRAINING = ["--recipe", "airbench", "--epochs", "22"]


# What each problem reads from the data root, and how a reader provides it when it is missing.
DATA_FIX = {
    "p2": "put Oxford-IIIT Pet under the data root as pets/images/*.jpg and pets/annotations/{trainval,test}.txt "
          "(or allow the download where the network answers), then: SCRATCHNET_DATA=/path/to/data make run",
    "p3": "put CIFAR-10 under the data root as cifar10/{train,test}/<class>/*.jpg or cifar-10-batches-py/ "
          "(or allow the download where the network answers), then: SCRATCHNET_DATA=/path/to/data make run",
}


@dataclass
class Readiness:
    """Whether a run can answer its part with the data at hand: 'answer', 'recorded' (P3 without its test
    set: the committed weights' recorded results) or 'missing'; `detail` says why, `fix` what to do."""
    state: str
    detail: str
    fix: str | None = None


def readiness(data_dir: str | None, download: bool, retrain: bool = False) -> dict:
    """Per problem ('p1'..'p5'), what the data root (or a download) allows; checked before any long work."""
    from problems.common.assets import ASSETS, peppers_path
    from problems.common.cli import data_root
    from problems.common.downloads import download_blocker
    root = data_root(data_dir)
    shipped = "the copy shipped in problems/assets/" if peppers_path(data_dir).parent == ASSETS else "DATA"
    out = {"p1": Readiness("answer", f"peppers.png from {shipped}"),
           "p4": Readiness("answer", f"peppers.png from {shipped}; the other photos ship with scikit-image"),
           "p5": Readiness("answer", "needs no data")}
    for p, dataset, name in (("p2", "pets", "Oxford-IIIT Pet"), ("p3", "cifar10", "CIFAR-10")):
        if _has(dataset, root):
            out[p] = Readiness("answer", f"{name} found in DATA")
            continue
        blocker = download_blocker(dataset, download)
        if blocker is None:
            out[p] = Readiness("answer", f"no {name} in DATA: it will be downloaded")
        elif p == "p3" and not retrain:
            out[p] = Readiness("recorded", f"no {name} in DATA and {blocker}: the committed weights' recorded "
                                           "results are shown, not re-evaluated", DATA_FIX[p])
        else:
            out[p] = Readiness("missing", f"no {name} in DATA and {blocker}", DATA_FIX[p])
    return out


def _has(dataset: str, root: Path) -> bool:
    if dataset == "pets":
        from problems.p2.pets import have_pets
        return have_pets(root)
    from problems.p3.cifar_download import have_cifar10
    return have_cifar10(root)


def problem_of(job_name: str) -> str:
    return job_name.split("_")[0]


@dataclass
class Job:
    """One problem-script run: `argv` after the interpreter, the result keys it writes, and why it is
    skipped (None: run it)."""
    name: str
    argv: list
    produces: list
    skip: str | None = None
    needs: list = field(default_factory=list)     # files that must exist when the job starts

    def missing_inputs(self) -> list:
        return [str(n) for n in self.needs if not Path(n).is_file()]

    def command(self) -> str:
        """The command as a reader would type it from the repository root."""
        return " ".join(["python"] + [shlex.quote(str(a)) for a in self.argv])


def _rel(path: Path) -> str:
    """`path` relative to the repository, where the runs start (short commands, no machine folders)."""
    return os.path.relpath(Path(path).resolve(), REPO)


def plan(results: Path, retrain: bool = False, data_dir: str | None = None, quick: bool = False,
         repo: Path = REPO, seed: int = 0, download: bool = True, ready: dict | None = None) -> list[Job]:
    """The runs behind the report, in the assignment's order.

    Default: P1, P2, P4 (with EOT) and P5 (with learning) run fully (P2's first run extracts the Pets
    features once and caches them in .cache/features/; its backbone table's other
    rows are read from the committed P2_BACKBONES, recomputed with retrain); the P3 networks are
    evaluated from the committed weights (--eval-only) and the batch-norm plot is redrawn. retrain: P3
    trains all three networks (hours on a CPU). quick: no EOT, no learning. seed: passed to every script
    that draws random numbers (only when not 0, so the default commands stay short). download False:
    P2 and P3 get --no-download. ready (from `readiness`): a part whose data is missing is skipped with
    the reason, and P3 without its test set shows the committed weights' recorded results.
    """
    r = _rel(results)
    data = ["--data-dir", _rel(Path(data_dir))] if data_dir else []
    no_dl = [] if download else ["--no-download"]
    recorded = ["--recorded-if-no-data"] if ready and ready["p3"].state == "recorded" else []
    jobs = [Job("p1", ["problems/p1_pretrained.py", "--out", f"{r}/p1", *data], ["p1"])]

    p2_table = ["--recorded-backbones", P2_BACKBONES] if not retrain and (repo / P2_BACKBONES).is_file() else []
    jobs.append(Job("p2", ["problems/p2_transfer.py", "--out", f"{r}/p2", "--no-progress", *p2_table, *no_dl,
                           *data], ["p2"]))

    if retrain:
        jobs.append(Job("p3_both", ["problems/p3_small_cnn.py", "--model", "both", "--out", f"{r}/p3",
                                    "--no-progress", *no_dl, *data], ["p3_small", "p3_small_bn", "p3_compare"]))
        jobs.append(Job("p3_bn_control", ["problems/p3_bn_control.py", "--headline", f"{r}/p3/small/results.json",
                                          f"{r}/p3/small_bn/results.json", "--out", f"{r}/p3/bn_control",
                                          "--no-progress", *no_dl, *data], ["p3_bn_control"],
                        needs=[Path(results) / "p3/small/results.json", Path(results) / "p3/small_bn/results.json"]))
        # the PyTorch twins of parts 1-2 for the first P3_TWIN_EPOCHS epochs, checked against the runs above
        twins = {m: f"{r}/p3/twin/{m}/results.json" for m in ("small", "small_bn")}
        jobs.append(Job("p3_twin", ["problems/p3_small_cnn.py", "--backend", "torch", "--model", "both",
                                    "--stop-after", str(P3_TWIN_EPOCHS), "--out", f"{r}/p3/twin", "--no-progress",
                                    *no_dl, *data], []))
        jobs.append(Job("p3_twin_check", ["problems/p3_twin_check.py",
                                          *[a for m in twins for a in ("--pair", f"{r}/p3/{m}/results.json", twins[m])],
                                          "--out", f"{r}/p3/twin_check"], ["p3_twin_check"],
                        needs=[Path(results) / f"p3/{m}/results.json" for m in twins]
                        + [Path(results) / f"p3/twin/{m}/results.json" for m in twins]))
        jobs.append(Job("p3_better", ["problems/p3_small_cnn.py", "--model", "better", *P3_BETTER_TRAINING,
                                      "--out", f"{r}/p3/better", "--no-progress", *no_dl, *data], ["p3_better"]))
    else:
        for model in ("small", "small_bn"):
            job = Job(f"p3_{model}", ["problems/p3_small_cnn.py", "--model", model, "--eval-only", "--weights",
                                      P3_WEIGHTS[model], "--out", f"{r}/p3/{model}", "--no-progress",
                                      *recorded, *no_dl, *data],
                      [f"p3_{model}"])
            if not (repo / P3_WEIGHTS[model]).is_file():
                job.skip = f"{P3_WEIGHTS[model]} is not committed yet; train it with make report RETRAIN=1"
            jobs.append(job)
        compare = Job("p3_compare", ["problems/p3_small_cnn.py", "--compare", f"{r}/p3/small/results.json",
                                     f"{r}/p3/small_bn/results.json", "--out", f"{r}/p3"], ["p3_compare"],
                      needs=[Path(results) / "p3/small/results.json", Path(results) / "p3/small_bn/results.json"])
        jobs.append(compare)
        control = Job("p3_bn_control", ["problems/p3_bn_control.py", "--from-recorded", P3_BN_CONTROL, "--out",
                                        f"{r}/p3/bn_control"], ["p3_bn_control"])
        if not (repo / P3_BN_CONTROL).is_file():
            control.skip = f"{P3_BN_CONTROL} is not committed yet; train it with make report RETRAIN=1"
        jobs.append(control)
        twin = Job("p3_twin_check", ["problems/p3_twin_check.py", "--from-recorded", P3_TWIN_CHECK, "--out",
                                     f"{r}/p3/twin_check"], ["p3_twin_check"])
        if not (repo / P3_TWIN_CHECK).is_file():
            twin.skip = f"{P3_TWIN_CHECK} is not committed yet; retraining P3 computes it"
        jobs.append(twin)
        better = Job("p3_better", ["problems/p3_small_cnn.py", "--model", "better", "--eval-only", "--weights",
                                   P3_WEIGHTS["better"], "--out", f"{r}/p3/better", "--no-progress",
                                   *recorded, *no_dl, *data],
                     ["p3_better"])
        if not (repo / P3_WEIGHTS["better"]).is_file():
            better.skip = f"{P3_WEIGHTS['better']} is not committed yet; train it with make report RETRAIN=1"
        jobs.append(better)

    p4 = ["problems/p4_adversarial.py", "--out", f"{r}/p4", *data]
    jobs.append(Job("p4", p4 if quick else p4 + ["--eot"], ["p4"] if quick else ["p4", "p4_eot"]))
    # the plain eps sweep is computed (seconds); the update-rule table and the EOT sweep come from P4_STUDY
    # (retrain: all computed); without the recording those two parts show as not yet produced
    study = ["problems/p4_study.py", "--out", f"{r}/p4", *data]
    if quick or not retrain:
        study += ["--parts", "plain"] + (["--from-recorded", P4_STUDY] if (repo / P4_STUDY).is_file() else [])
    jobs.append(Job("p4_study", study, ["p4_study"]))
    p5 = ["problems/p5_rnn_adder.py", "--out", f"{r}/p5"]
    jobs.append(Job("p5", p5 if quick else p5 + ["--learn"], ["p5"]))
    for job in jobs:
        state = ready.get(problem_of(job.name)) if ready else None
        if state is not None and state.state == "missing" and not job.skip:
            job.skip = state.detail
    if seed:
        for job in jobs:
            if "--compare" not in job.argv and "--from-recorded" not in job.argv:  # these draw no random numbers
                job.argv += ["--seed", str(seed)]
    return jobs


def hint_commands(results: Path) -> dict:
    """result key -> the command that produces it (with --retrain where the default is eval-only)."""
    hints = {}
    for retrain in (True, False):        # the eval-only command wins where its weights exist
        for job in plan(results, retrain=retrain):
            for key in job.produces:
                if not (job.skip and "is not committed yet" in job.skip):
                    hints[key] = job.command()
    hints["p4_eot"] = next(j.command() for j in plan(results) if j.name == "p4")
    hints["p4_study_full"] = next(j.command() for j in plan(results, retrain=True) if j.name == "p4_study")
    return hints
