"""P4's results: the plain attack (results.json) and the EOT attack (results_eot.json), and the text made
from them (the observed per-transform summary, results.md's tables, the report's verdicts).

Field names are the JSON keys; probabilities are in [0, 1], eps, L-inf and steps in 0-255 pixel units,
seconds of wall time. One key is renamed in Python: the method's "lambda" (a keyword) is `Method.lam`.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from problems.common.pretrained import ModelInfo, Preprocessing
from problems.common.fmt import DASH, fmt_g
from problems.common.result import Result, ResultError


# The transforms of part 2, in the order the robustness rows list them ("none" first).
TRANSFORM_NAMES = ("none", "hflip", "crop80", "rotate30", "grayscale")

# Why each transform can break the attack: the mechanism only. Whether it did is said by p4_table's verdicts,
# from the results, never here.
DISCUSSION = {
    "hflip": ("A mirror image moves every pixel's perturbation to the mirrored place. The perturbation is "
              "tuned to the exact pixel grid and the exact filters that read it; the network's filters are "
              "not mirror-symmetric, so the flipped noise no longer adds up along the gradient direction, "
              "while the clean content is recognised in either orientation."),
    "crop80": ("Cropping and re-sizing (bicubic) shifts and stretches the perturbation by a non-integer "
               "factor and low-pass filters it, which averages a pixel-sized pattern of a few grey levels "
               "largely away."),
    "rotate30": ("Rotation resamples every pixel with bilinear interpolation, which both moves and smooths "
                 "the noise (and adds black corners), so the high-frequency pattern decorrelates from the "
                 "filters it was tuned for."),
    "grayscale": ("Greyscale keeps the pixel grid but mixes the three channels (0.299 R + 0.587 G + 0.114 B) "
                  "and replicates the result; the per-channel signs of the noise partly cancel and the colour "
                  "directions the attack used disappear, so its effect shrinks, though the spatial part "
                  "survives; whether the target holds depends on how much of the attack was in "
                  "luminance."),
    "eot": ("Expectation over transformation optimises the target's log-probability averaged over random "
            "flips, crops, rotations and greyscale versions of the image (plus the image itself), so the "
            "perturbation has to be a pattern the network reads as the target in all of them rather than a "
            "pixel-exact one."),
}


# ------------------------------------------------------------------------------------------- fields
@dataclass
class ClassRef:
    """An ImageNet class."""
    class_id: int
    name: str


@dataclass
class TransformRow:
    """The classifier's answer on one transform of a saved adversarial image."""
    transform: str
    target_prob: float
    top1: int
    top1_name: str
    top1_prob: float
    target_kept: bool


@dataclass
class EpsTry:
    """One eps of the EOT attack's grid (eps in pixel units, whole numbers)."""
    eps: int
    success: bool
    all_transforms_kept: bool
    steps: int
    seconds: float


@dataclass
class AttackEntry:
    """One attacked image, scored as its saved 8-bit PNG. `image` is portable (problems/..., DATA/...)."""
    image: str
    adv_png: str                  # file name, next to results.json
    target: ClassRef
    eps: float
    linf: int
    psnr_db: float                # NaN (JSON null) when nothing changed
    clean_top1: ClassRef
    clean_prob: float
    clean_correct: bool | None    # None: no expected classes (user images)
    clean_target_prob: float
    adv_top1: ClassRef
    adv_prob: float
    adv_target_prob: float
    success: bool                 # target top-1 with P >= confidence, inside the eps ball
    steps: int
    seconds: float
    frac_pixels_changed: float
    frac_values_changed: float
    robustness: list[TransformRow]


@dataclass
class EotEntry(AttackEntry):
    """An EOT attack: the entry at the last eps tried, every eps tried, and the plain attack's rows."""
    eps_tried: list[EpsTry]
    plain_robustness: list[TransformRow]


@dataclass
class Method:
    """The plain attack's update rule; `lam` is the JSON key "lambda"."""
    update: str                   # "ifgsm" or "prob"
    step_px: float
    momentum: float | None        # ifgsm only
    lam: float | str | None       # prob only: a number or "auto"
    confidence: float
    max_steps: int
    gradient_at: str


@dataclass
class Summary:
    all_succeeded: bool
    total_steps: int
    total_seconds: float


@dataclass
class EotConfig:
    samples_per_step: int
    max_steps: int
    eps_grid: list[int]
    step_px: float | str          # "eps/8" unless --step was given
    distribution: str


def _lambda_in(obj, where: str):
    """`obj` with method's JSON key "lambda" as the field name `lam`."""
    method = obj.get("method") if isinstance(obj, dict) else None
    if not isinstance(method, dict):
        return obj
    if "lam" in method:
        raise ResultError(f"{where}.method: unknown field(s) lam (not in Method)")
    return dict(obj, method={("lam" if k == "lambda" else k): v for k, v in method.items()})


