"""P4's study: the assignment's update rule beside I-FGSM with momentum, and the plain and EOT attacks at a grid
of eps, on the four demo images and targets; returns a typed P4Study (problems/p4/study_result.py).

Parts: "methods" (both rules at one eps: steps, success, final P(target), seconds), "plain" and "eot" (each
eps of a grid: success, P(target) on the image and after every transform of part 2). A part not computed is
copied from a recording (`merge`), marked as such.
"""
from __future__ import annotations

import time
from dataclasses import dataclass, replace

from problems.common.cli import UserError, portable_path
from problems.p4.attack import attack, robustness, to_pil, to_uint8_tensor
from problems.p4.result import ClassRef
from problems.p4.run import EOT_EPS, Classifier, demo_images, start_torch
from problems.p4.study_result import (PARTS, EpsSweep, MethodRow, MethodTable, P4Study, PartSource, StudyImage,
                                      SweepPoint)

PLAIN_EPS_GRID = (1, 2, 4, 8, 16)      # eps < 1 leaves an 8-bit image unchanged (problems.p4.run.parse_eps)
EOT_EPS_GRID = EOT_EPS                  # --eot's own grid: the sweep and the EOT attack's table read alike


@dataclass
class StudySettings:
    """The study's knobs (eps in 0-255 pixel units); the CLI's flags, checked there."""
    parts: tuple = PARTS
    eps: float = 1.0                        # the methods table's eps (the plain attack's default)
    plain_eps: tuple = PLAIN_EPS_GRID
    eot_eps: tuple = EOT_EPS_GRID
    max_steps: int = 200
    eot_steps: int = 100
    eot_samples: int = 4
    momentum: float = 0.5
    confidence: float = 0.9
    n_images: int = 4
    model: str = "tf_efficientnet_lite0"
    device: str = "cpu"
    threads: int | None = None
    seed: int = 0
    data_dir: str | None = None


def study_jobs(s: StudySettings):
    """The first n_images of the demo: (path, target id)."""
    return [(p, t) for p, t, _ in demo_images(s.data_dir)[0][:s.n_images]]


def _key(images) -> list:
    """What makes two image lists the same study: file names and targets (the peppers photo may come from the
    data root or from problems/assets/, the same photo)."""
    return [(i.image.rsplit("/", 1)[-1], i.target.class_id) for i in images]


def check_compatible(recording: P4Study, s: StudySettings) -> None:
    """UserError unless parts computed with `s` can stand beside the recording's in one table and figure."""
    from pathlib import Path
    mine = [(Path(p).name, t) for p, t in study_jobs(s)]
    if mine != _key(recording.images):
        raise UserError(f"--from-recorded: the recording attacked {len(recording.images)} images "
                        f"({', '.join(f'{a} -> {b}' for a, b in _key(recording.images))}); this run would attack "
                        f"{len(mine)} ({', '.join(f'{a} -> {b}' for a, b in mine)}): give the same --n-images")
    for what, have, want in (("--model", recording.model, s.model), ("--confidence", recording.confidence,
                                                                       s.confidence)):
        if have != want:
            raise UserError(f"--from-recorded: the recording used {what} {have}, this run {want}; give the same")


def merge(computed: P4Study | None, recording: P4Study | None, recorded_from: str | None, command: str) -> P4Study:
    """The computed parts, and the recording's for every part not computed (marked recorded)."""
    base = computed or recording
    if base is None:
        raise UserError("nothing to do: no --parts to compute and no --from-recorded file to read")
    parts = {}
    for name in PARTS:
        mine = computed.part(name) if computed is not None else None
        theirs = recording.part(name) if recording is not None else None
        if mine is None and theirs is not None:
            mine = replace(theirs, source=replace(theirs.source, recorded=True))
        parts[name] = mine
    return P4Study(command=command, recorded_from=recorded_from if recording is not None and any(
                       parts[n] is not None and parts[n].source.recorded for n in PARTS) else None,
                   model=base.model, confidence=base.confidence, images=base.images, figures={}, **parts)


# ------------------------------------------------------------------------------------------ runs
def _source(s: StudySettings, command: str, t0: float) -> PartSource:
    import torch
    return PartSource(command=command, recorded=False, seed=s.seed, device=s.device,
                      threads=torch.get_num_threads(), seconds=round(time.perf_counter() - t0, 2))


