"""P4's study (study.json): the assignment's update rule beside the default I-FGSM, and success and target
probability against eps for the plain and the EOT attack; the report's text made from them.

Probabilities are in [0, 1], eps in 0-255 pixel units, seconds of wall time. Each part (methods, plain, eot)
says where its numbers come from (`PartSource`): the command that computed them, and whether the run that
wrote this file copied them from a committed recording instead of computing them.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from problems.common.fmt import fmt_g, fmt_pct
from problems.common.result import Result
from problems.p4.result import TRANSFORM_NAMES, ClassRef

PARTS = ("methods", "plain", "eot")
DEFAULT_METHOD = "ifgsm"     # what problems/p4_adversarial.py uses unless --method says otherwise
METHOD_LABEL = {"ifgsm": "I-FGSM with momentum (the default)", "prob": "the assignment's rule"}
KIND_LABEL = {"plain": "plain attack", "eot": "EOT attack"}


# ------------------------------------------------------------------------------------------- fields
@dataclass
class StudyImage:
    """An attacked image (`image` portable: problems/..., DATA/..., skimage/...) and its target class."""
    image: str
    target: ClassRef


@dataclass
class PartSource:
    """Where one part's numbers come from."""
    command: str          # the command that computed them
    recorded: bool        # True: copied from the recording named by P4Study.recorded_from, not computed by its run
    seed: int
    device: str
    threads: int          # torch CPU threads when computed: the seconds depend on them
    seconds: float        # wall time of the whole part


@dataclass
class MethodRow:
    """One image attacked with one update rule at the table's eps."""
    image: int            # index into P4Study.images
    method: str           # "ifgsm" or "prob"
    steps: int            # gradient steps taken (max_steps when it did not reach the target)
    success: bool         # the 8-bit image reached the target as top-1 with P >= confidence
    target_prob: float    # P(target) of the last 8-bit image
    seconds: float


@dataclass
class MethodTable:
    """Both update rules on every image, same eps, step bound and step limit."""
    source: PartSource
    eps: float
    max_steps: int
    step_px: float        # ifgsm: the step; prob with lambda 'auto': the largest pixel change per step
    momentum: float       # ifgsm only
    lam: float | str      # prob only: 'auto' or a fixed lambda
    rows: list[MethodRow]


@dataclass
class SweepPoint:
    """One image attacked at one eps, scored as its 8-bit image and under every transform of part 2."""
    image: int
    eps: float
    success: bool                       # the attack's own goal: plain: on_image; EOT: on_image and all_kept
    on_image: bool                      # target top-1 with P >= confidence on the untransformed image
    all_kept: bool                      # target top-1 after every transform
    target_prob: float                  # on the untransformed image
    transform_probs: dict[str, float]   # transform -> P(target) after it
    steps: int
    seconds: float


@dataclass
class EpsSweep:
    """One attack (plain or EOT, I-FGSM with momentum) at every eps of a grid, on every image."""
    source: PartSource
    kind: str                           # "plain" or "eot"
    eps: list[float]
    max_steps: int
    step_px: str                        # "eps/4" (plain) or "eps/8" (EOT)
    momentum: float
    eot_samples: int | None             # EOT: random views per step
    points: list[SweepPoint]


@dataclass(kw_only=True)
class P4Study(Result):
    """study.json: the update-rule table and the two eps sweeps (a part is None when it was not run)."""
    command: str                        # the command that wrote this file
    recorded_from: str | None           # the recording the parts marked recorded were copied from
    model: str
    confidence: float
    images: list[StudyImage]
    methods: MethodTable | None
    plain: EpsSweep | None
    eot: EpsSweep | None
    figures: dict[str, str]             # role -> file name next to study.json

    def part(self, name: str):
        return getattr(self, name)

    def recorded_parts(self) -> list[str]:
        return [p for p in PARTS if self.part(p) is not None and self.part(p).source.recorded]

    def image_name(self, i: int) -> str:
        return Path(self.images[i].image).stem


# ------------------------------------------------------------------------------------------- text
def _join(items: list[str]) -> str:
    return items[0] if len(items) == 1 else ", ".join(items[:-1]) + " and " + items[-1]