@dataclass(kw_only=True)
class P4Header(Result):
    """What both P4 results files start with: the command, model and attack settings."""
    command: str
    seed: int
    model: ModelInfo
    preprocessing: Preprocessing
    device: str
    threads: int
    method: Method
    noise_display: str

    def to_json(self) -> dict:
        obj = super().to_json()
        obj["method"] = {("lambda" if k == "lam" else k): v for k, v in obj["method"].items()}
        return obj

    @classmethod
    def from_json(cls, obj):
        try:
            return super().from_json(_lambda_in(obj, cls.__name__))
        except ResultError as e:   # name the JSON key, not the Python one
            raise ResultError(str(e).replace(".method.lam:", ".method.lambda:")
                              .replace("missing field 'lam'", "missing field 'lambda'")) from None


@dataclass(kw_only=True)
class P4Result(P4Header):
    """The plain attack at one eps, and the transforms' effect on each saved adversarial image."""
    eps: float
    images: list[AttackEntry]
    summary: Summary
    figures: dict[str, str]                  # role -> file name next to results.json
    discussion: dict[str, str]               # transform -> why it breaks (or not) the attack
    discussion_observed: dict[str, str] = field(default_factory=dict)   # absent in early results

    def headline(self) -> str:
        """The report's one-line summary."""
        n_ok = sum(e.success for e in self.images)
        broken = [x.transform for x in p4_table(self.images).summary if x.transform != "none" and x.kept == 0]
        return (f"{n_ok} of {len(self.images)} targeted attacks succeeded at eps {fmt_g(self.eps)}/255"
                + (f"; broken by {', '.join(broken)} on every image" if broken else ""))


@dataclass(kw_only=True)
class P4EotResult(P4Header):
    """The expectation-over-transformation attack: the smallest eps of the grid that survives every transform."""
    eot: EotConfig
    images: list[EotEntry]
    figures: dict[str, str]
    discussion: str
    discussion_observed: dict[str, str] = field(default_factory=dict)


# ------------------------------------------------------------------------------------------- text
def observed(entries) -> dict[str, str]:
    """Per transform: in how many images the target stayed top-1, and the mean target probability."""
    out = {}
    for name in TRANSFORM_NAMES[1:]:
        rows = [r for e in entries for r in e.robustness if r.transform == name]
        out[name] = (f"observed: target kept in {sum(r.target_kept for r in rows)}/{len(rows)} images, "
                     f"mean P(target) {np.mean([r.target_prob for r in rows]):.3f}")
    return out


def markdown_tables(entries, title) -> list[str]:
    """results.md's attack table and robustness table of `entries`."""
    md = [f"## {title}", "",
          "| image | clean top-1 (p) | target | eps | L-inf | PSNR dB | steps | s | pixels changed "
          "| adv top-1 (p), saved PNG |", "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |"]
    for e in entries:
        md.append(f"| {Path(e.image).name} | {e.clean_top1.name} ({e.clean_prob:.3f}) "
                  f"| {e.target.name} ({e.target.class_id}) | {e.eps:g} | {e.linf} "
                  f"| {e.psnr_db:.1f} | {e.steps} | {e.seconds:.1f} "
                  f"| {100 * e.frac_pixels_changed:.1f}% | {e.adv_top1.name} ({e.adv_prob:.3f}) |")
    names = [r.transform for r in entries[0].robustness]
    md += ["", "P(target) / top-1 after each transform of the saved adversarial PNG:", "",
           "| image | " + " | ".join(names) + " |", "| --- " * (len(names) + 1) + "|"]
    for e in entries:
        md.append(f"| {Path(e.image).name} | " + " | ".join(
            f"{r.target_prob:.3f} / {r.top1_name}" for r in e.robustness) + " |")
    return md + [""]


def results_markdown(plain: P4Result, eot: P4EotResult | None = None) -> str:
    """results.md: the plain attack's tables and discussion, then the EOT attack's when it ran."""
    md = [f"# P4: targeted adversarial examples ({plain.model.name})", ""]
    md += markdown_tables(plain.images, f"Plain attack ({plain.method.update}, eps {plain.eps:g}/255)")
    md += [f"- **{k}**: {v} ({plain.discussion_observed[k]})" for k, v in plain.discussion.items()]
    if eot is not None:
        md += ["", *markdown_tables(eot.images, "EOT attack (smallest eps of 2, 4, 8, 16 that survives "
                                                "all four transforms)"), eot.discussion, ""]
        md += [f"- {k}: {v}" for k, v in eot.discussion_observed.items()]
    return "\n".join(md) + "\n"