def run_methods(clf: Classifier, inputs, s: StudySettings, command: str) -> MethodTable:
    """Every image with both rules at s.eps: the same eps ball, step bound (eps/4) and step limit."""
    t0 = time.perf_counter()
    rows = []
    for i, (x_u8, target) in enumerate(inputs):
        for method in ("ifgsm", "prob"):
            r = attack(clf.net, x_u8, target, s.eps, method=method, momentum=s.momentum, lam="auto",
                       max_steps=s.max_steps, confidence=s.confidence, seed=s.seed)
            rows.append(MethodRow(image=i, method=method, steps=r["steps"], success=bool(r["success"]),
                                  target_prob=float(r["prob"]), seconds=round(r["seconds"], 3)))
            print(f"  methods: image {i + 1} {method:5s} eps {s.eps:g}: {r['steps']} steps, "
                  f"P(target) {r['prob']:.4f}, {'reached' if r['success'] else 'NOT reached'}, "
                  f"{r['seconds']:.1f} s", flush=True)
    return MethodTable(source=_source(s, command, t0), eps=s.eps, max_steps=s.max_steps, step_px=s.eps / 4,
                       momentum=s.momentum, lam="auto", rows=rows)


def run_sweep(clf: Classifier, inputs, s: StudySettings, kind: str, command: str) -> EpsSweep:
    """I-FGSM with momentum at every eps of the kind's grid; EOT: averaged over random views, stopping only
    when the target also survives every transform (as problems/p4/run.py's EOT attack does)."""
    t0 = time.perf_counter()
    eot = kind == "eot"
    grid = s.eot_eps if eot else s.plain_eps
    points = []
    for e in grid:
        for i, (x_u8, target) in enumerate(inputs):
            def kept_everywhere(adv, tgt=target):
                rows, _ = robustness(clf.net, to_pil(adv), tgt, clf.names)
                return all(r.target_kept for r in rows)
            r = attack(clf.net, x_u8, target, float(e), method="ifgsm", step=e / 8 if eot else e / 4,
                       momentum=s.momentum, max_steps=s.eot_steps if eot else s.max_steps,
                       confidence=s.confidence, eot=s.eot_samples if eot else 0, seed=s.seed,
                       robust_check=kept_everywhere if eot else None)
            rows, _ = robustness(clf.net, to_pil(r["x_u8"]), target, clf.names)
            on_image = rows[0].target_kept and rows[0].target_prob >= s.confidence
            points.append(SweepPoint(image=i, eps=float(e), success=bool(r["success"]), on_image=on_image,
                                     all_kept=all(x.target_kept for x in rows[1:]),
                                     target_prob=rows[0].target_prob,
                                     transform_probs={x.transform: x.target_prob for x in rows[1:]},
                                     steps=r["steps"], seconds=round(r["seconds"], 3)))
            p = points[-1]
            print(f"  {kind}: image {i + 1} eps {e:g}: {r['steps']} steps, P(target) {p.target_prob:.4f}, "
                  f"{'reached' if p.on_image else 'not reached'}, "
                  f"{'kept' if p.all_kept else 'not kept'} under every transform, {r['seconds']:.1f} s", flush=True)
    return EpsSweep(source=_source(s, command, t0), kind=kind, eps=[float(e) for e in grid],
                    max_steps=s.eot_steps if eot else s.max_steps, step_px="eps/8" if eot else "eps/4",
                    momentum=s.momentum, eot_samples=s.eot_samples if eot else None, points=points)


def run_study(s: StudySettings, command: str) -> P4Study:
    """Load the classifier once and compute the parts in s.parts."""
    torch = start_torch(s.seed, s.threads, s.device)
    from problems.common.pretrained import (load_image_rgb, load_pretrained, preprocessing_info,
                                            with_normalization)
    jobs = study_jobs(s)
    for path, _ in jobs:          # every input is read before any work starts
        load_image_rgb(path)
    model, pre, names = load_pretrained(s.model, device=s.device)
    clf = Classifier(with_normalization(model, pre), pre, names, preprocessing_info(model))
    inputs = [(to_uint8_tensor(pre.geometric(load_image_rgb(p))), t) for p, t in jobs]
    images = [StudyImage(portable_path(p, s.data_dir), ClassRef(t, names[t])) for p, t in jobs]
    parts = {name: None for name in PARTS}
    if "methods" in s.parts:
        parts["methods"] = run_methods(clf, inputs, s, command)
    for kind in ("plain", "eot"):
        if kind in s.parts:
            parts[kind] = run_sweep(clf, inputs, s, kind, command)
    return P4Study(command=command, recorded_from=None, model=s.model, confidence=s.confidence, images=images,
                   figures={}, **parts)