@dataclass
class MethodTotals:
    method: str
    label: str
    reached: int
    n: int
    steps: int
    seconds: float
    steps_both: int       # steps on the images both rules reached


@dataclass
class MethodFacts:
    rows: list            # [(image index, {method: MethodRow})], in image order
    totals: dict          # method -> MethodTotals
    both: list[int]       # images both rules reached
    winner: str | None    # the rule the table favours, None: neither
    sentence: str


def method_facts(d: P4Study) -> MethodFacts | None:
    """The table's rows by image, each rule's totals and the sentence that says which rule the table favours
    and why, from the numbers alone: successes first, then steps on the images both reached. Wall time is
    reported beside them but never decides (it depends on the machine and its load)."""
    t = d.methods
    if t is None or not t.rows:
        return None
    by_image: dict[int, dict] = {}
    for r in t.rows:
        by_image.setdefault(r.image, {})[r.method] = r
    rows = sorted(by_image.items())
    methods = [m for m in (DEFAULT_METHOD, "prob") if any(m in cell for _, cell in rows)]
    both = [i for i, cell in rows if all(m in cell and cell[m].success for m in methods)]
    totals = {}
    for m in methods:
        mine = [cell[m] for _, cell in rows if m in cell]
        totals[m] = MethodTotals(m, METHOD_LABEL.get(m, m), sum(r.success for r in mine), len(mine),
                                 sum(r.steps for r in mine), round(sum(r.seconds for r in mine), 2),
                                 sum(cell[m].steps for i, cell in rows if i in both))
    head = (f"At eps {fmt_g(t.eps)}/255 with at most {t.max_steps} steps, "
            + "; ".join(f"{x.label} reached the target on {x.reached} of {x.n} images in {x.steps} steps and "
                        f"{x.seconds:.1f} s in all" for x in totals.values()) + ".")
    misses = [f"{METHOD_LABEL.get(m, m)} stopped at P(target) {fmt_pct(cell[m].target_prob, 2)} on "
              f"{d.image_name(i)} after {cell[m].steps} steps"
              for i, cell in rows for m in methods if m in cell and not cell[m].success]
    if misses:
        text = "; ".join(misses)
        head += " " + text[0].upper() + text[1:] + "."
    if len(methods) < 2:
        return MethodFacts(rows, totals, both, None, head)
    a, b = totals[DEFAULT_METHOD], totals["prob"]
    if a.reached != b.reached:
        winner = DEFAULT_METHOD if a.reached > b.reached else "prob"
    elif both and a.steps_both != b.steps_both:
        winner = DEFAULT_METHOD if a.steps_both < b.steps_both else "prob"
    else:
        winner = None
    if winner is None:
        verdict = ("The table does not separate the two rules: they reached the target on as many images"
                   + (" in as many steps." if both else "."))
    else:
        w, lo = (a, b) if winner == DEFAULT_METHOD else (b, a)
        pro, con = [], []
        if w.reached > lo.reached:
            pro.append(f"reached the target on more images ({w.reached} against {lo.reached} of {w.n})")
        if both and w.steps_both != lo.steps_both:
            (pro if w.steps_both < lo.steps_both else con).append(
                f"{'fewer' if w.steps_both < lo.steps_both else 'more'} steps on the {len(both)} image"
                f"{'s' if len(both) > 1 else ''} both reached ({w.steps_both} against {lo.steps_both})")
        if w.seconds != lo.seconds:
            (pro if w.seconds < lo.seconds else con).append(
                f"{'less' if w.seconds < lo.seconds else 'more'} time in all ({w.seconds:.1f} s against "
                f"{lo.seconds:.1f} s)")
        took = [i for i, p in enumerate(pro) if not p.startswith("reached")]
        if took:   # "took fewer steps ... and less time"
            pro[took[0]] = "took " + pro[took[0]]
        if winner == DEFAULT_METHOD:
            verdict = (f"This is why I-FGSM with momentum is the default: at the same eps it {_join(pro)}.")
        else:
            verdict = (f"Here the assignment's rule did better: at the same eps it {_join(pro)}; this table does "
                       f"not support I-FGSM with momentum as the default.")
        if con:
            verdict += f" It took {_join(con)}, though."
    return MethodFacts(rows, totals, both, winner, head + " " + verdict)


