"""P4's run: check the inputs, load the classifier, attack each image (plain, then EOT), return typed results.

Each attacked image is saved to ``out/<stem>_adv.png`` (``_eot<eps>.png`` for EOT) and scored as read back
from that file: the saved 8-bit PNG is what the attack has to fool.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

from PIL import Image

from problems.common.assets import peppers_path
from problems.common.cli import UserError, command_line, portable_path, seed_everything
from problems.p4.attack import attack, classify_u8, psnr, robustness, to_pil, to_uint8_tensor
from problems.p4.result import (DISCUSSION, AttackEntry, ClassRef, EotConfig, EotEntry, EpsTry, Method,
                                ModelInfo, P4EotResult, P4Result, Preprocessing, Summary, observed)

EOT_EPS = (2, 4, 8, 16)
EOT_DISTRIBUTION = ("flip p=1/2; crop 64-100% area at a random place p=1/2; rotation U(-35, 35) degrees p=1/2; "
                    "greyscale p=1/2; plus the plain image")


@dataclass
class Settings:
    """The attack's knobs (eps, step in 0-255 pixel units); the CLI's flags, checked there."""
    eps: float = 1.0
    method: str = "ifgsm"
    step: float | None = None           # None: eps/4 (plain), eps/8 (EOT)
    momentum: float = 0.5
    lam: float | str = "auto"
    confidence: float = 0.9
    max_steps: int = 200
    eot: bool = False
    eot_samples: int = 4
    eot_steps: int = 100
    model: str = "tf_efficientnet_lite0"
    device: str = "cpu"
    threads: int | None = None
    seed: int = 0
    data_dir: str | None = None


@dataclass
class Job:
    """An image to attack, its target class and the classes that count as a correct clean prediction."""
    path: Path
    target: int
    expected: list[int] | None = None


@dataclass
class Attacked:
    """One attacked image: its results entry and the pictures the figures draw."""
    entry: AttackEntry
    x_pil: Image.Image
    x_u8: Any                # uint8 tensor (3, H, W): the clean model input
    adv_u8: Any              # the saved adversarial PNG, read back
    frac_changed: float      # unrounded share of pixels changed
    robust_imgs: list


@dataclass
class Outcome:
    """What `run` returns: the typed results and the figures' material for each attack."""
    plain: P4Result
    plain_rows: list[Attacked]
    eot: P4EotResult | None = None
    eot_rows: list[Attacked] | None = None


# ------------------------------------------------------------------------------------------ inputs
def parse_eps(text) -> float:
    """eps in 0-255 pixel units from text (or a number): at least 1, below 255; UserError otherwise."""
    try:
        e = float(text)
    except (TypeError, ValueError):
        raise UserError(f"--eps must be a number of 0-255 pixel units > 0, got {text!r}") from None
    if not (e > 0) or not math.isfinite(e):
        raise UserError(f"--eps must be > 0 (0-255 pixel units), got {text}")
    if e < 1:
        raise UserError(f"--eps must be at least 1 (0-255 pixel units): 8-bit pixels change in whole steps, "
                        f"so a smaller ball leaves the image as it is; got {text}")
    if e >= 255:
        raise UserError(f"--eps must be below 255 (0-255 pixel units), got {text}")
    return e


def demo_images(data_dir):
    """The four-image demo: (path, target id, ids that count as a correct clean prediction)."""
    import matplotlib
    import skimage
    sk = Path(skimage.__file__).parent / "data"
    mpl = Path(matplotlib.get_data_path()) / "sample_data"
    return [
        (peppers_path(data_dir), 812, [945]),                          # bell pepper -> space shuttle
        (sk / "coffee.png", 1, [967]),                                # espresso -> goldfish
        (sk / "chelsea.png", 937, [281, 282, 283, 285]),              # cat (tabby/tiger/Persian/Egyptian) -> broccoli
        (sk / "rocket.jpg", 207, [657, 744, 812]),                    # missile/projectile/shuttle -> golden retriever
    ], mpl / "grace_hopper.jpg"


def plan_jobs(images, targets, names, data_dir) -> list[Job]:
    """The images with their targets (`images`/`targets` paired; both empty: the demo)."""
    from problems.common.pretrained import imagenet_class_id
    images, targets = list(images or []), list(targets or [])
    if not (images or targets):
        return [Job(Path(p), t, e) for p, t, e in demo_images(data_dir)[0]]
    if len(images) != len(targets):
        raise UserError(f"give one --target per --image ({len(images)} images, {len(targets)} targets)")
    jobs = [Job(Path(p), imagenet_class_id(t, names)) for p, t in zip(images, targets)]
    stems = [Path(p).stem for p in images]
    clash = sorted({s for s in stems if stems.count(s) > 1})
    if clash:  # DIR/<stem>_adv.png: the second would overwrite the first
        raise UserError(f"two --image files share the name {clash[0]!r}; their outputs in --out would "
                        "overwrite each other: rename or copy one")
    return jobs