@dataclass
class TransformVerdict:
    """One transform across the images: how many kept the target, a sentence saying so, and why the
    transform can break an attack (DISCUSSION, the same for every run)."""
    transform: str
    kept: int
    n: int
    mean_p: float | None
    verdict: str
    mechanism: str = ""


@dataclass
class TransformTable:
    names: list[str]
    summary: list[TransformVerdict]
    overall: str | None


def p4_table(entries) -> TransformTable:
    """Transforms x images, with a generated sentence per transform saying whether it broke the attack."""
    names = [r.transform for r in entries[0].robustness] if entries else []
    summary = []
    for name in names:
        rows = [r for e in entries for r in e.robustness if r.transform == name]
        kept = sum(bool(r.target_kept) for r in rows)
        n = len(rows)
        mean_p = sum(r.target_prob for r in rows) / n if n else None
        if name == "none":
            verdict = (f"the saved adversarial PNGs keep the target on {kept} of {n} images" if n else DASH)
        elif kept == 0:
            verdict = f"broke the attack on all {n} images (the target is no longer top-1)"
        elif kept == n:
            verdict = f"did not break the attack: the target stays top-1 on all {n} images"
        else:
            verdict = f"broke the attack on {n - kept} of {n} images; the target survives on {kept}"
        summary.append(TransformVerdict(name, kept, n, mean_p, verdict, DISCUSSION.get(name, "")))
    tr = [s for s in summary if s.transform != "none"]
    broke = [s.transform for s in tr if s.kept == 0]
    held = [s.transform for s in tr if s.kept == s.n]
    partly = [s.transform for s in tr if 0 < s.kept < s.n]
    if not tr:
        overall = None
    elif len(broke) == len(tr):
        overall = f"Every transform ({', '.join(broke)}) broke every attack."
    elif len(held) == len(tr):
        overall = f"The target survived every transform ({', '.join(held)}) on every image."
    else:
        bits = []
        if broke:
            bits.append(f"{', '.join(broke)} broke the attack on every image")
        if partly:
            bits.append(f"{', '.join(partly)} broke it on some images only")
        if held:
            bits.append(f"the target survived {', '.join(held)} on every image")
        overall = "; ".join(bits)
        overall = overall[0].upper() + overall[1:] + "."
    return TransformTable(names, summary, overall)


@dataclass
class EotFacts:
    entries: list[EotEntry]
    sentence: str | None
    table: TransformTable
    discussion: str = ""


def p4_eot_facts(d: P4EotResult) -> EotFacts:
    """The EOT section's sentence (how many images got a perturbation that survives every transform)."""
    entries = d.images
    robust = [e for e in entries if all(r.target_kept for r in e.robustness)]
    sentence = None
    if entries:
        sentence = (f"Expectation over transformation found a perturbation whose target survives all "
                    f"transforms for {len(robust)} of {len(entries)} images"
                    + (", at eps " + ", ".join(f"{fmt_g(e.eps)}/255 ({e.target.name})" for e in robust)
                       if robust else "") + ".")
    return EotFacts(entries, sentence, p4_table(entries), eot_discussion(d))


def eot_discussion(d: P4EotResult) -> str:
    """The EOT discussion: the mechanism (true for every run), then what this run found, from its numbers."""
    views = d.eot.samples_per_step
    lines = [DISCUSSION["eot"], f"Each step here averages over {views} random views, so it costs {views + 1} "
                                f"forward and backward passes instead of one."]
    found, missed = [], []
    for e in d.images:
        ok = [t.eps for t in e.eps_tried if t.success and t.all_transforms_kept]
        name = f"{Path(e.image).stem} ({e.target.name})"
        if ok:
            below = [t.eps for t in e.eps_tried if t.eps < min(ok)]
            found.append(f"{fmt_g(min(ok))}/255 for {name}"
                         + (f", where eps {', '.join(fmt_g(x) for x in below)} did not suffice" if below else ""))
        else:
            tried = [t.eps for t in e.eps_tried]
            missed.append(f"{name} (eps up to {fmt_g(max(tried))}/255 tried)" if tried else name)
    if found:
        lines.append("The smallest eps of the grid at which the target survived every transform was "
                     + "; ".join(found) + ".")
    if missed:
        lines.append("No eps of the grid made the target survive every transform for " + ", ".join(missed) + ".")
    psnr = [e.psnr_db for e in d.images if e.success and e.psnr_db == e.psnr_db]
    if psnr:
        lines.append(f"The robust perturbations have a PSNR of {min(psnr):.1f}" +
                     (f" to {max(psnr):.1f}" if max(psnr) - min(psnr) >= 0.05 else "") + " dB against the original.")
    return " ".join(lines)