@dataclass
class SweepRow:
    """One eps of one attack, over the images."""
    eps: float
    n: int
    success: int
    on_image: int
    all_kept: int
    mean_prob: float      # mean P(target) on the untransformed images
    mean_worst: float     # mean over images of the smallest P(target) over the transforms
    steps: int
    seconds: float


def sweep_rows(s: EpsSweep) -> list[SweepRow]:
    rows = []
    for e in s.eps:
        pts = [p for p in s.points if p.eps == e]
        if not pts:
            continue
        worst = [min(p.transform_probs.values()) if p.transform_probs else p.target_prob for p in pts]
        rows.append(SweepRow(e, len(pts), sum(p.success for p in pts), sum(p.on_image for p in pts),
                             sum(p.all_kept for p in pts), sum(p.target_prob for p in pts) / len(pts),
                             sum(worst) / len(pts), sum(p.steps for p in pts),
                             round(sum(p.seconds for p in pts), 2)))
    return rows


def _counts(rows: list[SweepRow], attr: str, noun: str = "") -> str:
    """'0 of 4 at eps 1 and 2, 4 of 4 at eps 4 to 16': runs of equal counts along the grid."""
    groups: list[list[SweepRow]] = []
    for r in rows:
        if groups and getattr(groups[-1][-1], attr) == getattr(r, attr) and groups[-1][-1].n == r.n:
            groups[-1].append(r)
        else:
            groups.append([r])
    if len(groups) == 1 and len(rows) > 1:
        return f"{getattr(rows[0], attr)} of {rows[0].n}{' ' + noun if noun else ''} at every eps ({fmt_g(rows[0].eps)} to {fmt_g(rows[-1].eps)})"
    out = []
    for g in groups:
        eps = [fmt_g(r.eps) for r in g]
        where = eps[0] if len(g) == 1 else (" and ".join(eps) if len(g) == 2 else f"{eps[0]} to {eps[-1]}")
        out.append(f"{getattr(g[0], attr)} of {g[0].n}{' ' + noun if noun and not out else ''} at eps {where}")
    return ", ".join(out)


@dataclass
class SweepFacts:
    eps: list[float]                  # every eps of either grid, ascending
    rows: dict                        # kind -> {eps: SweepRow}
    sentences: list[str]


def sweep_facts(d: P4Study) -> SweepFacts | None:
    """Per eps and attack: images fooled, images whose target survives every transform, mean probabilities;
    and sentences that read the counts out (eps in 0-255 units)."""
    sweeps = {k: d.part(k) for k in ("plain", "eot") if d.part(k) is not None and d.part(k).points}
    if not sweeps:
        return None
    rows = {k: sweep_rows(s) for k, s in sweeps.items()}
    sentences = []
    n_tr = len(TRANSFORM_NAMES) - 1
    for k, rs in rows.items():
        name = KIND_LABEL[k][0].upper() + KIND_LABEL[k][1:]
        sentences.append(f"{name}: target reached (untransformed) on {_counts(rs, 'on_image', 'images')}; kept "
                         f"under all {n_tr} transforms on {_counts(rs, 'all_kept', 'images')}.")
    robust = {k: next((r.eps for r in rs if r.all_kept == r.n), None) for k, rs in rows.items()}
    if len(robust) == 2:
        bits = [f"{fmt_g(robust[k])}/255 for the {KIND_LABEL[k]}" if robust[k] is not None else
                f"none up to {fmt_g(rows[k][-1].eps)}/255 for the {KIND_LABEL[k]}" for k in ("eot", "plain")]
        sentences.append(f"The smallest eps at which every image's target survived every transform: {bits[0]}, "
                         f"{bits[1]}.")
    eps = sorted({r.eps for rs in rows.values() for r in rs})
    return SweepFacts(eps, {k: {r.eps: r for r in rs} for k, rs in rows.items()}, sentences)