def check_inputs(jobs, out, eot: bool) -> None:
    """Every image readable, and none in `out` under the name of a file this run writes there."""
    from problems.common.pretrained import load_image_rgb
    written = {"attack.png", "robustness.png", "results.json", "results.md"}
    written |= {"attack_eot.png", "robustness_eot.png", "results_eot.json"} if eot else set()
    for j in jobs:
        written.add(f"{j.path.stem}_adv.png")
        written |= {f"{j.path.stem}_eot{e}.png" for e in EOT_EPS} if eot else set()
    for j in jobs:            # every input is checked before any work starts
        load_image_rgb(j.path)
        if j.path.resolve().parent == Path(out).resolve() and j.path.name in written:
            raise UserError(f"--image {j.path} lies in --out and has the name of a file this run writes there; "
                            "copy it elsewhere or choose another --out")


# ------------------------------------------------------------------------------------------ attacks
@dataclass
class Classifier:
    net: Any                 # pixel-space model: x / 255 -> logits
    pre: Any                 # its preprocessing (pre.geometric: PIL -> PIL at the input size)
    names: list[str]
    info: dict


def attack_image(clf: Classifier, job: Job, eps: float, s: Settings, out: Path, eot: int = 0,
                 robust_check=None, suffix: str = "_adv") -> Attacked:
    """Attack one image, save it as a PNG, score the PNG read back, and test it under every transform."""
    import torch
    from problems.common.pretrained import load_image_rgb
    names, target = clf.names, job.target
    x_pil = clf.pre.geometric(load_image_rgb(job.path))
    x_u8 = to_uint8_tensor(x_pil)
    p0 = classify_u8(clf.net, x_u8)[0]
    c0 = int(p0.argmax())
    clean_ok = None if job.expected is None else c0 in job.expected
    print(f"{job.path.name}: clean top-1 {names[c0]} ({c0}) p={float(p0[c0]):.3f}"
          + ("" if clean_ok is None else (" correct" if clean_ok else " NOT the expected class")))
    res = attack(clf.net, x_u8, target, eps, method=s.method, step=s.step if not eot else
                 (s.step if s.step is not None else eps / 8),
                 momentum=s.momentum, lam=s.lam, max_steps=s.max_steps if not eot else s.eot_steps,
                 confidence=s.confidence, eot=eot, seed=s.seed,
                 robust_check=robust_check, progress=bool(eot))
    png = out / f"{job.path.stem}{suffix}.png"
    to_pil(res["x_u8"]).save(png)
    back = to_uint8_tensor(Image.open(png))         # load the saved PNG back: it is what counts
    assert back.shape == res["x_u8"].shape and torch.equal(back, res["x_u8"])
    p1 = classify_u8(clf.net, back)[0]
    c1 = int(p1.argmax())
    linf = int((back.int() - x_u8.int()).abs().max())
    changed = float((back != x_u8).any(0).float().mean())
    rob, rob_imgs = robustness(clf.net, to_pil(back), target, names)
    entry = AttackEntry(
        image=portable_path(job.path, s.data_dir), adv_png=png.name, target=ClassRef(target, names[target]),
        eps=eps, linf=linf, psnr_db=round(psnr(back, x_u8), 2),
        clean_top1=ClassRef(c0, names[c0]), clean_prob=float(p0[c0]),
        clean_correct=clean_ok, clean_target_prob=float(p0[target]),
        adv_top1=ClassRef(c1, names[c1]), adv_prob=float(p1[c1]),
        adv_target_prob=float(p1[target]),
        success=bool(c1 == target and float(p1[target]) >= s.confidence and linf <= eps),
        steps=res["steps"], seconds=round(res["seconds"], 3),
        frac_pixels_changed=round(changed, 4),
        frac_values_changed=round(float((back != x_u8).float().mean()), 4),
        robustness=rob)
    print(f"  -> {names[target]} ({target}): saved PNG top-1 {names[c1]} p={float(p1[c1]):.3f}, "
          f"eps {eps:g}, L-inf {linf}, PSNR {entry.psnr_db:.1f} dB, {res['steps']} steps, "
          f"{res['seconds']:.2f} s, {100 * changed:.0f}% pixels changed"
          + ("" if entry.success else "  [FAILED]"))
    print("     robustness: " + ", ".join(f"{r.transform} P(target)={r.target_prob:.3f} "
                                          f"top-1 {r.top1_name}" for r in rob[1:]))
    return Attacked(entry, x_pil, x_u8, back, changed, rob_imgs)


def header(clf: Classifier, s: Settings, command: str) -> dict:
    """The fields both results files start with."""
    import torch
    info = clf.info
    return dict(command=command, seed=s.seed,
                model=ModelInfo(**{k: info[k] for k in ("name", "library", "weights")}),
                preprocessing=Preprocessing(**info["preprocessing"]), device=s.device,
                threads=torch.get_num_threads(),
                method=Method(update=s.method, step_px=s.step if s.step is not None else s.eps / 4,
                              momentum=s.momentum if s.method == "ifgsm" else None,
                              lam=s.lam if s.method == "prob" else None,
                              confidence=s.confidence, max_steps=s.max_steps,
                              gradient_at="the 8-bit rounding of X' (straight-through)"),
                noise_display="(adv - orig) / (2 eps) + 0.5 per channel: grey = unchanged, "
                              "-eps -> black, +eps -> full intensity")


def attack_plain(clf: Classifier, jobs, s: Settings, out: Path, head: dict) -> tuple[P4Result, list[Attacked]]:
    """Part 1 and 2: each image attacked at eps, then its saved PNG under every transform."""
    rows = [attack_image(clf, j, s.eps, s, out) for j in jobs]
    entries = [r.entry for r in rows]
    result = P4Result(**head, eps=s.eps, images=entries,
                      summary=Summary(all_succeeded=all(e.success for e in entries),
                                      total_steps=sum(e.steps for e in entries),
                                      total_seconds=round(sum(e.seconds for e in entries), 2)),
                      figures={"attack": "attack.png", "robustness": "robustness.png"},  # relative to results.json
                      discussion={k: v for k, v in DISCUSSION.items() if k != "eot"},
                      discussion_observed=observed(entries))
    return result, rows


def attack_eot(clf: Classifier, jobs, plain: P4Result, s: Settings, out: Path,
               head: dict) -> tuple[P4EotResult, list[Attacked]]:
    """The EOT attack per image at the smallest eps of EOT_EPS whose target survives every transform."""
    entries, rows = [], []
    for job, plain_entry in zip(jobs, plain.images):
        def check(x_u8, tgt=job.target):
            checked, _ = robustness(clf.net, to_pil(x_u8), tgt, clf.names)
            return all(r.target_kept for r in checked)
        tried = []
        for e_try in EOT_EPS:
            row = attack_image(clf, job, float(e_try), s, out, eot=s.eot_samples, robust_check=check,
                               suffix=f"_eot{e_try}")
            e = row.entry
            kept = all(r.target_kept for r in e.robustness)
            tried.append(EpsTry(eps=e_try, success=e.success, all_transforms_kept=kept, steps=e.steps,
                                seconds=e.seconds))
            if e.success and kept:
                break
        entry = EotEntry(**vars(e), eps_tried=tried, plain_robustness=plain_entry.robustness)
        row.entry = entry
        entries.append(entry)
        rows.append(row)
    result = P4EotResult(**head, eot=EotConfig(samples_per_step=s.eot_samples, max_steps=s.eot_steps,
                                               eps_grid=list(EOT_EPS),
                                               step_px="eps/8" if s.step is None else s.step,
                                               distribution=EOT_DISTRIBUTION),
                         images=entries, figures={"attack": "attack_eot.png", "robustness": "robustness_eot.png"},
                         discussion=DISCUSSION["eot"], discussion_observed=observed(entries))
    return result, rows


# ------------------------------------------------------------------------------------------ run

def start_torch(seed: int, threads: int | None, device: str):
    """torch seeded, with `threads` CPU threads and the device checked: how every P4 run starts."""
    seed_everything(seed)
    import torch
    torch.manual_seed(seed)
    if threads:
        torch.set_num_threads(threads)
    if device.startswith("cuda") and not torch.cuda.is_available():
        raise UserError("--device cuda asked for but no CUDA GPU is visible; use --device cpu")
    return torch

def run(s: Settings, out, images=(), targets=(), command: str | None = None,
        on_plain: Callable[[P4Result, list[Attacked]], None] | None = None) -> Outcome:
    """Attack `images` (paired with `targets`: ids or ImageNet names; none: the four-image demo), and with
    s.eot the EOT attack too. Adversarial PNGs go to `out`; `on_plain` sees the plain attack's results
    before the (slow) EOT attack starts."""
    torch = start_torch(s.seed, s.threads, s.device)
    from problems.common.pretrained import (imagenet_class_names, load_pretrained, preprocessing_info,
                                            with_normalization)
    names = imagenet_class_names()
    jobs = plan_jobs(images, targets, names, s.data_dir)
    check_inputs(jobs, out, s.eot)

    model, pre, names = load_pretrained(s.model, device=s.device)
    clf = Classifier(with_normalization(model, pre), pre, names, preprocessing_info(model))
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    head = header(clf, s, command_line() if command is None else command)
    plain, plain_rows = attack_plain(clf, jobs, s, out, head)
    if on_plain is not None:
        on_plain(plain, plain_rows)
    outcome = Outcome(plain, plain_rows)
    if s.eot:
        outcome.eot, outcome.eot_rows = attack_eot(clf, jobs, plain, s, out, head)
    return outcome
